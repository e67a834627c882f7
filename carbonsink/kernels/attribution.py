"""Attribution of a trend to climate drivers and human activity — SCIENCE.md §6. NumPy, no I/O (the
t-test p-values come from the trend kernel's numba Student t).

Array layout: time is the **leading** axis. ``y`` is (n_time, ...pixels) and the drivers ``X`` are
stacked on a further leading axis, (k, n_time, ...pixels), in the caller's order (SCIENCE.md uses
P, T, SR) — or given as a sequence of k arrays shaped like ``y``, which is not copied. Outputs
carry the trailing pixel shape, with a leading axis of k (per driver) or k + 1 (per driver, then
human activity) where there is one. Internally everything is (n, P); the pixels with enough valid
steps are gathered and solved in closed form, a few thousand at a time (bounded memory whatever
the block size); there is no loop over pixels.

Missing data: per pixel only the time steps where ``y`` **and every driver** are finite are used, for
the trends as well as the regression, so that C_HA = dY/dt − Σ βᵢ·dXᵢ/dt compares slopes over the same
years. A pixel with fewer than ``min_valid`` such steps, a constant (or, for the detrended method,
purely linear) driver, or collinear drivers is NaN in every output (``dominant`` 0) — never an error
or a warning. The default ``min_valid`` is k + 3: the multiple regression spends k + 1 degrees of
freedom, and the t-test of the partial correlations needs df = n − k − 1 ≥ 2 (df = n − 4 for k = 3,
SCIENCE.md §6.5) to be more than a formality.

Time ``x`` (n_time,) defaults to 0, 1, ..., n − 1, so slopes are per step (per year for annual data);
pass the years when they are not consecutive.
"""
from __future__ import annotations

import numpy as np
from scipy.special import stdtr

from .trend import t_test_pvalue

METHODS = ("detrended", "raw")
DEFAULT_METHOD = "detrended"

# A driver whose (detrended) standard deviation is below this fraction of its root-mean-square size
# carries no signal beyond round-off: a constant series, or a pure trend once detrended.
_CONSTANT_RTOL = 1e-10
# Drivers whose correlation matrix has λmin/λmax below this are collinear: the β split is arbitrary.
_RCOND_MIN = 1e-10


# --- shapes -------------------------------------------------------------------------------------
def _time_axis(x, n):
    if x is None:
        return np.arange(n, dtype="f8")
    x = np.asarray(x, dtype="f8")
    if x.shape != (n,):
        raise ValueError(f"x has shape {x.shape}, expected ({n},) — one value per time step")
    if not np.all(np.isfinite(x)):
        raise ValueError("x (time) must be finite")
    return x


def _check_method(method):
    if method not in METHODS:
        raise ValueError(f"unknown attribution method {method!r}; choose one of {METHODS}")


def _stack(y, X):
    """y (n, ...) and X (k, n, ...) — or a sequence of k arrays shaped like y — → y2 (n, P), a list
    of k (n, P) driver arrays, the pixel shape. Views in the input's float dtype, never copies of
    the whole block (ints become float64)."""
    y = _float(y)
    if y.ndim < 1:
        raise ValueError("y needs a leading time axis")
    if isinstance(X, (list, tuple)):
        Xs = [_float(a) for a in X]
        if any(a.shape != y.shape for a in Xs):
            raise ValueError(f"drivers X {[a.shape for a in Xs]} must each have y's shape "
                             f"{y.shape}")
    else:
        X = _float(X)
        if X.ndim != y.ndim + 1 or X.shape[1:] != y.shape:
            raise ValueError(f"drivers X {X.shape} must be (k,) + y.shape = (k,) + {y.shape}")
        Xs = list(X)
    if not Xs:
        raise ValueError("at least one driver is needed")
    n = y.shape[0]
    return y.reshape(n, -1), [a.reshape(n, -1) for a in Xs], y.shape[1:]


def _float(a):
    a = np.asarray(a)
    return a if a.dtype in (np.float32, np.float64) else a.astype("f8")


def _min_valid(min_valid, k):
    if min_valid is None:
        return k + 3
    if min_valid < k + 2:
        raise ValueError(f"min_valid={min_valid} leaves no degree of freedom for the t-test; "
                         f"it must be at least k + 2 = {k + 2}")
    return int(min_valid)


# --- lines ------------------------------------------------------------------------------------
def _fit_line(vz, t, w, residuals: bool):
    """Per-pixel OLS line of v on t over the steps where w is True, **overwriting** vz.

    vz: (..., n, P) values already zeroed where w is False; t: (n,); w: (n, P) bool. Returns
    (e, slope): e is vz turned in place into the residuals from the line (``residuals=True``) or the
    series minus its mean, zero where w is False so that sums over time skip those steps; slope
    (..., P) is NaN where fewer than 2 steps are valid. In place, one slab at a time, because these
    (k+1, n, P) arrays are the kernel's memory and allocating fresh ones dominated its run time.
    """
    wf = w.astype("f8")
    n_eff = wf.sum(axis=0)
    inv_n = np.divide(1.0, n_eff, out=np.zeros_like(n_eff), where=n_eff > 0)
    dt = t[:, None] - (t @ wf) * inv_n
    dt *= wf
    e = vz.reshape((-1,) + vz.shape[-2:])
    mean = e.sum(axis=1) * inv_n
    for i in range(e.shape[0]):
        e[i] -= mean[i]
        e[i] *= wf
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = np.einsum("tp,itp->ip", dt, e) / np.einsum("tp,tp->p", dt, dt)
    if residuals:
        finite_slope = np.where(np.isfinite(slope), slope, 0.0)
        for i in range(e.shape[0]):
            e[i] -= finite_slope[i] * dt
    return vz, slope.reshape(vz.shape[:-2] + vz.shape[-1:])


def detrend(y, x=None, *, min_valid: int = 3):
    """Linear detrend along the leading (time) axis, per pixel, NaN-aware (SCIENCE.md §6.1).

    y: (n_time, ...). Returns the OLS residuals from a + b·x fitted to each pixel's finite steps;
    NaN at missing steps and in pixels with fewer than ``min_valid`` finite steps.
    """
    y = np.asarray(y, dtype="f8")
    if y.ndim < 1:
        raise ValueError("y needs a leading time axis")
    n = y.shape[0]
    t = _time_axis(x, n)
    y2 = y.reshape(n, -1)
    w = np.isfinite(y2)
    w &= w.sum(axis=0) >= max(int(min_valid), 2)
    resid, _ = _fit_line(np.where(w, y2, 0.0), t, w, residuals=True)
    return np.where(w, resid, np.nan).reshape(y.shape)


# --- correlation algebra ------------------------------------------------------------------------
def _fit_corr(R):
    """Standardised regression of variable 0 on the others from a correlation matrix R (..., m, m).

    Returns (b, r, ok): b (..., m−1) the standardised coefficients R_XX⁻¹·r_Xy, r (..., m−1) the
    partial correlations of variable 0 with each other variable given the rest, ok (...) False where R_XX is
    non-finite or collinear (then b and r are NaN).

    r = −P₀ᵢ/√(P₀₀Pᵢᵢ) with P = R⁻¹ (SCIENCE.md §6.5), evaluated through the block inverse of R: with
    A = R_XX⁻¹, b = A·r_Xy and s = 1 − r_Xy·b (the unexplained fraction of var y), P₀₀ = 1/s,
    P₀ᵢ = −bᵢ/s and Pᵢᵢ = Aᵢᵢ + bᵢ²/s, so r = bᵢ/√(s·Aᵢᵢ + bᵢ²). The same numbers, but a perfect fit
    (s = 0, R itself singular) gives r = ±1 instead of failing, and b is the β of §6.1 for free.
    """
    R = np.asarray(R, dtype="f8")
    m = R.shape[-1]
    if R.ndim < 2 or R.shape[-2] != m or m < 2:
        raise ValueError(f"R must be (..., m, m) with m ≥ 2, got {R.shape}")
    Rxx = R[..., 1:, 1:]
    rxy = R[..., 1:, 0]
    ok = np.isfinite(R).all(axis=(-1, -2))
    eye = np.eye(m - 1)
    Rxx = np.where(ok[..., None, None], Rxx, eye)
    rxy = np.where(ok[..., None], rxy, 0.0)
    lam = np.linalg.eigvalsh(Rxx)
    ok &= lam[..., 0] > _RCOND_MIN * lam[..., -1]
    Rxx = np.where(ok[..., None, None], Rxx, eye)
    A = np.linalg.inv(Rxx)
    b = np.einsum("...ij,...j->...i", A, rxy)
    s = np.maximum(1.0 - np.einsum("...i,...i->...", rxy, b), 0.0)
    a_ii = np.diagonal(A, axis1=-2, axis2=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = b / np.sqrt(s[..., None] * a_ii + b * b)
    b = np.where(ok[..., None], b, np.nan)
    r = np.where(ok[..., None], r, np.nan)
    return b, r, ok


def _t_and_p(r, df):
    """t = r·√(df/(1−r²)) and its two-sided p from Student's t with df degrees of freedom."""
    r = np.asarray(r, dtype="f8")
    df = np.broadcast_to(np.asarray(df, dtype="f8"), r.shape)
    good = np.isfinite(r) & (df > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(good, r * np.sqrt(df / (1.0 - r * r)), np.nan)   # |r| = 1 → ±inf, p = 0
    p = np.full(r.shape, np.nan)
    dfg = df[good]
    if np.all(np.mod(dfg, 1) == 0) and np.all(dfg >= 1):
        p[good] = t_test_pvalue(t[good], dfg)                # the integer df of §6.5, in numba
    else:
        p[good] = 2.0 * stdtr(dfg, -np.abs(t[good]))
    return t, p


def partial_corr_from_corr(R, df):
    """Partial correlations of variable 0 with each other variable, controlling all the rest.

    R: (..., m, m) correlation matrix of [Y, X₁, ..., X_k] (m = k + 1); df: degrees of freedom of the
    t-test, n − 2 − (k − 1) (n − 4 for k = 3, SCIENCE.md §6.5), broadcastable to R.shape[:-2].
    Returns (r, t, p), each (..., k): r = −P₀ᵢ/√(P₀₀Pᵢᵢ), P = R⁻¹; t = r·√(df/(1−r²)); p two-sided.
    Collinear X or a non-finite R give NaN.
    """
    _, r, _ = _fit_corr(R)
    df = np.asarray(df, dtype="f8")[..., None]
    t, p = _t_and_p(r, df)
    return r, t, p


# --- the regression shared by §6.1 and §6.5 -------------------------------------------------------
# Pixels solved together in one closed-form pass. The pass holds ~12 (k+1, n, batch) float64
# temporaries, so batching bounds the kernel's memory whatever the block size (≈ 16 MiB at n = 21,
# k = 3), and per-batch numpy overhead stays small against the work (< 1 %).
_BATCH = 4096


def _regress(y, X, x, method, min_valid):
    """Everything per pixel that §6 needs, computed once; arrays are (P,) or (k, P).

    Only the pixels with at least ``min_valid`` joint valid steps are solved — the others (ocean,
    outside China: about half of a bounding box) get NaN without costing anything — in batches of
    ``_BATCH`` gathered columns converted to float64 one batch at a time."""
    _check_method(method)
    y2, Xs, pix = _stack(y, X)
    k = len(Xs)
    n, npix = y2.shape
    t = _time_axis(x, n)
    min_valid = _min_valid(min_valid, k)

    w = np.isfinite(y2)
    for a in Xs:
        w &= np.isfinite(a)
    n_valid = w.sum(axis=0)
    out = {"beta": np.full((k, npix), np.nan), "r": np.full((k, npix), np.nan),
           "t": np.full((k, npix), np.nan), "p": np.full((k, npix), np.nan),
           "y_slope": np.full(npix, np.nan), "driver_slope": np.full((k, npix), np.nan)}
    todo = np.flatnonzero(n_valid >= min_valid)
    for start in range(0, todo.size, _BATCH):
        sel = todo[start:start + _BATCH]
        res = _regress_batch(y2[:, sel], [a[:, sel] for a in Xs], t, w[:, sel], n_valid[sel],
                             method)
        for key, v in res.items():
            out[key][..., sel] = v
    out.update(n_valid=n_valid, pix=pix)
    return out


def _regress_batch(y2, Xs, t, w, n_valid, method):
    """The closed-form §6 regression of pixels that all have enough valid steps (w: (n, B))."""
    k = len(Xs)
    vz = np.empty((k + 1,) + y2.shape)                      # (k+1, n, B): Y then the drivers
    vz[0] = y2
    for i, a in enumerate(Xs):
        vz[i + 1] = a
    vz[:, ~w] = 0.0
    size = np.sqrt(np.einsum("itp,itp->pi", vz, vz))        # (B, k+1) root-sum-square as given
    # the series the regression is run on: detrended, or only centred (raw)
    e, slope = _fit_line(vz, t, w, residuals=method == "detrended")
    S = np.einsum("itp,jtp->pij", e, e)                     # (B, k+1, k+1) sums of cross-products
    del vz, e
    sd = np.sqrt(np.diagonal(S, axis1=1, axis2=2))          # (B, k+1)
    varies = sd > _CONSTANT_RTOL * size                     # constant (or pure-trend) series
    ok = varies[:, 1:].all(axis=1)
    y_varies = varies[:, 0]

    # correlation matrix; a constant Y gets r_Xy = 0 so that β = 0 (what OLS gives) while its partial
    # correlations stay undefined (NaN below)
    scale = np.where(ok[:, None] & varies, sd, 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        R = S / (scale[:, :, None] * scale[:, None, :])
    R[:, 0, 1:] = np.where(y_varies[:, None], R[:, 0, 1:], 0.0)
    R[:, 1:, 0] = R[:, 0, 1:]
    diag = np.arange(k + 1)
    R[:, diag, diag] = 1.0
    R = np.where(ok[:, None, None], R, np.nan)

    b, r, fit_ok = _fit_corr(R)                              # (B, k)
    ok &= fit_ok
    with np.errstate(invalid="ignore", divide="ignore"):
        beta = b * sd[:, :1] / scale[:, 1:]                  # back from standardised units
    r = np.where(y_varies[:, None], r, np.nan)
    df = (n_valid - k - 1).astype("f8")[:, None]
    tstat, p = _t_and_p(r, df)

    nan = ~ok
    slope = np.where(nan, np.nan, slope)                    # (k+1, B)
    return {
        "beta": np.where(nan[:, None], np.nan, beta).T,
        "r": np.where(nan[:, None], np.nan, r).T,
        "t": np.where(nan[:, None], np.nan, tstat).T,
        "p": np.where(nan[:, None], np.nan, p).T,
        "y_slope": slope[0],
        "driver_slope": slope[1:],
    }


def _shape(a, pix, lead=()):
    return a.reshape(tuple(lead) + tuple(pix))


# --- public kernels, SCIENCE.md §6 numbering ------------------------------------------------------
def sensitivities(y, X, x=None, method: str = DEFAULT_METHOD, *, min_valid: int | None = None):
    """βᵢ = ∂Y/∂Xᵢ from Y = β₀ + Σ βᵢXᵢ per pixel (SCIENCE.md §6.1).

    ``method="detrended"`` (default) regresses linearly detrended Y on linearly detrended X, so a
    human trend in Y is not credited to a driver that happens to trend too; ``"raw"`` uses the series as
    they are (as much of the literature does). y (n, ...), X (k, n, ...) → beta (k, ...).
    """
    out = _regress(y, X, x, method, min_valid)
    return _shape(out["beta"], out["pix"], out["beta"].shape[:1])


def contributions(beta, driver_slopes, y_slope):
    """Cᵢ = βᵢ·dXᵢ/dt, C_climate = Σ Cᵢ, C_HA = dY/dt − C_climate (SCIENCE.md §6.2).

    beta, driver_slopes: (k, ...); y_slope: (...). Returns (C (k, ...), C_climate, C_HA).
    """
    C = np.asarray(beta, dtype="f8") * np.asarray(driver_slopes, dtype="f8")
    C_climate = C.sum(axis=0)
    C_HA = np.asarray(y_slope, dtype="f8") - C_climate
    return C, C_climate, C_HA


def relative_shares(C, C_HA):
    """ηᵢ = |Cᵢ| / (Σ|Cⱼ| + |C_HA|) × 100 %, drivers then human activity (SCIENCE.md §6.3).

    Returns (k + 1, ...) in percent; NaN where any contribution is missing or all are zero.
    """
    a = np.abs(np.concatenate([np.asarray(C, dtype="f8"),
                               np.asarray(C_HA, dtype="f8")[None]]))
    total = a.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, 100.0 * a / total, np.nan)


def dominant_factor(C, C_HA):
    """Code of the largest |contribution| (SCIENCE.md §6.4): 1..k the drivers in order, k + 1 human
    activity, 0 no data (a contribution missing, or all zero). int8; ties go to the first."""
    a = np.abs(np.concatenate([np.asarray(C, dtype="f8"),
                               np.asarray(C_HA, dtype="f8")[None]]))
    good = np.isfinite(a).all(axis=0) & (a.sum(axis=0) > 0)
    code = np.argmax(np.where(np.isfinite(a), a, -1.0), axis=0) + 1
    return np.where(good, code, 0).astype("i1")


def partial_correlations(y, X, x=None, method: str = DEFAULT_METHOD, *,
                         min_valid: int | None = None):
    """Partial correlation of Y with each Xᵢ controlling the other drivers (SCIENCE.md §6.5).

    On the same series as :func:`sensitivities` (detrended or raw per ``method``). For k = 3 this is
    the second-order r_{12·34}. t-test with df = n − 2 − (k − 1), n the pixel's valid steps.
    Returns (r, t, p), each (k, ...); p two-sided.
    """
    out = _regress(y, X, x, method, min_valid)
    lead = out["r"].shape[:1]
    return tuple(_shape(out[key], out["pix"], lead) for key in ("r", "t", "p"))


def attribute(y, X, x=None, method: str = DEFAULT_METHOD, *, min_valid: int | None = None) -> dict:
    """The whole of SCIENCE.md §6 for y (n, ...) and drivers X (k, n, ...) — or a sequence of k
    arrays shaped like y — shared pieces once.

    Keys (k-leading where per driver, k + 1 with human activity last for ``share``):
    ``beta`` (k, ...), ``C`` (k, ...), ``C_climate``, ``C_HA``, ``y_slope``,
    ``driver_slope`` (k, ...),    ``share`` (k + 1, ...) %, ``dominant`` int8 (1..k drivers, k + 1 human, 0 no data),
    ``pcorr_r``, ``pcorr_t``, ``pcorr_p`` (k, ...), ``n_valid`` (...) time steps used (counted before
    any pixel is rejected). Slopes are per unit of ``x``.
    """
    out = _regress(y, X, x, method, min_valid)
    pix = out["pix"]
    C, C_climate, C_HA = contributions(out["beta"], out["driver_slope"], out["y_slope"])
    k = C.shape[0]
    return {
        "beta": _shape(out["beta"], pix, (k,)),
        "C": _shape(C, pix, (k,)),
        "C_climate": _shape(C_climate, pix),
        "C_HA": _shape(C_HA, pix),
        "y_slope": _shape(out["y_slope"], pix),
        "driver_slope": _shape(out["driver_slope"], pix, (k,)),
        "share": _shape(relative_shares(C, C_HA), pix, (k + 1,)),
        "dominant": _shape(dominant_factor(C, C_HA), pix),
        "pcorr_r": _shape(out["r"], pix, (k,)),
        "pcorr_t": _shape(out["t"], pix, (k,)),
        "pcorr_p": _shape(out["p"], pix, (k,)),
        "n_valid": _shape(out["n_valid"], pix),
    }
