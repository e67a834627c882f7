"""Carbon-sequestration service kernels (SCIENCE.md §7, seed 003): storage and InVEST's valuation,
the emission inventory and its spreading, balance, wind routing, Pearson partials and the Geodetector
(against the ``geodetector`` package) — hand-computed values and bad inputs."""
import time

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from carbonsink.kernels import geodetector as gd
from carbonsink.kernels import routing as rt
from carbonsink.kernels import services as sv

pytestmark = pytest.mark.unit

# InVEST's own test table: one class with pools (15, 10, 60, 1) and one with 1 t ha⁻¹ each
POOLS = pd.DataFrame({"lucode": [1, 2], "c_above": [15.0, 1], "c_below": [10.0, 1],
                      "c_soil": [60.0, 1], "c_dead": [1.0, 1]})


# --------------------------------------------------------------------------------------------------
# storage and valuation
# --------------------------------------------------------------------------------------------------

def test_npv_factor_reproduces_invest_reference():
    f = sv.npv_factor(43.0, -7.1, 2.8, 2016, 2030)
    assert round(f, 5) == 59.00136
    assert f * -58 == pytest.approx(-3422.079, abs=5e-4)
    # the closed form equals the sum of SCIENCE.md §7
    ratio = 1 / ((1 - 0.071) * (1 + 0.028))
    assert f == pytest.approx(43 / 14 * sum(ratio ** t for t in range(14)), rel=1e-13)
    assert sv.npv_factor(43.0, 0.0, 0.0, 2016, 2030) == pytest.approx(43.0)   # ratio = 1 limit
    with pytest.raises(ValueError, match="after"):
        sv.npv_factor(43.0, 5, 0, 2030, 2016)


def test_storage_of_invest_pools_is_86_and_nodata_is_nan():
    lulc = np.array([[1, 2], [255, 1]], dtype=np.int16)
    out = sv.storage_density(lulc, POOLS, nodata=255)
    np.testing.assert_array_equal(out["c_total"], [[86.0, 4.0], [np.nan, 86.0]])
    np.testing.assert_array_equal(out["c_soil"], [[60.0, 1.0], [np.nan, 60.0]])
    assert set(out) == {"c_above", "c_below", "c_soil", "c_dead", "c_total"}
    # t C per cell: 86 t ha⁻¹ on 1 km² (100 ha)
    assert sv.storage_per_cell(86.0, 1e6) == pytest.approx(8600.0)
    alt = sv.storage_density(np.array([[2, 2], [255, 2]]), POOLS, nodata=255)["c_total"]
    np.testing.assert_array_equal(sv.storage_change(out["c_total"], alt),
                                  [[-82.0, 0.0], [np.nan, -82.0]])


def test_seed003_pool_totals():
    out = sv.storage_density(np.arange(1, 7), sv.SEED003_POOLS)["c_total"]
    np.testing.assert_allclose(out, [215.92, 331.21, 228.98, 0.3, 30.0, 22.9], rtol=1e-12)


def test_pool_table_columns_as_invest_reads_them():
    t = pd.DataFrame({" LUCODE": [5], "C_Above": [1.0], "c_below": [2.0], "c_soil": [3.0],
                      "c_dead": [4.0], "lulc_name": ["built"]})
    assert sv.storage_density(np.array([5]), t)["c_total"][0] == 10.0
    with pytest.raises(ValueError, match="c_dead"):
        sv.storage_density(np.array([1]), POOLS.drop(columns="c_dead"))
    with pytest.raises(ValueError, match="duplicated"):
        sv.pool_table(pd.concat([POOLS, POOLS]))


def test_unknown_lulc_codes_are_named():
    with pytest.raises(ValueError, match=r"codes 7, 9 .*pool table"):
        sv.storage_density(np.array([[1, 7], [9, 9]]), POOLS)


def test_cnlucc_primary_by_first_digit():
    codes = np.array([11, 12, 21, 24, 31, 33, 41, 46, 51, 53, 61, 67, 111, 3, 0])
    np.testing.assert_array_equal(sv.cnlucc_primary(codes, nodata=0),
                                  [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 1, 3, 0])
    with pytest.raises(ValueError, match="positive"):
        sv.cnlucc_primary(np.array([11, -3]))


# --------------------------------------------------------------------------------------------------
# emissions
# --------------------------------------------------------------------------------------------------

def test_landuse_emission_by_class_and_lake():
    lulc = np.array([21, 31, 11, 42, 41, 51, 2, 0])
    e = sv.landuse_emission(lulc, 1e4, nodata=0)          # 1 ha cells → t C a⁻¹ = rate
    np.testing.assert_allclose(e, [23.21, 21.30, 15.98, 4.81, 0, 0, 23.21, np.nan])
    with pytest.raises(ValueError, match="41"):
        sv.landuse_emission(np.array([41]), 1e4, default=None)


def test_province_inventory_terms():
    inv = sv.province_inventory(population=[1e6, 0], pigs=[1e5, 0], large_livestock=[1e4, 0],
                                energy=[[100.0, 50.0], [0, 0]], energy_factors=[0.7, 0.5],
                                wood=[1000, 0], cement=[1000, 0])
    assert inv["respiration_people"][0] == pytest.approx(79000)
    assert inv["respiration_pigs"][0] == pytest.approx(8200)
    assert inv["respiration_livestock"][0] == pytest.approx(7960)
    assert inv["energy"][0] == pytest.approx(95)
    np.testing.assert_allclose(inv["energy_by_fuel"][0], [70, 25])
    assert inv["wood"][0] == pytest.approx(360)
    assert inv["cement"][0] == pytest.approx(136)
    with pytest.raises(ValueError, match="pigs"):
        sv.province_inventory([1], [-1], [1], [[1]], [1], [1], [1])


PMAP = np.array([[11, 11, 12, 0],
                 [11, 13, 12, 0],
                 [13, 13, 12, 12]])
AREA = np.array([[1.0], [2.0], [3.0]]) * np.ones((1, 4))


def test_spread_sums_equal_statistics_and_hand_values():
    w = np.array([[1.0, 3, 0, 9],
                  [0, 0, 5, 9],
                  [0, 0, 5, 0]])
    px, by_area = sv.spread_to_pixels(PMAP, [11, 12, 13], [8.0, 30.0, 12.0], w, AREA)
    # 13 by area: cells of 2, 3, 3 → 12 × (2, 3, 3)/8
    np.testing.assert_allclose(px, [[2, 6, 0, np.nan], [0, 3, 15, np.nan], [4.5, 4.5, 15, 0]])
    np.testing.assert_array_equal(by_area, [False, False, True])     # 13 has no weight → area
    for code, stat in [(11, 8.0), (12, 30.0), (13, 12.0)]:
        assert np.nansum(px[PMAP == code]) == pytest.approx(stat, rel=1e-14)


def test_spread_sums_exact_on_random_map():
    rng = np.random.default_rng(3)
    pmap = rng.integers(1, 40, (300, 400))
    stat = rng.lognormal(10, 2, 39)
    px, _ = sv.spread_to_pixels(pmap, np.arange(1, 40), stat, rng.random(pmap.shape), 1.0)
    sums = np.bincount(pmap.ravel(), weights=px.ravel())[1:]
    np.testing.assert_allclose(sums, stat, rtol=1e-12)


def test_spread_bad_inputs():
    w = np.ones(PMAP.shape)
    with pytest.raises(ValueError, match=r"\[14\].*absent"):
        sv.spread_to_pixels(PMAP, [11, 12, 14], [1, 1, 1], w, AREA)
    with pytest.raises(ValueError, match="≥ 0"):
        sv.spread_to_pixels(PMAP, [11, 12, 13], [1, -1, 1], w, AREA)
    with pytest.raises(ValueError, match="finite"):
        sv.spread_to_pixels(PMAP, [11, 12, 13], [1, np.nan, 1], w, AREA)
    with pytest.raises(ValueError, match="weight"):
        sv.spread_to_pixels(PMAP, [11, 12, 13], [1, 1, 1], -w, AREA)


def test_class_area_weight_cropland_grassland():
    lulc = np.array([11, 12, 21, 31, 51, 0])
    np.testing.assert_array_equal(sv.class_area_weight(lulc, (1, 3), 2.0, nodata=0),
                                  [2, 2, 0, 2, 0, 0])


# --------------------------------------------------------------------------------------------------
# balance and Pearson partials
# --------------------------------------------------------------------------------------------------

def test_balance_per_cell_and_region():
    e = np.array([[2.0, 3.0], [0.0, np.nan]])
    c = np.array([[4.0, 1.0], [5.0, 1.0]])
    b = sv.balance(e, c)
    np.testing.assert_array_equal(b["ratio"], [[0.5, 3.0], [0.0, np.nan]])
    np.testing.assert_array_equal(b["flow"], [[2.0, 1.0], [0.0, np.nan]])
    np.testing.assert_array_equal(b["difference"], [[2.0, -2.0], [5.0, np.nan]])
    r = sv.region_balance(e, c, np.array([[1, 1], [2, 2]]), [1, 2])
    np.testing.assert_array_equal(r["emission"], [5.0, 0.0])
    np.testing.assert_array_equal(r["capacity"], [5.0, 5.0])      # the NaN-emission cell is left out
    np.testing.assert_array_equal(r["ratio"], [1.0, 0.0])
    np.testing.assert_array_equal(r["flow"], [5.0, 0.0])
    np.testing.assert_array_equal(r["flow_cells"], [3.0, 0.0])


def test_pearson_from_summed_partials_equals_whole_map():
    rng = np.random.default_rng(0)
    x = rng.normal(3000, 50, 5000)                  # elevation-like, far from 0
    y = 0.3 * (x - 3000) + rng.normal(0, 20, 5000)
    z = rng.normal(0, 1, 5000)
    y[::97] = np.nan
    shift = [3000.0, 0.0, 0.0]
    parts = sum(sv.pearson_partials(x[s], y[s], z[s], shift=shift)
                for s in (slice(0, 1234), slice(1234, 4000), slice(4000, None)))
    r, p, n = sv.pearson_from_partials(parts)
    ok = np.isfinite(y)
    assert n == ok.sum()
    np.testing.assert_allclose(r, np.corrcoef([x[ok], y[ok], z[ok]]), atol=1e-12)
    ref = stats.pearsonr(x[ok], z[ok])
    assert r[0, 2] == pytest.approx(ref.statistic, abs=1e-12)
    assert p[0, 2] == pytest.approx(ref.pvalue, rel=1e-8)


# --------------------------------------------------------------------------------------------------
# wind routing
# --------------------------------------------------------------------------------------------------

def test_wind_sector_points_downwind_with_ties_by_speed():
    u = np.array([[5.0, 0, -1, 1, 0], [5, 0, -1, 1, 0]])[:, None, :]
    v = np.array([[0.0, 3, 0, -1, 0], [0, 3, 0, -1, 0]])[:, None, :]
    np.testing.assert_array_equal(rt.wind_sector(u, v)[0], [2, 0, 6, 3, -1])   # E, N, W, SE, calm
    # two steps eastward at 1 m/s, two northward at 5 m/s: a tie broken by the mean speed → N
    u = np.array([1.0, 1.0, 0.0, 0.0]).reshape(4, 1, 1)
    v = np.array([0.0, 0.0, 5.0, 5.0]).reshape(4, 1, 1)
    assert rt.wind_sector(u, v)[0, 0] == 0
    assert rt.wind_sector(u[:3], v[:3])[0, 0] == 2                              # majority wins
    assert rt.wind_sector(u.astype("f4"), v.astype("f4"))[0, 0] == 0


def test_wind_with_nan_on_domain_is_an_error():
    u = np.ones((3, 2, 2))
    v = np.zeros((3, 2, 2))
    u[1, 0, 1] = np.nan
    with pytest.raises(ValueError, match="NaN at 1 cells"):
        rt.wind_sector(u, v)
    valid = np.array([[True, False], [True, True]])
    np.testing.assert_array_equal(rt.wind_sector(u, v, valid), [[2, -1], [2, 2]])


def _easterly_row(surplus, caps):
    """One row: the source at the east end, wind from the east (u < 0) → parcels go west."""
    n = len(caps) + 1
    s = np.zeros((1, n))
    s[0, -1] = surplus
    k = np.zeros((1, n))
    k[0, :-1] = caps[::-1]
    sector = rt.wind_sector(np.full((4, 1, n), -6.0), np.zeros((4, 1, n)))
    return rt.route_surplus(s, k, sector)


def test_planted_source_absorbed_where_hand_routing_says():
    r = _easterly_row(10.0, [3.0, 4.0, 5.0, 0.0])          # capacities 3, 4, 5 going west
    np.testing.assert_array_equal(r["absorbed"][0], [0, 3, 4, 3, 0])
    np.testing.assert_array_equal(r["exported"], [0, 0, 0, 0])
    assert r["unabsorbed_total"] == 0 and r["steps"] == 3
    np.testing.assert_array_equal(r["throughput"][0], [0, 3, 7, 10, 0])
    # 20 t: 3 + 4 + 5 absorbed, 8 leave across the western edge from the westernmost cell
    r = _easterly_row(20.0, [3.0, 4.0, 5.0, 0.0])
    np.testing.assert_array_equal(r["absorbed"][0], [0, 5, 4, 3, 0])
    np.testing.assert_array_equal(r["exported"], [0, 0, 0, 8])              # N, E, S, W
    np.testing.assert_array_equal(r["exported_from"][0], [8, 0, 0, 0, 0])


def test_exports_at_corners_and_into_outside_cells():
    # NE from the top-right corner: half across the north edge, half across the east edge
    r = rt.route_surplus(np.array([[0.0, 6.0]]), np.zeros((1, 2)), np.array([[1, 1]]))
    np.testing.assert_array_equal(r["exported"], [3, 3, 0, 0])
    # eastward into a NaN cell: exported east from the last valid cell
    s = np.array([[5.0, 0.0, np.nan, 0.0]])
    k = np.array([[0.0, 1.0, 0.0, 0.0]])
    r = rt.route_surplus(s, k, np.full((1, 4), 2))
    np.testing.assert_array_equal(r["exported"], [0, 4, 0, 0])
    assert r["exported_from"][0, 1] == 4 and np.isnan(r["absorbed"][0, 2])
    # north_up=False: row 0 is the southern edge, so a northward parcel leaves through the last row
    r = rt.route_surplus(np.array([[0.0], [2.0]]), np.zeros((2, 1)), np.zeros((2, 1), int),
                         north_up=False)
    np.testing.assert_array_equal(r["exported"], [2, 0, 0, 0])
    assert r["exported_from"][1, 0] == 2


def test_converging_parcels_share_absorption_and_region_matrix():
    #  A (4 t, region 1) goes SE, B (2 t, region 2) goes NE; both reach the centre (K' 3, region 3),
    #  whose wind goes E to a cell with K' 1 (region 4); the rest leaves eastwards.
    s = np.zeros((3, 3))
    s[0, 0], s[2, 0] = 4.0, 2.0
    k = np.zeros((3, 3))
    k[1, 1], k[1, 2] = 3.0, 1.0
    sec = np.full((3, 3), 2)
    sec[0, 0], sec[2, 0] = 3, 1
    reg = np.array([[1, 5, 5], [5, 3, 4], [2, 5, 5]])
    r = rt.route_surplus(s, k, sec, regions=reg, region_codes=[1, 2, 3, 4])
    assert r["absorbed"][1, 1] == 3 and r["absorbed"][1, 2] == 1
    np.testing.assert_array_equal(r["exported"], [0, 2, 0, 0])
    m = r["flow_matrix"]                 # rows/cols: regions 1, 2, 3, 4, unlisted
    np.testing.assert_allclose(m[0], [0, 0, 2, 2 / 3, 0], rtol=1e-14)
    np.testing.assert_allclose(m[1], [0, 0, 1, 1 / 3, 0], rtol=1e-14)
    np.testing.assert_allclose(r["exported_by_origin"][:2, 1], [4 / 3, 2 / 3], rtol=1e-14)
    np.testing.assert_array_equal(r["surplus_by_origin"], [4, 2, 0, 0, 0])


def test_dead_loops_calm_cells_and_max_steps():
    # a two-cell loop: 2 t absorbed on the first pass, 3 t circulate forever → trapped
    r = rt.route_surplus(np.array([[5.0, 0.0]]), np.array([[0.0, 2.0]]), np.array([[2, 6]]))
    assert r["absorbed_total"] == 2 and r["unabsorbed_total"] == 3 and r["trapped"] == 3
    # a calm cell holds what reaches it
    r = rt.route_surplus(np.array([[5.0, 0.0, 0.0]]), np.array([[0.0, 1.0, 9.0]]),
                         np.array([[2, -1, 2]]))
    assert r["absorbed"][0, 1] == 1 and r["unabsorbed"][0, 1] == 4 and r["absorbed"][0, 2] == 0
    # max_steps stops parcels in transit
    r = rt.route_surplus(np.array([[7.0, 0, 0, 0, 0, 0]]), np.zeros((1, 6)), np.full((1, 6), 2),
                         max_steps=2)
    assert r["unabsorbed"][0, 2] == 7 and r["trapped"] == 0 and r["in_transit"] == 7
    assert r["steps"] == 2


def test_routing_conserves_mass_on_random_fields():
    rng = np.random.default_rng(11)
    for seed in range(3):
        shape = (60 + 7 * seed, 90)
        e = rng.lognormal(0, 1.5, shape)
        c = rng.lognormal(0.5, 1.0, shape)
        e[rng.random(shape) < 0.1] = np.nan
        s, k = rt.surplus_and_spare(e, c)
        sec = rng.integers(-1, 8, shape)
        reg = rng.integers(0, 6, shape)
        r = rt.route_surplus(s, k, sec, regions=reg, region_codes=[1, 2, 3, 4, 5])
        total = np.nansum(s)
        err = total - (r["absorbed_total"] + r["exported_total"] + r["unabsorbed_total"])
        assert abs(err) <= 1e-12 * total
        assert np.nansum(r["absorbed"]) <= np.nansum(k) * (1 + 1e-12)
        # per origin: surplus = absorbed anywhere + exported + unabsorbed
        per_origin = r["flow_matrix"].sum(1) + r["exported_by_origin"].sum(1) + \
            r["unabsorbed_by_origin"]
        np.testing.assert_allclose(per_origin, r["surplus_by_origin"], rtol=1e-12)
        np.testing.assert_allclose(r["flow_matrix"].sum(0),
                                   np.bincount(np.where(np.isin(reg, [1, 2, 3, 4, 5]), reg - 1, 5)
                                               .ravel(), weights=np.nan_to_num(r["absorbed"]).ravel(),
                                               minlength=6), rtol=1e-12, atol=1e-12)


def test_routing_bad_inputs():
    with pytest.raises(ValueError, match="≥ 0"):
        rt.route_surplus(np.array([[-1.0]]), np.zeros((1, 1)), np.zeros((1, 1), int))
    with pytest.raises(ValueError, match="sector"):
        rt.route_surplus(np.zeros((1, 1)), np.zeros((1, 1)), np.full((1, 1), 9))


@pytest.mark.slow
def test_routing_all_china_at_005_deg_in_seconds():
    ny, nx = 740, 1260
    rng = np.random.default_rng(0)
    lat = np.linspace(54, 17, ny)[:, None]
    u = 5 * np.tanh((lat - 30) / 5) + rng.normal(0, 2, (12, ny, nx))
    v = rng.normal(0, 2, (12, ny, nx))
    sec = rt.wind_sector(u, v)
    s, k = rt.surplus_and_spare(rng.lognormal(0, 1.5, (ny, nx)), rng.lognormal(1, 1, (ny, nx)))
    t0 = time.perf_counter()
    r = rt.route_surplus(s, k, sec)
    assert time.perf_counter() - t0 < 60
    err = r["surplus_total"] - (r["absorbed_total"] + r["exported_total"] + r["unabsorbed_total"])
    assert abs(err) <= 1e-12 * r["surplus_total"]


# --------------------------------------------------------------------------------------------------
# Geodetector
# --------------------------------------------------------------------------------------------------

def test_factor_detector_hand_values():
    y = np.array([1.0, 2, 3, 4, 5, 6])
    r = gd.factor_detector(y, np.array([0, 0, 0, 1, 1, 1]))
    assert r["q"] == pytest.approx(1 - 4 / 17.5, rel=1e-13)
    assert r["F"] == pytest.approx(13.5, rel=1e-12)
    assert r["lambda"] == pytest.approx(4.5 * 6 / 17.5, rel=1e-12)
    assert r["p"] == pytest.approx(stats.ncf.sf(13.5, 1, 4, 4.5 * 6 / 17.5), rel=1e-10)
    assert (r["L"], r["N"]) == (2, 6)
    # strata partials of two blocks add up to the whole
    s = np.array([0, 0, 0, 1, 1, 1])
    parts = gd.strata_partials(y[:2], s[:2], 2, shift=3.5) + gd.strata_partials(y[2:], s[2:], 2,
                                                                                shift=3.5)
    assert gd.factor_from_partials(parts, 3.5)["q"] == pytest.approx(r["q"], rel=1e-13)


def _random_strata(n=3000, seed=5):
    rng = np.random.default_rng(seed)
    x1 = rng.integers(0, 5, n)
    x2 = rng.integers(0, 4, n)
    y = 2.0 * x1 + np.where(x2 == 3, 4.0, 0.0) * (x1 > 2) + rng.normal(0, 3, n) + 50
    return y, x1, x2


def test_factor_detector_equals_geodetector_package():
    geodetector = pytest.importorskip("geodetector")
    from geodetector._stats import q_significance_test
    y, x1, x2 = _random_strata()
    for x in (x1, x2):
        fd = geodetector.FactorDetector().fit(pd.DataFrame({"x": pd.Categorical(x)}), y)
        mine = gd.factor_detector(y, x)
        assert mine["q"] == pytest.approx(fd.q_value_, abs=1e-12)
        assert mine["p"] == pytest.approx(q_significance_test(y, x), abs=1e-12)
    # a weak factor, where p is informative
    rng = np.random.default_rng(8)
    yw = rng.normal(size=200)
    xw = rng.integers(0, 3, 200)
    assert gd.factor_detector(yw, xw)["p"] == pytest.approx(q_significance_test(yw, xw), rel=1e-9)
    # singleton strata: the package drops them; min_stratum_size=2 does the same
    xs = x1.copy()
    xs[:3] = [7, 8, 9]
    assert gd.factor_detector(y, xs, min_stratum_size=2)["q"] == pytest.approx(
        geodetector.q_statistic(y, xs), abs=1e-12)


def test_interaction_types_equal_geodetector_package():
    geodetector = pytest.importorskip("geodetector")
    y, x1, x2 = _random_strata()
    rng = np.random.default_rng(2)
    x3 = np.where(rng.random(y.size) < 0.9, x1 // 2, 3)          # mostly a coarsening of x1
    x4 = np.zeros_like(x1)                                        # explains nothing
    factors = {"x1": x1, "x2": x2, "x3": x3, "x4": x4}
    pkg = geodetector.InteractionDetector().fit(
        pd.DataFrame({k: pd.Categorical(v) for k, v in factors.items()}), y)
    names = list(factors)
    q, types = gd.interaction_matrix(y, list(factors.values()))
    seen = set()
    for pair in pkg.pairs_:
        i, j = names.index(pair["factor_1"]), names.index(pair["factor_2"])
        assert q[i, j] == pytest.approx(pair["q_12"], abs=1e-12)
        assert types[i, j] == pair["interaction_type"]
        seen.add(int(types[i, j]))
    assert {1, 2, 4} <= seen


def test_interaction_types_on_planted_designs():
    a = np.repeat([0, 1], 8)
    b = np.tile(np.repeat([0, 1], 4), 2)
    # additive on a balanced design: q12 = q1 + q2 → independent
    r = gd.interaction_detector(a + 2.0 * b, a, b)
    assert (r["q1"], r["q2"], r["q12"]) == pytest.approx((0.2, 0.8, 1.0), abs=1e-12)
    assert r["name"] == "independent"
    # XOR: neither factor alone explains anything, together everything → nonlinear-enhance
    r = gd.interaction_detector((a ^ b).astype(float), a, b)
    assert r["q1"] == pytest.approx(0) and r["q12"] == pytest.approx(1) and r["type"] == 4
    # a factor that explains nothing with one that does: q12 = max → uni-variable weaken
    assert gd.interaction_detector(a + (np.arange(16) % 3) / 2, a, np.zeros(16, int))["type"] == 1
    # dropping single-cell strata of the overlay can make it explain less → nonlinear-weaken
    y = np.array([0.0, 1, 0, 1, 5, 6, 5, 6])
    x1 = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    x2 = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    assert gd.interaction_detector(y, x1, x2, min_stratum_size=2)["type"] == 0


def test_discretisation_matches_mapclassify_and_jenkspy():
    geodetector = pytest.importorskip("geodetector")
    jenkspy = pytest.importorskip("jenkspy")
    rng = np.random.default_rng(4)
    x = rng.lognormal(0, 1, 2000)
    x[::50] = np.nan
    np.testing.assert_array_equal(gd.discretize(x, 5, "quantile"),
                                  geodetector.discretize(x, discretize_method="quantile",
                                                         n_strata=5))
    breaks = jenkspy.jenks_breaks(x[np.isfinite(x)], n_classes=4)[1:-1]
    np.testing.assert_allclose(gd.class_breaks(x, 4, "natural"), breaks)
    lab = gd.discretize(x, 4, "natural")
    assert lab.min() == -1 and set(np.unique(lab[lab >= 0])) == {0, 1, 2, 3}
    np.testing.assert_array_equal(gd.discretize(np.array([1.0, 2, 3, 4]), breaks=[2.0]),
                                  [0, 0, 1, 1])
    with pytest.raises(ValueError, match="method"):
        gd.class_breaks(x, 4, "kmeans")
