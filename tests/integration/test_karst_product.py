"""Karst MPD product and the ecosystem sink on synthetic China."""
import numpy as np
import pytest
import xarray as xr

from carbonsink.io.validate import InputError
from carbonsink.kernels import karst as k
from carbonsink.kernels.climate import annual_from_monthly
from carbonsink.kernels.respiration import days_in_month
from carbonsink.products.climate import annual_drivers
from carbonsink.products.karst import compute_karst, compute_sink
from carbonsink.products.nep import compute_nep
from carbonsink.zonal import totals

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def karst(inputs_1deg):
    return compute_karst(inputs_1deg.chunk({"lat": 16, "lon": 16})).load()


def test_annual_drivers_by_hand(inputs_1deg):
    d = annual_drivers(inputs_1deg).load()
    i, j = 25, 38
    pr = inputs_1deg.pr[:12, i, j].values.astype("f8")
    tas = inputs_1deg.tas[:12, i, j].values.astype("f8")
    days = days_in_month([2000])
    assert d.pr[0, i, j] == pytest.approx(pr.sum(), rel=1e-6)
    assert d.tas[0, i, j] == pytest.approx((tas * days).sum() / 366, rel=1e-6)
    assert d.pr.attrs["units"] == "mm yr-1" and d.tas.attrs["units"] == "degC"
    with pytest.raises(ValueError, match="whole number of years"):
        annual_from_monthly(np.ones(13), "sum")


def test_karst_matches_kernel_chain(inputs_1deg, karst):
    d = annual_drivers(inputs_1deg).load()
    want = k.karst_sink(d.tas.values, d.pr.values, d.aet.values,
                        np.nan_to_num(inputs_1deg.carbonate_fraction.values))
    land = inputs_1deg.land_mask.values > 0
    for name in ("pco2", "ca_eq", "dmax", "ccs", "ionic_strength"):
        np.testing.assert_allclose(karst[name].values[:, land], want[name][:, land], rtol=2e-6)
        assert np.isnan(karst[name].values[:, ~land]).all()


def test_ccs_zero_off_carbonate_and_where_dry(inputs_1deg, karst):
    f = inputs_1deg.carbonate_fraction
    land = inputs_1deg.land_mask > 0
    assert float(np.abs(karst.ccs.where(land & (f == 0))).max()) == 0.0
    d = annual_drivers(inputs_1deg)
    dry = (d.pr - d.aet <= 0) & land
    assert float(np.abs(karst.ccs.where(dry)).max(skipna=True).fillna(0)) == 0.0
    # CCS mean over carbonate pixels: 1–20 t C km-2 a-1 (issue acceptance band)
    mean = totals(karst.ccs.where(f > 0)).mean_flux_t_km2.mean()
    assert 1 < mean < 20, mean
    assert karst.ccs.attrs["units"] == "g m-2 yr-1" and karst.attrs["Conventions"] == "CF-1.10"


def test_ionic_strength_field_is_used(inputs_1deg, karst):
    field = xr.full_like(karst.ionic_strength, 0.02).assign_attrs(units="mol L-1", model="test")
    fixed = compute_karst(inputs_1deg, field).load()
    land = inputs_1deg.land_mask > 0
    assert float(fixed.ionic_strength.where(land).mean()) == pytest.approx(0.02)
    # a stronger ionic strength lowers activity coefficients → more calcite dissolves
    assert float(fixed.ca_eq.where(land).mean()) > float(karst.ca_eq.where(land).mean())
    const = compute_karst(inputs_1deg, 0.02).load()
    np.testing.assert_allclose(const.ca_eq, fixed.ca_eq, rtol=1e-6)
    with pytest.raises(InputError, match="ionic_strength"):
        compute_karst(inputs_1deg, field.assign_attrs(units="mmol L-1"))


def test_sink_is_nep_plus_ccs(inputs_1deg, karst):
    nep = compute_nep(inputs_1deg).load()
    sink = compute_sink(nep, karst).load()
    np.testing.assert_allclose(sink.ecosystem_sink, nep.nep + karst.ccs, rtol=1e-6)
    assert "NEP + CCS" in sink.ecosystem_sink.attrs["long_name"]
    with pytest.raises(InputError, match="ccs"):
        compute_sink(nep, karst.ccs.assign_attrs(units="mol km-2 yr-1"))
