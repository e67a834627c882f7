"""Kernels of the bottom-up vs top-down comparison (carbonsink.kernels.compare) against hand values.

Regridding: the area integral of a field over the target box must be conserved to 1e-9 relative
from BEPS' 0.0727° (= 360°/4950, edges never aligned with 1°) and from VEGAS' 0.5° grid; the
reference integral is computed independently, cell by cell, from the spherical area formula
A = R²·Δλ·(sin φ₂ − sin φ₁) of each source cell's part inside the box. Metrics: every ILAMB
number is recomputed with plain loops, numpy and scipy on a small case.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from carbonsink.grid import EARTH_RADIUS_M, Grid
from carbonsink.kernels import compare as k

pytestmark = pytest.mark.unit

R = EARTH_RADIUS_M


def _grid_edges(g: Grid):
    n = g.per_degree
    return ((round(g.north * n) - np.arange(g.nlat + 1)) / n,
            (round(g.west * n) + np.arange(g.nlon + 1)) / n)


def _window(span, ncells, lo, hi, start, margin):
    res = span / ncells
    i0 = math.floor((lo - start) / res) - margin
    i1 = math.ceil((hi - start) / res) + margin
    return start + (np.arange(i0, i1) + 0.5) * res


def _inside_integral(values, lat_edges, lon_edges, box):
    """Σ v·A(cell ∩ box), one cell at a time from the area formula (no kernel code)."""
    w, s, e, n = box
    total = 0.0
    for i in range(values.shape[0]):
        lo, hi = sorted((lat_edges[i], lat_edges[i + 1]))
        lo, hi = max(lo, s), min(hi, n)
        if hi <= lo:
            continue
        dsin = math.sin(math.radians(hi)) - math.sin(math.radians(lo))
        for j in range(values.shape[1]):
            a, b = max(lon_edges[j], w), min(lon_edges[j + 1], e)
            if b > a:
                total += values[i, j] * R * R * math.radians(b - a) * dsin
    return total


# --- edges and weights --------------------------------------------------------------------------
def test_regular_edges_snap_float32_coordinates():
    lat = _window(180.0, 2475, 17, 54, -90.0, 1)[::-1].astype("f4")   # as a file stores them
    edges = k.regular_edges(lat)
    i0 = round((90.0 - float(lat[0])) * 4950 / 360 - 0.5)              # row index from 90°N
    expect = -90.0 + (2475 - i0 - np.arange(lat.size + 1)) * 360.0 / 4950
    np.testing.assert_allclose(edges, expect, rtol=0, atol=1e-12)
    assert edges[0] > edges[-1]                                        # order of the centres kept
    np.testing.assert_array_equal(k.regular_edges([0.25, 0.75, 1.25]), [0.0, 0.5, 1.0, 1.5])
    with pytest.raises(ValueError, match="regular"):
        k.regular_edges([0.0, 1.0, 3.0])


def test_weights_exact_on_aligned_grids():
    g = Grid(1.0, 100, 30, 102, 32)
    fine = Grid(0.5, 100, 30, 102, 32)
    (dlat, dlon), (slat, slon) = _grid_edges(g), _grid_edges(fine)
    wy, wx = k.lat_weights(dlat, slat), k.lon_weights(dlon, slon)
    # row 0 of the 1° grid is 31–32°N: the 0.5° rows 31.5–32 and 31–31.5, by their sin spans
    s = np.sin(np.deg2rad([32.0, 31.5, 31.0, 30.5, 30.0]))
    expect_y = np.array([[s[0] - s[1], s[1] - s[2], 0, 0], [0, 0, s[2] - s[3], s[3] - s[4]]])
    expect_y /= np.array([[s[0] - s[2]], [s[2] - s[4]]])
    np.testing.assert_allclose(wy, expect_y, rtol=1e-14, atol=0)
    assert (wy[0, 2:] == 0).all() and (wy[1, :2] == 0).all()          # no slivers
    np.testing.assert_array_equal(wx, [[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]])
    # identical grids: the identity
    np.testing.assert_allclose(k.lat_weights(dlat, dlat), np.eye(2), atol=1e-15)
    np.testing.assert_array_equal(k.lon_weights(dlon, dlon), np.eye(2))
    # a 0…360 source meets a −180…180 target
    wrap = k.lon_weights(np.array([-1.0, 0.0, 1.0]), np.arange(0.0, 361.0, 1.0))
    assert wrap[0, 359] == 1.0 and wrap[1, 0] == 1.0 and wrap.sum() == 2.0


def test_nan_renormalises_over_valid_overlap():
    g = Grid(1.0, 100, 30, 101, 31)
    fine = Grid(0.5, 100, 30, 101, 31)
    (dlat, dlon), (slat, slon) = _grid_edges(g), _grid_edges(fine)
    wy, wx = k.lat_weights(dlat, slat), k.lon_weights(dlon, slon)
    v = np.array([[1.0, 2.0], [3.0, np.nan]])
    a = fine.cell_area()
    expect = (1.0 * a[0, 0] + 2.0 * a[0, 1] + 3.0 * a[1, 0]) / (a[0, 0] + a[0, 1] + a[1, 0])
    assert k.conservative_regrid(v, wy, wx)[0, 0] == pytest.approx(expect, rel=1e-14)
    assert np.isnan(k.conservative_regrid(np.full((2, 2), np.nan), wy, wx)[0, 0])
    # a mask that changes with time: each step renormalised on its own
    v3 = np.stack([v, np.array([[np.nan, 2.0], [3.0, 4.0]])])
    out = k.conservative_regrid(v3, wy, wx)
    assert out[0, 0, 0] == pytest.approx(expect, rel=1e-14)
    e2 = (2.0 * a[0, 1] + 3.0 * a[1, 0] + 4.0 * a[1, 1]) / (a[0, 1] + a[1, 0] + a[1, 1])
    assert out[1, 0, 0] == pytest.approx(e2, rel=1e-14)


@pytest.mark.parametrize("span,ncells,margin", [(360.0, 4950, 2), (360.0, 720, 2)],
                         ids=["0.0727deg", "0.5deg"])
def test_conservative_regridding_conserves_the_area_integral(span, ncells, margin):
    g = Grid(1.0)                                                     # China box 73–136, 17–54
    lat = _window(span / 2, ncells // 2, g.south, g.north, -90.0, margin)[::-1]
    lon = _window(span, ncells, g.west, g.east, -180.0, margin)
    rng = np.random.default_rng(7)
    values = rng.uniform(-80.0, 400.0, (lat.size, lon.size))
    slat, slon = k.regular_edges(lat), k.regular_edges(lon)
    dlat, dlon = _grid_edges(g)
    out = k.conservative_regrid(values, k.lat_weights(dlat, slat), k.lon_weights(dlon, slon))
    assert np.isfinite(out).all()
    got = float((out * g.cell_area()).sum())
    ref = _inside_integral(values, slat, slon, g.bounds)
    assert abs(got / ref - 1.0) < 1e-9
    # a field inside the box: the integral is Σ v·A over the source cells (true areas)
    inner = np.where((lat[:, None] > 20) & (lat[:, None] < 50) & (lon[None] > 80)
                     & (lon[None] < 130), values, 0.0)
    out = k.conservative_regrid(inner, k.lat_weights(dlat, slat), k.lon_weights(dlon, slon))
    res = span / ncells
    areas = (R * R * math.radians(res)
             * np.abs(np.diff(np.sin(np.deg2rad(slat)))))[:, None]
    assert abs(float((out * g.cell_area()).sum()) / float((inner * areas).sum()) - 1) < 1e-9


def test_coverage_and_active_window():
    g = Grid(1.0, 100, 30, 103, 32)
    dlat, dlon = _grid_edges(g)
    src_lon = np.arange(101.0, 111.0)                                 # starts inside the box
    wx = k.lon_weights(dlon, src_lon)
    wy = k.lat_weights(dlat, np.array([40.0, 30.0]))
    cov = k.coverage(wy, wx)
    np.testing.assert_allclose(cov[:, 0], 0.0)
    np.testing.assert_allclose(cov[:, 1:], 1.0)
    assert k.active_window(wx) == slice(0, 2)


def test_majority_regrid_area_true_with_ties():
    g = Grid(1.0, 100, 30, 101, 31)
    fine = Grid(0.5, 100, 30, 101, 31)
    (dlat, dlon), (slat, slon) = _grid_edges(g), _grid_edges(fine)
    wy, wx = k.lat_weights(dlat, slat), k.lon_weights(dlon, slon)
    # two classes, two cells each: the southern row has more area, so its class wins
    assert k.majority_regrid(np.array([[1, 1], [2, 2]]), wy, wx, [1, 2])[0, 0] == 2
    # a true tie (east/west halves have equal areas): the smaller code
    assert k.majority_regrid(np.array([[3, 1], [3, 1]]), wy, wx, [1, 3])[0, 0] == 1
    # nodata drops out
    assert k.majority_regrid(np.array([[0, 0], [0, 4]]), wy, wx, [4])[0, 0] == 4
    assert k.majority_regrid(np.zeros((2, 2), int), wy, wx, [4])[0, 0] == 0


def test_region_sums_by_hand():
    v = np.array([[[1.0, 2.0], [np.nan, 4.0]], [[0.5, 0.0], [1.0, 1.0]]])   # (time, 2, 2)
    area = np.array([10.0, 20.0])                                           # per row
    labels = np.array([[1, 2], [1, 0]])
    s, a = k.region_sums(v, area, labels, 2)
    np.testing.assert_allclose(s, [[10.0, 20.0], [5.0 + 20.0, 0.0]])
    np.testing.assert_allclose(a, [[10.0, 10.0], [30.0, 10.0]])
    with pytest.raises(ValueError):
        k.region_sums(v, area, labels + 5, 2)


def test_ensemble_statistics():
    x = np.array([[1.0, 4.0], [3.0, 8.0], [5.0, 0.0]])
    st = k.ensemble_statistics(x)
    np.testing.assert_allclose(st["mean"], [3.0, 4.0])
    np.testing.assert_allclose(st["sd"], [2.0, 4.0])
    np.testing.assert_allclose(st["spread"], [4.0, 8.0])
    assert np.isnan(k.ensemble_statistics(x[:1])["sd"]).all()


# --- metrics -------------------------------------------------------------------------------------------
def test_score_formulas():
    assert k.phase_score(0) == 1.0 and k.phase_score(3) == pytest.approx(0.5)
    assert k.phase_score(6) == pytest.approx(0.0, abs=1e-15)
    assert k.phase_shift(1, 12) == 1 and k.phase_shift(2, 8) == 6 and k.phase_shift(11, 3) == 4
    assert k.taylor_score(1.0, 1.0) == 1.0
    assert k.taylor_score(2.0, 0.5) == pytest.approx(2 * 1.5 / (2.5 ** 2))
    assert k.overall_score({"bias_score": 0.5, "rmse_score": 1.0, "phase_score": 0.0,
                            "iav_score": 1.0, "taylor_score": 0.5}) == pytest.approx(4.0 / 6.0)
    # a missing score drops out with its weight (ILAMB computeOverallScore)
    assert k.overall_score({"bias_score": 0.5, "rmse_score": 1.0, "phase_score": 0.0,
                            "iav_score": 1.0, "taylor_score": np.nan}) == pytest.approx(3.5 / 5)
    assert sum(k.ILAMB_WEIGHTS.values()) == 6.0 and k.ILAMB_WEIGHTS["rmse_score"] == 2.0


def test_metrics_equal_a_hand_computation():
    rng = np.random.default_rng(3)
    ncell, ny = 4, 2
    months = np.arange(12 * ny) % 12 + 1
    seas = np.cos(2 * np.pi * (months - 7) / 12)[:, None]
    ref = 5 + 3 * seas * np.array([1.0, 0.5, 2.0, 1.5]) + rng.normal(0, 0.5, (12 * ny, ncell))
    com = 4 + 2 * np.cos(2 * np.pi * (months - 6) / 12)[:, None] + rng.normal(0, 0.8, ref.shape)
    com[:, 3] += 3.0
    area = np.array([1.0, 2.0, 1.5, 0.5])
    m = k.compare_metrics(ref, com, area)

    def amean(x):
        return sum(a * v for a, v in zip(area, x)) / area.sum()

    bias, rmse, crmse, crms, b_s, r_s, p_s, i_s, iav_r, iav_c = ([] for _ in range(10))
    for c in range(ncell):
        r, x = ref[:, c], com[:, c]
        bias.append(x.mean() - r.mean())
        rmse.append(math.sqrt(sum((xi - ri) ** 2 for xi, ri in zip(x, r)) / r.size))
        crmse.append(math.sqrt(np.mean(((x - x.mean()) - (r - r.mean())) ** 2)))
        crms.append(r.std())
        cyc_r = [r[months == mo].mean() for mo in range(1, 13)]
        cyc_c = [x[months == mo].mean() for mo in range(1, 13)]
        d = abs((int(np.argmax(cyc_c)) + 1) - (int(np.argmax(cyc_r)) + 1))
        shift = min(d, 12 - d)
        p_s.append((1 + math.cos(2 * math.pi * shift / 12)) / 2)
        ir = math.sqrt(np.mean((r - np.array(cyc_r)[months - 1]) ** 2))
        ic = math.sqrt(np.mean((x - np.array(cyc_c)[months - 1]) ** 2))
        iav_r.append(ir)
        iav_c.append(ic)
        b_s.append(math.exp(-abs(bias[-1]) / crms[-1]))
        r_s.append(math.exp(-crmse[-1] / crms[-1]))
        i_s.append(math.exp(-abs(ic - ir) / ir))
    mr, mc = ref.mean(axis=0), com.mean(axis=0)
    cov = np.cov(np.stack([mr, mc]), aweights=area, bias=True)
    corr = cov[0, 1] / math.sqrt(cov[0, 0] * cov[1, 1])
    sig = math.sqrt(cov[1, 1] / cov[0, 0])
    taylor = 2 * (1 + corr) / (sig + 1 / sig) ** 2
    scores = [amean(b_s), amean(r_s), amean(p_s), amean(i_s), taylor]
    overall = (scores[0] + 2 * scores[1] + scores[2] + scores[3] + scores[4]) / 6
    series_r, series_c = ref @ area, com @ area
    hand = {"n_cells": ncell, "ref_mean": amean(mr), "com_mean": amean(mc), "bias": amean(bias),
            "rmse": amean(rmse), "crmse": amean(crmse), "crms_ref": amean(crms),
            "correlation": corr, "sd_ratio": sig,
            "series_correlation": stats.pearsonr(series_r, series_c)[0],
            "ref_iav": amean(iav_r), "com_iav": amean(iav_c),
            "bias_score": scores[0], "rmse_score": scores[1], "phase_score": scores[2],
            "iav_score": scores[3], "taylor_score": taylor, "overall_score": overall}
    for key, value in hand.items():
        assert m[key] == pytest.approx(value, rel=1e-12, abs=1e-14), key
    cyc_series_r = [series_r[months == mo].mean() for mo in range(1, 13)]
    assert m["ref_phase"] == int(np.argmax(cyc_series_r)) + 1
    assert set(m) == set(k.METRICS)


def test_metrics_identical_fields_score_one_and_skip_incomplete_cells():
    rng = np.random.default_rng(1)
    ref = rng.normal(10, 3, (36, 5))
    m = k.compare_metrics(ref, ref.copy(), np.ones(5))
    for s in ("bias_score", "rmse_score", "phase_score", "iav_score", "taylor_score",
              "overall_score", "correlation", "sd_ratio"):
        assert m[s] == pytest.approx(1.0, abs=1e-12), s
    com = ref + 1.0
    com[4, 2] = np.nan                                # one gap: the cell drops out of every metric
    m2 = k.compare_metrics(ref, com, np.ones(5))
    assert m2["n_cells"] == 4 and m2["bias"] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        k.compare_metrics(ref[:35], ref[:35], np.ones(5))   # not whole years
