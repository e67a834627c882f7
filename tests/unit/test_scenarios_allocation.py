"""Ranked allocation (allocation_cut, allocate, priority_bins) and terrain slope (slope_deg) of the
scenarios (SCIENCE.md §9): hand-computed values, edge cases and exactness of the allocated area;
the slope against hand values, analytic surfaces and numpy. Pure NumPy (plus two small xarray
checks of the product's slope map on a lat/lon grid)."""
import numpy as np
import pytest

from carbonsink.kernels import scenarios as ksc
from carbonsink.kernels.terrain import slope_deg

pytestmark = pytest.mark.unit

AREAS = [1.0, 2.0, 3.0, 0.0, 4.0]      # bin 4 (area 4) is allocated first, then 3 (empty), 2, ...


def _allocated(area_by_bin, k, f):
    """Area an allocation (k, f) takes: every bin above k whole, bin k for the share f."""
    a = np.asarray(area_by_bin, dtype="f8")
    return a[k + 1:].sum() + (f * a[k] if k < a.size else 0.0)


# ---- allocation_cut ---------------------------------------------------------------------------
def test_cut_by_hand_takes_the_top_bins_and_part_of_the_next():
    k, f = ksc.allocation_cut(AREAS, 5.0)
    # bin 4 (4) and the empty bin 3 whole, then 1 of bin 2's 3
    assert k == 2
    assert f == pytest.approx(1 / 3, abs=1e-15)
    assert _allocated(AREAS, k, f) == pytest.approx(5.0, abs=1e-12)


@pytest.mark.parametrize("request_, k, f", [
    (4.0, 4, 1.0),           # exactly the top bin
    (2.0, 4, 0.5),           # half of the top bin
    (7.0, 2, 1.0),           # top bins down to bin 2 whole: the cut sits in bin 2, all of it
    (8.0, 1, 0.5),           # half of bin 1
    (9.5, 0, 0.5),
])
def test_cut_more_hand_values(request_, k, f):
    got = ksc.allocation_cut(AREAS, request_)
    assert got[0] == k and got[1] == pytest.approx(f, abs=1e-12)
    assert _allocated(AREAS, *got) == pytest.approx(request_, abs=1e-12)


def test_cut_request_zero_takes_nothing():
    k, f = ksc.allocation_cut(AREAS, 0.0)
    assert (k, f) == (len(AREAS), 0.0)
    bins = np.arange(-1, 5)                      # every bin, and -1 (no priority)
    np.testing.assert_array_equal(ksc.allocate(bins, np.ones(6), k, f), np.zeros(6))


def test_cut_request_equal_to_the_total_takes_everything():
    k, f = ksc.allocation_cut(AREAS, 10.0)
    assert k == 0 and f == pytest.approx(1.0)
    bins = np.arange(-1, 5)
    np.testing.assert_array_equal(ksc.allocate(bins, np.ones(6), k, f), [0, 1, 1, 1, 1, 1])


def test_cut_request_within_rounding_of_the_total_is_accepted_and_clipped():
    total = sum(AREAS)
    k, f = ksc.allocation_cut(AREAS, total * (1 + 1e-12))
    assert k == 0 and f == 1.0


@pytest.mark.parametrize("request_", [10.5, 10.0 * (1 + 1e-6), 1e12])
def test_cut_request_above_the_total_raises(request_):
    with pytest.raises(ValueError, match="exceeds the eligible area"):
        ksc.allocation_cut(AREAS, request_)


def test_cut_nothing_eligible_only_zero_fits():
    assert ksc.allocation_cut([0.0, 0.0, 0.0], 0.0) == (3, 0.0)
    with pytest.raises(ValueError, match="exceeds"):
        ksc.allocation_cut([0.0, 0.0, 0.0], 1.0)


@pytest.mark.parametrize("areas, request_", [
    ([[1.0, 2.0]], 1.0),           # not 1-D
    ([1.0, -2.0, 3.0], 1.0),       # negative area
    ([1.0, np.nan], 0.5),          # not finite
    ([1.0, 2.0], -1.0),            # negative request
    ([1.0, 2.0], np.nan),
])
def test_cut_rejects_bad_arguments(areas, request_):
    with pytest.raises(ValueError):
        ksc.allocation_cut(areas, request_)


def test_cut_is_exact_for_random_histograms():
    rng = np.random.default_rng(7)
    for _ in range(200):
        n = int(rng.integers(1, 60))
        a = rng.gamma(0.5, 3.0, n) * (rng.random(n) > 0.3)      # many empty bins
        total = a.sum()
        if total == 0:
            continue
        req = float(rng.uniform(0, total))
        k, f = ksc.allocation_cut(a, req)
        assert 0 <= k < n and 0.0 <= f <= 1.0
        assert a[k] > 0                                         # the cut never sits in an empty bin
        assert _allocated(a, k, f) == pytest.approx(req, rel=1e-12, abs=1e-12)


# ---- allocate ---------------------------------------------------------------------------------
def test_allocate_by_hand():
    bins = np.array([[3, 2, 2], [1, -1, 0]])
    eligible = np.array([[1.0, 0.5, 1.0], [1.0, 1.0, 0.25]])
    got = ksc.allocate(bins, eligible, k=2, f=0.25)
    np.testing.assert_array_equal(got, [[1.0, 0.125, 0.25], [0.0, 0.0, 0.0]])
    # the cut below every bin: everything eligible that has a priority
    np.testing.assert_array_equal(ksc.allocate(bins, eligible, k=-1, f=0.0),
                                  [[1.0, 0.5, 1.0], [1.0, 0.0, 0.25]])


def test_allocate_never_takes_cells_without_priority():
    bins = np.array([-1, -1, 0])
    np.testing.assert_array_equal(ksc.allocate(bins, np.ones(3), k=0, f=1.0), [0, 0, 1])


def test_bins_cut_and_allocate_together_give_exactly_the_request_in_rank_order():
    rng = np.random.default_rng(3)
    score = rng.gamma(2.0, 300.0, (40, 50))
    score[rng.random(score.shape) < 0.1] = np.nan                 # no covariate: never taken
    area = rng.uniform(5e3, 1.2e4, score.shape)                   # ha
    eligible = np.where(rng.random(score.shape) < 0.7, 1.0, rng.uniform(0, 1, score.shape))
    eligible[rng.random(score.shape) < 0.2] = 0.0
    eligible = np.where(np.isnan(score), 0.0, eligible)
    ok = eligible > 0
    bins = ksc.priority_bins(np.where(ok, score, np.nan), np.nanmin(score[ok]),
                             np.nanmax(score[ok]), 1000)
    w = eligible * area
    hist = np.bincount(bins[bins >= 0], weights=w[bins >= 0], minlength=1000)
    eligible_ha = w.sum()
    assert hist.sum() == pytest.approx(eligible_ha, rel=1e-12)
    for share in (0.0, 0.13, 0.5, 0.999, 1.0):
        k, f = ksc.allocation_cut(hist, share * eligible_ha)
        frac = ksc.allocate(bins, eligible, k, f)
        assert (frac * area).sum() == pytest.approx(share * eligible_ha, rel=1e-10, abs=1e-6)
        assert np.all((frac >= 0) & (frac <= eligible + 1e-15))
        full = ok & (frac == eligible)
        untouched = ok & (frac == 0)
        if 0 < share < 1 and full.any() and untouched.any():
            assert score[full].min() >= score[untouched].max()


# ---- priority_bins ----------------------------------------------------------------------------
def test_priority_bins_by_hand_nan_is_minus_one():
    s = np.array([0.0, 0.5, 9.99, 10.0, np.nan, 5.0])
    np.testing.assert_array_equal(ksc.priority_bins(s, 0.0, 10.0, 10), [0, 0, 9, 9, -1, 5])


def test_priority_bins_ties_share_a_bin_and_order_is_kept():
    rng = np.random.default_rng(0)
    s = np.repeat(rng.uniform(-3, 7, 50), 4)              # every value four times
    b = ksc.priority_bins(s, s.min(), s.max(), 1000)
    for v in np.unique(s):
        assert np.unique(b[s == v]).size == 1
    order = np.argsort(s, kind="stable")
    assert np.all(np.diff(b[order]) >= 0)                 # monotone in the score
    assert b.min() == 0 and b.max() == 999


def test_priority_bins_constant_scores_one_bin():
    b = ksc.priority_bins(np.full((3, 4), 250.0), 250.0, 250.0, 1000)
    np.testing.assert_array_equal(b, np.zeros((3, 4), dtype=int))
    b = ksc.priority_bins(np.array([1.0, np.nan]), 1.0, 1.0, 1000)
    np.testing.assert_array_equal(b, [0, -1])


def test_priority_bins_out_of_range_scores_are_clipped_and_inf_never_allocated():
    b = ksc.priority_bins(np.array([-5.0, 15.0, np.inf, -np.inf]), 0.0, 10.0, 4)
    np.testing.assert_array_equal(b, [0, 3, -1, -1])


def test_priority_bins_all_nan_with_nan_range():
    b = ksc.priority_bins(np.full(3, np.nan), np.nan, np.nan, 10)
    np.testing.assert_array_equal(b, [-1, -1, -1])


# ---- slope_deg --------------------------------------------------------------------------------
@pytest.mark.parametrize("a", [0.0, 0.1, 0.5, 1.0, 3.0])
def test_slope_of_a_plane_rising_east_is_atan_a(a):
    dx = 1000.0
    z = a * np.arange(6)[None, :] * dx * np.ones((4, 1))      # z = a·x, x = j·dx
    np.testing.assert_allclose(slope_deg(z, 500.0, dx), np.degrees(np.arctan(a)), atol=1e-12)


def test_slope_of_a_tilted_plane_in_both_directions():
    dy, dx, a, b = 200.0, 300.0, 0.3, -0.4
    i, j = np.mgrid[0:5, 0:7]
    z = a * i * dy + b * j * dx
    np.testing.assert_allclose(slope_deg(z, dy, dx), np.degrees(np.arctan(0.5)), atol=1e-12)


def test_slope_3x3_by_hand_a_single_peak():
    z = np.array([[0.0, 0.0, 0.0], [0.0, 10.0, 0.0], [0.0, 0.0, 0.0]])
    # centre: centred differences across the peak are 0; edge middles: one-sided 10 m over 10 m
    # across the grid's edge (45°) and centred 0 along it; corners: 0 both ways
    expected = [[0.0, 45.0, 0.0], [45.0, 0.0, 45.0], [0.0, 45.0, 0.0]]
    np.testing.assert_allclose(slope_deg(z, 10.0, 10.0), expected, atol=1e-12)


def test_slope_3x3_by_hand_different_spacings():
    z = np.array([[1.0, 2.0, 4.0], [2.0, 4.0, 8.0], [3.0, 6.0, 12.0]])
    s = slope_deg(z, 2.0, 1.0)
    # centre: ∂z/∂x = (8 − 2)/2 = 3, ∂z/∂y = (6 − 2)/(2·2) = 1
    assert s[1, 1] == pytest.approx(np.degrees(np.arctan(np.sqrt(10.0))), abs=1e-12)
    # corner (0, 0): one-sided ∂z/∂x = 2 − 1 = 1, ∂z/∂y = (2 − 1)/2 = 0.5
    assert s[0, 0] == pytest.approx(np.degrees(np.arctan(np.hypot(1.0, 0.5))), abs=1e-12)
    # (2, 2): ∂z/∂x = 12 − 6 = 6, ∂z/∂y = (12 − 8)/2 = 2
    assert s[2, 2] == pytest.approx(np.degrees(np.arctan(np.hypot(6.0, 2.0))), abs=1e-12)


def test_slope_nan_neighbour_gives_nan():
    z = np.arange(9.0).reshape(3, 3)
    z[0, 1] = np.nan
    s = slope_deg(z, 1.0, 1.0)
    # cells whose differences use z[0, 1]: itself, its row neighbours (one-sided at the corners)
    # and the centre (centred along the column); the rest keep a slope
    nan = np.array([[1, 1, 1], [0, 1, 0], [0, 0, 0]], dtype=bool)
    np.testing.assert_array_equal(np.isnan(s), nan)
    assert np.all(np.isfinite(s[~nan]))


def test_slope_per_row_spacing_on_a_lat_lon_grid():
    lat = np.array([60.0, 45.0, 30.0, 0.0])
    dx_rows = 111_000.0 * np.cos(np.radians(lat))            # columns narrow to the north
    c = 50.0                                                  # metres per column
    z = c * np.arange(5)[None, :] * np.ones((4, 1))
    s = slope_deg(z, 111_000.0, dx_rows)
    np.testing.assert_allclose(s, np.degrees(np.arctan(c / dx_rows))[:, None] * np.ones((1, 5)),
                               rtol=1e-12)


def test_slope_single_row_column_and_cell():
    np.testing.assert_allclose(slope_deg(np.array([[0.0, 1.0, 3.0]]), 1.0, 1.0),
                               np.degrees(np.arctan([1.0, 1.5, 2.0]))[None, :])
    np.testing.assert_allclose(slope_deg(np.array([[0.0], [2.0]]), 1.0, 1.0),
                               np.degrees(np.arctan([[2.0], [2.0]])))
    np.testing.assert_array_equal(slope_deg(np.array([[5.0]]), 1.0, 1.0), [[0.0]])


def test_slope_rejects_non_2d():
    with pytest.raises(ValueError, match="2-D"):
        slope_deg(np.zeros(4), 1.0, 1.0)


def test_slope_equals_numpy_gradient_and_converges_to_the_analytic_slope():
    dy, dx = 90.0, 120.0
    i, j = np.mgrid[0:80, 0:90]
    y, x = i * dy, j * dx
    kx, ky = 2 * np.pi / (40 * dx), 2 * np.pi / (60 * dy)
    z = 300.0 * np.sin(kx * x) * np.cos(ky * y)
    s = slope_deg(z, dy, dx)
    gy, gx = np.gradient(z, dy, dx)
    np.testing.assert_allclose(s, np.degrees(np.arctan(np.hypot(gx, gy))), rtol=1e-12, atol=1e-12)
    # interior against the exact derivative: centred differences are second order (≪ 1 %)
    ex = 300.0 * kx * np.cos(kx * x) * np.cos(ky * y)
    ey = -300.0 * ky * np.sin(kx * x) * np.sin(ky * y)
    exact = np.degrees(np.arctan(np.hypot(ex, ey)))
    inner = (slice(1, -1), slice(1, -1))
    assert np.max(np.abs(s[inner] - exact[inner])) < 0.01 * exact.max()


# ---- the product's slope map and annual precipitation on small DataArrays -------------------
def test_slope_map_uses_true_metric_spacing_and_chunks_do_not_change_it():
    import xarray as xr

    from carbonsink.products.scenarios import slope_map

    lat = np.arange(50.5, 20.0, -1.0)                         # north to south, 1°
    lon = np.arange(80.5, 100.0, 1.0)
    c = 500.0                                                  # metres per column, rising east
    z = xr.DataArray(c * np.arange(lon.size)[None, :] * np.ones((lat.size, 1)),
                     dims=("lat", "lon"), coords={"lat": lat, "lon": lon})
    r = 6_371_008.8
    dx = r * np.radians(1.0) * np.cos(np.radians(lat))
    expected = np.degrees(np.arctan(c / dx))[:, None] * np.ones((1, lon.size))
    np.testing.assert_allclose(slope_map(z).values, expected, rtol=1e-12)
    # a rough surface: dask chunks with a one-cell halo give the whole-array result
    rough = xr.DataArray(np.random.default_rng(1).normal(1500, 400, (lat.size, lon.size)),
                         dims=("lat", "lon"), coords={"lat": lat, "lon": lon})
    rough[3, 4] = np.nan
    whole = slope_map(rough).values
    chunked = slope_map(rough.chunk({"lat": 7, "lon": 5})).values
    np.testing.assert_allclose(chunked, whole, rtol=1e-12, equal_nan=True)
    dlat = r * np.radians(1.0)
    gy = np.gradient(rough.values, axis=0) / dlat
    gx = np.gradient(rough.values, axis=1) / dx[:, None]
    np.testing.assert_allclose(whole, np.degrees(np.arctan(np.hypot(gx, gy))), rtol=1e-12,
                               equal_nan=True)


def test_annual_precipitation_is_the_mean_of_the_yearly_sums():
    import pandas as pd
    import xarray as xr

    from carbonsink.products.scenarios import annual_precipitation

    time = pd.date_range("2001-01-01", periods=36, freq="MS")
    monthly = np.concatenate([np.full(12, 10.0), np.full(12, 20.0), np.full(12, 60.0)])
    pr = xr.DataArray(monthly[:, None, None] * np.ones((1, 2, 2)), dims=("time", "lat", "lon"),
                      coords={"time": time, "lat": [30.5, 29.5], "lon": [100.5, 101.5]})
    pr[:, 1, 1] = np.nan
    got = annual_precipitation(pr)
    np.testing.assert_allclose(got.values, [[360.0, 360.0], [360.0, np.nan]])
    assert got.attrs["units"] == "mm yr-1"
