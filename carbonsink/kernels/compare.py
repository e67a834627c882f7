"""Pure NumPy kernels of the bottom-up vs top-down comparison (SCIENCE.md §8, seed 001).

Three families, none of which does I/O or knows xarray:

**Conservative regridding between regular lat/lon grids.** A lat/lon cell's area is
R²·Δλ·(sin φ₂ − sin φ₁) (SCIENCE.md §0), so the area two cells share is the product of their
overlap in longitude and their overlap in sin(latitude): the weights are *separable*. A target cell
(i, j) takes Σ_s wy[i, s_y]·wx[j, s_x]·v[s] with wy = sin-latitude overlap / the target's sin-latitude
span and wx = longitude overlap / the target's width, i.e. ``wy @ v @ wx.T``. Two small 1-D matrices
(target rows × source rows, target columns × source columns) replace the dense (target cells ×
source cells) matrix: 0.0727° China → 1° is 37×510 and 63×870 numbers, not 2 331 × 443 700. Area
integrals are conserved exactly (to rounding, ~1e-15): Σ_t A_t·out_t = Σ_s v_s·A(s ∩ target box).
Missing (NaN) source cells drop out and each target cell is renormalised over the valid overlap
(ILAMB and ESMF "fracarea" behaviour); a target cell is NaN only when no valid source cell overlaps
it. Where source cells are missing the integral is then that of the filled field, by design.

**ILAMB metrics** (Collier et al. 2018, JAMES 10, 2731; ILAMB 2.x ``ilamblib.AnalysisMeanStateSpace``),
on monthly series of whole years starting in January, cell by cell, then area-weighted means over
the cells of a region ("score the map, then integrate", as ILAMB does):

- bias = mean(com) − mean(ref); RMSE = √mean((com − ref)²); centred RMSE
  crmse = √mean(((com − m̄_com) − (ref − m̄_ref))²); crms_ref = √mean((ref − m̄_ref)²);
- bias score exp(−|bias|/crms_ref); RMSE score exp(−crmse/crms_ref);
- seasonal phase = month of peak uptake of the mean annual cycle (fluxes are sink-positive, so the
  maximum); score (1 + cos(2π·|Δphase|/12))/2 with Δphase the circular shift in months (ILAMB uses
  days of the year and 365; months are the resolution of these products);
- interannual variability IAV = √mean(anomaly²), anomalies from the mean annual cycle (Collier
  2018 eq. 14); score exp(−|IAV_com − IAV_ref|/IAV_ref);
- spatial distribution (Taylor) of the period-mean maps: area-weighted σ̂ = σ_com/σ_ref and
  correlation R, score 2(1 + R)/(σ̂ + 1/σ̂)²;
- overall score: ILAMB 2.x's weighted mean, weights bias 1, RMSE 2, seasonal cycle 1,
  interannual variability 1, spatial distribution 1 (``Confrontation.__init__``, ``self.weight`` in
  rubisco-sfa/ILAMB ``src/ILAMB/Confrontation.py``; Collier et al. 2018 eq. 24). As in ILAMB's
  ``computeOverallScore``, scores that cannot be computed (a one-cell region has no spatial
  distribution) are left out and the remaining weights renormalised. (ilamb3, the rewrite, averages
  its scores unweighted; we keep the 2.x weights the published benchmark tables used.)

**Ensemble statistics and region sums**: mean, s.d. (ddof 1), min, max and spread (max − min) over
members; sums of amount × cell area by integer region labels (bincount, no dense label matrix).
"""
from __future__ import annotations

import numpy as np

#: ILAMB 2.x overall-score weights (rubisco-sfa/ILAMB src/ILAMB/Confrontation.py, self.weight)
ILAMB_WEIGHTS = {"bias_score": 1.0, "rmse_score": 2.0, "phase_score": 1.0, "iav_score": 1.0,
                 "taylor_score": 1.0}
#: the scalar metrics :func:`compare_metrics` returns, in table order
METRICS = ("n_cells", "ref_mean", "com_mean", "bias", "rmse", "crmse", "crms_ref", "correlation",
           "sd_ratio", "series_correlation", "ref_phase", "com_phase", "phase_shift", "ref_iav",
           "com_iav", "bias_score", "rmse_score", "phase_score", "iav_score", "taylor_score",
           "overall_score")
#: weights below this share of a target cell are rounding slivers of coincident edges
MIN_WEIGHT = 1e-12
#: resolutions are snapped to whole divisions of these spans (1° → 0.5°, 0.1°…; 360° → 0.0727°=4/55°)
_SPANS = (1.0, 360.0)


# --- grids and weights --------------------------------------------------------------------------
def regular_edges(centres, rtol: float = 1e-3) -> np.ndarray:
    """Cell edges (n + 1, in the order of ``centres``) of a regular axis of cell centres.

    Real files store coordinates in float32 (errors ~1e-6°) or round them: the resolution is
    snapped to 1/k or 360/k degrees for a whole k when within 1e-6 relative (0.5°, 0.1°,
    0.0727° = 360°/4950), and the first edge to a whole multiple of it counted from 0°, −90° or
    −180° when within 1e-3 of a cell, so edges are exact multiples (i·360/k computed as one
    division: grids that nest share edges bit for bit). ValueError for fewer than two centres or irregular spacing.
    """
    c = np.asarray(centres, dtype="f8").ravel()
    if c.size < 2:
        raise ValueError("an axis needs at least two cell centres to define its edges")
    step = (c[-1] - c[0]) / (c.size - 1)
    if step == 0 or not np.all(np.abs(np.diff(c) - step) <= abs(step) * rtol):
        raise ValueError(f"cell centres are not regularly spaced (step {step:g}, "
                         f"steps from {np.diff(c).min():g} to {np.diff(c).max():g})")
    res, sign = abs(step), np.sign(step)
    for span in _SPANS:
        k = span / res
        if abs(k - round(k)) <= 1e-6 * k:
            k = round(k)
            # edges on multiples of the resolution from 0° or from the pole/antimeridian
            # (a 2475-row global grid has edges at −90° + i·180°/2475, never at 0°)
            for anchor in (0.0, -90.0, -180.0):
                first = (c[0] - step / 2 - anchor) * k / span
                if abs(first - round(first)) <= 1e-3:
                    idx = round(first) + sign * np.arange(c.size + 1)
                    return anchor + idx * span / k
            step = sign * span / k
            return c[0] - step / 2 + step * np.arange(c.size + 1)
    return c[0] - step / 2 + step * np.arange(c.size + 1)


def _overlap(dst_edges: np.ndarray, src_edges: np.ndarray) -> np.ndarray:
    """Overlap length of every (dst cell, src cell) pair of two 1-D edge arrays (any order)."""
    d_lo, d_hi = np.minimum(dst_edges[:-1], dst_edges[1:]), np.maximum(dst_edges[:-1], dst_edges[1:])
    s_lo, s_hi = np.minimum(src_edges[:-1], src_edges[1:]), np.maximum(src_edges[:-1], src_edges[1:])
    ov = np.minimum(d_hi[:, None], s_hi[None, :]) - np.maximum(d_lo[:, None], s_lo[None, :])
    return np.clip(ov, 0.0, None)


def _normalise(ov: np.ndarray, width: np.ndarray) -> np.ndarray:
    w = ov / width[:, None]
    w[w < MIN_WEIGHT] = 0.0
    return w


def lat_weights(dst_edges, src_edges) -> np.ndarray:
    """(n_dst, n_src): share of each target row's sin-latitude span that each source row covers.

    Edges in degrees, any order (north → south or south → north); clipped to ±90°."""
    d = np.sin(np.deg2rad(np.clip(np.asarray(dst_edges, "f8"), -90.0, 90.0)))
    s = np.sin(np.deg2rad(np.clip(np.asarray(src_edges, "f8"), -90.0, 90.0)))
    return _normalise(_overlap(d, s), np.abs(np.diff(d)))


def lon_weights(dst_edges, src_edges) -> np.ndarray:
    """(n_dst, n_src): share of each target column's width that each source column covers, with
    the source also shifted by ±360° so −180…180 and 0…360 conventions meet."""
    d = np.asarray(dst_edges, "f8")
    s = np.asarray(src_edges, "f8")
    ov = sum(_overlap(d, s + shift) for shift in (-360.0, 0.0, 360.0))
    return _normalise(ov, np.abs(np.diff(d)))


def coverage(wy: np.ndarray, wx: np.ndarray) -> np.ndarray:
    """(n_dst_lat, n_dst_lon): share of each target cell's area inside the source grid's extent."""
    return wy.sum(axis=1)[:, None] * wx.sum(axis=1)[None, :]


def active_window(w: np.ndarray) -> slice:
    """The source indices (a slice) with any nonzero weight: the part of a file worth reading."""
    used = np.flatnonzero(w.any(axis=0))
    if used.size == 0:
        return slice(0, 0)
    return slice(int(used[0]), int(used[-1]) + 1)


def separable_apply(wy: np.ndarray, wx: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``wy @ v @ wx.T`` over the last two axes of ``v`` (any leading dims) as two 2-D matrix
    products: one BLAS call each instead of one per leading index (small stacked products thrash
    BLAS threads on a busy machine)."""
    v = np.asarray(v, dtype="f8")
    lead, (ny, nx) = v.shape[:-2], v.shape[-2:]
    n = int(np.prod(lead)) if lead else 1
    x = v.reshape(n * ny, nx) @ wx.T                                   # (n·ny, mx)
    mx = x.shape[1]
    x = x.reshape(n, ny, mx).transpose(1, 0, 2).reshape(ny, n * mx)
    out = (wy @ x).reshape(wy.shape[0], n, mx).transpose(1, 0, 2)      # (n, my, mx)
    return np.ascontiguousarray(out).reshape(lead + (wy.shape[0], mx))


def conservative_regrid(values, wy: np.ndarray, wx: np.ndarray) -> np.ndarray:
    """Area-weighted mean of ``values`` (..., n_src_lat, n_src_lon) on the target cells
    (..., n_dst_lat, n_dst_lon): ``wy @ v @ wx.T`` over valid (finite) source cells, renormalised
    by their overlap; NaN where no valid source cell overlaps the target cell. Leading dims
    (time, member) are batched by matmul, never looped."""
    v = np.asarray(values, dtype="f8")
    valid = np.isfinite(v)
    filled = np.where(valid, v, 0.0)
    num = separable_apply(wy, wx, filled)
    first = valid.reshape((-1,) + valid.shape[-2:])[0]
    if valid.all():
        den = np.broadcast_to(coverage(wy, wx), num.shape)
    elif (valid == first).all():
        # the same cells are missing at every step (a land mask): one denominator
        den = np.broadcast_to(separable_apply(wy, wx, first.astype("f8")), num.shape)
    else:
        den = separable_apply(wy, wx, valid.astype("f8"))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > MIN_WEIGHT, num / np.where(den > MIN_WEIGHT, den, 1.0), np.nan)


def majority_regrid(classes, wy: np.ndarray, wx: np.ndarray, codes, nodata: int = 0,
                    tie_rtol: float = 1e-9) -> np.ndarray:
    """The class covering the largest share of each target cell (area-true; ties within
    ``tie_rtol`` go to the smallest code), ``nodata`` where no classified source cell overlaps.
    ``classes`` (n_src_lat, n_src_lon) integers; ``codes`` the class codes (``nodata`` excluded)."""
    cls = np.asarray(classes)
    codes = np.sort(np.asarray([c for c in codes if c != nodata]))
    known = np.isin(cls, codes)
    onehot = np.where(known[None], (cls[None] == codes[:, None, None]).astype("f8"), np.nan)
    share = conservative_regrid(onehot, wy, wx)            # (ncodes, n_dst_lat, n_dst_lon)
    best = np.nanmax(np.where(np.isfinite(share), share, -1.0), axis=0)
    pick = np.argmax(share >= best[None] - tie_rtol, axis=0)
    out = codes[pick].astype(cls.dtype if np.issubdtype(cls.dtype, np.integer) else "i4")
    return np.where(best > 0, out, nodata)


# --- totals ---------------------------------------------------------------------------------------
def region_sums(values, area, labels, nlabels: int) -> tuple[np.ndarray, np.ndarray]:
    """Σ value·area and Σ valid area per region label 1..nlabels (0 = no region).

    ``values`` (..., ny, nx) amounts per m² (NaN = no data, counted as 0), ``area`` (ny, nx) or
    (ny,) m² per row, ``labels`` (ny, nx) integers. Returns two arrays (..., nlabels)."""
    v = np.asarray(values, dtype="f8")
    lead = v.shape[:-2]
    area = np.asarray(area, dtype="f8")
    area = np.broadcast_to(area[:, None] if area.ndim == 1 else area, v.shape[-2:])
    lab = np.asarray(labels).astype("i8").ravel()
    if lab.size and (lab.min() < 0 or lab.max() > nlabels):
        raise ValueError(f"region labels must lie in 0..{nlabels}")
    flat = v.reshape(-1, lab.size)
    n = flat.shape[0]
    idx = (lab[None, :] + (nlabels + 1) * np.arange(n)[:, None]).ravel()
    finite = np.isfinite(flat)
    amount = np.where(finite, flat, 0.0) * area.ravel()[None, :]
    sums = np.bincount(idx, weights=amount.ravel(), minlength=n * (nlabels + 1))
    valid = np.bincount(idx, weights=(finite * area.ravel()[None, :]).ravel(),
                        minlength=n * (nlabels + 1))
    shape = lead + (nlabels + 1,)
    return sums.reshape(shape)[..., 1:], valid.reshape(shape)[..., 1:]


# --- ensemble statistics --------------------------------------------------------------------------
def ensemble_statistics(x, axis: int = 0, ddof: int = 1) -> dict[str, np.ndarray]:
    """Mean, s.d. (``ddof``; NaN with fewer than ddof + 1 members), min, max and spread
    (max − min) across members along ``axis``."""
    x = np.asarray(x, dtype="f8")
    n = x.shape[axis]
    with np.errstate(invalid="ignore", divide="ignore"):
        sd = x.std(axis=axis, ddof=ddof) if n > ddof else np.full(
            np.delete(np.array(x.shape), axis), np.nan)
    lo, hi = x.min(axis=axis), x.max(axis=axis)
    return {"mean": x.mean(axis=axis), "sd": sd, "min": lo, "max": hi, "spread": hi - lo}


# --- metrics ----------------------------------------------------------------------------------------
def mean_annual_cycle(x, months: int = 12) -> np.ndarray:
    """(months, ...) mean over years of a (time, ...) monthly series of whole years from January."""
    x = np.asarray(x, dtype="f8")
    if x.shape[0] % months:
        raise ValueError(f"a series of {x.shape[0]} months is not whole years")
    return x.reshape((x.shape[0] // months, months) + x.shape[1:]).mean(axis=0)


def peak_month(cycle) -> np.ndarray:
    """Month (1..12) of the maximum of a (12, ...) annual cycle: peak uptake of a sink-positive
    flux. Ties: the earliest month."""
    return np.argmax(np.asarray(cycle), axis=0) + 1


def phase_shift(phase_a, phase_b, months: int = 12) -> np.ndarray:
    """Circular distance in months between two peak months (0..6)."""
    d = np.abs(np.asarray(phase_a) - np.asarray(phase_b)) % months
    return np.minimum(d, months - d)


def phase_score(shift, months: int = 12) -> np.ndarray:
    """ILAMB's seasonal-cycle score (1 + cos(2π·|Δphase|/12))/2."""
    return 0.5 * (1.0 + np.cos(2.0 * np.pi * np.abs(shift) / months))


def taylor_score(sd_ratio, correlation) -> np.ndarray:
    """ILAMB's spatial-distribution score 2(1 + R)/(σ̂ + 1/σ̂)² (Taylor 2001)."""
    s = np.asarray(sd_ratio, dtype="f8")
    with np.errstate(divide="ignore", invalid="ignore"):
        return 2.0 * (1.0 + np.asarray(correlation)) / (s + 1.0 / s) ** 2


def overall_score(scores: dict, weights: dict = ILAMB_WEIGHTS) -> float:
    """Weighted mean of the finite scores named in ``weights`` (weights of missing scores drop)."""
    num = den = 0.0
    for name, w in weights.items():
        s = scores.get(name, np.nan)
        if s is not None and np.isfinite(s):
            num, den = num + w * float(s), den + w
    return num / den if den > 0 else float("nan")


def _area_mean(field: np.ndarray, area: np.ndarray) -> float:
    ok = np.isfinite(field)
    if not ok.any():
        return float("nan")
    return float(np.sum(field[ok] * area[ok]) / np.sum(area[ok]))


def _ratio(num, den):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _weighted_pearson(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> tuple[float, float, float]:
    """(σ_a, σ_b, R) with weights ``w`` (population moments, as a Taylor diagram uses)."""
    w = w / w.sum()
    da, db = a - np.sum(w * a), b - np.sum(w * b)
    sa, sb = np.sqrt(np.sum(w * da * da)), np.sqrt(np.sum(w * db * db))
    r = np.sum(w * da * db) / (sa * sb) if sa > 0 and sb > 0 else np.nan
    return float(sa), float(sb), float(r)


def compare_metrics(ref, com, area, months: int = 12) -> dict[str, float]:
    """ILAMB metrics and scores of ``com`` against ``ref`` (see the module docstring).

    ``ref``, ``com``: (time, ncell) monthly amounts (whole years from January), NaN = no data;
    ``area``: (ncell,) m². Only cells with a complete series in both take part. Returns the scalars
    of :data:`METRICS`: means, bias, RMSE and centred RMSE in the input unit (area means of the
    per-cell maps), ``correlation``/``sd_ratio`` of the period-mean maps (Taylor), the Pearson
    correlation of the area-integrated monthly series (``series_correlation``), the peak months
    of the area-integrated mean cycles and their circular shift, area means of the per-cell IAV,
    the five ILAMB scores and the weighted overall score.
    """
    ref = np.asarray(ref, dtype="f8")
    com = np.asarray(com, dtype="f8")
    area = np.asarray(area, dtype="f8").ravel()
    if ref.shape != com.shape or ref.ndim != 2 or ref.shape[1] != area.size:
        raise ValueError(f"ref {ref.shape}, com {com.shape} and area {area.shape} do not match "
                         "(time, ncell) and (ncell,)")
    ok = np.isfinite(ref).all(axis=0) & np.isfinite(com).all(axis=0) & (area > 0)
    out = dict.fromkeys(METRICS, float("nan"))
    out["n_cells"] = int(ok.sum())
    if not ok.any():
        return out
    r, c, a = ref[:, ok], com[:, ok], area[ok]
    mr, mc = r.mean(axis=0), c.mean(axis=0)
    bias = mc - mr
    rmse = np.sqrt(np.mean((c - r) ** 2, axis=0))
    crmse = np.sqrt(np.mean(((c - mc) - (r - mr)) ** 2, axis=0))
    crms = np.sqrt(np.mean((r - mr) ** 2, axis=0))
    cyc_r, cyc_c = mean_annual_cycle(r, months), mean_annual_cycle(c, months)
    nyears = r.shape[0] // months
    iav_r = np.sqrt(np.mean((r - np.tile(cyc_r, (nyears, 1))) ** 2, axis=0))
    iav_c = np.sqrt(np.mean((c - np.tile(cyc_c, (nyears, 1))) ** 2, axis=0))
    shift = phase_shift(peak_month(cyc_c), peak_month(cyc_r), months)
    maps = {
        "bias_score": np.exp(-np.abs(bias) * _ratio(1.0, crms)),
        "rmse_score": np.exp(-crmse * _ratio(1.0, crms)),
        "phase_score": phase_score(shift, months),
        "iav_score": np.exp(-np.abs(iav_c - iav_r) * _ratio(1.0, iav_r)),
    }
    out.update(ref_mean=_area_mean(mr, a), com_mean=_area_mean(mc, a), bias=_area_mean(bias, a),
               rmse=_area_mean(rmse, a), crmse=_area_mean(crmse, a), crms_ref=_area_mean(crms, a),
               ref_iav=_area_mean(iav_r, a), com_iav=_area_mean(iav_c, a))
    for name, m in maps.items():
        out[name] = _area_mean(m, a)
    s_ref, s_com, corr = _weighted_pearson(mr, mc, a)
    out["correlation"] = corr
    out["sd_ratio"] = s_com / s_ref if s_ref > 0 else float("nan")
    out["taylor_score"] = float(taylor_score(out["sd_ratio"], corr)) if np.isfinite(corr) \
        else float("nan")
    series_r, series_c = r @ a, c @ a
    if series_r.std() > 0 and series_c.std() > 0:
        out["series_correlation"] = float(np.corrcoef(series_r, series_c)[0, 1])
    pr = int(peak_month(mean_annual_cycle(series_r, months)))
    pc = int(peak_month(mean_annual_cycle(series_c, months)))
    out.update(ref_phase=pr, com_phase=pc, phase_shift=int(phase_shift(pc, pr, months)))
    out["overall_score"] = overall_score(out)
    return out
