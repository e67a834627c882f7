"""Per-pixel trends, robust trends, variability and change classes — SCIENCE.md §5. Pure NumPy/Numba.

Array layout: the time axis is the **first** axis, followed by any number of pixel axes
(``y.shape == (n_time, ...)``: ``(n,)``, ``(n, p)``, ``(n, ny, nx)``); outputs have the trailing
pixel shape ``y.shape[1:]``. Internally ``y`` is viewed as ``(n, P)`` (a view, not a copy, for
C-ordered float32/float64 input) and the per-pixel work runs in ``numba`` loops parallel over pixels,
never in a Python loop.

Missing data: each pixel uses only its valid (non-NaN) time steps, at their own ``x`` values. A pixel
with fewer than ``min_valid`` valid steps gets NaN outputs (class 0 for change classes) — never an
error or a warning. ``min_valid`` defaults to 3 for every statistic, so one pixel mask serves all the
outputs of :func:`trend_stats`; it must be ≥ 3 (the OLS t-test needs df = n − 2 ≥ 1). At n = 3 the
Mann–Kendall test can never reject (|Z| ≤ 1.04, p ≥ 0.30): it is conservative there, not wrong;
raise ``min_valid`` to require longer records.

``x`` (time values, e.g. years) defaults to 0..n−1 and must be finite and strictly increasing, so
"later in ``x``" is "later in the series" for Mann–Kendall's signs. Outputs are float64.
"""
from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange
from scipy import special

__all__ = [
    "CHANGE_CLASS_MEANINGS", "CHANGE_CLASS_METHODS", "CHANGE_CLASS_NODATA",
    "ols_trend", "sen_slope", "mann_kendall", "coefficient_of_variation",
    "natural_breaks", "change_class", "trend_stats",
]

#: Names of change classes 1..5 (SCIENCE.md §5). For ``method="breaks"``/``"natural"`` the classes
#: are the same ordinal steps from the most negative to the most positive slope bin.
CHANGE_CLASS_MEANINGS = ("significant_decrease", "slight_decrease", "stable",
                         "slight_increase", "significant_increase")
CHANGE_CLASS_NODATA = 0
CHANGE_CLASS_METHODS = ("significance", "breaks", "natural")

_SQRT2 = math.sqrt(2.0)


# --------------------------------------------------------------------------------------------------
# input handling
# --------------------------------------------------------------------------------------------------

def _as_time_pixels(y):
    """View ``y`` (n, ...) as (n, P); float32/float64 pass through (numba handles both)."""
    y = np.asarray(y)
    if y.ndim == 0:
        raise ValueError("y needs a time axis first: shape (n_time, ...)")
    if y.dtype not in (np.float32, np.float64):
        y = y.astype("f8")
    n = y.shape[0]
    pix_shape = y.shape[1:]
    # reshape is a view both for C-ordered input and for the time-last memory of
    # np.moveaxis(a, -1, 0) (what an apply_ufunc wrapper hands over); numba takes either layout,
    # so no chunk-sized copy is made. A copy happens only when the pixel axes cannot be merged.
    return y.reshape(n, -1), pix_shape


def _time_values(x, n):
    if x is None:
        return np.arange(n, dtype="f8")
    x = np.asarray(x, dtype="f8")
    if x.shape != (n,):
        raise ValueError(f"x has shape {x.shape}, expected ({n},) to match y's time axis")
    if not np.all(np.isfinite(x)):
        raise ValueError("x must be finite")
    if n > 1 and not np.all(np.diff(x) > 0):
        raise ValueError("x must be strictly increasing (Mann–Kendall signs follow time order)")
    return x


def _check_min_valid(min_valid):
    if int(min_valid) != min_valid or min_valid < 3:
        raise ValueError(f"min_valid must be an integer ≥ 3, got {min_valid!r}")
    return int(min_valid)


def _n_chunks(n_pixels):
    # a few chunks per thread balance uneven NaN patterns; each chunk owns its scratch buffers once
    return max(1, min(n_pixels, 4 * numba.get_num_threads()))


# --------------------------------------------------------------------------------------------------
# numba cores
# --------------------------------------------------------------------------------------------------

@njit(parallel=True, cache=True, error_model="numpy")
def _moments_core(y, x, min_valid, n_valid, slope, intercept, tstat, cv):
    """OLS slope/intercept/t and CV for each pixel column of y (n, P), valid steps only.

    Two passes per pixel (sums, then centred sums): centring makes n·Σxy − Σx·Σy of SCIENCE.md §5
    exact in floating point even with x = calendar years, where the raw form cancels ~8 digits.
    """
    n, npix = y.shape
    nan = np.nan
    for p in prange(npix):
        cnt = 0
        sx = 0.0
        sy = 0.0
        for t in range(n):
            v = y[t, p]
            if not np.isnan(v):
                cnt += 1
                sx += x[t]
                sy += v
        n_valid[p] = cnt
        if cnt < min_valid:
            slope[p] = nan
            intercept[p] = nan
            tstat[p] = nan
            cv[p] = nan
            continue
        mx = sx / cnt
        my = sy / cnt
        sxx = 0.0
        sxy = 0.0
        syy = 0.0
        ymin = np.inf
        ymax = -np.inf
        for t in range(n):
            v = y[t, p]
            if not np.isnan(v):
                v = float(v)
                dx = x[t] - mx
                dy = v - my
                sxx += dx * dx
                sxy += dx * dy
                syy += dy * dy
                ymin = min(ymin, v)
                ymax = max(ymax, v)
        # CV = s/|mean|, s with ddof = 1 (SCIENCE.md §5); undefined for a zero mean
        cv[p] = math.sqrt(syy / (cnt - 1)) / abs(my) if my != 0.0 else nan
        if ymin == ymax:
            # constant series: my may differ from the constant by an ulp and leave a spurious
            # ±1e-17 slope, so fix slope 0 and t 0 (p = 1) explicitly
            slope[p] = 0.0
            intercept[p] = ymin
            tstat[p] = 0.0
            continue
        b = sxy / sxx
        slope[p] = b
        intercept[p] = my - b * mx
        sse = max(syy - b * sxy, 0.0)     # Σ residual² = Syy − Sxy²/Sxx, clamped against roundoff
        if sse > 0.0:
            tstat[p] = b / math.sqrt(sse / (cnt - 2) / sxx)
        else:
            # perfect non-constant fit: t = ±∞ → p = 0
            tstat[p] = np.inf if b > 0 else (-np.inf if b < 0 else 0.0)


@njit(cache=True)
def _select(a, lo, hi, k):
    """In-place quickselect: afterwards a[k] is the k-th smallest of a[lo..hi], a[lo..k-1] ≤ a[k]."""
    while hi > lo:
        mid = (lo + hi) // 2
        # median-of-three pivot keeps already-sorted pair slopes (monotone series) away from O(m²)
        if a[mid] < a[lo]:
            a[mid], a[lo] = a[lo], a[mid]
        if a[hi] < a[lo]:
            a[hi], a[lo] = a[lo], a[hi]
        if a[hi] < a[mid]:
            a[hi], a[mid] = a[mid], a[hi]
        pivot = a[mid]
        i = lo
        j = hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            return


@njit(cache=True)
def _median_inplace(a, m):
    """Median of a[:m] (reorders a); the mean of the two middle values for even m, as np.median."""
    k = m // 2
    _select(a, 0, m - 1, k)
    upper = a[k]
    if m % 2 == 1:
        return upper
    lower = a[0]
    for i in range(1, k):     # after selection a[:k] ≤ a[k]; its maximum is the (k−1)-th value
        if a[i] > lower:
            lower = a[i]
    return 0.5 * (lower + upper)


@njit(parallel=True, cache=True, error_model="numpy")
def _mk_sen_core(y, x, min_valid, want_sen, n_chunks, sen, s_out, var_out, z_out, p_out):
    """Mann–Kendall S, Var(S), Z, p and (optionally) Sen's slope per pixel column of y (n, P).

    Scratch buffers (valid values, their x, the n(n−1)/2 pair slopes) are allocated once per chunk
    of pixels, so memory is O(threads·n²) + O(P), never O(n²·P).
    """
    n, npix = y.shape
    nan = np.nan
    for c in prange(n_chunks):
        p0 = (c * npix) // n_chunks
        p1 = ((c + 1) * npix) // n_chunks
        vals = np.empty(n)
        xs = np.empty(n)
        srt = np.empty(n)
        pairs = np.empty(max(n * (n - 1) // 2, 1))
        for p in range(p0, p1):
            m = 0
            for t in range(n):
                v = y[t, p]
                if not np.isnan(v):
                    vals[m] = v
                    xs[m] = x[t]
                    m += 1
            if m < min_valid:
                sen[p] = nan
                s_out[p] = nan
                var_out[p] = nan
                z_out[p] = nan
                p_out[p] = nan
                continue
            # S = Σ_{i<j} sign(y_j − y_i); pair slopes for Sen over the same valid pairs
            s = 0
            k = 0
            for i in range(m - 1):
                vi = vals[i]
                for j in range(i + 1, m):
                    d = vals[j] - vi
                    if d > 0:
                        s += 1
                    elif d < 0:
                        s -= 1
                    if want_sen:
                        pairs[k] = d / (xs[j] - xs[i])
                        k += 1
            if want_sen:
                sen[p] = _median_inplace(pairs, k)
            # tie groups: insertion sort of ≤ n values (same O(n²) as the pairs), then run lengths
            for i in range(m):
                v = vals[i]
                j = i - 1
                while j >= 0 and srt[j] > v:
                    srt[j + 1] = srt[j]
                    j -= 1
                srt[j + 1] = v
            ties = 0.0
            run = 1
            for i in range(1, m + 1):
                if i < m and srt[i] == srt[i - 1]:
                    run += 1
                else:
                    if run > 1:
                        ties += run * (run - 1) * (2 * run + 5)
                    run = 1
            # Var(S) = [n(n−1)(2n+5) − Σ t(t−1)(2t+5)]/18  (tie-corrected)
            var_s = (m * (m - 1) * (2.0 * m + 5.0) - ties) / 18.0
            if s > 0:
                z = (s - 1) / math.sqrt(var_s)       # continuity correction
            elif s < 0:
                z = (s + 1) / math.sqrt(var_s)
            else:
                z = 0.0
            s_out[p] = s
            var_out[p] = var_s
            z_out[p] = z
            # two-sided p = 2·(1 − Φ(|Z|)) = erfc(|Z|/√2), without the cancellation of 1 − Φ
            p_out[p] = math.erfc(abs(z) / _SQRT2)


@njit(cache=True)
def _fisher_jenks(xs, k):
    """Optimal k-class 1-D partition of sorted xs (Fisher 1958 / Jenks): minimal Σ within-class SSD.

    Dynamic programme over prefix sums of centred values, O(k·m²) time, O(k·m) memory. Returns
    the k−1 inner breaks as each class's maximum (jenkspy's convention).
    """
    m = xs.size
    mean = 0.0
    for i in range(m):
        mean += xs[i]
    mean /= m
    s1 = np.zeros(m + 1)
    s2 = np.zeros(m + 1)
    for i in range(m):
        d = xs[i] - mean                      # centring limits cancellation in Σx² − (Σx)²/w
        s1[i + 1] = s1[i] + d
        s2[i + 1] = s2[i] + d * d
    prev = np.empty(m)
    for j in range(m):
        a = s1[j + 1]
        prev[j] = max(s2[j + 1] - a * a / (j + 1), 0.0)
    back = np.zeros((k, m), dtype=np.int64)
    cur = np.empty(m)
    for c in range(1, k):
        # the last class only needs the full series end; earlier classes need every end j
        jlo = m - 1 if c == k - 1 else c
        for j in range(jlo, m):
            best = np.inf
            arg = c
            for i in range(c, j + 1):          # class c spans i..j; classes 0..c−1 cover 0..i−1
                w = j - i + 1
                a = s1[j + 1] - s1[i]
                cost = max(s2[j + 1] - s2[i] - a * a / w, 0.0)
                v = prev[i - 1] + cost
                if v < best:
                    best = v
                    arg = i
            cur[j] = best
            back[c, j] = arg
        for j in range(m):
            prev[j] = cur[j]
    breaks = np.empty(k - 1)
    j = m - 1
    for c in range(k - 1, 0, -1):
        i = back[c, j]
        breaks[c - 1] = xs[i - 1]
        j = i - 1
    return breaks


# --------------------------------------------------------------------------------------------------
# public kernels
# --------------------------------------------------------------------------------------------------

def _moments(y, x, min_valid):
    y2, pix_shape = _as_time_pixels(y)
    xv = _time_values(x, y2.shape[0])
    npix = y2.shape[1]
    n_valid = np.empty(npix, dtype=np.int64)
    slope, intercept, tstat, cv = (np.empty(npix) for _ in range(4))
    _moments_core(y2, xv, min_valid, n_valid, slope, intercept, tstat, cv)
    return n_valid, slope, intercept, tstat, cv, pix_shape


def _t_pvalue(tstat, n_valid):
    """Two-sided p of a t statistic with df = n − 2, vectorised (NaN t → NaN p)."""
    with np.errstate(all="ignore"):
        df = np.maximum(n_valid - 2, 1).astype("f8")
        return 2.0 * special.stdtr(df, -np.abs(tstat))


def ols_trend(y, x=None, min_valid: int = 3):
    """OLS trend per pixel (SCIENCE.md §5, seed 000 eq. 5): ``(slope, intercept, p_value)``.

    θ = (n·Σxᵢyᵢ − Σxᵢ·Σyᵢ)/(n·Σxᵢ² − (Σxᵢ)²) over the pixel's valid steps (computed in the
    algebraically identical centred form); intercept at x = 0 of the given ``x``; p from the two-sided
    t-test of θ = 0 with df = n_valid − 2 (as ``scipy.stats.linregress``).

    A perfect non-constant fit (zero residual variance) gives p = 0; a constant series gives slope 0,
    intercept = the constant and p = 1. y: (n, ...) time first; outputs have shape y.shape[1:].
    """
    min_valid = _check_min_valid(min_valid)
    n_valid, slope, intercept, tstat, _, shape = _moments(y, x, min_valid)
    p = _t_pvalue(tstat, n_valid)
    return slope.reshape(shape), intercept.reshape(shape), p.reshape(shape)


def coefficient_of_variation(y, min_valid: int = 3):
    """CV = s/|mean| of each pixel's valid steps, s with ddof = 1 (SCIENCE.md §5).

    NaN where the mean is exactly 0 or fewer than ``min_valid`` steps are valid. A mean near 0 gives a
    large CV by construction — the statistic is meant for positive quantities such as NEP sinks.
    """
    min_valid = _check_min_valid(min_valid)
    _, _, _, _, cv, shape = _moments(y, None, min_valid)
    return cv.reshape(shape)


def _mk_sen(y, x, min_valid, want_sen):
    y2, pix_shape = _as_time_pixels(y)
    xv = _time_values(x, y2.shape[0])
    npix = y2.shape[1]
    sen, s, var_s, z, p = (np.empty(npix) for _ in range(5))
    if not want_sen:
        sen.fill(np.nan)
    _mk_sen_core(y2, xv, min_valid, want_sen, _n_chunks(npix), sen, s, var_s, z, p)
    return sen, z, p, s, var_s, pix_shape


def sen_slope(y, x=None, min_valid: int = 3):
    """Theil–Sen slope per pixel: median of (y_j − y_i)/(x_j − x_i) over valid pairs i < j.

    SCIENCE.md §5 robust trend. With ``x=None`` (x = 0..n−1) it equals ``pymannkendall``'s slope,
    which also keeps each valid step at its original index when others are NaN.
    """
    min_valid = _check_min_valid(min_valid)
    sen, *_, shape = _mk_sen(y, x, min_valid, True)
    return sen.reshape(shape)


def mann_kendall(y, x=None, min_valid: int = 3):
    """Mann–Kendall test per pixel (SCIENCE.md §5): ``(z, p, s, var_s)``.

    S = Σ_{i<j} sign(y_j − y_i) over valid steps in time order; Var(S) = [n(n−1)(2n+5) −
    Σ t(t−1)(2t+5)]/18 with t the sizes of groups of exactly equal values; Z = (S − 1)/σ for S > 0,
    (S + 1)/σ for S < 0, 0 for S = 0; p = 2·(1 − Φ(|Z|)). Matches ``pymannkendall.original_test``.
    ``x`` only fixes the time order (it must increase), so it does not change the result.
    """
    min_valid = _check_min_valid(min_valid)
    _, z, p, s, var_s, shape = _mk_sen(y, x, min_valid, False)
    return z.reshape(shape), p.reshape(shape), s.reshape(shape), var_s.reshape(shape)


def natural_breaks(values, k: int = 5, max_sample: int = 10000, seed: int = 0) -> np.ndarray:
    """Jenks natural breaks (Fisher's optimal 1-D classification) → the k−1 inner breaks.

    Breaks are class maxima: class i holds values ≤ breaks[i] (and > breaks[i−1]), the convention of
    ``jenkspy.jenks_breaks(values, n_classes=k)[1:-1]``. NaNs are ignored. Above ``max_sample``
    finite values a sample of ``max_sample`` is drawn without replacement with a fixed ``seed`` —
    deterministic, and O(k·max_sample²) instead of O(k·N²). Fewer than k finite values → all-NaN
    breaks.

    Breaks are a property of the whole map: under dask compute them once on the whole field (or a
    sample of it) and classify chunks with ``change_class(..., method="breaks")``.
    """
    if int(k) != k or k < 2:
        raise ValueError(f"k must be an integer ≥ 2, got {k!r}")
    k = int(k)
    v = np.asarray(values, dtype="f8").ravel()
    v = v[np.isfinite(v)]
    if v.size < k:
        return np.full(k - 1, np.nan)
    if v.size > max_sample:
        v = np.random.default_rng(seed).choice(v, size=int(max_sample), replace=False)
    return _fisher_jenks(np.sort(v), k)


def _classify_by_breaks(slope, breaks):
    out = np.zeros(slope.shape, dtype=np.int8)
    ok = np.isfinite(slope)
    # right=True: a slope equal to a break falls in the lower class (breaks are class maxima)
    out[ok] = (np.digitize(slope[ok], breaks, right=True) + 1).astype(np.int8)
    return out


def change_class(slope, p_value=None, breaks=None, alpha: float = 0.05,
                 method: str = "significance", *, stable: float = 0.0,
                 max_sample: int = 10000, seed: int = 0) -> np.ndarray:
    """Five change classes of a trend slope (SCIENCE.md §5) as int8 codes 1..5, 0 = no data.

    method="significance" (default; needs ``p_value``): 1 significant decrease (slope < 0, p < alpha),
    2 slight decrease (slope < 0, p ≥ alpha), 3 stable (|slope| ≤ ``stable``, whatever p — with the
    default 0 only an exactly flat trend), 4 slight increase, 5 significant increase.
    method="breaks": 4 ascending ``breaks`` on the slope; class i holds breaks[i−2] < slope ≤ breaks[i−1].
    method="natural": the breaks are :func:`natural_breaks` (Jenks, k = 5) of the finite slopes given
    here, then as "breaks"; fewer than 5 finite slopes → all 0.
    NaN slope (or NaN p for "significance") → 0. Codes are named by :data:`CHANGE_CLASS_MEANINGS`.
    """
    slope = np.asarray(slope, dtype="f8")
    if method == "significance":
        if p_value is None:
            raise ValueError('method="significance" needs p_value')
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
        if stable < 0:
            raise ValueError(f"stable must be ≥ 0, got {stable!r}")
        p = np.asarray(p_value, dtype="f8")
        slope, p = np.broadcast_arrays(slope, p)
        out = np.zeros(slope.shape, dtype=np.int8)
        ok = np.isfinite(slope) & np.isfinite(p)
        sig = p < alpha
        out[ok & (slope < 0) & sig] = 1
        out[ok & (slope < 0) & ~sig] = 2
        out[ok & (slope > 0) & ~sig] = 4
        out[ok & (slope > 0) & sig] = 5
        # the stable band overrides significance: a tiny but significant slope is still "stable"
        out[ok & (np.abs(slope) <= stable)] = 3
        return out
    if method == "breaks":
        if breaks is None:
            raise ValueError('method="breaks" needs 4 ascending breaks')
        b = np.asarray(breaks, dtype="f8")
        if b.shape != (4,) or not np.all(np.isfinite(b)) or not np.all(np.diff(b) > 0):
            raise ValueError(f"breaks must be 4 finite strictly ascending values, got {breaks!r}")
        return _classify_by_breaks(slope, b)
    if method == "natural":
        b = natural_breaks(slope, k=5, max_sample=max_sample, seed=seed)
        if np.isnan(b).any():
            return np.zeros(slope.shape, dtype=np.int8)
        return _classify_by_breaks(slope, b)
    raise ValueError(f"unknown change-class method {method!r}; choose one of {CHANGE_CLASS_METHODS}")


def trend_stats(y, x=None, alpha: float = 0.05, min_valid: int = 3) -> dict:
    """All §5 statistics at once: one moments pass (OLS + CV) and one pair pass (Sen + MK).

    Returns a dict of arrays shaped y.shape[1:]: ``slope``, ``intercept``, ``p_value`` (OLS),
    ``sen_slope``, ``mk_z``, ``mk_p``, ``cv``, ``change_class`` (significance classes of the OLS slope
    and p at ``alpha``) and ``n_valid`` (int64 count of valid steps).
    """
    min_valid = _check_min_valid(min_valid)
    y2, pix_shape = _as_time_pixels(y)
    xv = _time_values(x, y2.shape[0])
    n_valid, slope, intercept, tstat, cv, _ = _moments(y2, xv, min_valid)
    p = _t_pvalue(tstat, n_valid)
    sen, z, mk_p, _, _, _ = _mk_sen(y2, xv, min_valid, True)
    cls = change_class(slope, p, alpha=alpha)
    out = {"slope": slope, "intercept": intercept, "p_value": p, "sen_slope": sen, "mk_z": z,
           "mk_p": mk_p, "cv": cv, "change_class": cls, "n_valid": n_valid}
    return {k: v.reshape(pix_shape) for k, v in out.items()}
