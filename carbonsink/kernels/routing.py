"""Wind routing of surplus emissions onto spare sequestration capacity — SCIENCE.md §7. Numba, no I/O.

Seed 003 names the prevailing wind but publishes no algorithm; this is carbonsink's definition.

1. Prevailing direction (:func:`wind_sector`): per cell, the most frequent of 8 compass sectors of the
   (u, v) wind over the period's time steps, pointing **downwind** (where the air goes: a westerly
   wind, u > 0, is sector ``E``). Sectors are 45° wide and centred on N, NE, …; a direction exactly
   on a boundary belongs to the clockwise sector. Ties → the sector with the larger mean speed, then
   the first in :data:`SECTORS` order. Calm steps (speed ≤ ``calm``) are not counted; a cell calm at
   every step has sector −1 and holds whatever reaches it.
2. Surplus S = max(E − K, 0) and spare capacity K' = max(K − E, 0) per cell (:func:`surplus_and_spare`).
3. Synchronous steps (:func:`route_surplus`): every parcel in transit moves one cell downwind
   (8-neighbour step; one step is one cell whatever its size in km); each cell absorbs
   min(incoming, remaining K') — parcels arriving together share the absorption in proportion to
   their mass — and the rest moves on at the next step. A parcel leaving the grid or entering a
   cell outside the domain (NaN) is exported across the edge it crosses: N, E, S or W; a diagonal
   exit through a corner or into an outside cell splits half and half between the two edges of its
   direction. After ``max_steps`` steps what is still in transit is reported unabsorbed.
   Mass on a closed wind loop whose cells have no spare capacity left, or in a calm cell, can never
   be absorbed nor leave: it is booked as unabsorbed at once, where it stands, instead of
   circulating until ``max_steps`` (totals are identical; it is listed apart as ``trapped``).
   With ``max_steps=None`` the routing runs to completion, which always happens: an acyclic path
   visits each cell at most once, and a parcel on a loop is absorbed or exhausts the loop's capacity
   within one lap. Mass balance: Σ S = absorbed + exported + unabsorbed to rounding (each split of a
   parcel is a − b and b, so the error is a few ulp per step; tested to 1e-12 relative).
4. Origins (``regions``): every surplus cell's own parcel moves in lockstep with the merged
   masses and is absorbed at each cell it reaches at the share the cell absorbs of its whole inflow
   of that step (the same decision for every parcel arriving together), so the origin of every
   absorbed, exported or unabsorbed tonne is known in one pass. The flow matrix M[i, j] is the
   surplus of region i absorbed in region j; the last row and column are cells of no listed region.

Scale: the loops are serial numba over the cells that hold mass (an active list) and over the live
parcels, not over the grid; all China at 0.05° (740 × 1260 = 0.93 M cells) routes with origins in
about a second and needs ~12 grids of float64/int64 (≈ 90 MB) plus 3 words per surplus cell.

1 km: the routing is global — a parcel may cross the whole domain, so tiles would need one halo
exchange per step (thousands of rounds) — and the wind that drives it (reanalysis, ≈ 0.25°) has no
kilometre information. The product therefore aggregates E and K to ≤ 0.05° by area sums (t per
cell), computes S and K' there (surplus is first absorbed locally inside the coarse cell, as the
seed's per-cell balance implies), routes at that resolution and reports the routed fields there;
the per-cell balance (ratio, flow) stays at 1 km. All China at 1 km would be 25 M cells ≈ 2.5 GB of
routing state, beyond a worker's memory, for no information the wind field carries.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

__all__ = ["EDGES", "SECTORS", "route_surplus", "surplus_and_spare", "wind_sector"]

#: Downwind sectors, clockwise from north; index = sector code.
SECTORS = ("N", "NE", "E", "SE", "S", "SW", "W", "NW")
#: Edges of the export vector, in this order.
EDGES = ("N", "E", "S", "W")
# geographic components of each sector: northward and eastward step (−1, 0, +1)
_NORTH = np.array([1, 1, 0, -1, -1, -1, 0, 1], dtype=np.int64)
_EAST = np.array([0, 1, 1, 1, 0, -1, -1, -1], dtype=np.int64)
# exit kinds: 0..3 one edge (EDGES index); 4..7 split halves between two edges (NE, SE, SW, NW)
_SPLIT = np.array([[0, 1], [2, 1], [2, 3], [0, 3]], dtype=np.int64)


# --------------------------------------------------------------------------------------------------
# prevailing wind
# --------------------------------------------------------------------------------------------------

_BLOCK = 256   # cells per block: the time loop then reads contiguous runs of each time step


@njit(parallel=True, cache=True)
def _sector_kernel(u, v, valid, calm):
    nt, n = u.shape
    out = np.full(n, -1, dtype=np.int8)
    nblocks = (n + _BLOCK - 1) // _BLOCK
    for blk in prange(nblocks):
        p0 = blk * _BLOCK
        p1 = min(n, p0 + _BLOCK)
        count = np.zeros((p1 - p0, 8), dtype=np.int64)
        speed = np.zeros((p1 - p0, 8))
        bad = np.zeros(p1 - p0, dtype=np.bool_)
        for t in range(nt):
            for p in range(p0, p1):
                if not valid[p]:
                    continue
                uu = u[t, p]
                vv = v[t, p]
                if np.isnan(uu) or np.isnan(vv):
                    bad[p - p0] = True
                    continue
                sp = math.sqrt(uu * uu + vv * vv)
                if sp <= calm:
                    continue
                deg = math.degrees(math.atan2(uu, vv))   # where the air goes, clockwise from N
                if deg < 0.0:
                    deg += 360.0
                s = int((deg + 22.5) // 45.0)
                if s >= 8:
                    s -= 8
                count[p - p0, s] += 1
                speed[p - p0, s] += sp
        for p in range(p0, p1):
            if not valid[p]:
                continue
            if bad[p - p0]:
                out[p] = -2
                continue
            best = -1
            for s in range(8):
                c = count[p - p0, s]
                if c == 0:
                    continue
                # equal counts: the larger speed sum is the larger mean speed
                if best < 0 or c > count[p - p0, best] or (c == count[p - p0, best]
                                                           and speed[p - p0, s] > speed[p - p0, best]):
                    best = s
            out[p] = best
    return out


def wind_sector(u, v, valid=None, *, calm: float = 0.0) -> np.ndarray:
    """Prevailing downwind sector per cell (int8 codes into :data:`SECTORS`, −1 calm or outside).

    ``u`` eastward and ``v`` northward wind (m s⁻¹), time first: (n_time, ny, nx) (or (ny, nx) for
    one step). ``valid`` (ny, nx) bool marks the routing domain (default: every cell); a NaN wind
    component at any time step of a valid cell → ValueError. Cells outside ``valid`` get −1.
    """
    u = np.asarray(u)
    v = np.asarray(v)
    if u.dtype != v.dtype or u.dtype not in (np.float32, np.float64):
        u, v = u.astype("f8"), v.astype("f8")     # float32 passes without a copy
    if u.shape != v.shape:
        raise ValueError(f"u {u.shape} and v {v.shape} differ in shape")
    if u.ndim == 2:
        u, v = u[None], v[None]
    if u.ndim != 3:
        raise ValueError("wind must be (n_time, ny, nx)")
    shape = u.shape[1:]
    valid = np.ones(shape, bool) if valid is None else np.asarray(valid, bool)
    if valid.shape != shape:
        raise ValueError(f"valid {valid.shape} does not match the wind grid {shape}")
    nt = u.shape[0]
    sec = _sector_kernel(u.reshape(nt, -1), v.reshape(nt, -1), valid.ravel(), float(calm))
    nbad = int(np.count_nonzero(sec == -2))
    if nbad:
        raise ValueError(f"wind has NaN at {nbad} cells of the routing domain; fill or mask them")
    return sec.reshape(shape)


def surplus_and_spare(emission, capacity) -> tuple[np.ndarray, np.ndarray]:
    """S = max(E − K, 0) and K' = max(K − E, 0), same units as E and K (t per cell); NaN propagates."""
    e = np.asarray(emission, dtype="f8")
    k = np.asarray(capacity, dtype="f8")
    d = e - k
    return np.where(np.isnan(d), np.nan, np.maximum(d, 0.0)), \
        np.where(np.isnan(d), np.nan, np.maximum(-d, 0.0))


# --------------------------------------------------------------------------------------------------
# routing
# --------------------------------------------------------------------------------------------------

@njit(cache=True)
def _next_cells(sector, valid, ny, nx, north_up):
    """Target of each cell: a flat index ≥ 0, −1 calm, −2 − kind for an export (kind 0..7)."""
    n = ny * nx
    nxt = np.full(n, -1, dtype=np.int64)
    rowsign = -1 if north_up else 1
    for i in range(n):
        s = sector[i]
        if not valid[i] or s < 0:
            continue
        r = i // nx
        c = i - r * nx
        sn = _NORTH[s]
        se = _EAST[s]
        r2 = r + rowsign * sn
        c2 = c + se
        row_out = r2 < 0 or r2 >= ny
        col_out = c2 < 0 or c2 >= nx
        diag = s % 2 == 1
        if row_out or col_out:
            if row_out and col_out:
                nxt[i] = -2 - (4 + s // 2)
            elif row_out:
                nxt[i] = -2 - (0 if sn > 0 else 2)
            else:
                nxt[i] = -2 - (1 if se > 0 else 3)
        elif not valid[r2 * nx + c2]:
            if diag:
                nxt[i] = -2 - (4 + s // 2)
            else:
                nxt[i] = -2 - (s // 2)              # N=0, E=2→1, S=4→2, W=6→3
        else:
            nxt[i] = r2 * nx + c2
    return nxt


@njit(cache=True)
def _cycles(nxt, valid):
    """Cycle id of each cell on a closed wind loop (functional graph), −1 elsewhere; n cycles."""
    n = nxt.size
    state = np.zeros(n, dtype=np.int8)
    pos = np.zeros(n, dtype=np.int64)
    stack = np.empty(n, dtype=np.int64)
    cid = np.full(n, -1, dtype=np.int64)
    ncyc = 0
    for i in range(n):
        if not valid[i] or state[i] != 0:
            continue
        top = 0
        j = i
        while j >= 0 and state[j] != 2:
            if state[j] == 1:
                for k in range(pos[j], top):
                    cid[stack[k]] = ncyc
                ncyc += 1
                break
            state[j] = 1
            pos[j] = top
            stack[top] = j
            top += 1
            j = nxt[j]
        for k in range(top):
            state[stack[k]] = 2
    return cid, ncyc


@njit(cache=True)
def _route(surplus, spare0, valid, nxt, cid, ncyc, max_steps, origin, dest, nreg, track):
    n = surplus.size
    spare = spare0.copy()
    transit = np.zeros(n)
    incoming = np.zeros(n)
    frac_at = np.zeros(n)           # share absorbed by each cell reached at the current step
    absorbed = np.zeros(n)
    throughput = np.zeros(n)
    exported_from = np.zeros(n)
    unabsorbed = np.zeros(n)
    exported = np.zeros(4)
    trapped = 0.0
    act = np.empty(n, dtype=np.int64)
    nl = np.empty(n, dtype=np.int64)
    matrix = np.zeros((nreg + 1, nreg + 1))
    exp_origin = np.zeros((nreg + 1, 4))
    unabs_origin = np.zeros(nreg + 1)
    open_cells = np.zeros(ncyc, dtype=np.int64)
    for i in range(n):
        if cid[i] >= 0 and spare[i] > 0.0:
            open_cells[cid[i]] += 1
    n_act = 0
    for i in range(n):
        if valid[i] and surplus[i] > 0.0:
            transit[i] = surplus[i]
            act[n_act] = i
            n_act += 1
    # origin tracking: one parcel per surplus cell, moved in lockstep with the merged masses and
    # absorbed at the same share as the cell's whole inflow of that step
    n_par = n_act if track else 0
    ppos = act[:n_par].copy()
    pmass = np.empty(n_par)
    porig = np.empty(n_par, dtype=np.int64)
    for q in range(n_par):
        pmass[q] = surplus[ppos[q]]
        porig[q] = origin[ppos[q]]
    steps = 0
    while n_act > 0 and (max_steps < 0 or steps < max_steps):
        steps += 1
        n_next = 0
        for k in range(n_act):
            i = act[k]
            m = transit[i]
            transit[i] = 0.0
            j = nxt[i]
            if j == -1 or (cid[i] >= 0 and open_cells[cid[i]] == 0):
                unabsorbed[i] += m          # calm, or a closed loop without capacity: stuck
                trapped += m
            elif j < -1:
                kind = -2 - j
                exported_from[i] += m
                if kind < 4:
                    exported[kind] += m
                else:
                    exported[_SPLIT[kind - 4, 0]] += 0.5 * m
                    exported[_SPLIT[kind - 4, 1]] += 0.5 * m
            else:
                if incoming[j] == 0.0:
                    nl[n_next] = j
                    n_next += 1
                incoming[j] += m
        # parcels take the same decisions (open_cells is unchanged until the absorption below)
        w = 0
        for q in range(n_par):
            i = ppos[q]
            x = pmass[q]
            o = porig[q]
            j = nxt[i]
            if j == -1 or (cid[i] >= 0 and open_cells[cid[i]] == 0):
                unabs_origin[o] += x
            elif j < -1:
                kind = -2 - j
                if kind < 4:
                    exp_origin[o, kind] += x
                else:
                    exp_origin[o, _SPLIT[kind - 4, 0]] += 0.5 * x
                    exp_origin[o, _SPLIT[kind - 4, 1]] += 0.5 * x
            else:
                ppos[w] = j
                pmass[w] = x
                porig[w] = o
                w += 1
        n_par = w
        n_act = 0
        for k in range(n_next):
            j = nl[k]
            inc = incoming[j]
            incoming[j] = 0.0
            throughput[j] += inc
            cap = spare[j]
            a = 0.0
            if cap > 0.0:
                if inc >= cap:
                    a = cap
                    spare[j] = 0.0
                    if cid[j] >= 0:
                        open_cells[cid[j]] -= 1
                else:
                    a = inc
                    spare[j] = cap - inc
            absorbed[j] += a
            frac_at[j] = a / inc
            rem = inc - a
            if rem > 0.0:
                transit[j] = rem
                act[n_act] = j
                n_act += 1
        # a cell that kept nothing absorbed all (a == inc, share exactly 1): its parcels end
        w = 0
        for q in range(n_par):
            j = ppos[q]
            x = pmass[q]
            ab = x * frac_at[j]
            matrix[porig[q], dest[j]] += ab
            if x - ab > 0.0:
                pmass[w] = x - ab
                ppos[w] = j
                porig[w] = porig[q]
                w += 1
        n_par = w
    left = 0.0
    for k in range(n_act):
        i = act[k]
        unabsorbed[i] += transit[i]
        left += transit[i]
    for q in range(n_par):
        unabs_origin[porig[q]] += pmass[q]
    return (absorbed, throughput, exported_from, unabsorbed, exported, trapped, left, steps,
            matrix, exp_origin, unabs_origin)


def route_surplus(surplus, spare, sector, *, regions=None, region_codes=None, max_steps=None,
                  north_up: bool = True) -> dict:
    """Route surplus S downwind onto spare capacity K' (module docstring for the definition).

    ``surplus``, ``spare`` (ny, nx) ≥ 0 in one unit (t C per cell); NaN in either marks cells outside
    the domain (parcels entering them are exported). ``sector`` (ny, nx) from :func:`wind_sector`.
    ``north_up``: row 0 is the northern edge (carbonsink's grids: latitude descending).
    ``regions`` (ny, nx) integer codes and ``region_codes`` (R,) turn on origin tracking.

    Returns a dict: ``absorbed``, ``throughput`` (mass that entered the cell from upwind, summed
    over steps: the flow path), ``exported_from`` (mass that left the domain from this cell),
    ``unabsorbed`` (where the unabsorbed mass stands) — grids; ``exported`` (4,) by :data:`EDGES`;
    totals ``surplus_total``, ``absorbed_total``, ``exported_total``, ``unabsorbed_total`` =
    ``trapped`` (in calm cells or on dead loops) + ``in_transit`` (stopped by ``max_steps``), and
    ``steps`` (the number of steps run). With regions
    also ``flow_matrix`` (R+1, R+1) [origin, destination], ``surplus_by_origin`` (R+1,),
    ``exported_by_origin`` (R+1, 4), ``unabsorbed_by_origin`` (R+1,); index R = no listed region.
    """
    s = np.asarray(surplus, dtype="f8")
    k = np.asarray(spare, dtype="f8")
    sec = np.asarray(sector)
    if s.ndim != 2 or s.shape != k.shape or s.shape != sec.shape:
        raise ValueError(f"surplus {s.shape}, spare {k.shape} and sector {sec.shape} must be one 2-D grid")
    valid = np.isfinite(s) & np.isfinite(k)
    if np.any(s[valid] < 0) or np.any(k[valid] < 0):
        raise ValueError("surplus and spare capacity must be ≥ 0 (use surplus_and_spare)")
    if np.any((sec[valid] < -1) | (sec[valid] > 7)):
        raise ValueError("sector codes must be −1..7 on valid cells")
    if max_steps is not None and (int(max_steps) != max_steps or max_steps < 0):
        raise ValueError("max_steps must be a non-negative integer or None")
    ny, nx = s.shape
    vflat = valid.ravel()
    sflat = np.where(vflat, s.ravel(), 0.0)
    kflat = np.where(vflat, k.ravel(), 0.0)
    nxt = _next_cells(sec.ravel().astype(np.int64), vflat, ny, nx, bool(north_up))
    cid, ncyc = _cycles(nxt, vflat)
    steps_arg = -1 if max_steps is None else int(max_steps)

    if regions is None:
        nreg = 0
        idx = np.zeros(ny * nx, dtype=np.int64)
    else:
        codes = np.asarray(region_codes).ravel().astype(np.int64)
        if codes.size == 0 or np.unique(codes).size != codes.size:
            raise ValueError("region_codes must be non-empty and without duplicates")
        rmap = np.asarray(regions).ravel().astype(np.int64)
        if rmap.size != ny * nx:
            raise ValueError("regions must have the grid's shape")
        order = np.argsort(codes)
        pos = np.clip(np.searchsorted(codes[order], rmap), 0, codes.size - 1)
        nreg = codes.size
        idx = np.where(codes[order][pos] == rmap, order[pos], nreg).astype(np.int64)

    res = _route(sflat, kflat, vflat, nxt, cid, ncyc, steps_arg, idx, idx, nreg,
                 regions is not None)
    absorbed, throughput, exported_from, unabsorbed, exported, trapped, in_transit, steps = res[:8]
    shape = (ny, nx)
    out = {
        "absorbed": absorbed.reshape(shape), "throughput": throughput.reshape(shape),
        "exported_from": exported_from.reshape(shape), "unabsorbed": unabsorbed.reshape(shape),
        "exported": exported, "surplus_total": float(sflat.sum()),
        "absorbed_total": float(absorbed.sum()), "exported_total": float(exported.sum()),
        "unabsorbed_total": float(unabsorbed.sum()), "trapped": float(trapped),
        "in_transit": float(in_transit), "steps": int(steps),
    }
    for name in ("absorbed", "throughput", "exported_from", "unabsorbed"):
        out[name][~valid] = np.nan
    if regions is not None:
        out.update(flow_matrix=res[8], exported_by_origin=res[9], unabsorbed_by_origin=res[10],
                   surplus_by_origin=np.bincount(idx, weights=sflat, minlength=nreg + 1))
    return out
