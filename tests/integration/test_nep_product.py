"""NEP product: lazy, CF attrs, both Rh models, equal to the kernel by hand, annual option."""
import numpy as np
import pytest

from carbonsink.io.validate import InputError
from carbonsink.kernels import respiration as k
from carbonsink.products.nep import compute_nep
from carbonsink.synthetic import make_inputs
from carbonsink.zonal import totals

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("model", k.RH_MODELS)
def test_nep_lazy_attrs_and_national_mean(model):
    ds = make_inputs("1", (2000, 2004))
    out = compute_nep(ds, model)
    assert all(out[v].chunks is not None for v in ("npp", "rh", "nep"))   # lazy on dask
    assert out.nep.dims == ("year", "lat", "lon") and out.nep.dtype == np.float32
    for v in ("npp", "rh", "nep"):
        assert out[v].attrs["units"] == "g m-2 yr-1" and out[v].attrs["long_name"]
    assert out.attrs["Conventions"] == "CF-1.10" and out.attrs["rh_model"] == model
    assert out.rh.attrs["rh_model"] == model and "sink" in out.nep.attrs["sign_convention"]
    out = out.load()
    land = ds.land_mask.values > 0
    assert np.isnan(out.nep.values[:, ~land]).all() and np.isfinite(out.nep.values[:, land]).all()
    national = totals(out.nep).mean_flux_t_km2.mean()
    assert 50 < national < 400, national


def test_nep_equals_kernel_by_hand(inputs_1deg):
    ds = inputs_1deg
    out = compute_nep(ds, "soil_tps").load()
    i, j = 25, 38   # a land pixel in the south
    assert ds.land_mask[i, j] == 1
    tas, pr = ds.tas[:, i, j].values.astype("f8"), ds.pr[:, i, j].values.astype("f8")
    soc = float(ds.soc[i, j])
    days = k.days_in_month(ds.year.values)
    rh_d = 0.6163 * (1.55 * np.exp(0.031 * tas) * (pr / 10) / (pr / 10 + 0.68)
                     * soc / (soc + 2.23)) ** 0.7918
    rh = (rh_d * days).reshape(-1, 12).sum(1)
    np.testing.assert_allclose(out.rh[:, i, j], rh, rtol=1e-5)
    np.testing.assert_allclose(out.nep[:, i, j], ds.npp[:, i, j] - rh, rtol=1e-5, atol=1e-3)


def test_pei_and_soil_tps_differ_but_agree_in_magnitude(inputs_1deg):
    a = compute_nep(inputs_1deg, "soil_tps").rh.mean().item()
    b = compute_nep(inputs_1deg, "pei").rh.mean().item()
    assert a != b and 0.5 < a / b < 2


def test_declared_units_flow_through_the_product(inputs_1deg):
    """pr declared in cm with values /10, tas in K: the same NEP (converted, not silently wrong)."""
    base = compute_nep(inputs_1deg).nep
    alt = inputs_1deg.copy()
    alt["pr"] = (inputs_1deg.pr / 10).assign_attrs(units="cm month-1")
    alt["tas"] = (inputs_1deg.tas + 273.15).assign_attrs(units="K")
    alt["npp"] = (inputs_1deg.npp / 1000).assign_attrs(units="kg C m-2 a-1")
    np.testing.assert_allclose(compute_nep(alt).nep, base, rtol=1e-4, atol=0.05)


def test_annual_climate_is_explicit(inputs_1deg):
    annual = inputs_1deg.copy()
    annual["tas"] = inputs_1deg.tas.groupby("time.year").mean().assign_attrs(units="degC")
    annual["pr"] = inputs_1deg.pr.groupby("time.year").sum().assign_attrs(units="mm yr-1")
    annual = annual.drop_vars("time")
    with pytest.raises(InputError, match="'tas'.*annual_climate=True"):
        compute_nep(annual)
    out = compute_nep(annual, annual_climate=True).load()
    assert out.attrs["annual_climate"] == 1
    # each month = annual mean T and annual/12 P (SCIENCE.md §1)
    i, j = 25, 38
    t, p = float(annual.tas[0, i, j]), float(annual.pr[0, i, j])
    days = k.days_in_month([2000])
    rh = (k.rh_daily_from_rs(k.rs_daily_soil_tps(t, p / 120, float(annual.soc[i, j]))) * days).sum()
    assert out.rh[0, i, j] == pytest.approx(rh, rel=1e-5)


def test_unknown_model_rejected(inputs_1deg):
    with pytest.raises(ValueError, match="unknown Rh model"):
        compute_nep(inputs_1deg, "magic")
