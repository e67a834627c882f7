"""The services products' xarray/dask layer (SCIENCE.md §7) on small hand-made inputs: province sums
equal the statistics, storage by primary class, routing mass balance and a planted source routed by
hand, coarsened routing, drivers against the ``geodetector`` package and scipy, bad tables."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import stats as sstats

from carbonsink.config import RunConfig
from carbonsink.io import services_tables as T
from carbonsink.kernels import geodetector as kg
from carbonsink.products.services import emission_product, storage_product
from carbonsink.products.services_flow import (balance_product, balance_table, drivers,
                                               route_years, routing_grid)
from carbonsink.regions import region_masks
from carbonsink.zonal import cell_area_da

YEARS = (2000, 2001)


@pytest.fixture(scope="module")
def world():
    cfg = RunConfig(grid="0.5", years=YEARS)
    g = cfg.grid_obj()
    reg = region_masks(g, cfg.domain_obj(), cfg.region_set_specs())
    land = reg.domain_mask.values > 0
    rng = np.random.default_rng(0)
    shape = (2,) + g.shape
    codes = np.array([11, 12, 21, 22, 31, 33, 42, 51, 61, 62])
    lulc = np.where(land, rng.choice(codes, shape), np.nan).astype("f4")
    pop = np.where(land, rng.gamma(1.0, 150.0, shape), np.nan).astype("f4")
    t = pd.date_range(f"{YEARS[0]}-01-01", periods=24, freq="MS")
    monthly = (24,) + g.shape
    ds = xr.Dataset({
        "lulc": (("year", "lat", "lon"), lulc),
        "population": (("year", "lat", "lon"), pop),
        "gdp": (("year", "lat", "lon"), (pop * rng.uniform(2e4, 8e4, shape)).astype("f4")),
        "elevation": (("lat", "lon"), np.where(land, rng.uniform(0, 5000, g.shape), np.nan)),
        "uas": (("time", "lat", "lon"), np.where(land, rng.normal(2, 2, monthly), np.nan)),
        "vas": (("time", "lat", "lon"), np.where(land, rng.normal(-1, 2, monthly), np.nan)),
        "tas": (("time", "lat", "lon"), np.where(land, rng.normal(10, 5, monthly), np.nan)),
        "pr": (("time", "lat", "lon"), np.where(land, rng.gamma(2, 30, monthly), np.nan)),
    }, coords={"year": list(YEARS), "time": t, "lat": g.lat, "lon": g.lon})
    ds = ds.chunk({"lat": 30, "lon": 40})
    names = list(reg.province.attrs["region_names"])
    stats = pd.DataFrame([{"year": y, "province": n, "population": 4e7 + 1e6 * k,
                           "pigs": 1e7, "large_livestock": 3e6, "wood": 5e6, "cement": 5e7 * k,
                           "energy_coal": 1e8 + 1e6 * k, "energy_oil": 3e7,
                           "energy_natural_gas": 1e7, "energy_other": 1e7}
                          for y in YEARS for k, n in enumerate(names)])
    return cfg, g, reg, ds, stats


def _tables(stats):
    f = T.read_emission_factors()
    return (T.read_province_statistics(stats, f.fuel.tolist(), years=list(YEARS)), f,
            T.read_classes(), T.read_pools())


def test_province_sums_equal_statistics(world):
    cfg, g, reg, ds, stats = world
    st, f, c, _ = _tables(stats)
    em, inv = emission_product(ds, reg, st, f, c)
    em = em.compute()
    area = (cell_area_da(em) * 1e-6).values
    prov = reg.province.values
    names = list(reg.province.attrs["region_names"])
    codes = list(reg.province.attrs["flag_values"])
    check = {"e_people": lambda r: 0.079 * r.population,
             "e_livestock": lambda r: 0.082 * r.pigs + 0.796 * r.large_livestock,
             "e_energy": lambda r: (0.75614 * r.energy_coal + 0.58615 * r.energy_oil
                                    + 0.44841 * r.energy_natural_gas),
             "e_wood": lambda r: 0.36 * r.wood, "e_cement": lambda r: 0.136 * r.cement}
    for y in YEARS:
        for n, code in zip(names, codes):
            row = st[(st.year == y) & (st.province == n)].iloc[0]
            for term, expected in check.items():
                got = np.nansum(em[term].sel(year=y).values * area * (prov == code))
                assert got == pytest.approx(expected(row), rel=1e-5), (y, n, term)
    # the land-use term: class rate (t ha-1 a-1) × 100 on each cell, by primary class
    lu = em.e_landuse.sel(year=2000).values
    codes0 = ds.lulc.sel(year=2000).values
    assert np.allclose(lu[codes0 == 21], 2321.0) and np.allclose(lu[codes0 == 12], 1598.0)
    assert np.allclose(lu[codes0 == 42], 481.0) and np.allclose(lu[codes0 == 51], 0.0)
    total = sum(em[t] for t in ("e_people", "e_livestock", "e_energy", "e_wood", "e_cement",
                                "e_landuse"))
    np.testing.assert_allclose(em.e_total.values, total.values, rtol=1e-5)
    assert set(inv.columns) >= {"year", "province", "e_energy_t", "e_energy_coal_t"}


def test_zero_weight_province_is_spread_by_area_and_flagged(world):
    cfg, g, reg, ds, stats = world
    st, f, c, _ = _tables(stats)
    beijing = reg.province.attrs["flag_values"][0]
    ds2 = ds.copy()
    ds2["gdp"] = ds.gdp.where(reg.province != beijing, 0.0).where(ds.lulc.notnull())
    em, inv = emission_product(ds2, reg, st, f, c)
    row = inv[(inv.year == 2000) & (inv.province == "Beijing")].iloc[0]
    assert row.e_energy_by_area and not row.e_people_by_area
    e = em.e_energy.sel(year=2000).where(reg.province == beijing).values
    e = e[np.isfinite(e)]
    assert e.size > 1 and np.allclose(e, e[0])           # uniform density = by area


def test_bad_tables_are_refused(world):
    cfg, g, reg, ds, stats = world
    f = T.read_emission_factors()
    bad = stats.copy()
    bad.loc[3, "cement"] = -1.0
    with pytest.raises(T.TableError, match="cement.*negative"):
        T.read_province_statistics(bad, f.fuel.tolist())
    unknown = stats.copy()
    unknown.loc[0, "province"] = "Atlantis"
    with pytest.raises(T.TableError, match="unknown provinces.*Atlantis"):
        T.read_province_statistics(unknown, f.fuel.tolist())
    with pytest.raises(T.TableError, match="years \\[2002\\]"):
        T.read_province_statistics(stats, f.fuel.tolist(), years=[2000, 2002])
    pools = T.read_pools().drop(columns="c_soil")
    with pytest.raises(T.TableError, match="c_soil"):
        T.read_pools(pools)
    # a province of the table absent from the map: an error for all China
    st, f, c, _ = _tables(stats)
    coarse_reg = reg.copy()
    coarse_reg["province"] = reg.province.where(reg.province != reg.province.attrs[
        "flag_values"][0], 0).assign_attrs(reg.province.attrs)
    attrs = dict(reg.province.attrs)
    attrs["flag_values"] = attrs["flag_values"][1:]
    attrs["region_names"] = attrs["region_names"][1:]
    coarse_reg["province"].attrs = attrs
    with pytest.raises(T.TableError, match="Beijing.*no cell"):
        emission_product(ds, coarse_reg, st, f, c)


def test_storage_by_primary_rows_and_unknown_codes(world):
    cfg, g, reg, ds, stats = world
    _, _, c, pools = _tables(stats)
    st = storage_product(ds.lulc, pools, c).compute()
    lulc = ds.lulc.values
    tot = st.c_total.values
    assert np.allclose(tot[lulc == 21], 331.21, rtol=1e-6)
    assert np.allclose(tot[lulc == 12], 215.92, rtol=1e-6)
    assert np.allclose(tot[lulc == 51], 30.0, rtol=1e-6)
    assert np.isnan(tot[np.isnan(lulc)]).all()
    np.testing.assert_allclose(st.c_change.values, tot[-1] - tot[0], rtol=1e-6)
    with pytest.raises(T.TableError, match="land-use codes \\[77\\]"):
        storage_product(ds.lulc.where(ds.lulc != 62, 77), pools[pools.lucode != 7], c)


def _planted(ny=6, nx=8):
    """One source cell (surplus 10) with the wind blowing towards the east everywhere."""
    from carbonsink.grid import Grid
    g = Grid(1.0, 100.0, 30.0, 100.0 + nx, 30.0 + ny)
    coords = {"year": [2000], "lat": g.lat, "lon": g.lon}
    area = (cell_area_da(xr.Dataset(coords={"lat": g.lat, "lon": g.lon})) * 1e-6).values
    surplus = np.zeros((ny, nx))
    spare = np.zeros((ny, nx))
    surplus[2, 1] = 10.0
    spare[2, 3], spare[2, 5] = 4.0, 3.0           # 4 absorbed at x=3, 3 at x=5, 3 exported E
    bal = xr.Dataset({"surplus": (("year", "lat", "lon"), (surplus / area)[None]),
                      "spare": (("year", "lat", "lon"), (spare / area)[None])}, coords=coords)
    t = pd.date_range("2000-01-01", periods=12, freq="MS")
    wind = xr.DataArray(np.full((12, ny, nx), 3.0), dims=("time", "lat", "lon"),
                        coords={"time": t, "lat": g.lat, "lon": g.lon})
    return bal, wind, g


def test_planted_source_routed_by_hand_and_mass_balance():
    bal, u, g = _planted()
    v = u * 0.0
    regions = np.where(np.arange(g.nlon)[None, :] < 4, 1, 2) * np.ones(g.shape, int)
    ds, per_year, matrix = route_years(bal, u, v, regions, np.array([1, 2]), ["west", "east"],
                                       routing_resolution=0.05)
    absorbed = ds.absorbed.values[0]
    assert absorbed[2, 3] == pytest.approx(4.0) and absorbed[2, 5] == pytest.approx(3.0)
    assert np.nansum(absorbed) == pytest.approx(7.0)
    r = per_year.iloc[0]
    assert r.exported_E_t == pytest.approx(3.0) and r.surplus_t == pytest.approx(10.0)
    assert abs(r.mass_balance_residual_t) < 1e-9
    assert int(ds.sector.values[0, 2, 1]) == 2            # towards the east
    tp = ds.throughput.values[0, 2]
    np.testing.assert_allclose(tp[2:], [10, 10, 6, 6, 3, 3], rtol=1e-9)
    m = matrix.set_index(["origin", "destination"]).mass_t
    assert m[("west", "west")] == pytest.approx(4.0) and m[("west", "east")] == pytest.approx(3.0)
    assert m[("west", "exported E")] == pytest.approx(3.0)


def test_coarsened_routing_conserves_mass():
    from carbonsink.grid import Grid
    fine = Grid(0.01, 100.0, 30.0, 100.37, 30.23)        # edges off the 0.05 lattice
    coarse, k = routing_grid(fine, 0.05)
    assert k == 5 and coarse.west == 100.0 and coarse.east == pytest.approx(100.4)
    rng = np.random.default_rng(3)
    coords = {"year": [2000], "lat": fine.lat, "lon": fine.lon}
    s = rng.gamma(1, 50, (1,) + fine.shape)
    k_ = rng.gamma(1, 40, (1,) + fine.shape)
    bal = xr.Dataset({"surplus": (("year", "lat", "lon"), s), "spare": (("year", "lat", "lon"),
                                                                          k_)}, coords=coords)
    bal = bal.chunk({"lat": 10, "lon": 16})
    t = pd.date_range("2000-01-01", periods=12, freq="MS")
    u = xr.DataArray(rng.normal(1, 2, (12,) + fine.shape), dims=("time", "lat", "lon"),
                     coords={"time": t, "lat": fine.lat, "lon": fine.lon})
    ds, per_year, _ = route_years(bal, u, -u, None, None, [], routing_resolution=0.05)
    area = (cell_area_da(bal) * 1e-6).values
    r = per_year.iloc[0]
    assert ds.sizes["lat"] == coarse.nlat and ds.sizes["lon"] == coarse.nlon
    assert np.nansum(ds.surplus.values) == pytest.approx((s[0] * area).sum(), rel=1e-5)
    assert r.surplus_t == pytest.approx((s[0] * area).sum(), rel=1e-9)
    assert abs(r.mass_balance_residual_t) <= 1e-9 * r.surplus_t


def test_drivers_equal_geodetector_and_scipy(world):
    geodetector = pytest.importorskip("geodetector")
    cfg, g, reg, ds, stats = world
    rng = np.random.default_rng(5)
    y = (ds.population.sel(year=2001) * 0.3 + 100 * (ds.lulc.sel(year=2001) // 10)
         + xr.DataArray(rng.normal(0, 30, g.shape), dims=("lat", "lon")))
    factors = {"population": ds.population.sel(year=2001),
               "lulc": (ds.lulc.sel(year=2001) // 10), "elevation": ds.elevation}
    out = drivers(y.chunk({"lat": 30, "lon": 40}), factors, k=5, sample=10 ** 9)
    yv = y.values.ravel()
    fv = {n: np.asarray(a.values, "f8").ravel() for n, a in factors.items()}
    ok = np.isfinite(yv) & np.all([np.isfinite(v) for v in fv.values()], axis=0)
    assert out["n"] == ok.sum()
    for i, (n, v) in enumerate(fv.items()):
        assert out["r"][i] == pytest.approx(sstats.pearsonr(yv[ok], v[ok])[0], abs=1e-10)
        strata = v[ok].astype(int) if n == "lulc" else kg.discretize(v[ok], breaks=out["breaks"][i])
        fd = geodetector.FactorDetector().fit(pd.DataFrame({"x": pd.Categorical(strata)}), yv[ok])
        assert out["factor"][i]["q"] == pytest.approx(fd.q_value_, abs=1e-9), n
    s0 = kg.discretize(fv["population"][ok], breaks=out["breaks"][0])
    s1 = fv["lulc"][ok].astype(int)
    ref = kg.interaction_detector(yv[ok], s0, s1)
    assert out["q_interaction"][0, 1] == pytest.approx(ref["q12"], abs=1e-9)
    assert out["interaction_type"][0, 1] == ref["type"]


def test_balance_sequestration_and_table(world):
    cfg, g, reg, ds, stats = world
    st, f, c, pools = _tables(stats)
    em, _ = emission_product(ds, reg, st, f, c)
    sink = xr.Dataset({"ecosystem_sink": xr.full_like(em.e_total, 150.0).where(
        em.e_total.notnull())})
    bal = balance_product(em, sink=sink)
    assert bal.attrs["capacity"] == "sequestration"
    e = (em.e_total - em.e_landuse).values
    np.testing.assert_allclose(bal.emission.values, e, rtol=1e-5)
    np.testing.assert_allclose(bal.flow.values, np.minimum(e, 150.0), rtol=1e-5)
    np.testing.assert_allclose(bal.ratio.values, e / 150.0, rtol=1e-5)
    table = balance_table(bal, reg, "China")
    dom = table[table.region_set == "domain"].iloc[0]
    assert dom.ratio == pytest.approx(dom.emission_tg / dom.capacity_tg)
    assert dom.flow_cells_tg <= dom.flow_tg + 1e-9
