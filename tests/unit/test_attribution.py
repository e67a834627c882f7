"""Attribution kernels (SCIENCE.md §6): reference values, statsmodels/pingouin agreement, NaNs."""
import warnings

import numpy as np
import pytest

from carbonsink.kernels import attribution as k

pytestmark = pytest.mark.unit

YEARS = np.arange(2000, 2021)


def _reference_R():
    R = np.eye(4)
    for (i, j), v in {(0, 1): 0.6, (0, 2): 0.5, (0, 3): 0.3,
                      (1, 2): 0.4, (1, 3): 0.2, (2, 3): 0.1}.items():
        R[i, j] = R[j, i] = v
    return R


def _random_pixels(npix=100, n=21, kdrv=3, seed=0):
    """Trending, correlated drivers and a Y with driver response + human trend + noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype="f8")[:, None]
    X = np.empty((kdrv, n, npix))
    common = rng.normal(size=(n, npix))
    for i in range(kdrv):
        X[i] = (rng.uniform(-2, 2, npix) * t + rng.normal(size=(n, npix)) + 0.4 * common) \
            * rng.uniform(0.5, 50, npix) + rng.uniform(-100, 100, npix)
    beta = rng.normal(size=(kdrv, npix))
    y = (beta[:, None] * X).sum(0) + rng.uniform(-5, 5, npix) * t \
        + rng.normal(scale=20.0, size=(n, npix)) + 300.0
    return y, X


# --- SCIENCE.md §6 reference values ---------------------------------------------------------------
def test_partial_correlation_reference():
    r, t, p = k.partial_corr_from_corr(_reference_R(), df=20 - 4)
    assert r[0] == pytest.approx(0.4809, abs=5e-5)
    assert t[0] == pytest.approx(2.194, abs=5e-4)
    assert p[0] == pytest.approx(0.04337, abs=5e-6)


def test_partial_correlation_is_minus_p_over_sqrt():
    """The block-inverse evaluation equals −P₀ᵢ/√(P₀₀Pᵢᵢ) with P = R⁻¹ for every driver."""
    R = _reference_R()
    P = np.linalg.inv(R)
    want = -P[0, 1:] / np.sqrt(P[0, 0] * np.diag(P)[1:])
    r, _, _ = k.partial_corr_from_corr(R, df=16)
    np.testing.assert_allclose(r, want, rtol=1e-12)
    # stacked matrices and per-matrix df broadcast
    r2, t2, p2 = k.partial_corr_from_corr(np.stack([R, R]), df=np.array([16, 30]))
    np.testing.assert_allclose(r2, [want, want], rtol=1e-12)
    assert t2[1, 0] > t2[0, 0] and p2[1, 0] < p2[0, 0]


def test_partial_correlation_singular_matrix_is_nan():
    R = _reference_R()
    R[1, 2] = R[2, 1] = 1.0   # X1 ≡ X2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r, t, p = k.partial_corr_from_corr(R, df=16)
    assert np.isnan(r).all() and np.isnan(t).all() and np.isnan(p).all()


def test_contribution_reference():
    beta = np.array([12.0, 0.2])
    slopes = np.array([0.04, 1.5])
    C, C_climate, C_HA = k.contributions(beta, slopes, 1.2)
    np.testing.assert_allclose(C, [0.48, 0.30], rtol=1e-12)
    assert C_climate == pytest.approx(0.78)
    assert C_HA == pytest.approx(0.42)
    np.testing.assert_allclose(k.relative_shares(C, C_HA), [40.0, 25.0, 35.0], rtol=1e-12)
    assert k.dominant_factor(C, C_HA) == 1
    # same numbers on a pixel grid
    C, _, C_HA = k.contributions(beta[:, None, None] * np.ones((2, 2, 3)),
                                 slopes[:, None, None] * np.ones((2, 2, 3)), np.full((2, 3), 1.2))
    assert C.shape == (2, 2, 3) and C_HA.shape == (2, 3)
    np.testing.assert_allclose(k.relative_shares(C, C_HA)[:, 1, 2], [40.0, 25.0, 35.0])


def test_shares_and_dominant_edge_cases():
    C = np.array([[0.1, 0.0, np.nan, -3.0], [-0.5, 0.0, 1.0, 1.0]])
    C_HA = np.array([0.2, 0.0, 1.0, -4.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = k.relative_shares(C, C_HA)
        d = k.dominant_factor(C, C_HA)
    np.testing.assert_allclose(s[:, 0], [12.5, 62.5, 25.0])
    np.testing.assert_allclose(s[:, 3], [37.5, 12.5, 50.0])
    assert np.isnan(s[:, 1]).all() and np.isnan(s[:, 2]).all()
    assert d.dtype == np.int8
    assert d.tolist() == [2, 0, 0, 3]   # |−0.5| wins; all zero → 0; NaN → 0; human activity = k + 1


# --- agreement with statsmodels OLS ---------------------------------------------------------------
def _ols_beta(y, X):
    import statsmodels.api as sm
    return sm.OLS(y, sm.add_constant(X.T)).fit().params[1:]


@pytest.mark.parametrize("method", ["raw", "detrended"])
def test_beta_matches_statsmodels(method):
    from scipy.signal import detrend

    y, X = _random_pixels()
    beta = k.sensitivities(y, X, method=method)
    assert beta.shape == (3, 100)
    if method == "detrended":
        y, X = detrend(y, axis=0), detrend(X, axis=1)
    want = np.stack([_ols_beta(y[:, p], X[:, :, p]) for p in range(y.shape[1])], axis=1)
    np.testing.assert_allclose(beta, want, rtol=1e-6, atol=1e-9)


def test_time_coordinate_and_slopes():
    y, X = _random_pixels(npix=20)
    a = k.attribute(y, X)
    b = k.attribute(y, X, x=YEARS)                # same spacing → same answer
    for key in ("beta", "y_slope", "driver_slope", "pcorr_p"):
        np.testing.assert_allclose(a[key], b[key], rtol=1e-9)
    np.testing.assert_allclose(a["y_slope"], np.polyfit(YEARS, y, 1)[0], rtol=1e-9)
    np.testing.assert_allclose(a["driver_slope"][1], np.polyfit(YEARS, X[1], 1)[0], rtol=1e-9)
    # every other year: slopes per year, not per step
    c = k.attribute(y[::2], X[:, ::2], x=YEARS[::2])
    np.testing.assert_allclose(c["y_slope"], np.polyfit(YEARS[::2], y[::2], 1)[0], rtol=1e-9)


def test_detrend_matches_scipy_and_skips_nan():
    from scipy.signal import detrend

    y, _ = _random_pixels(npix=10)
    np.testing.assert_allclose(k.detrend(y), detrend(y, axis=0), atol=1e-9)
    y3 = y.reshape(21, 2, 5)
    np.testing.assert_allclose(k.detrend(y3), detrend(y3, axis=0), atol=1e-9)
    gap = y.copy()
    gap[[3, 4, 15], 0] = np.nan
    gap[2:, 1] = np.nan          # two steps left: too few
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d = k.detrend(gap, x=YEARS)
    keep = np.isfinite(gap[:, 0])
    coef = np.polyfit(YEARS[keep], gap[keep, 0], 1)
    np.testing.assert_allclose(d[keep, 0], gap[keep, 0] - np.polyval(coef, YEARS[keep]), atol=1e-9)
    assert np.isnan(d[~keep, 0]).all() and np.isnan(d[:, 1]).all()


# --- agreement with pingouin ----------------------------------------------------------------------
@pytest.mark.parametrize("method", ["raw", "detrended"])
def test_partial_correlation_matches_pingouin(method):
    import pandas as pd
    import pingouin as pg
    from scipy.signal import detrend

    y, X = _random_pixels(npix=50, seed=3)
    r, t, p = k.partial_correlations(y, X, method=method)
    if method == "detrended":
        y, X = detrend(y, axis=0), detrend(X, axis=1)
    names = ["x1", "x2", "x3"]
    for px in range(y.shape[1]):
        df = pd.DataFrame({"y": y[:, px], **{n: X[i, :, px] for i, n in enumerate(names)}})
        for i, n in enumerate(names):
            res = pg.partial_corr(data=df, x=n, y="y", covar=[c for c in names if c != n],
                                  method="pearson")
            assert r[i, px] == pytest.approx(res["r"].iloc[0], abs=1e-6)
            assert p[i, px] == pytest.approx(res["p_val"].iloc[0] if "p_val" in res
                                             else res["p-val"].iloc[0], abs=1e-6)
    assert np.all(np.sign(t) == np.sign(r))


def test_partial_correlation_by_residuals():
    """Definition check: r of the residuals of Y and Xᵢ each regressed on the other drivers."""
    y, X = _random_pixels(npix=5, seed=7)
    r, _, _ = k.partial_correlations(y, X, method="raw")
    for px in range(5):
        for i in range(3):
            Z = np.column_stack([np.ones(21)] + [X[j, :, px] for j in range(3) if j != i])
            ey = y[:, px] - Z @ np.linalg.lstsq(Z, y[:, px], rcond=None)[0]
            ex = X[i, :, px] - Z @ np.linalg.lstsq(Z, X[i, :, px], rcond=None)[0]
            assert r[i, px] == pytest.approx(np.corrcoef(ey, ex)[0, 1], abs=1e-10)


# --- missing data and degenerate pixels -----------------------------------------------------------
def test_nan_handling_and_degenerate_pixels():
    y, X = _random_pixels(npix=8, seed=11)
    y[[2, 9], 0] = np.nan                   # pixel 0: two missing years in Y
    X[1, 5, 1] = np.nan                     # pixel 1: one missing year in a driver
    y[6:, 2] = np.nan                       # pixel 2: 6 valid steps = k + 3, still enough
    y[5:, 3] = np.nan                       # pixel 3: 5 valid steps < k + 3 → NaN
    X[2, :, 4] = 7.5                        # pixel 4: constant driver
    X[2, :, 5] = 2.0 * X[0, :, 5] - 3.0     # pixel 5: collinear drivers
    y[:, 6] = np.nan                        # pixel 6: no data
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = k.attribute(y, X, x=YEARS)
        out_raw = k.attribute(y, X, x=YEARS, method="raw")
    bad = [3, 4, 5, 6]
    for res in (out, out_raw):
        for key in ("beta", "C", "driver_slope", "share", "pcorr_r", "pcorr_t", "pcorr_p"):
            assert np.isnan(res[key][..., bad]).all(), key
            assert np.isfinite(res[key][..., [0, 1, 2, 7]]).all(), key
        for key in ("C_climate", "C_HA", "y_slope"):
            assert np.isnan(res[key][bad]).all() and np.isfinite(res[key][[0, 1, 2, 7]]).all()
        assert (res["dominant"][bad] == 0).all() and (res["dominant"][[0, 1, 2, 7]] > 0).all()
    assert out["n_valid"].tolist() == [19, 20, 6, 5, 21, 21, 0, 21]
    # a gapped pixel equals the regression on its complete years only (joint mask: Y and all X)
    for px in (0, 1, 2):
        keep = np.isfinite(y[:, px]) & np.isfinite(X[:, :, px]).all(0)
        np.testing.assert_allclose(out_raw["beta"][:, px], _ols_beta(y[keep, px], X[:, keep, px]),
                                   rtol=1e-6)
        yd = y[keep, px] - np.polyval(np.polyfit(YEARS[keep], y[keep, px], 1), YEARS[keep])
        Xd = np.stack([X[i, keep, px] - np.polyval(np.polyfit(YEARS[keep], X[i, keep, px], 1),
                                                   YEARS[keep]) for i in range(3)])
        np.testing.assert_allclose(out["beta"][:, px], _ols_beta(yd, Xd), rtol=1e-6)
        np.testing.assert_allclose(out["driver_slope"][:, px],
                                   np.polyfit(YEARS[keep], X[:, keep, px].T, 1)[0], rtol=1e-9)


def test_pure_trend_driver_is_nan_only_when_detrended():
    """A driver that is exactly linear in time has nothing left once detrended."""
    y, X = _random_pixels(npix=2, seed=5)
    X[0, :, 0] = 0.03 * YEARS - 50.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        det = k.sensitivities(y, X, x=YEARS)
        raw = k.sensitivities(y, X, x=YEARS, method="raw")
    assert np.isnan(det[:, 0]).all() and np.isfinite(det[:, 1]).all()
    assert np.isfinite(raw).all()


def test_exact_fit_and_constant_y():
    """Noise-free Y: exact β, |r| = 1, p = 0. Constant Y: β = 0, partial correlations undefined."""
    _, X = _random_pixels(npix=2, seed=9)
    beta = np.array([[0.5, 1.0], [-2.0, 0.0], [0.25, 0.0]])
    y = (beta[:, None] * X).sum(0) + 10.0
    y[:, 1] = 42.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r, t, p = k.partial_correlations(y, X, method="raw")
        b = k.sensitivities(y, X, method="raw")
    np.testing.assert_allclose(b[:, 0], beta[:, 0], rtol=1e-8)
    np.testing.assert_allclose(np.abs(r[:, 0]), 1.0, rtol=1e-8)
    assert np.all(p[:, 0] < 1e-12)
    np.testing.assert_allclose(b[:, 1], 0.0, atol=1e-12)
    assert np.isnan(r[:, 1]).all() and np.isnan(p[:, 1]).all()


# --- layout, dtype, validation --------------------------------------------------------------------
def test_layouts_and_float32():
    y, X = _random_pixels(npix=12)
    flat = k.attribute(y, X)
    grid = k.attribute(y.reshape(21, 3, 4), X.reshape(3, 21, 3, 4))
    assert grid["beta"].shape == (3, 3, 4) and grid["share"].shape == (4, 3, 4)
    assert grid["C_HA"].shape == (3, 4) and grid["dominant"].shape == (3, 4)
    for key, v in flat.items():
        np.testing.assert_array_equal(grid[key], v.reshape(v.shape[:-1] + (3, 4)), err_msg=key)
    one = k.attribute(y[:, 4], X[:, :, 4])      # a single series, no pixel axes
    assert one["beta"].shape == (3,) and one["C_HA"].shape == () and one["share"].shape == (4,)
    np.testing.assert_allclose(one["beta"], flat["beta"][:, 4], rtol=1e-12)
    f4 = k.sensitivities(y.astype("f4"), X.astype("f4"))
    np.testing.assert_allclose(f4, k.sensitivities(y.astype("f4").astype("f8"),
                                                   X.astype("f4").astype("f8")), rtol=1e-12)
    single = k.attribute(y, X[:1])              # k = 1: simple regression on one driver
    assert single["beta"].shape == (1, 12) and single["share"].shape == (2, 12)
    np.testing.assert_allclose(np.abs(single["pcorr_r"][0]),
                               np.abs([np.corrcoef(k.detrend(y)[:, p], k.detrend(X[0])[:, p])[0, 1]
                                       for p in range(12)]), rtol=1e-9)


def test_attribute_is_consistent():
    y, X = _random_pixels(npix=30)
    out = k.attribute(y, X, x=YEARS)
    np.testing.assert_array_equal(out["beta"], k.sensitivities(y, X, x=YEARS))
    r, t, p = k.partial_correlations(y, X, x=YEARS)
    np.testing.assert_array_equal(out["pcorr_r"], r)
    np.testing.assert_array_equal(out["pcorr_p"], p)
    np.testing.assert_allclose(out["C"], out["beta"] * out["driver_slope"])
    np.testing.assert_allclose(out["C_climate"] + out["C_HA"], out["y_slope"])
    np.testing.assert_allclose(out["share"].sum(0), 100.0)
    assert np.array_equal(out["dominant"],
                          np.argmax(np.abs(np.concatenate([out["C"], out["C_HA"][None]])), 0) + 1)
    assert np.all((out["pcorr_p"] >= 0) & (out["pcorr_p"] <= 1))


def test_validation():
    y, X = _random_pixels(npix=3)
    with pytest.raises(ValueError, match="method"):
        k.sensitivities(y, X, method="detrend")
    with pytest.raises(ValueError, match="method"):
        k.attribute(y, X, method="RAW")
    with pytest.raises(ValueError, match="drivers"):
        k.attribute(y, X[:, :-1])
    with pytest.raises(ValueError, match="drivers"):
        k.attribute(y, X[0])
    with pytest.raises(ValueError, match="x has shape"):
        k.attribute(y, X, x=YEARS[:-1])
    with pytest.raises(ValueError, match="min_valid"):
        k.attribute(y, X, min_valid=4)
    assert np.isnan(k.attribute(y[:5], X[:, :5], min_valid=5)["beta"]).sum() == 0


# --- compaction and batching ----------------------------------------------------------------------
def test_batches_and_compaction_do_not_change_results(monkeypatch):
    """Pixels are solved in batches of valid columns only: tiny batches, ocean and too-short
    pixels around them give the same numbers as one pass, and NaN (n_valid still counted)."""
    y, X = _random_pixels(npix=40, seed=3)
    y[:, :8] = np.nan                          # ocean
    y[4:, 8:12] = np.nan                       # 4 valid steps < k + 3
    X[1, ::3, 12:16] = np.nan                  # 14 joint valid steps: solved
    whole = k.attribute(y, X, x=YEARS)
    monkeypatch.setattr(k, "_BATCH", 5)
    batched = k.attribute(y, X, x=YEARS)
    for key, v in whole.items():
        np.testing.assert_allclose(batched[key], v, rtol=1e-12, atol=0, err_msg=key)
    assert np.isnan(whole["beta"][:, :12]).all() and (whole["dominant"][:12] == 0).all()
    assert np.isfinite(whole["beta"][:, 12:]).all()
    assert whole["n_valid"][:12].tolist() == [0] * 8 + [4] * 4
    assert (whole["n_valid"][12:16] == 14).all()
    # a block with no valid pixel at all
    none = k.attribute(np.full((21, 3), np.nan, "f4"), np.ones((3, 21, 3), "f4"))
    assert np.isnan(none["beta"]).all() and (none["n_valid"] == 0).all()


def test_drivers_as_a_sequence_are_not_copied():
    """X may be k arrays shaped like y (what the product passes): same results as the stacked
    array, and float32 inputs are converted to float64 one batch at a time, not as a whole."""
    import tracemalloc

    y, X = _random_pixels(npix=20_000, seed=6)
    y, X = y.astype("f4"), X.astype("f4")
    stacked = k.attribute(y, X)
    listed = k.attribute(y, list(X))
    for key, v in stacked.items():
        np.testing.assert_array_equal(listed[key], v, err_msg=key)
    tracemalloc.start()
    k.attribute(y, list(X))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    inputs_f8 = 4 * y.size * 8                 # y and 3 drivers as float64: 13 MB
    outputs = sum(v.nbytes for v in stacked.values())
    assert peak < outputs + 0.8 * inputs_f8, (peak, outputs, inputs_f8)
    with pytest.raises(ValueError, match="drivers"):
        k.attribute(y, [X[0], X[1][:-1]])


def test_t_and_p_integer_and_fractional_df():
    from scipy.special import stdtr
    r = np.array([-0.9, -0.2, 0.0, 0.5, 1.0, np.nan])
    for df in (17.0, 16.5):
        t, p = k._t_and_p(r, df)
        with np.errstate(divide="ignore"):
            want_t = r * np.sqrt(df / (1 - r * r))
        np.testing.assert_allclose(t, want_t, rtol=1e-14)
        np.testing.assert_allclose(p, 2 * stdtr(df, -np.abs(want_t)), rtol=1e-9)
