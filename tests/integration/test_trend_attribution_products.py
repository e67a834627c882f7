"""Trend and attribution products: wrappers equal the kernels, attrs, area tables, planted truth."""
import numpy as np
import pytest
import xarray as xr

from carbonsink.kernels import attribution as ka
from carbonsink.kernels import trend as kt
from carbonsink.products.attribution import compute_attribution
from carbonsink.products.climate import annual_drivers
from carbonsink.products.trends import compute_trends, per_year_units
from carbonsink.regions import region_masks
from carbonsink.synthetic import make_inputs, truth
from carbonsink.zonal import category_areas

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def world():
    ds = make_inputs("1", (2000, 2020)).chunk({"lat": 16, "lon": 32})
    return ds, annual_drivers(ds)


def test_trends_equal_kernel(world):
    ds, _ = world
    tr = compute_trends(ds.npp)
    assert tr.slope.chunks is not None                       # lazy
    tr = tr.load()
    y = ds.npp.values
    want = kt.trend_stats(y, x=ds.year.values.astype("f8"))
    for name in ("slope", "intercept", "p_value", "sen_slope", "mk_z", "mk_p", "cv"):
        np.testing.assert_allclose(tr[name].values, want[name], rtol=2e-5, atol=1e-6,
                                   equal_nan=True)
    np.testing.assert_array_equal(tr.change_class.values, want["change_class"])
    assert tr.slope.attrs["units"] == "g m-2 yr-2"
    assert tr.change_class.attrs["flag_meanings"].split() == list(kt.CHANGE_CLASS_MEANINGS)


def test_ols_only_option_equals_full(world):
    ds, _ = world
    full = compute_trends(ds.npp).load()
    ols = compute_trends(ds.npp, robust=False).load()
    assert "sen_slope" not in ols and "mk_z" not in ols
    for name in ("slope", "p_value", "cv", "change_class", "n_valid"):
        np.testing.assert_array_equal(ols[name].values, full[name].values)


def test_planted_trend_recovered_by_product(world):
    ds, _ = world
    tr = compute_trends(ds.npp).load()
    t = truth("1", (2000, 2020))
    err = (tr.slope - t.npp_trend).where(ds.land_mask > 0)
    assert abs(float(err.mean())) < 0.1 and float(np.abs(err).quantile(0.9)) < 2.0


def test_natural_and_breaks_classes(world):
    ds, _ = world
    nat = compute_trends(ds.npp, classes="natural").load()
    breaks = nat.change_class.attrs["breaks"]
    assert len(breaks) == 4 and breaks == sorted(breaks)
    again = compute_trends(ds.npp, classes="breaks", breaks=breaks).load()
    np.testing.assert_array_equal(nat.change_class.values, again.change_class.values)
    with pytest.raises(ValueError, match="classes must be"):
        compute_trends(ds.npp, classes="quantiles")


def test_change_areas_sum_to_land(world):
    ds, _ = world
    tr = compute_trends(ds.npp)
    areas = category_areas(tr.change_class, region_masks("1")[["division"]])
    nat = areas[areas.region_set == "domain"]
    land_km2 = float((xr.DataArray(__import__("carbonsink.grid", fromlist=["x"]).get_grid("1")
                                   .cell_area(), dims=("lat", "lon")) * (ds.land_mask.values > 0)
                      ).sum()) / 1e6
    assert nat.area_km2.sum() == pytest.approx(land_km2, rel=1e-9)
    assert nat.share_pct.sum() == pytest.approx(100)
    div = areas[areas.region_set == "division"].groupby("region").area_km2.sum()
    assert div.sum() == pytest.approx(land_km2, rel=1e-9)


def test_attribution_equals_kernel_and_recovers_truth(world):
    ds, d = world
    drivers = {"pr": d.pr, "tas": d.tas, "rsds": d.rsds}
    a = compute_attribution(ds.npp, drivers)
    assert a.dominant_factor.chunks is not None
    a = a.load()
    X = np.stack([drivers[n].values for n in drivers]).astype("f8")
    want = ka.attribute(ds.npp.values.astype("f8"), X, x=ds.year.values.astype("f8"))
    for i, n in enumerate(drivers):
        np.testing.assert_allclose(a[f"sensitivity_{n}"], want["beta"][i], rtol=1e-4,
                                   equal_nan=True)
        np.testing.assert_allclose(a[f"pcorr_{n}"], want["pcorr_r"][i], rtol=1e-4, atol=1e-6,
                                   equal_nan=True)
    np.testing.assert_array_equal(a.dominant_factor, want["dominant"])
    shares = sum(a[f"share_{n}"] for n in ["pr", "tas", "rsds", "ha"])
    assert float(np.abs(shares - 100).max()) < 1e-3
    t = truth("1", (2000, 2020))
    veg = t.npp_clim > 200
    for n in drivers:
        ratio = float((a[f"sensitivity_{n}"] / t[f"sensitivity_{n}"]).where(veg).median())
        assert ratio == pytest.approx(1.0, abs=0.05), (n, ratio)
    assert abs(float((a.contribution_ha - t.human_trend).where(veg).mean())) < 0.1
    assert a.dominant_factor.attrs["flag_meanings"] == (
        "precipitation temperature solar_radiation human_activity")
    assert a.sensitivity_pr.attrs["units"] == "(g m-2 yr-1) (mm yr-1)-1"
    areas = category_areas(a.dominant_factor)
    assert set(areas.category) == {"precipitation", "temperature", "solar_radiation",
                                   "human_activity"}


def test_attribution_rejects_bad_arguments(world):
    ds, d = world
    with pytest.raises(ValueError, match="method"):
        compute_attribution(ds.npp, {"pr": d.pr}, method="magic")
    with pytest.raises(ValueError, match="reserved"):
        compute_attribution(ds.npp, {"ha": d.pr})
    with pytest.raises(ValueError, match="no dimension"):
        compute_attribution(ds.npp, {"pr": d.pr}, dim="time")


def test_per_year_units():
    assert per_year_units("g m-2 yr-1") == "g m-2 yr-2"
    assert per_year_units("degC") == "degC yr-1"
    assert per_year_units("1") == "yr-1"


# --- blocks, compaction, graph size ---------------------------------------------------------------
def _with_ocean_chunk(world):
    """NPP at 1° in 8 × 8 chunks, one chunk all NaN (ocean), a few short pixels, a tie."""
    ds, d = world
    y = ds.npp.load().copy()
    y[:, :8, :8] = np.nan                          # a whole chunk of ocean
    y[3:, 20, 30] = np.nan                         # 3 valid years: the minimum
    y[2:, 21, 30] = np.nan                         # 2 valid years: NaN
    y[5, 22, 31] = y[9, 22, 31]                    # a tie
    return y, {n: d[n].load() for n in ("pr", "tas", "rsds")}


def test_trends_blocks_equal_the_unchunked_product(world, monkeypatch):
    import carbonsink.products.trends as pt

    y, _ = _with_ocean_chunk(world)
    plain = compute_trends(y)                                   # numpy: one call, no dask
    assert plain.slope.chunks is None
    for block_pixels, merged in ((1, 8), (256, 16), (None, 64)):
        if block_pixels is not None:
            monkeypatch.setattr(pt, "BLOCK_PIXELS", block_pixels)
        tr = compute_trends(y.chunk({"lat": 8, "lon": 8}))
        assert max(tr.slope.chunks[0]) == min(merged, y.sizes["lat"])
        assert sum(tr.slope.chunks[1]) == y.sizes["lon"]
        # one kernel task and one getitem per output and block; inputs are merged once
        nblocks = len(tr.slope.chunks[0]) * len(tr.slope.chunks[1])
        graph = dict(tr.__dask_graph__())
        assert len(graph) <= 64 + nblocks * (len(tr.data_vars) + 2), len(graph)
        tr = tr.load()
        for name in plain.data_vars:
            np.testing.assert_array_equal(tr[name].values, plain[name].values, err_msg=name)
            assert tr[name].dtype == plain[name].dtype and tr[name].encoding == {}
        assert np.isnan(tr.slope.values[:8, :8]).all()
        assert (tr.change_class.values[:8, :8] == 0).all()
        assert (tr.n_valid.values[:8, :8] == 0).all()
        assert np.isfinite(tr.sen_slope.values[20, 30]) and np.isnan(tr.sen_slope.values[21, 30])
        monkeypatch.undo()


def test_trends_any_dim_order_and_time_chunks(world):
    y, _ = _with_ocean_chunk(world)
    want = compute_trends(y).load()
    got = compute_trends(y.transpose("lat", "year", "lon").chunk({"year": 5, "lat": 10})).load()
    assert got.slope.dims == ("lat", "lon")
    for name in want.data_vars:
        np.testing.assert_array_equal(got[name].values, want[name].values, err_msg=name)
    nat = compute_trends(y.chunk({"lat": 8}), classes="natural").load()
    np.testing.assert_array_equal(nat.change_class.values,
                                  compute_trends(y, classes="natural").change_class.values)


def test_numba_threads_restored_after_dask_tasks(world):
    """Under dask the kernels run on one numba thread per task, and the task thread gets its own
    setting back afterwards (the threaded scheduler reuses its threads)."""
    import dask
    import numba
    from concurrent.futures import ThreadPoolExecutor

    y, _ = _with_ocean_chunk(world)
    pool = ThreadPoolExecutor(1)
    before = pool.submit(numba.get_num_threads).result()
    with dask.config.set(pool=pool, scheduler="threads"):
        compute_trends(y.chunk({"lat": 8, "lon": 8})).load()
    assert pool.submit(numba.get_num_threads).result() == before
    pool.shutdown()


def test_attribution_blocks_equal_the_unchunked_product(world):
    y, drivers = _with_ocean_chunk(world)
    plain = compute_attribution(y, drivers)
    assert plain.dominant_factor.chunks is None
    # y chunked, one driver chunked differently, one left in memory
    mixed = {"pr": drivers["pr"].chunk({"lat": 8, "lon": 16}),
             "tas": drivers["tas"].transpose("lon", "lat", "year").chunk({"lon": 8}),
             "rsds": drivers["rsds"]}
    att = compute_attribution(y.chunk({"lat": 8, "lon": 8}), mixed)
    assert att.dominant_factor.chunks is not None
    att = att.load()
    for name in plain.data_vars:
        np.testing.assert_allclose(att[name].values, plain[name].values, rtol=1e-6, atol=0,
                                   equal_nan=True, err_msg=name)
        assert att[name].dtype == plain[name].dtype
    assert (att.dominant_factor.values[:8, :8] == 0).all()
    assert np.isnan(att.sensitivity_pr.values[:8, :8]).all()
    assert (att.n_valid.values[:8, :8] == 0).all() and att.n_valid.values[20, 30] == 3
    with pytest.raises(ValueError):
        compute_attribution(y, {"pr": drivers["pr"].assign_coords(lat=drivers["pr"].lat + 0.5)})
