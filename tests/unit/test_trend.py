"""Trend kernels (SCIENCE.md §5): hand-computed cases, scipy/pymannkendall/jenkspy parity, NaN
handling without warnings, shapes, change classes, and O(P) memory on big blocks."""
import time
import tracemalloc
import warnings

import numpy as np
import pytest
from scipy import stats

from carbonsink.kernels import trend as k

pytestmark = pytest.mark.unit

Y5 = np.array([1.0, 3.0, 2.0, 5.0, 4.0])


@pytest.fixture
def no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def _random_block(n=21, npix=200, seed=1, nan_frac=0.0):
    rng = np.random.default_rng(seed)
    trend = rng.normal(0, 0.3, npix)
    y = 10 + trend * np.arange(n)[:, None] + rng.normal(0, 1, (n, npix))
    if nan_frac:
        y[rng.random((n, npix)) < nan_frac] = np.nan
    return y


# ---------------------------------------------------------------- hand-computed


def test_hand_example_ols(no_warnings):
    # x̄ = 2, ȳ = 3, Sxy = 8, Sxx = 10 → θ = 0.8, b = 3 − 0.8·2 = 1.4; SSE = 3.6, t = 0.8/√0.12
    slope, intercept, p = k.ols_trend(Y5)
    assert slope.shape == ()
    assert float(slope) == pytest.approx(0.8, abs=1e-14)
    assert float(intercept) == pytest.approx(1.4, abs=1e-14)
    t = 0.8 / np.sqrt(3.6 / 3 / 10)
    assert float(p) == pytest.approx(2 * stats.t.sf(t, 3), rel=1e-12)


def test_hand_example_sen_mk(no_warnings):
    # pair slopes sorted: −1, −1, 1/3, 1/2, 3/4, 1, 1, 4/3, 2, 3 → median (3/4 + 1)/2
    assert float(k.sen_slope(Y5)) == pytest.approx(0.875, abs=1e-14)
    z, p, s, var_s = k.mann_kendall(Y5)
    assert float(s) == 6                                   # 4 + 1 + 2 − 1
    assert float(var_s) == pytest.approx(5 * 4 * 15 / 18)
    assert float(z) == pytest.approx(5 / np.sqrt(300 / 18))
    assert float(p) == pytest.approx(2 * stats.norm.sf(5 / np.sqrt(300 / 18)), rel=1e-12)


def test_hand_example_ties():
    # groups of 2 and 3 equal values: Σ t(t−1)(2t+5) = 18 + 66 → Var(S) = (300 − 84)/18 = 12
    z, p, s, var_s = k.mann_kendall(np.array([1.0, 1, 2, 2, 2]))
    assert float(s) == 6 and float(var_s) == 12
    assert float(z) == pytest.approx(5 / np.sqrt(12))
    # decreasing: continuity correction toward 0 from below
    z, _, s, _ = k.mann_kendall(np.array([5.0, 4, 3, 2, 1]))
    assert float(s) == -10 and float(z) == pytest.approx(-9 / np.sqrt(300 / 18))


def test_hand_example_cv():
    # mean 3, s² = (4 + 0 + 1 + 4 + 1)/4 = 2.5
    assert float(k.coefficient_of_variation(Y5)) == pytest.approx(np.sqrt(2.5) / 3, rel=1e-14)
    # |mean| in the denominator
    assert float(k.coefficient_of_variation(-Y5)) == pytest.approx(np.sqrt(2.5) / 3, rel=1e-14)
    assert np.isnan(k.coefficient_of_variation(np.array([-1.0, 0.0, 1.0])))


def test_x_years_and_gaps():
    years = np.arange(2000, 2005, dtype="f8")
    slope, intercept, _ = k.ols_trend(Y5, x=years)
    assert float(slope) == pytest.approx(0.8, abs=1e-12)
    assert float(intercept) == pytest.approx(1.4, abs=1e-9)   # at the first year, 2000
    # Sen over uneven x uses the real spacing
    x = np.array([0.0, 1.0, 3.0])
    assert float(k.sen_slope(np.array([0.0, 1.0, 3.0]), x=x)) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        k.ols_trend(Y5, x=[0, 1, 1, 2, 3])
    with pytest.raises(ValueError):
        k.sen_slope(Y5, x=np.arange(4))


def test_constant_and_perfect_fit(no_warnings):
    y = np.stack([np.full(6, 0.1), 2.0 + 0.5 * np.arange(6)], axis=1)
    slope, intercept, p = k.ols_trend(y)
    assert slope[0] == 0 and p[0] == 1 and intercept[0] == 0.1
    assert slope[1] == pytest.approx(0.5) and p[1] == pytest.approx(0, abs=1e-12)
    z, mp, s, var_s = k.mann_kendall(y)
    assert s[0] == 0 and var_s[0] == 0 and z[0] == 0 and mp[0] == 1
    assert k.sen_slope(y)[0] == 0


# ---------------------------------------------------------------- parity with references


def test_ols_matches_linregress(no_warnings):
    y = _random_block(npix=200, nan_frac=0.15)
    y[:, :100] = _random_block(npix=100, seed=7)      # half complete, half with NaN years
    x = np.arange(2000, 2021, dtype="f8")
    slope, intercept, p = k.ols_trend(y, x=x)
    for i in range(y.shape[1]):
        ok = ~np.isnan(y[:, i])
        ref = stats.linregress(x[ok], y[ok, i])
        assert slope[i] == pytest.approx(ref.slope, rel=1e-9, abs=1e-12)
        # linregress's intercept is at x = 0; carbonsink's at the first year x[0]
        assert intercept[i] == pytest.approx(ref.intercept + ref.slope * x[0], rel=1e-9, abs=1e-9)
        assert p[i] == pytest.approx(ref.pvalue, rel=1e-6, abs=1e-10)


def test_ols_float32_input():
    y = _random_block(npix=50)
    s64 = k.ols_trend(y)[0]
    s32 = k.ols_trend(y.astype("f4"))[0]
    np.testing.assert_allclose(s32, k.ols_trend(y.astype("f4").astype("f8"))[0], rtol=1e-12)
    np.testing.assert_allclose(s32, s64, atol=1e-5)


@pytest.mark.parametrize("n, kind", [(21, "random"), (20, "random"), (22, "random"),
                                     (21, "rounded"), (30, "coarse"), (21, "nan")])
def test_mk_sen_match_pymannkendall(n, kind, no_warnings):
    mk = pytest.importorskip("pymannkendall")
    rng = np.random.default_rng(n)
    npix = 100
    y = rng.normal(0, 1, (n, npix)) + rng.normal(0, 0.1, npix) * np.arange(n)[:, None]
    if kind == "rounded":          # heavy ties: integers
        y = np.round(y * 2)
    elif kind == "coarse":         # very heavy ties: 3 levels
        y = rng.integers(0, 3, (n, npix)).astype("f8")
    elif kind == "nan":
        y[rng.random((n, npix)) < 0.2] = np.nan
    z, p, s, var_s = k.mann_kendall(y)
    sen = k.sen_slope(y)
    for i in range(npix):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")    # pymannkendall's own nanmedian etc.
            ref = mk.original_test(y[:, i])
        assert s[i] == ref.s
        assert var_s[i] == pytest.approx(ref.var_s, rel=1e-12)
        assert z[i] == pytest.approx(ref.z, abs=1e-6)
        assert p[i] == pytest.approx(ref.p, abs=1e-6)
        assert sen[i] == pytest.approx(ref.slope, abs=1e-6)


def test_trend_stats_consistent():
    y = _random_block(npix=300, nan_frac=0.1)
    y[:, 0] = np.nan
    x = np.arange(1990, 2011, dtype="f8")
    d = k.trend_stats(y, x=x, alpha=0.1)
    slope, intercept, p = k.ols_trend(y, x=x)
    z, mp, _, _ = k.mann_kendall(y)
    np.testing.assert_array_equal(d["slope"], slope)
    np.testing.assert_array_equal(d["intercept"], intercept)
    np.testing.assert_array_equal(d["p_value"], p)
    np.testing.assert_array_equal(d["sen_slope"], k.sen_slope(y, x=x))
    np.testing.assert_array_equal(d["mk_z"], z)
    np.testing.assert_array_equal(d["mk_p"], mp)
    np.testing.assert_array_equal(d["cv"], k.coefficient_of_variation(y))
    np.testing.assert_array_equal(d["change_class"], k.change_class(slope, p, alpha=0.1))
    np.testing.assert_array_equal(d["n_valid"], (~np.isnan(y)).sum(0))
    assert d["change_class"][0] == 0


# ---------------------------------------------------------------- NaN handling and shapes


def test_nan_pixels_give_nan_without_warnings(no_warnings):
    y = _random_block(n=10, npix=4)
    y[:, 0] = np.nan                 # all-NaN pixel
    y[2:, 1] = np.nan                # two valid steps
    y[3:, 2] = np.nan                # three valid steps: the minimum
    d = k.trend_stats(y)
    for name in ("slope", "intercept", "p_value", "sen_slope", "mk_z", "mk_p", "cv"):
        assert np.isnan(d[name][:2]).all(), name
        assert np.isfinite(d[name][2:]).all(), name
    assert list(d["change_class"][:2]) == [0, 0]
    assert all(np.isnan(a[:2]).all() for a in k.ols_trend(y))
    assert all(np.isnan(a[:2]).all() for a in k.mann_kendall(y))
    assert np.isnan(k.sen_slope(y)[:2]).all()
    assert np.isnan(k.coefficient_of_variation(y)[:2]).all()
    # a stricter min_valid masks the 3-step pixel too
    assert np.isnan(k.ols_trend(y, min_valid=4)[0][2])
    assert np.isnan(k.sen_slope(y, min_valid=4)[2])
    with pytest.raises(ValueError):
        k.ols_trend(y, min_valid=2)


def test_all_nan_block_and_empty(no_warnings):
    y = np.full((21, 3, 4), np.nan)
    d = k.trend_stats(y)
    assert all(v.shape == (3, 4) for v in d.values())
    assert np.isnan(d["slope"]).all() and (d["change_class"] == 0).all()
    assert k.change_class(d["slope"], method="natural").tolist() == [[0] * 4] * 3
    assert k.ols_trend(np.empty((21, 0)))[0].shape == (0,)


def test_3d_shape_round_trip():
    rng = np.random.default_rng(3)
    y3 = rng.normal(size=(21, 7, 9))
    y3[:5, 2, 3] = np.nan
    flat = y3.reshape(21, -1)
    for fn in (k.ols_trend, k.mann_kendall):
        for a3, a2 in zip(fn(y3), fn(flat)):
            assert a3.shape == (7, 9)
            np.testing.assert_array_equal(a3.reshape(-1), a2)
    assert k.sen_slope(y3).shape == (7, 9)
    np.testing.assert_array_equal(k.sen_slope(y3)[2, 3], k.sen_slope(y3[:, 2, 3]))
    assert k.coefficient_of_variation(y3).shape == (7, 9)
    # time-first layout of a non-contiguous view (as xarray may hand over) is honoured
    yt = np.ascontiguousarray(np.moveaxis(y3, 0, -1))
    np.testing.assert_array_equal(k.ols_trend(np.moveaxis(yt, -1, 0))[0], k.ols_trend(y3)[0])


# ---------------------------------------------------------------- change classes


def test_change_class_significance():
    slope = np.array([-1.0, -1.0, 0.0, 1.0, 1.0, np.nan, 1.0, 0.01, -0.01])
    p = np.array([0.01, 0.2, 0.5, 0.2, 0.01, 0.01, np.nan, 0.001, 0.3])
    assert k.change_class(slope, p).tolist() == [1, 2, 3, 4, 5, 0, 0, 5, 2]
    # the stable band overrides p; the boundary p == alpha is not significant
    assert k.change_class(slope, p, stable=0.05).tolist() == [1, 2, 3, 4, 5, 0, 0, 3, 3]
    assert k.change_class([-1.0, 1.0], [0.05, 0.05]).tolist() == [2, 4]
    assert k.change_class([-1.0, 1.0], [0.05, 0.05], alpha=0.1).tolist() == [1, 5]
    assert k.change_class(slope, p).dtype == np.int8
    with pytest.raises(ValueError):
        k.change_class(slope)
    assert len(k.CHANGE_CLASS_MEANINGS) == 5
    assert k.CHANGE_CLASS_MEANINGS[0] == "significant_decrease"
    assert k.CHANGE_CLASS_MEANINGS[2] == "stable"


def test_change_class_breaks():
    b = [-0.5, -0.1, 0.1, 0.5]
    slope = np.array([[-2.0, -0.5, -0.3], [-0.1, 0.0, 0.1], [0.3, 0.5, 9.0]])
    out = k.change_class(slope, breaks=b, method="breaks")
    # a slope equal to a break falls in the lower class
    assert out.tolist() == [[1, 1, 2], [2, 3, 3], [4, 4, 5]]
    assert k.change_class([np.nan], breaks=b, method="breaks").tolist() == [0]
    for bad in ([0.1, -0.1, 0.2, 0.3], [0, 1, 2], None):
        with pytest.raises(ValueError):
            k.change_class(slope, breaks=bad, method="breaks")
    with pytest.raises(ValueError):
        k.change_class(slope, method="quantile")


def test_natural_breaks_separated_clusters():
    vals = np.array([1, 2, 3, 10, 11, 12, 20, 21, 22, 40, 41, 50, 51, np.nan], dtype="f8")
    np.testing.assert_array_equal(k.natural_breaks(vals), [3, 12, 22, 41])
    rng = np.random.default_rng(0)
    clusters = np.concatenate([c + rng.uniform(-1, 1, 200) for c in (-40, -20, 0, 20, 40)])
    rng.shuffle(clusters)
    out = k.change_class(clusters, method="natural")
    np.testing.assert_array_equal(out, np.digitize(clusters, [-30, -10, 10, 30]) + 1)
    assert np.isnan(k.natural_breaks([1.0, 2.0, np.nan])).all()


def test_natural_breaks_sampled_deterministic_and_fast():
    rng = np.random.default_rng(5)
    vals = np.concatenate([rng.normal(c, 1, 60_000) for c in (-40, -20, 0, 20, 40)])
    k.natural_breaks(vals[:100])           # compile outside the timing
    t0 = time.perf_counter()
    b1 = k.natural_breaks(vals, max_sample=10_000, seed=0)
    elapsed = time.perf_counter() - t0
    assert elapsed < 5.0
    np.testing.assert_array_equal(b1, k.natural_breaks(vals, max_sample=10_000, seed=0))
    # breaks are sampled class maxima inside the gaps, so the field is classed by cluster
    assert np.all((b1 > np.array([-40, -20, 0, 20]) + 2) & (b1 < np.array([-20, 0, 20, 40]) - 2))
    labels = np.repeat(np.arange(1, 6), 60_000)
    # (a few tail values beyond the sampled maxima cross over: sampling is an approximation)
    assert (k.change_class(vals, method="natural") == labels).mean() > 0.999


def _ssd(sorted_vals, inner):
    classes = np.split(sorted_vals, np.searchsorted(sorted_vals, inner, side="right"))
    return sum(((c - c.mean()) ** 2).sum() for c in classes)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_natural_breaks_match_jenkspy(seed):
    jenkspy = pytest.importorskip("jenkspy")
    rng = np.random.default_rng(seed)
    vals = np.concatenate([rng.normal(0, 1, 300), rng.normal(5, 2, 200), rng.exponential(3, 100)])
    ours = k.natural_breaks(vals, k=5)
    ref = np.asarray(jenkspy.jenks_breaks(vals, n_classes=5), dtype="f8")[1:-1]
    s = np.sort(vals)
    # both optimal: identical total within-class SSD (and so, barring exact ties, identical breaks)
    assert _ssd(s, ours) == pytest.approx(_ssd(s, ref), rel=1e-10)
    np.testing.assert_allclose(ours, ref)


# ---------------------------------------------------------------- scale


def test_big_block_memory_and_speed():
    n, npix = 21, 50_000
    y = _random_block(n=n, npix=npix, seed=11, nan_frac=0.05)
    k.trend_stats(y[:, :10])                 # compile / load cache outside the measurement
    tracemalloc.start()
    t0 = time.perf_counter()
    sen = k.sen_slope(y)
    z, p, s, var_s = k.mann_kendall(y)
    elapsed = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # O(P) outputs only: 50 000 × 21 pair slopes would be 84 MB for the 210 pairs alone
    assert peak < 50e6, peak
    assert elapsed < 10.0, elapsed
    assert np.isfinite(sen).all() and np.isfinite(z).all()
    t0 = time.perf_counter()
    k.ols_trend(y)
    assert time.perf_counter() - t0 < 5.0


# ---------------------------------------------------------------- one-pass core: fast paths


def _pair_median(v, x):
    i, j = np.triu_indices(len(v), 1)
    return np.median((v[j] - v[i]) / (x[j] - x[i]))


@pytest.mark.parametrize("n", [3, 4, 5, 8, 20, 21, 22, 40])
def test_sen_counting_median_is_exact(n, no_warnings):
    """The counting selection around the OLS slope returns exactly np.median of the pair slopes —
    odd and even pair counts, gaps, uneven x, heavy tails, outliers, huge and tiny magnitudes."""
    rng = np.random.default_rng(n)
    npix = 400
    y = rng.normal(size=(n, npix)) + rng.normal(0, 1, npix) * np.arange(n)[:, None]
    y[:, 50:100] = rng.standard_cauchy((n, 50))                   # heavy tails: far from OLS
    y[rng.integers(0, n, 50), np.arange(100, 150)] += 1e6         # one outlier per pixel
    y[:, 150:200] *= 1e-300
    y[:, 200:250] *= 1e300
    y[:, 250:300] = np.where(rng.random((n, 50)) < 0.3, np.nan, y[:, 250:300])
    for x in (np.arange(n, dtype="f8"), np.cumsum(rng.uniform(0.1, 3.0, n))):
        got = k.sen_slope(y, x=x)
        for p in range(npix):
            ok = ~np.isnan(y[:, p])
            want = _pair_median(y[ok, p], x[ok]) if ok.sum() >= 3 else np.nan
            assert got[p] == want or (np.isnan(got[p]) and np.isnan(want)), (p, got[p], want)


def test_counting_median_all_branches():
    """_median_near directly: a probe between the two middle values (even m), bounds found only
    by stepping out, the fallback signal (NaN) for NaN values and unusable guesses."""
    rng = np.random.default_rng(3)
    buf = np.empty(300)
    for m in (1, 2, 3, 10, 11, 210, 211):
        a = rng.normal(size=m)
        want = np.median(a)
        for center, scale in ((0.0, 1e-3), (want, 1e-12), (50.0, 1e-6), (-50.0, 0.01),
                              (want, 100.0)):
            assert k._median_near(a, m, center, scale, buf) == want, (m, center, scale)
        # even m, probe exactly between the middle values
        if m % 2 == 0:
            s = np.sort(a)
            mid = 0.5 * (s[m // 2 - 1] + s[m // 2])
            assert k._median_near(a, m, mid, 1e-300, buf) == want
    a = rng.normal(size=50)
    a[7] = np.nan
    assert np.isnan(k._median_near(a, 50, 0.0, 0.1, buf))
    for center, scale in ((np.nan, 1.0), (0.0, np.inf), (0.0, 0.0), (0.0, -1.0)):
        assert np.isnan(k._median_near(a[8:], 42, center, scale, buf))
    # many equal values: the bounds cannot separate them, the median is still exact
    a = np.repeat([1.0, 2.0, 3.0], [40, 41, 40])
    assert k._median_near(a, a.size, 2.0, 0.5, buf) == 2.0


def test_ties_and_flat_pairs_take_the_exact_path(no_warnings):
    """Continuous data skip the tie sort; one tied pair, ±inf and constant series do not."""
    mk = pytest.importorskip("pymannkendall")
    rng = np.random.default_rng(8)
    y = rng.normal(size=(21, 6))
    y[5, 1] = y[12, 1]                    # a single tie among continuous values
    y[[3, 9], 2] = np.inf                 # ∞ − ∞ is a pair with no sign
    y[:, 3] = 4.0                         # constant
    y[:, 4] = np.round(y[:, 4])           # heavy ties
    y[:, 5] = 2.0 + 0.5 * np.arange(21)   # perfect line
    z, p, s, var_s = k.mann_kendall(y)
    sen = k.sen_slope(y)
    for i in (0, 1, 4, 5):
        ref = mk.original_test(y[:, i])
        assert s[i] == ref.s and var_s[i] == pytest.approx(ref.var_s, rel=1e-12)
        assert z[i] == pytest.approx(ref.z, abs=1e-6) and p[i] == pytest.approx(ref.p, abs=1e-6)
        assert sen[i] == pytest.approx(ref.slope, abs=1e-6)
    assert var_s[1] == pytest.approx((21 * 20 * 47 - 2 * 1 * 9) / 18)
    # two equal infinities form a tie group; the inf pair slopes are kept as they are
    assert var_s[2] == pytest.approx((21 * 20 * 47 - 2 * 1 * 9) / 18)
    assert s[3] == 0 and var_s[3] == 0 and z[3] == 0 and p[3] == 1 and sen[3] == 0
    assert sen[5] == pytest.approx(0.5, abs=1e-12) and s[5] == 210


def test_t_test_pvalue_matches_scipy(no_warnings):
    from scipy import special
    ts = np.concatenate([[0.0, 1e-12, np.inf, -np.inf], np.linspace(-4, 4, 161),
                         np.logspace(-6, 3, 200)])
    for df in [*range(1, 41), 57, 100, 252]:
        want = 2.0 * special.stdtr(df, -np.abs(ts))
        got = k.t_test_pvalue(ts, df)
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-300)
    assert np.isnan(k.t_test_pvalue(np.nan, 5))
    np.testing.assert_array_equal(k.t_test_pvalue([[1.0], [2.0]], [3, 4]).shape, (2, 2))
    for bad in (0, 2.5, -1):
        with pytest.raises(ValueError, match="degrees of freedom"):
            k.t_test_pvalue(1.0, bad)


def test_block_mixing_ocean_short_and_land_pixels(no_warnings):
    """All-NaN pixels, pixels below min_valid and full ones side by side, and a block that is
    entirely NaN: the valid pixels' values do not depend on their neighbours."""
    y = _random_block(npix=60, seed=4)
    ref = k.trend_stats(y[:, 40:])
    y[:, :20] = np.nan                    # ocean
    y[2:, 20:30] = np.nan                 # 2 valid steps < min_valid
    y[::2, 30:40] = np.nan                # 10 valid steps: kept
    d = k.trend_stats(y)
    for name, v in d.items():
        if name == "change_class":
            assert (v[:30] == 0).all()
        elif name == "n_valid":
            assert v[:20].tolist() == [0] * 20 and v[20:30].tolist() == [2] * 10
        else:
            assert np.isnan(v[:30]).all(), name
            assert np.isfinite(v[30:]).all(), name
        np.testing.assert_array_equal(v[40:], ref[name], err_msg=name)
    empty = k.trend_stats(np.full((21, 5, 7), np.nan, dtype="f4"))
    assert all(np.isnan(v).all() for n, v in empty.items() if n not in ("change_class", "n_valid"))
    assert (empty["n_valid"] == 0).all() and (empty["change_class"] == 0).all()
