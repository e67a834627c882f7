"""Synthetic China: deterministic, chunking-independent, plausible, with recoverable planted truth."""
import numpy as np
import pytest

from carbonsink.io.validate import validate_inputs
from carbonsink.synthetic import make_inputs, truth
from carbonsink.zonal import totals

pytestmark = pytest.mark.integration


def test_valid_and_deterministic(inputs_1deg):
    validate_inputs(inputs_1deg)
    again = make_inputs("1", (2000, 2004)).load()
    for v in inputs_1deg.data_vars:
        np.testing.assert_array_equal(inputs_1deg[v].values, again[v].values)
    other = make_inputs("1", (2000, 2004), seed=1).npp.load()
    assert not np.allclose(other.values, inputs_1deg.npp.values, equal_nan=True)


def test_values_do_not_depend_on_chunking():
    a = make_inputs("0.5", (2000, 2001), target_mb=0.05)   # many small tiles
    b = make_inputs("0.5", (2000, 2001), target_mb=64)     # one tile
    assert a.tas.data.npartitions > 1 and b.tas.data.npartitions == 1
    for v in ("npp", "tas", "pr", "carbonate_fraction"):
        np.testing.assert_array_equal(a[v].values, b[v].values)


def test_years_are_a_window_of_the_same_world():
    """2002 looks the same whether generated alone or inside 2000–2004 (anomalies by year)."""
    long = make_inputs("1", (2000, 2004)).rsds.sel(year=2002).values
    alone = make_inputs("1", (2002, 2002)).rsds.sel(year=2002).values
    np.testing.assert_array_equal(long, alone)
    tas_long = make_inputs("1", (2000, 2004)).tas.sel(time="2003").values
    tas_alone = make_inputs("1", (2003, 2003)).tas.values
    np.testing.assert_array_equal(tas_long, tas_alone)


def test_physically_plausible(inputs_1deg):
    ds = inputs_1deg
    land = ds.land_mask > 0
    frac_land = float(land.mean())
    assert 0.35 < frac_land < 0.5
    pr_annual = ds.pr.groupby("time.year").sum().where(land).mean("year")
    tas_annual = ds.tas.groupby("time.year").mean().where(land).mean("year")
    # south-east wet and warm, north-west dry, Tibet cold
    se, nw, tibet = dict(lat=23.5, lon=113.5), dict(lat=41.5, lon=84.5), dict(lat=33.5, lon=88.5)
    assert pr_annual.sel(**se) > 1200 and pr_annual.sel(**nw) < 200
    assert tas_annual.sel(**se) > 18 and tas_annual.sel(**tibet) < 0
    # summer monsoon and January cold
    month = ds.pr.where(land).mean(("lat", "lon")).groupby("time.month").mean()
    assert int(month.idxmax()) in (6, 7, 8)
    assert int(ds.tas.where(land).mean(("lat", "lon")).groupby("time.month").mean().idxmin()) in (
        12, 1, 2)
    npp = totals(ds.npp.assign_attrs(units="g m-2 yr-1"))
    assert 200 < npp.mean_flux_t_km2.mean() < 600
    assert float(ds.carbonate_fraction.where(land).max()) <= 1
    assert float((ds.carbonate_fraction > 0).where(land).mean()) > 0.05


def test_planted_npp_trend_is_recovered():
    ds = make_inputs("1", (2000, 2020)).load()
    t = truth("1", (2000, 2020))
    y = ds.npp
    years = y.year - y.year.mean()
    slope = (years * (y - y.mean("year"))).sum("year") / (years**2).sum()
    err = (slope - t.npp_trend).where(ds.land_mask > 0)
    # OLS on 21 noisy years: unbiased, per-pixel error a fraction of the climate noise
    assert abs(float(err.mean())) < 0.1
    assert float(np.abs(err).quantile(0.9)) < 2.0
    assert ds.npp.attrs["truth_sensitivity_tas"] == 25.0
