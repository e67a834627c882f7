"""Zonal totals with true cell areas, and the region masks."""
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from carbonsink.grid import get_grid
from carbonsink.regions import (DIVISIONS, KARST_REGIONS, PROVINCES, china_mask, names,
                                region_masks)
from carbonsink.zonal import period_summary, totals

pytestmark = pytest.mark.integration


def _flux(grid, values, years=(2000, 2001)):
    g = get_grid(grid)
    data = np.broadcast_to(values, (len(years),) + g.shape).astype("f4").copy()
    return xr.DataArray(data, dims=("year", "lat", "lon"),
                        coords={"year": list(years), "lat": g.lat, "lon": g.lon},
                        attrs={"units": "g m-2 yr-1"}, name="nep")


def test_totals_by_hand():
    g = get_grid("1")
    vals = np.full(g.shape, np.nan)
    vals[23, 40] = 100.0          # the 1° cell 30–31°N
    vals[0, 0] = 300.0            # a northern cell, smaller
    mask = xr.DataArray(np.zeros(g.shape, "i2"), dims=("lat", "lon"),
                        coords={"lat": g.lat, "lon": g.lon},
                        attrs={"flag_values": [1, 2], "region_names": ["A", "B"]}, name="m")
    mask[23, 40] = 1
    mask[0, 0] = 2
    t = totals(_flux("1", vals), mask)
    a30, a53 = g.row_area[23], g.row_area[0]
    assert a30 == pytest.approx(1.0653e10, rel=5e-5)
    nat = t[t.region == "China"].iloc[0]
    assert nat.area_km2 == pytest.approx((a30 + a53) / 1e6)
    assert nat.total_tg == pytest.approx((100 * a30 + 300 * a53) * 1e-12, rel=1e-6)
    assert nat.mean_flux_t_km2 == pytest.approx((100 * a30 + 300 * a53) / (a30 + a53), rel=1e-6)
    ra = t[(t.region == "A") & (t.year == 2001)].iloc[0]
    assert ra.total_tg == pytest.approx(100 * a30 * 1e-12, rel=1e-6) and ra.mean_flux_t_km2 == 100
    assert list(t.columns) == ["region_set", "region", "year", "area_km2", "mean_flux_t_km2",
                               "total_tg"]


def test_totals_dask_equals_numpy_and_unit_conversion():
    rng = np.random.default_rng(0)
    f = _flux("0.5", rng.uniform(-50, 500, get_grid("0.5").shape))
    regions = region_masks("0.5")
    a = totals(f, regions)
    b = totals(f.chunk({"lat": 20, "lon": 30}), regions)
    c = totals((f / 1000).assign_attrs(units="kg C m-2 a-1"), regions)
    pd.testing.assert_frame_equal(a, b, rtol=1e-9)
    pd.testing.assert_frame_equal(a, c, rtol=1e-5)
    s = period_summary(a)
    assert {"total_tg_sd", "mean_flux_t_km2"} <= set(s.columns)


def test_region_masks_cover_china():
    r = region_masks("0.25")
    land = china_mask("0.25").values > 0
    assert (r.province.values > 0).sum() == land.sum()
    present = set(np.unique(r.province.values).tolist()) - {0}
    # cells are assigned by their centre: Macao (~30 km²) has no 0.25° cell, every province does;
    # a region with no cell is dropped from the set (no zero-area rows in the tables)
    assert set(names(r.province)) == present
    missing = {n for n in PROVINCES.values() if n[0] not in names(r.province).values()}
    assert {n[0] for n in missing} <= {"Macao", "Hong Kong"}
    for m in ("division", "karst_region"):
        assert ((r[m].values > 0) == land).all()
    assert list(names(r.division).values()) == list(DIVISIONS)
    assert list(names(r.karst_region).values()) == list(KARST_REGIONS)
    assert "Guizhou" in names(r.province).values() and len(PROVINCES) == 34
    # China's land area (within 17–54°N) ≈ 9.5 million km²
    area = totals(_flux("0.25", np.where(land, 1.0, np.nan)))
    assert 9.2e6 < area.area_km2.iloc[0] < 9.8e6


def test_divisions_follow_the_documented_splits():
    r = region_masks("0.5")
    div = {v: k for k, v in names(r.division).items()}

    def at(lat, lon):
        return int(r.division.sel(lat=lat, lon=lon, method="nearest"))
    assert at(26.5, 106.5) == div["South"]          # Guizhou
    assert at(39.9, 116.4) == div["North"]          # Beijing
    assert at(43.8, 87.6) == div["Northwest"]       # Urumqi
    assert at(29.6, 91.1) == div["Qinghai-Tibet"]   # Lhasa
    assert at(41.0, 105.0) == div["Northwest"]      # western Inner Mongolia
    assert at(31.0, 100.5) == div["Qinghai-Tibet"]  # western Sichuan (Garzê)
    assert at(30.6, 104.0) == div["South"]          # Chengdu


def test_totals_many_equals_one_variable_at_a_time():
    from carbonsink.zonal import totals_many

    rng = np.random.default_rng(1)
    g = get_grid("0.5")
    regions = region_masks("0.5")
    a = _flux("0.5", rng.uniform(-50, 500, g.shape)).chunk({"lat": 25, "lon": 40, "year": 1})
    b = (_flux("0.5", rng.uniform(0, 5, g.shape)) / 1000).assign_attrs(units="kg C m-2 a-1")
    b = b.where(rng.random(g.shape) > 0.3).chunk({"lat": 25, "lon": 40, "year": 1})
    both = totals_many({"a": a, "b": b}, regions, column="term")
    assert list(both.columns[:2]) == ["term", "region_set"]
    for name, da in (("a", a), ("b", b)):
        one = both[both.term == name].drop(columns="term").reset_index(drop=True)
        pd.testing.assert_frame_equal(one, totals(da, regions), rtol=1e-12)
    # the partly-NaN flux counts only its valid cells' area
    dom = both[(both.region_set == "domain") & (both.year == 2000)].set_index("term")
    assert dom.loc["b", "area_km2"] < 0.75 * dom.loc["a", "area_km2"]


@pytest.mark.parametrize("grid, domain, chunks", [("0.5", None, {"lat": 16, "lon": 24}),
                                                  ("0.1", "guizhou", {"lat": 16, "lon": 16}),
                                                  ("0.25", "three-river-headwaters",
                                                   {"lat": 64, "lon": 64})])
def test_tiled_region_masks_equal_the_whole_grid(grid, domain, chunks):
    """Masks rasterised tile by tile (no full-grid array in the client) are the whole-grid masks
    cell for cell, with the same regions listed and the same attrs."""
    sets = ["province", "division", "karst_region", "yangtze_reach"]
    whole = region_masks(grid, domain, sets)
    tiled = region_masks(grid, domain, sets, chunks=chunks)
    assert list(tiled.data_vars) == list(whole.data_vars)
    assert tiled.attrs == whole.attrs
    for v in whole.data_vars:
        assert tiled[v].chunks is not None
        np.testing.assert_array_equal(tiled[v].values, whole[v].values)
        assert tiled[v].dtype == whole[v].dtype or v != "domain_mask"
        assert tiled[v].attrs == whole[v].attrs, v


def test_tiled_basins_equal_the_whole_grid():
    from carbonsink.synthetic import make_basins

    whole = make_basins("0.5", n_basins=40, seed=0)
    tiled = make_basins("0.5", n_basins=40, seed=0, chunks={"lat": 20, "lon": 32})
    assert tiled.chunks is not None
    np.testing.assert_array_equal(tiled.values, whole.values)
    assert tiled.attrs == whole.attrs


@pytest.mark.parametrize("chunked", [False, True])
def test_category_areas_equal_pandas_groupby(chunked):
    """Class areas per region: the region × class pairs summed with true cell areas, against a
    pandas groupby of the cells."""
    from carbonsink.zonal import category_areas

    g = get_grid("0.5")
    rng = np.random.default_rng(5)
    cats = rng.integers(0, 4, g.shape).astype("f4")          # 0 = no data
    cats[rng.random(g.shape) < 0.1] = np.nan
    da = xr.DataArray(cats, dims=("lat", "lon"), coords={"lat": g.lat, "lon": g.lon},
                      attrs={"flag_values": [1, 2, 3], "flag_meanings": "low mid high"})
    regions = region_masks("0.5")[["division"]]
    if chunked:
        da = da.chunk({"lat": 20, "lon": 30})
    t = category_areas(da, regions)
    area = g.cell_area() / 1e6
    div = regions["division"].values
    names_ = names(regions["division"])
    df = pd.DataFrame({"c": cats.ravel(), "d": div.ravel(), "a": area.ravel()})
    df = df[df.c.isin([1, 2, 3])]
    dom = df.groupby("c").a.sum()
    got = t[t.region_set == "domain"].set_index("category").area_km2
    np.testing.assert_allclose(got[["low", "mid", "high"]].to_numpy(), dom.to_numpy(), rtol=1e-12)
    by = df[df.d > 0].groupby(["d", "c"]).a.sum()
    for (d, c), a in by.items():
        row = t[(t.region_set == "division") & (t.region == names_[d]) &
                (t.category == ["low", "mid", "high"][int(c) - 1])]
        assert row.area_km2.iloc[0] == pytest.approx(a, rel=1e-12)
    shares = t[t.region_set == "division"].groupby("region").share_pct.sum()
    np.testing.assert_allclose(shares.to_numpy(), 100.0)
