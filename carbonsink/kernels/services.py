"""Carbon-sequestration services — SCIENCE.md §7 (seed 003). Pure NumPy, no I/O, no xarray.

Storage (InVEST carbon model, eqs. 1–2), the emission inventory (eqs. 3–8) and its spreading from
province statistics onto pixels, the balance (ratio and flow, eqs. 9–10) and the sufficient statistics
of the driver correlation matrix. Wind routing lives in :mod:`.routing`, the Geodetector in
:mod:`.geodetector`.

Terminology: seed 003 calls sequestration "碳需求" (demand) and emissions "碳供给" (supply); here
things are named by what they are (``storage``, ``emission``, ``capacity``).

Units. Pool densities t C ha⁻¹ (= Mg C ha⁻¹, InVEST's); cell areas m² (true spherical areas from
:mod:`carbonsink.grid`, never pixel counts); emissions t C a⁻¹ (per province or per cell). Land
cover is an integer array; ``nodata`` marks cells without a class (their outputs are NaN).
Every function is vectorised over whole arrays: lookups use ``searchsorted``, per-province sums use
``bincount``; there is no Python loop over pixels.
"""
from __future__ import annotations

import numpy as np
from scipy import stats as _stats

__all__ = [
    "CNLUCC_PRIMARY",
    "POOL_COLUMNS",
    "SEED003_CEMENT_FACTOR",
    "SEED003_LANDUSE_RATES",
    "SEED003_POOLS",
    "SEED003_RESPIRATION",
    "SEED003_WOOD_FACTOR",
    "balance",
    "class_area_weight",
    "cnlucc_primary",
    "landuse_emission",
    "lookup_by_code",
    "npv_factor",
    "pearson_from_partials",
    "pearson_partials",
    "pool_table",
    "province_inventory",
    "region_balance",
    "region_sums",
    "spread_to_pixels",
    "storage_change",
    "storage_density",
    "storage_per_cell",
]

#: InVEST's carbon pool columns (t C ha⁻¹), in InVEST's order; the key column is ``lucode``.
POOL_COLUMNS = ("c_above", "c_below", "c_soil", "c_dead")

#: CNLUCC primary classes (first digit of the secondary code), SCIENCE.md §7.
CNLUCC_PRIMARY = {1: "cropland", 2: "forest", 3: "grassland", 4: "water", 5: "built_up",
                  6: "unused"}

#: Seed 003 table 2: pool densities of the six primary classes, InVEST's columns (t C ha⁻¹).
SEED003_POOLS = {
    "lucode": np.array([1, 2, 3, 4, 5, 6]),
    "c_above": np.array([17.0, 42.4, 35.3, 0.3, 2.5, 1.3]),
    "c_below": np.array([80.7, 115.9, 86.5, 0.0, 27.5, 0.0]),
    "c_soil": np.array([108.4, 158.8, 99.9, 0.0, 0.0, 21.6]),
    "c_dead": np.array([9.82, 14.11, 7.28, 0.0, 0.0, 0.0]),
}

#: Seed 003 table 4: respiration, t C head⁻¹ a⁻¹ (eq. 4).
SEED003_RESPIRATION = {"people": 0.079, "pigs": 0.082, "large_livestock": 0.796}
#: Seed 003 table 4: wood consumption (eq. 6) and cement production (eq. 7), t C t⁻¹.
SEED003_WOOD_FACTOR = 0.36
SEED003_CEMENT_FACTOR = 0.136
#: Seed 003 table 3: soil respiration by land use (eq. 8), t C ha⁻¹ a⁻¹, keyed by CNLUCC code.
#: Primary codes cover their secondary codes (see :func:`lookup_by_code`); 42 is "lake"; every
#: other class (rivers, reservoirs, built-up, unused) emits 0.
SEED003_LANDUSE_RATES = {2: 23.21, 3: 21.30, 1: 15.98, 42: 4.81}


# --------------------------------------------------------------------------------------------------
# lookups
# --------------------------------------------------------------------------------------------------

def _as_codes(a, name):
    a = np.asarray(a)
    if a.dtype.kind == "f":
        finite = a[np.isfinite(a)]
        if not np.array_equal(finite, np.round(finite)):
            raise ValueError(f"{name} must hold integer codes")
    elif a.dtype.kind not in "iub":
        raise ValueError(f"{name} must be an integer array, got dtype {a.dtype}")
    return a


def _valid_codes(lulc, nodata):
    valid = np.ones(lulc.shape, bool) if nodata is None else lulc != nodata
    if lulc.dtype.kind == "f":
        valid &= np.isfinite(lulc)
    return valid


def _index_of(values, keys, valid, *, what, table):
    """Positions of ``values`` in ``keys`` (valid cells only); unknown codes → ValueError naming them."""
    order = np.argsort(keys, kind="stable")
    skeys = keys[order]
    v = np.where(valid, values, skeys[0]).astype(skeys.dtype, copy=False)
    pos = np.clip(np.searchsorted(skeys, v), 0, len(skeys) - 1)
    found = skeys[pos] == v
    missing = valid & ~found
    if missing.any():
        codes = np.unique(values[missing])
        shown = ", ".join(str(int(c)) for c in codes[:20]) + (" …" if codes.size > 20 else "")
        raise ValueError(f"{what} codes {shown} ({codes.size} distinct, {int(missing.sum())} cells) "
                         f"are not in the {table}")
    return order[pos]


def pool_table(table) -> tuple[np.ndarray, np.ndarray]:
    """Validate a pool table in InVEST's columns → (``lucode`` int64 (n,), pools float64 (4, n)).

    ``table`` is anything indexable by column name (a pandas DataFrame read from an InVEST CSV, or a
    dict of arrays). As in InVEST, column names are matched case-insensitively after stripping
    blanks, and extra columns (``lulc_name`` …) are ignored. A missing column, a missing or
    non-integer ``lucode``, a duplicated ``lucode`` or a missing pool value → ValueError.
    """
    cols = {str(k).strip().lower(): k for k in table}
    missing = [c for c in ("lucode",) + POOL_COLUMNS if c not in cols]
    if missing:
        raise ValueError(f"pool table lacks column(s) {missing}; InVEST's carbon pool table has "
                         f"lucode, {', '.join(POOL_COLUMNS)} (t C ha⁻¹)")
    lucode = np.asarray(table[cols["lucode"]], dtype="f8").ravel()
    if not np.all(np.isfinite(lucode)) or not np.array_equal(lucode, np.round(lucode)):
        raise ValueError("pool table: lucode must be integers without gaps")
    if lucode.size == 0:
        raise ValueError("pool table has no rows")
    lucode = lucode.astype(np.int64)
    uniq, counts = np.unique(lucode, return_counts=True)
    if np.any(counts > 1):
        raise ValueError(f"pool table: duplicated lucode {uniq[counts > 1].tolist()}")
    pools = np.stack([np.asarray(table[cols[c]], dtype="f8").ravel() for c in POOL_COLUMNS])
    if not np.all(np.isfinite(pools)):
        bad = [POOL_COLUMNS[i] for i in np.nonzero(~np.isfinite(pools).all(axis=1))[0]]
        raise ValueError(f"pool table: missing or non-numeric values in {bad}")
    return lucode, pools


def storage_density(lulc, table, nodata=None) -> dict[str, np.ndarray]:
    """Carbon storage per pool and in total, t C ha⁻¹, per cell (InVEST carbon model, eq. 1).

    ``lulc`` integer land-cover codes (any shape); ``table`` a pool table (see :func:`pool_table`).
    Cells equal to ``nodata`` → NaN. A code absent from the table → ValueError naming the codes
    (InVEST refuses such a raster too). Returns ``c_above, c_below, c_soil, c_dead, c_total``
    (float64, ``lulc.shape``); ``c_total`` is the sum of the four pools of the class (InVEST's
    ``c_storage``).
    """
    lulc = _as_codes(lulc, "lulc")
    lucode, pools = pool_table(table)
    valid = _valid_codes(lulc, nodata)
    idx = _index_of(lulc, lucode, valid, what="LULC", table="pool table (lucode)")
    out = {}
    for name, col in zip(POOL_COLUMNS + ("c_total",), list(pools) + [pools.sum(axis=0)]):
        out[name] = np.where(valid, col[idx], np.nan)
    return out


def storage_per_cell(density, cell_area):
    """t C per cell from t C ha⁻¹ and the cell area in m² (eq. 2; 1 ha = 10⁴ m²). Broadcasts."""
    return np.asarray(density, dtype="f8") * (np.asarray(cell_area, dtype="f8") * 1e-4)


def storage_change(c_bas, c_alt):
    """Change in storage, alternate − baseline (InVEST's ``c_change_bas_alt``); NaN propagates."""
    return np.asarray(c_alt, dtype="f8") - np.asarray(c_bas, dtype="f8")


def npv_factor(price, discount_rate, rate_change, year_bas, year_alt) -> float:
    """InVEST's valuation constant: NPV = ΔC × factor (SCIENCE.md §7).

    factor = (price/n) · Σ_{t=0}^{n−1} [1/((1 + r/100)(1 + c/100))]^t, n = year_alt − year_bas,
    r the annual discount rate (%), c the annual change of the carbon price (%). Evaluated with the
    geometric-series closed form as InVEST does (and its ratio = 1 limit, price). InVEST's reference:
    price 43, r = −7.1, c = 2.8, 2016 → 2030 → 59.00136. ``year_alt`` must be later than
    ``year_bas`` (InVEST raises too).
    """
    n = int(year_alt) - int(year_bas)
    if n != year_alt - year_bas or n <= 0:
        raise ValueError(f"year_alt ({year_alt}) must be an integer year after year_bas ({year_bas})")
    ratio = 1.0 / ((1.0 + discount_rate / 100.0) * (1.0 + rate_change / 100.0))
    factor = price / n
    if ratio == 1.0:
        return float(factor * n)
    return float(factor * (1.0 - ratio ** n) / (1.0 - ratio))


def cnlucc_primary(codes, nodata=None):
    """CNLUCC secondary (or finer) code → primary class code, its first decimal digit.

    11, 12 → 1 (cropland); 21–24 → 2 (forest); …; 6x → 6 (unused); single digits stay; 99 (sea in
    some editions) → 9, which the seed's tables do not know. ``nodata`` cells stay ``nodata``; any
    other code < 1 → ValueError.
    """
    codes = _as_codes(codes, "codes")
    valid = _valid_codes(codes, nodata)
    c = np.where(valid, codes, 1).astype(np.int64)
    if np.any(c < 1):
        raise ValueError(f"CNLUCC codes must be positive, got {np.unique(c[c < 1]).tolist()}")
    while np.any(c >= 10):
        c = np.where(c >= 10, c // 10, c)
    if nodata is None:
        return c
    return np.where(valid, c, nodata).astype(np.int64)


def lookup_by_code(lulc, table: dict, *, nodata=None, default=0.0, primary_fallback=True):
    """Per-cell value from ``{code: value}``: the exact code first, else (``primary_fallback``) its
    CNLUCC primary code, else ``default``; ``default=None`` makes an unmatched code a ValueError.
    ``nodata`` cells → NaN. Used for the land-use emission rates, where a table of primary classes
    plus the lake code 42 covers every secondary code (SCIENCE.md §7, eq. 8)."""
    lulc = _as_codes(lulc, "lulc")
    valid = _valid_codes(lulc, nodata)
    keys = np.array(list(table.keys()), dtype=np.int64)
    vals = np.array(list(table.values()), dtype="f8")
    codes = np.where(valid, lulc, 0).astype(np.int64)
    candidates = [codes]
    if primary_fallback:
        positive = codes >= 1
        candidates.append(np.where(positive, cnlucc_primary(np.where(positive, codes, 1)), codes))
    out = np.full(lulc.shape, np.nan)
    todo = valid.copy()
    skeys = np.sort(keys)
    svals = vals[np.argsort(keys)]
    for cand in candidates:
        pos = np.clip(np.searchsorted(skeys, cand), 0, len(skeys) - 1)
        hit = todo & (skeys[pos] == cand)
        out[hit] = svals[pos[hit]]
        todo &= ~hit
    if todo.any():
        if default is None:
            raise ValueError(f"codes {np.unique(lulc[todo]).tolist()[:20]} have no value in the table")
        out[todo] = default
    return out


def landuse_emission(lulc, cell_area, rates=None, *, nodata=None, default=0.0):
    """Land-use (soil respiration) emission per cell, t C a⁻¹ = rate (t C ha⁻¹ a⁻¹) × area (eq. 8).

    ``rates`` a ``{code: rate}`` table (default :data:`SEED003_LANDUSE_RATES`: forest 23.21,
    grassland 21.30, cropland 15.98, lakes 4.81, others 0), looked up by :func:`lookup_by_code`.
    ``cell_area`` in m², broadcastable to ``lulc``.
    """
    rates = SEED003_LANDUSE_RATES if rates is None else rates
    rate = lookup_by_code(lulc, rates, nodata=nodata, default=default)
    return storage_per_cell(rate, cell_area)


def class_area_weight(lulc, classes, cell_area, *, nodata=None):
    """Area (m²) of the cells whose CNLUCC primary class is in ``classes``, else 0 — the spreading
    weight of livestock respiration (cropland + grassland: ``classes=(1, 3)``)."""
    lulc = _as_codes(lulc, "lulc")
    valid = _valid_codes(lulc, nodata) & (lulc >= 1)
    hit = valid & np.isin(cnlucc_primary(np.where(valid, lulc, 1)), np.asarray(classes))
    return np.where(hit, np.broadcast_to(np.asarray(cell_area, dtype="f8"), hit.shape), 0.0)


# --------------------------------------------------------------------------------------------------
# emission inventory (eqs. 3–7) and spreading onto pixels
# --------------------------------------------------------------------------------------------------

def _nonneg(name, a):
    a = np.asarray(a, dtype="f8")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name}: statistics must be finite numbers (found NaN/inf)")
    if np.any(a < 0):
        raise ValueError(f"{name}: statistics must be ≥ 0, found {a[a < 0][:5].tolist()}")
    return a


def province_inventory(population, pigs, large_livestock, energy, energy_factors, wood, cement, *,
                       respiration=None, wood_factor=SEED003_WOOD_FACTOR,
                       cement_factor=SEED003_CEMENT_FACTOR) -> dict[str, np.ndarray]:
    """The per-province inventory terms of seed 003, each t C a⁻¹, shape (n_province,).

    ``population``, ``pigs``, ``large_livestock`` heads (eq. 4, rates :data:`SEED003_RESPIRATION`
    unless ``respiration`` overrides them); ``energy`` consumption (n_province, n_fuel) in the units
    the ``energy_factors`` (n_fuel,) expect (e.g. t coal × t C t⁻¹; the factors are versioned data,
    eq. 5); ``wood`` consumption t (eq. 6); ``cement`` production t (eq. 7). Negative or missing
    statistics → ValueError. Returns ``respiration_people``, ``respiration_pigs``,
    ``respiration_livestock``, ``energy`` (the sum over fuels), ``energy_by_fuel`` (n_province,
    n_fuel), ``wood`` and ``cement``; the land-use term (eq. 8) is per cell, :func:`landuse_emission`.
    """
    f = dict(SEED003_RESPIRATION, **(respiration or {}))
    energy = _nonneg("energy", np.atleast_2d(energy))
    factors = _nonneg("energy_factors", energy_factors).ravel()
    if energy.shape[-1] != factors.size:
        raise ValueError(f"energy has {energy.shape[-1]} fuels, energy_factors {factors.size}")
    by_fuel = energy * factors
    out = {
        "respiration_people": _nonneg("population", population) * f["people"],
        "respiration_pigs": _nonneg("pigs", pigs) * f["pigs"],
        "respiration_livestock": _nonneg("large_livestock", large_livestock) * f["large_livestock"],
        "energy": by_fuel.sum(axis=-1),
        "energy_by_fuel": by_fuel,
        "wood": _nonneg("wood", wood) * wood_factor,
        "cement": _nonneg("cement", cement) * cement_factor,
    }
    n = {v.shape[0] for k, v in out.items() if v.ndim}
    if len(n) > 1:
        raise ValueError(f"province statistics differ in length: {sorted(n)}")
    return out


def spread_to_pixels(province_map, province_codes, statistic, weight, cell_area):
    """Spread per-province totals onto pixels by a weight, each province's pixel sum = its statistic.

    ``province_map`` integer codes per cell (cells whose code is not in ``province_codes`` — sea,
    other countries, a fill value — get NaN); ``province_codes`` (n,) the provinces of the
    statistics table, ``statistic`` (n,) their totals (≥ 0). ``weight`` per-cell amounts ≥ 0
    (persons, GDP, m² of cropland+grassland — amounts, not densities: pass density × area); NaN
    weights count as 0. A province whose weight sums to 0 is spread by ``cell_area`` (m²) instead
    and flagged. A province of the table absent from the map, a duplicated code, a negative or NaN
    statistic, a negative weight → ValueError.

    Returns ``(pixels, by_area)``: the per-cell share (float64, map shape, same units as the
    statistic per cell) and a bool (n,) flag of provinces spread by area.
    """
    pmap = _as_codes(province_map, "province_map")
    codes = np.asarray(province_codes).ravel().astype(np.int64)
    stat = _nonneg("statistic", statistic).ravel()
    if stat.size != codes.size:
        raise ValueError(f"{codes.size} province codes but {stat.size} statistics")
    if np.unique(codes).size != codes.size:
        raise ValueError("province_codes contains duplicates")
    w = np.broadcast_to(np.asarray(weight, dtype="f8"), pmap.shape)
    if np.any(w < 0):
        raise ValueError("weight must be ≥ 0")
    area = np.broadcast_to(np.asarray(cell_area, dtype="f8"), pmap.shape)
    order = np.argsort(codes)
    scodes = codes[order]
    flat = pmap.ravel().astype(np.int64)
    pos = np.clip(np.searchsorted(scodes, flat), 0, codes.size - 1)
    inside = scodes[pos] == flat
    idx = np.where(inside, order[pos], codes.size)          # codes.size = "no province"
    counts = np.bincount(idx, minlength=codes.size + 1)[:codes.size]
    if np.any(counts == 0):
        raise ValueError(f"provinces {codes[counts == 0].tolist()} of the statistics are absent "
                         "from the province map")
    wf = np.where(inside, np.nan_to_num(w.ravel(), nan=0.0), 0.0)
    wsum = np.bincount(idx, weights=wf, minlength=codes.size + 1)[:codes.size]
    by_area = ~(wsum > 0)
    if by_area.any():
        use_area = inside & by_area[np.minimum(idx, codes.size - 1)]
        wf = np.where(use_area, area.ravel(), wf)
        wsum = np.bincount(idx, weights=wf, minlength=codes.size + 1)[:codes.size]
    scale = np.append(np.where(wsum > 0, stat / np.where(wsum > 0, wsum, 1.0), 0.0), np.nan)
    return (wf * scale[idx]).reshape(pmap.shape), by_area


# --------------------------------------------------------------------------------------------------
# balance (eqs. 9–10)
# --------------------------------------------------------------------------------------------------

def balance(emission, capacity) -> dict[str, np.ndarray]:
    """Per-cell balance of emission E and capacity C, both in the same units (t per cell, or t ha⁻¹).

    ``ratio`` R = E/C (seed 003's "supply–demand ratio"; C = 0 gives inf for E > 0, NaN for E = 0),
    ``flow`` F = min(E, C) (eqs. 9–10), ``difference`` C − E (the seed's "carbon difference", > 0
    where the land can take up more than is emitted). NaN propagates.
    """
    e = np.asarray(emission, dtype="f8")
    c = np.asarray(capacity, dtype="f8")
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = e / c
    return {"ratio": ratio, "flow": np.minimum(e, c), "difference": c - e}


def region_sums(values, region_map, region_codes) -> np.ndarray:
    """Σ of ``values`` per region code (NaN skipped; a region without a finite cell sums to 0)."""
    rmap = _as_codes(region_map, "region_map").ravel().astype(np.int64)
    codes = np.asarray(region_codes).ravel().astype(np.int64)
    order = np.argsort(codes)
    pos = np.clip(np.searchsorted(codes[order], rmap), 0, codes.size - 1)
    idx = np.where(codes[order][pos] == rmap, order[pos], codes.size)
    v = np.broadcast_to(np.asarray(values, dtype="f8"), np.shape(region_map)).ravel()
    v = np.where(np.isfinite(v), v, 0.0)
    return np.bincount(idx, weights=v, minlength=codes.size + 1)[:codes.size]


def region_balance(emission, capacity, region_map, region_codes) -> dict[str, np.ndarray]:
    """Per region (n,): ΣE, ΣC, ratio ΣE/ΣC, flow min(ΣE, ΣC) from the sums, and ``flow_cells`` the
    Σ of per-cell flows (≤ flow: a region can be in balance while its cities are not). E and C must
    be per-cell amounts (t C a⁻¹ or t C), not densities, for the sums to mean anything."""
    e = np.asarray(emission, dtype="f8")
    c = np.asarray(capacity, dtype="f8")
    both = np.isfinite(e) & np.isfinite(c)
    se = region_sums(np.where(both, e, np.nan), region_map, region_codes)
    sc = region_sums(np.where(both, c, np.nan), region_map, region_codes)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = se / sc
    fc = region_sums(np.where(both, np.fmin(e, c), np.nan), region_map, region_codes)
    return {"emission": se, "capacity": sc, "ratio": ratio, "flow": np.minimum(se, sc),
            "flow_cells": fc}


# --------------------------------------------------------------------------------------------------
# drivers: Pearson correlation from sufficient statistics (seed 003 eqs. 11–12)
# --------------------------------------------------------------------------------------------------

def pearson_partials(*variables, shift=None) -> np.ndarray:
    """Sufficient statistics of a correlation matrix over the cells of one block.

    ``variables`` v arrays of one shape (balance, population density, GDP, DEM, T, P …). Cells
    where any variable is NaN are left out (listwise, so every pair uses the same cells). Returns
    the augmented cross-product matrix A (v+1, v+1) of ``[1, x − shift]``: A[0, 0] = n,
    A[0, 1:] = Σx, A[1:, 1:] = Σxxᵀ — the n, Σx, Σy, Σx², Σy², Σxy of every pair. Partials of
    blocks are combined by plain addition (a dask reduction), then :func:`pearson_from_partials`.
    ``shift`` (v,) is subtracted first to avoid cancellation in Σx² − (Σx)²/n for variables far from
    0 (elevation, GDP); r does not depend on it, but every block must use the same shift.
    """
    x = np.stack([np.asarray(a, dtype="f8").ravel() for a in variables])
    if shift is not None:
        x = x - np.asarray(shift, dtype="f8").reshape(-1, 1)
    x = x[:, np.isfinite(x).all(axis=0)]
    xa = np.vstack([np.ones((1, x.shape[1])), x])
    return xa @ xa.T


def pearson_from_partials(partials) -> tuple[np.ndarray, np.ndarray, int]:
    """(r (v, v), two-sided p-values of r (t test, df = n − 2), n) from summed partials.

    A variable without variance gives NaN in its row and column.
    """
    a = np.asarray(partials, dtype="f8")
    n = a[0, 0]
    s = a[0, 1:]
    cov = a[1:, 1:] - np.outer(s, s) / n
    sd = np.sqrt(np.clip(np.diag(cov), 0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.clip(cov / np.outer(sd, sd), -1.0, 1.0)
        t = r * np.sqrt((n - 2) / (1.0 - r * r))
    p = 2.0 * _stats.t.sf(np.abs(t), n - 2) if n > 2 else np.full_like(r, np.nan)
    np.fill_diagonal(p, 0.0)
    return r, p, int(n)
