"""Geodetector: spatial stratified heterogeneity of a response by factors — SCIENCE.md §7 drivers.

Wang, J.-F., Zhang, T.-L., Fu, B.-J. (2016) A measure of spatial stratified heterogeneity, Ecol.
Indic. 67: 250–256; Wang, J.-F., Xu, C.-D. (2017) Geodetector: principle and prospective, Acta Geogr.
Sin. 72: 116–134. Pure NumPy/SciPy, no I/O.

Factor detector, for a response y (N valid cells) stratified by a factor into L strata h:
    q = 1 − Σ_h N_h σ_h² / (N σ²)        (σ² population variances; q ∈ [0, 1])
    F = (N − L)/(L − 1) · q/(1 − q)
    p = P(F' > F), F' ~ non-central F(L − 1, N − L; λ),
    λ = [Σ_h ȳ_h² − (Σ_h √N_h ȳ_h)² / N] / σ²
(λ as in Wang et al. 2016 and the R/Python ``geodetector`` packages; it is not shift-invariant in y,
so it is computed from the raw stratum means.)

Interaction detector: q(X1 ∩ X2) on the overlay of the two factors' strata, against q1, q2:
    0 nonlinear-weaken      q12 < min(q1, q2)
    1 uni-variable weaken   min ≤ q12 ≤ max
    2 bi-variable enhance   max < q12 < q1 + q2
    3 independent           q12 = q1 + q2 (within ``tol``)
    4 nonlinear-enhance     q12 > q1 + q2
Comparisons are within ``tol`` (1e-10); on the boundary q12 = max, reached when one factor refines
the other or explains nothing (then also q12 = q1 + q2), the type is uni-variable weaken, as in the
``geodetector`` package. On the same cells an overlay never raises the within-strata variance, so
q12 ≥ max(q1, q2): the weakening types occur only at that boundary or when ``min_stratum_size``
drops small strata of the overlay.

Strata: integer labels ≥ 0; a label < 0 (the −1 of :func:`discretize` for NaN) or a NaN response
leaves the cell out. ``min_stratum_size`` (default 1, the formula as published) drops strata with
fewer cells from N, σ² and L; 2 reproduces the Python ``geodetector`` package, which drops
single-cell strata (their within variance is 0, which inflates q).

Discretisation of continuous factors (:func:`discretize`): ``quantile`` — k classes with breaks at the
j/k quantiles (j = 1…k−1, NumPy's linear interpolation, repeated breaks merged: mapclassify's
``Quantiles``, the ``geodetector`` package's default); ``natural`` — Jenks/Fisher optimal breaks
(:func:`carbonsink.kernels.trend.natural_breaks`, exact up to 10 000 values, a fixed-seed sample
beyond); ``equal`` — equal intervals; or explicit ``breaks``. Classes are right-closed: class i holds
breaks[i−1] < x ≤ breaks[i] (jenkspy's and mapclassify's convention), labels 0…k−1, NaN → −1.
Categorical factors (LULC) are used as they are (their codes are the strata).
"""
from __future__ import annotations

import numpy as np
from scipy import stats as _stats

from .trend import natural_breaks

__all__ = [
    "DISCRETISATION_METHODS",
    "INTERACTION_TYPES",
    "class_breaks",
    "discretize",
    "factor_detector",
    "factor_from_partials",
    "interaction_detector",
    "interaction_matrix",
    "interaction_type",
    "strata_partials",
]

INTERACTION_TYPES = ("nonlinear-weaken", "uni-variable weaken", "bi-variable enhance",
                     "independent", "nonlinear-enhance")
DISCRETISATION_METHODS = ("quantile", "natural", "equal")


def class_breaks(values, k: int = 5, method: str = "quantile", *, max_sample: int = 10000,
                 seed: int = 0) -> np.ndarray:
    """Inner breaks (≤ k − 1, ascending, unique) of ``values`` (NaN ignored); see the module doc."""
    if int(k) != k or k < 2:
        raise ValueError(f"k must be an integer ≥ 2, got {k!r}")
    k = int(k)
    v = np.asarray(values, dtype="f8").ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        raise ValueError("no finite values to discretise")
    k = min(k, np.unique(v).size)
    if k < 2:
        return np.empty(0)
    if method == "quantile":
        b = np.quantile(v, np.arange(1, k) / k)
    elif method == "natural":
        b = natural_breaks(v, k, max_sample=max_sample, seed=seed)
    elif method == "equal":
        b = v.min() + (v.max() - v.min()) * np.arange(1, k) / k
    else:
        raise ValueError(f"method must be one of {DISCRETISATION_METHODS}, got {method!r}")
    return np.unique(b[b < v.max()])


def discretize(values, k: int = 5, method: str = "quantile", *, breaks=None, **kw) -> np.ndarray:
    """Strata labels 0…k−1 (int64) of a continuous factor, −1 for NaN; ``breaks`` overrides k/method
    (compute breaks once on the whole map — or a sample — and label every chunk with them)."""
    x = np.asarray(values, dtype="f8")
    b = class_breaks(x, k, method, **kw) if breaks is None else np.asarray(breaks, dtype="f8")
    lab = np.digitize(x, b, right=True).astype(np.int64)
    lab[~np.isfinite(x)] = -1
    return lab


def _labels(strata, y):
    s = np.asarray(strata)
    if s.dtype.kind == "f":
        ok = np.isfinite(s)
        if not np.array_equal(s[ok], np.round(s[ok])):
            raise ValueError("strata must be integer labels (discretise continuous factors first)")
        s = np.where(ok, s, -1)
    s = s.astype(np.int64).ravel()
    y = np.asarray(y, dtype="f8").ravel()
    if s.size != y.size:
        raise ValueError(f"strata ({s.size}) and response ({y.size}) differ in size")
    return s, y


def strata_partials(y, strata, n_strata: int | None = None, shift: float = 0.0) -> np.ndarray:
    """Per-stratum sufficient statistics (n_strata, 3): N_h, Σ(y − shift), Σ(y − shift)² over the
    valid cells of a block; blocks are combined by addition (labels must mean the same strata in
    every block, and every block must use the same ``shift``, ideally close to the mean of y)."""
    s, y = _labels(strata, y)
    ok = (s >= 0) & np.isfinite(y)
    s, d = s[ok], y[ok] - shift
    top = int(s.max()) + 1 if s.size else 0
    n = top if n_strata is None else int(n_strata)
    if top > n:
        raise ValueError(f"strata labels reach {top - 1} but n_strata is {n}")
    return np.stack([np.bincount(s, minlength=n), np.bincount(s, weights=d, minlength=n),
                     np.bincount(s, weights=d * d, minlength=n)], axis=1).astype("f8")


def factor_from_partials(partials, shift: float = 0.0, *, min_stratum_size: int = 1) -> dict:
    """Factor detector from summed :func:`strata_partials` → dict q, F, p, lambda, L, N.

    Fewer than 2 strata → q 0, p 1 (nothing to explain); a constant response → q NaN.
    """
    a = np.asarray(partials, dtype="f8")
    a = a[a[:, 0] >= max(1, int(min_stratum_size))]
    nh, s1, s2 = a[:, 0], a[:, 1], a[:, 2]
    L = int(nh.size)
    N = float(nh.sum())
    if L < 2:
        return {"q": 0.0, "F": np.nan, "p": 1.0, "lambda": np.nan, "L": L, "N": int(N)}
    mean_d = s1.sum() / N
    sst = s2.sum() - N * mean_d * mean_d
    ssw = float(np.sum(np.clip(s2 - s1 * s1 / nh, 0.0, None)))
    if not sst > 0:
        return {"q": np.nan, "F": np.nan, "p": np.nan, "lambda": np.nan, "L": L, "N": int(N)}
    q = float(min(1.0, max(0.0, 1.0 - ssw / sst)))
    means = s1 / nh + shift
    lam = float((np.sum(means ** 2) - np.sum(np.sqrt(nh) * means) ** 2 / N) / (sst / N))
    if q >= 1.0:
        F, p = np.inf, 0.0
    else:
        F = (N - L) / (L - 1) * q / (1.0 - q)
        p = float(_stats.ncf.sf(F, L - 1, N - L, max(lam, 0.0))) if N > L else np.nan
    return {"q": q, "F": float(F), "p": p, "lambda": lam, "L": L, "N": int(N)}


def factor_detector(y, strata, *, min_stratum_size: int = 1) -> dict:
    """q, F, p (non-central F), λ, L, N of one stratified factor over the valid cells (module doc)."""
    s, yv = _labels(strata, y)
    ok = (s >= 0) & np.isfinite(yv)
    shift = float(yv[ok].mean()) if ok.any() else 0.0
    return factor_from_partials(strata_partials(yv, s, shift=shift), shift,
                                min_stratum_size=min_stratum_size)


def _overlay(s1, s2):
    ok = (s1 >= 0) & (s2 >= 0)
    base = int(s2.max()) + 1 if ok.any() else 1
    _, inv = np.unique(np.where(ok, s1 * base + s2, -1), return_inverse=True)
    return np.where(ok, inv.ravel() - (0 if ok.all() else 1), -1)


def _interaction_type(q1, q2, q12, tol):
    # boundaries as the geodetector package: q12 = max (one factor refines the other, or one
    # explains nothing) is uni-variable weaken; "independent" is q12 = q1 + q2 within tol
    if not (np.isfinite(q1) and np.isfinite(q2) and np.isfinite(q12)):
        return -1
    if q12 < min(q1, q2) - tol:
        return 0
    if q12 <= max(q1, q2) + tol:
        return 1
    if abs(q12 - (q1 + q2)) <= tol:
        return 3
    if q12 < q1 + q2:
        return 2
    return 4


def interaction_type(q1, q2, q12, tol: float = 1e-10) -> int:
    """The interaction type code (0…4, :data:`INTERACTION_TYPES`; −1 if any q is NaN) of q1, q2
    and q12 = q(X1 ∩ X2) — for q values computed elsewhere (e.g. from summed block partials)."""
    return _interaction_type(q1, q2, q12, tol)


def interaction_detector(y, strata1, strata2, *, min_stratum_size: int = 1,
                         tol: float = 1e-10) -> dict:
    """q1, q2, q12 = q(X1 ∩ X2), the interaction type (0…4, :data:`INTERACTION_TYPES`) and its name.

    All three q use the same cells: those valid in y and in both factors.
    """
    s1, y1 = _labels(strata1, y)
    s2, _ = _labels(strata2, y)
    ok = (s1 >= 0) & (s2 >= 0) & np.isfinite(y1)
    s1 = np.where(ok, s1, -1)
    s2 = np.where(ok, s2, -1)
    q1 = factor_detector(y1, s1, min_stratum_size=min_stratum_size)["q"]
    q2 = factor_detector(y1, s2, min_stratum_size=min_stratum_size)["q"]
    q12 = factor_detector(y1, _overlay(s1, s2), min_stratum_size=min_stratum_size)["q"]
    t = _interaction_type(q1, q2, q12, tol)
    return {"q1": q1, "q2": q2, "q12": q12, "type": t,
            "name": INTERACTION_TYPES[t] if t >= 0 else "undefined"}


def interaction_matrix(y, strata, *, min_stratum_size: int = 1, tol: float = 1e-10):
    """For factors ``strata`` (n_factors, …): (q (n, n) with q_i on the diagonal and q(Xi ∩ Xj)
    off it, type codes (n, n), −1 on the diagonal). Each pair uses its own common valid cells."""
    strata = [np.asarray(s) for s in strata]
    n = len(strata)
    q = np.full((n, n), np.nan)
    types = np.full((n, n), -1, dtype=np.int64)
    for i in range(n):
        q[i, i] = factor_detector(y, strata[i], min_stratum_size=min_stratum_size)["q"]
        for j in range(i + 1, n):
            r = interaction_detector(y, strata[i], strata[j], min_stratum_size=min_stratum_size,
                                     tol=tol)
            q[i, j] = q[j, i] = r["q12"]
            types[i, j] = types[j, i] = r["type"]
    return q, types
