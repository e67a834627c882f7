"""Enhancement scenarios — SCIENCE.md §9 (seed 002). Pure NumPy, no I/O, no xarray.

What would it take to double China's land sink (2.0–2.5 Gt CO₂ a⁻¹ in 2050–2060)? Each measure adds
a sink that follows a time profile (:func:`ramp`); :func:`project` scales it by a rate and an area
or by a national potential, :func:`combine` adds the measures to the baseline and
:func:`target_met` compares the totals with the target band.

Time profile. With τ = t − start (years since the measure started), the continuous effect is a
trapezoid: 0 before the start, rising linearly from 0 to 1 over ``ramp_years`` R, 1 until
``saturation_years`` S (counted from the start, S ≥ R), then falling linearly to 0 over
``decline_years`` D (D = 0: stops at once, the IPCC soil approach — stock changes end after the
default 20 years, so the added sink is 0). The value for year y is the MEAN of that profile over
the year [y, y + 1): with R = 0 the start year already has the full effect, R = 0, S = 20, D = 0
gives exactly 20 years of full effect, and the sum over all years is the area S − R/2 + D/2 for
any R, S, D. A linear roll-out of R years over hectares that each sink for S years gives exactly
this shape with D = R. S = inf: no saturation.

Units. Rates t C ha⁻¹ a⁻¹ × area ha × 44.01/12.011 × 10⁻⁹ → Gt CO₂ a⁻¹; potentials are Gt CO₂ a⁻¹
at full implementation, times the share realised. Low / central / high columns are carried
separately and summed column by column (low with low, high with high): the BOUNDING sum, not a
statistical combination (independent uncertainties would add in quadrature and give a narrower
band). Every array operation broadcasts over (years, measures, 3); no Python loop.
"""
from __future__ import annotations

import numpy as np

from .. import units as u

__all__ = ["GT_PER_T", "allocate", "allocation_cut", "combine", "priority_bins", "project", "ramp",
           "target_met"]

GT_PER_T = 1e-9


def _cumulative(tau, r, s, d):
    """∫₀^τ of the trapezoid profile (τ ≥ 0 clipped), elementwise, broadcasting."""
    tau = np.maximum(tau, 0.0)
    # rising limb 0..r
    tr = np.minimum(tau, r)
    with np.errstate(divide="ignore", invalid="ignore"):
        up = np.where(r > 0, tr * tr / np.where(r > 0, 2.0 * r, 1.0), 0.0)
    # plateau r..s
    plateau = np.clip(tau - r, 0.0, np.maximum(s - r, 0.0))
    # falling limb s..s+d (none when s is infinite)
    with np.errstate(invalid="ignore"):
        x = np.where(np.isfinite(s), np.clip(tau - s, 0.0, d), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        down = np.where(d > 0, x - x * x / np.where(d > 0, 2.0 * d, 1.0), 0.0)
    return up + plateau + down


def ramp(years, start, ramp_years, saturation_years=np.inf, decline_years=None) -> np.ndarray:
    """Effect fraction (0–1) of a measure in each year: the mean over [y, y+1) of the trapezoid
    described in the module docstring. ``years`` (n,); ``start``, ``ramp_years``,
    ``saturation_years`` (inf or NaN = never) and ``decline_years`` (None = 0) scalars or (m,)
    arrays. Returns (n,) for scalar parameters, else (n, m). Raises ValueError for negative
    durations or a saturation before the end of the ramp."""
    years = np.asarray(years, dtype="f8")
    if years.ndim != 1:
        raise ValueError(f"years must be 1-D, got shape {years.shape}")
    params = np.broadcast_arrays(
        np.asarray(start, dtype="f8"), np.asarray(ramp_years, dtype="f8"),
        np.asarray(np.inf if saturation_years is None else saturation_years, dtype="f8"),
        np.asarray(0.0 if decline_years is None else decline_years, dtype="f8"))
    start, r, s, d = (np.array(p, dtype="f8") for p in params)
    if start.ndim > 1:
        raise ValueError(f"parameters must be scalars or 1-D, got shape {start.shape}")
    s = np.where(np.isnan(s), np.inf, s)
    if not np.all(np.isfinite(start)):
        raise ValueError("start years must be finite")
    if np.any(r < 0) or np.any(s < 0) or np.any(d < 0) or not np.all(np.isfinite(r)) \
            or not np.all(np.isfinite(d)):
        raise ValueError("ramp, saturation and decline years must be finite and ≥ 0 "
                         "(saturation may be inf)")
    if np.any(s < r):
        raise ValueError("saturation_years (counted from the start) must be ≥ ramp_years")
    scalar = start.ndim == 0
    tau = years[:, None] - np.atleast_1d(start)[None, :]
    r, s, d = (np.atleast_1d(p)[None, :] for p in (r, s, d))
    f = _cumulative(tau + 1.0, r, s, d) - _cumulative(tau, r, s, d)
    f = np.clip(f, 0.0, 1.0)
    return f[:, 0] if scalar else f


def project(years, values, areas, starts, ramps, saturations, declines=None, *,
            kind="rate") -> np.ndarray:
    """Added sink (years, m, 3) in Gt CO₂ a⁻¹, low / central / high.

    ``values`` (m, 3): rates t C ha⁻¹ a⁻¹ (``kind='rate'``) or national potentials Gt CO₂ a⁻¹
    (``kind='potential'``), each row low ≤ central ≤ high. ``areas`` (m,): ha for rate rows, the
    share (0–1) of the potential for potential rows (None = 1 for potentials). ``kind`` is one
    string or an (m,) array of them (mixed catalogues). ``starts``, ``ramps``, ``saturations``
    (inf = none), ``declines`` (None = 0): (m,) or scalars, as for :func:`ramp`.
    Rate rows: rate × area × 44.01/12.011 × 1e-9 × ramp; potential rows: potential × share × ramp.
    """
    years = np.asarray(years, dtype="f8")
    values = np.asarray(values, dtype="f8")
    if values.ndim != 2 or values.shape[1] != 3:
        raise ValueError(f"values must be (m, 3) low/central/high, got shape {values.shape}")
    m = values.shape[0]
    kinds = np.broadcast_to(np.asarray(kind, dtype=object), (m,))
    bad = ~np.isin(kinds.astype(str), ["rate", "potential"])
    if bad.any():
        raise ValueError(f"kind must be 'rate' or 'potential', got {sorted(set(kinds[bad]))}")
    is_rate = kinds.astype(str) == "rate"
    if areas is None:
        if is_rate.any():
            raise ValueError("rate rows need their areas (ha)")
        areas = np.ones(m)
    areas = np.broadcast_to(np.asarray(areas, dtype="f8"), (m,))
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError("values must be finite and ≥ 0")
    if np.any(values[:, 0] > values[:, 1]) or np.any(values[:, 1] > values[:, 2]):
        raise ValueError("each row of values needs low ≤ central ≤ high")
    if not np.all(np.isfinite(areas)) or np.any(areas < 0):
        raise ValueError("areas / shares must be finite and ≥ 0")
    if np.any(areas[~is_rate] > 1.0):
        raise ValueError("shares of a potential lie in 0–1")
    factor = np.where(is_rate, areas * u.C_TO_CO2 * GT_PER_T, areas)          # (m,)
    f = ramp(years, np.broadcast_to(np.asarray(starts, dtype="f8"), (m,)),
             np.broadcast_to(np.asarray(ramps, dtype="f8"), (m,)),
             np.broadcast_to(np.asarray(saturations, dtype="f8"), (m,)),
             None if declines is None else np.broadcast_to(np.asarray(declines, dtype="f8"), (m,)))
    return f[:, :, None] * (factor[:, None] * values)[None, :, :]


def combine(baseline, added) -> np.ndarray:
    """Totals (years, 3): the baseline plus the measures, column by column (the bounding sum,
    see the module docstring). ``baseline``: a scalar, (3,) low/central/high, or (years, 3);
    ``added``: (years, m, 3) from :func:`project` or already summed (years, 3)."""
    added = np.asarray(added, dtype="f8")
    if added.ndim == 3:
        if added.shape[2] != 3:
            raise ValueError(f"added must be (years, m, 3), got shape {added.shape}")
        added = added.sum(axis=1)
    elif added.ndim != 2 or added.shape[1] != 3:
        raise ValueError(f"added must be (years, m, 3) or (years, 3), got shape {added.shape}")
    base = np.asarray(baseline, dtype="f8")
    if base.ndim == 0:
        base = np.full(3, float(base))
    if base.shape not in ((3,), added.shape):
        raise ValueError(f"baseline must be a scalar, (3,) or {added.shape}, got {base.shape}")
    b = np.broadcast_to(base, added.shape)
    if np.any(b[:, 0] > b[:, 1]) or np.any(b[:, 1] > b[:, 2]):
        raise ValueError("baseline needs low ≤ central ≤ high")
    return b + added


def _first(years, ok):
    idx = np.flatnonzero(ok)
    return None if idx.size == 0 else int(years[idx[0]])


def target_met(years, totals, target_low, target_high, *, by_year=None) -> dict:
    """Where the totals (years, 3) stand against the target band [target_low, target_high].

    Returns ``central_reaches_lower``, ``low_reaches_lower``, ``high_reaches_lower``,
    ``central_reaches_upper``: the first year the column reaches the bound (≥), or None;
    ``central_holds_lower_from``: the first year from which the central total stays ≥ the lower
    bound to the last year (saturating measures can fall back), or None; ``gap_to_lower``,
    ``gap_to_upper`` (years, 3): bound − total (positive = still missing, negative = beyond);
    ``central_in_band`` (years,) bool; with ``by_year``, ``met_by`` {low, central, high}: whether
    the column reached the lower bound in or before that year."""
    years = np.asarray(years)
    totals = np.asarray(totals, dtype="f8")
    if totals.shape != (years.shape[0], 3):
        raise ValueError(f"totals must be ({years.shape[0]}, 3), got shape {totals.shape}")
    lo, hi = float(target_low), float(target_high)
    if lo > hi:
        raise ValueError(f"target_low {lo} > target_high {hi}")
    reach_lo = totals >= lo
    central = totals[:, 1]
    holds = np.logical_and.accumulate(reach_lo[::-1, 1])[::-1]
    out = {
        "central_reaches_lower": _first(years, reach_lo[:, 1]),
        "low_reaches_lower": _first(years, reach_lo[:, 0]),
        "high_reaches_lower": _first(years, reach_lo[:, 2]),
        "central_reaches_upper": _first(years, central >= hi),
        "central_holds_lower_from": _first(years, holds),
        "gap_to_lower": lo - totals,
        "gap_to_upper": hi - totals,
        "central_in_band": (central >= lo) & (central <= hi),
    }
    if by_year is not None:
        upto = years <= by_year
        out["met_by"] = {name: bool(np.any(reach_lo[upto, j]))
                         for j, name in enumerate(("low", "central", "high"))}
    return out


# --- allocation: the highest-priority cells first, exactly the requested area -----------------
def allocation_cut(area_by_bin, request) -> tuple[int, float]:
    """Where a ranked allocation stops. ``area_by_bin`` (B,): eligible area per priority bin
    (bin B − 1 the highest priority); ``request``: the area to allocate (same units). Returns
    ``(k, f)``: bins above ``k`` are taken whole, bin ``k`` for the share ``f`` (0–1) of its area,
    bins below not at all, so that the allocated area equals ``request`` exactly. ``request``
    larger than the eligible area (beyond rounding, 1e-9 relative) → ValueError; a request of 0
    → (B, 0.0) (nothing taken)."""
    a = np.asarray(area_by_bin, dtype="f8")
    if a.ndim != 1 or np.any(a < 0) or not np.all(np.isfinite(a)):
        raise ValueError("area_by_bin must be a 1-D array of finite areas ≥ 0")
    request = float(request)
    total = float(a.sum())
    if not np.isfinite(request) or request < 0:
        raise ValueError(f"request must be a finite area ≥ 0, got {request}")
    if request > total * (1 + 1e-9) + 1e-12:
        raise ValueError(f"request {request:g} exceeds the eligible area {total:g}")
    if request <= 0:
        return a.size, 0.0
    above = np.concatenate([np.cumsum(a[::-1])[::-1][1:], [0.0]])   # area of the bins above k
    k = int(np.flatnonzero(above < request)[0])   # above[k] < request ≤ above[k] + a[k]
    f = min(max((request - above[k]) / a[k], 0.0), 1.0)
    return k, f


def allocate(bins, eligible, k: int, f: float) -> np.ndarray:
    """Fraction of each cell allocated (elementwise): ``eligible`` (0–1, the cell's eligible
    share) where the priority bin is above ``k``, ``f × eligible`` in bin ``k``, 0 below."""
    bins = np.asarray(bins)
    eligible = np.asarray(eligible, dtype="f8")
    return np.where(bins > k, eligible, np.where(bins == k, f * eligible, 0.0))


def priority_bins(score, lo: float, hi: float, n_bins: int) -> np.ndarray:
    """Priority bin (0 … n_bins − 1, higher = allocated first) of each score in [lo, hi]; NaN
    scores → −1 (never allocated). Equal scores share a bin, so ties are allocated alike."""
    s = np.asarray(score, dtype="f8")
    span = hi - lo
    finite = np.isfinite(s)
    if not np.isfinite(span) or span <= 0:
        b = np.zeros(s.shape, dtype=np.int64)
    else:
        b = np.floor((np.where(finite, s, lo) - lo) / span * n_bins).astype(np.int64)
    b = np.clip(b, 0, n_bins - 1)
    return np.where(finite, b, -1)
