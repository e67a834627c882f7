"""Domain-level checks of ingested inputs that the per-value physical ranges cannot make.

A unit slip often keeps every value inside its physical range
(:data:`carbonsink.io.validate.SCHEMA`) and is still wrong: SoilGrids SOC stocks in t C ha⁻¹
declared as kg C m⁻² are 10× too large (62 kg m⁻² is a possible peat, not a possible mean), ERA5
``tp`` (the *daily* mean of the month, in m) declared as a ``monthly_accumulation`` gives ~30× too
little rain. What catches them is the **land-area mean** of the study area: it has to look like
China. This module

* computes, lazily and in the same dask pass as the staged write and the other value statistics of
  :mod:`carbonsink.io.ingest` (one small task per chunk: no extra read of any source), per variable
  and output step the area-weighted sum and weight over land (true cell areas, SCIENCE.md §0), and
  the count and bounding box of land cells without data (:func:`land_stats`) — the latter names
  *where* the holes on land are;
* checks each key variable's land mean against a plausible band (:data:`BANDS`) and, when it is
  outside, tries every other spelling of the units in the unit table (:mod:`carbonsink.units`,
  same quantity, amounts and rates) and every other temporal meaning with the same time step
  (:func:`carbonsink.io.manifest.unit_plan`), and names those that would land inside the band
  (:func:`check_plausibility`);
* checks the river ion table against the basin layer actually put on the grid: a basin id of the
  table that no land cell carries would make ``carbonsink run`` fail long after ``ingest`` published
  (:func:`basin_ids`, :func:`check_river_basins`, reusing :func:`carbonsink.ml.validate_ion_table`).

Bands — wide enough for any study area inside China (the Tibetan plateau, Hainan, the Sichuan basin,
the Loess plateau), narrow enough that a 10× or 30× slip of a typical Chinese value falls outside.
They bound the *domain mean*, never a pixel. Sources: the seed papers (``/work/shared/seeds``: 000
karst China NEP ~150 t C km⁻² a⁻¹, so NPP of a few hundred; 004 Three-River Headwaters with MODIS
NPP, ERA5-Land temperature and CHIRPS precipitation), SCIENCE.md's reference inputs, and published
national and regional means — rounded, approximate values that fix orders of magnitude (check the
sources before tightening a band):

====== ===================== ======================================================================
var    band (land mean)      why
====== ===================== ======================================================================
pr     100–3000 mm a⁻¹       China ~ 630 mm a⁻¹ (CMA climate bulletins; ERA5-Land/CMFD 550–700);
                             Tarim/Qaidam basins ~ 50–200, Hainan ~ 1700–1800, Taiwan ~ 2500. A 30×
                             slip (daily mean vs monthly accumulation) leaves the band for any
                             region drier than 3000 mm (all of China); 10× too much for any region
                             wetter than 300 mm. (Tarim alone needs `plausible_range`.)
tas    −15…30 °C             China ~ 7–9 °C (CMA); Tibetan plateau ~ 0–3 °C, Hainan ~ 24–25 °C.
                             K as °C is 280 °C, °C as K −266 °C (also outside the physical range).
npp    50–1500 g C m⁻² a⁻¹   China ~ 300–550 (MOD17A3: ~ 350–400; seed 000/004 ranges); deserts
                             ~ 30–100, tropical Hainan/Yunnan forests ~ 900–1200. kg C as g C
                             (1000×) or a missed MODIS scale factor (10 000×) leave the band.
aet    50–1500 mm a⁻¹        China ~ 350–450 (MOD16A3, GLEAM); arid north-west ~ 50–150, the humid
                             south ~ 700–1000. A missed 0.1 scale factor of MOD16 (10×) leaves it.
rsds   2000–9000 MJ m⁻² a⁻¹  China 3300–8400 (CMA solar resource zoning: Sichuan basin < 4200,
                             Tibet > 6700). ERA5 ``ssrd`` daily means taken as monthly amounts
                             (30×) or kWh as MJ (3.6×) leave it.
soc    0.5–40 kg C m⁻²       0–30 cm China ~ 3–12 (SoilGrids 250 m ~ 5–7; national soil survey
                             ~ 4–5); deserts ~ 1–2, Tibetan meadows / north-east peat ~ 15–25.
                             SoilGrids' t C ha⁻¹ declared as kg C m⁻² (10×) leaves it for any
                             area whose true mean exceeds 4 kg C m⁻².
====== ===================== ======================================================================

A study area that really is outside a band (a salt desert, a glacier massif) says so in the
manifest: ``plausible_range: [lo, hi]`` (in the band's units above) or ``plausibility: skip`` for
that variable; the published variable's ``plausibility_check`` attribute records which check ran
(``"skipped by manifest"`` when skipped) and the version record holds each land mean found.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import dask
import dask.array as da
import numpy as np
import xarray as xr

from .. import units as u
from ..grid import cell_area
from .manifest import _PERIOD_OF, _PLAUSIBILITY_CHECKED, ALLOWED_TEMPORAL, split_rate, unit_plan
from .validate import SCHEMA, InputError


@dataclass(frozen=True)
class Band:
    """Plausible land-area mean of one variable: ``lo``–``hi`` in ``units``; the mean of the
    canonical steps × ``per_step`` (12 for monthly precipitation → per year)."""

    lo: float
    hi: float
    units: str
    what: str
    per_step: float = 1.0


BANDS: dict[str, Band] = {
    "pr": Band(100.0, 3000.0, "mm yr-1", "mean annual precipitation", 12.0),
    "tas": Band(-15.0, 30.0, "degC", "annual mean air temperature"),
    "npp": Band(50.0, 1500.0, "g m-2 yr-1", "annual net primary productivity"),
    "aet": Band(50.0, 1500.0, "mm yr-1", "annual actual evapotranspiration"),
    "rsds": Band(2000.0, 9000.0, "MJ m-2 yr-1", "annual surface solar radiation"),
    "soc": Band(0.5, 40.0, "kg m-2", "topsoil (0-30 cm) organic carbon density"),
}
assert set(BANDS) == set(_PLAUSIBILITY_CHECKED)
SKIPPED = "skipped by manifest"
_MAX_SUGGESTIONS = 3

# per tile and step: Σ value·area and Σ area over land cells with data; land cells without data,
# and their bounding box (north and south latitude, west and east longitude of cell centres)
_COLUMNS = ("sum_va", "sum_a", "holes", "lat_n", "lat_s", "lon_w", "lon_e")
_NC = len(_COLUMNS)


# ================================================================================================
# Lazy statistics (one task per chunk, in the ingest's write pass)
# ================================================================================================
def _tile_stats(a, land, north, west, res, block_info=None):
    """(steps, 1, 1, 7) statistics of one (steps, h, w) tile."""
    (r0, r1), (c0, _) = block_info[0]["array-location"][1:]
    land = land.reshape(land.shape[-2:]) > 0
    lat = north - res * (np.arange(r0, r1) + 0.5)
    # true cell areas (SCIENCE.md §0): every cell of a row has the same area
    area = cell_area(lat + res / 2, lat - res / 2, res)[:, None]
    out = np.full((a.shape[0], 1, 1, _NC), np.nan)
    with np.errstate(invalid="ignore"):
        x = a.astype("f8", copy=False)
        valid = ~np.isnan(x) & land
        w = np.where(valid, area, 0.0)
        out[:, 0, 0, 0] = (np.where(valid, x, 0.0) * w).sum(axis=(1, 2))
        out[:, 0, 0, 1] = w.sum(axis=(1, 2))
        holes = np.isnan(x) & land
        out[:, 0, 0, 2] = holes.sum(axis=(1, 2))
    for k in np.nonzero(out[:, 0, 0, 2])[0]:
        rows, cols = np.nonzero(holes[k])
        out[k, 0, 0, 3] = north - res * (r0 + rows.min() + 0.5)
        out[k, 0, 0, 4] = north - res * (r0 + rows.max() + 0.5)
        out[k, 0, 0, 5] = west + res * (c0 + cols.min() + 0.5)
        out[k, 0, 0, 6] = west + res * (c0 + cols.max() + 0.5)
    return out


def _combine(s):
    """(steps, ni, nj, 7) per tile → (steps, 7) over the domain."""
    s = s.reshape(s.shape[0], -1, _NC)
    out = np.full((s.shape[0], _NC), np.nan)
    out[:, :3] = np.nansum(s[..., :3], axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)      # steps without holes: all NaN
        out[:, 3] = np.nanmax(s[..., 3], axis=1)
        out[:, 4] = np.nanmin(s[..., 4], axis=1)
        out[:, 5] = np.nanmin(s[..., 5], axis=1)
        out[:, 6] = np.nanmax(s[..., 6], axis=1)
    return out


def land_stats(ds: xr.Dataset, variables) -> dict:
    """Lazy (steps, 7) arrays per variable (:data:`_COLUMNS`) over the land of ``ds["land_mask"]``,
    one small task per chunk: compute them with the write (``dask.compute(write, stats)``)."""
    land = (ds["land_mask"] > 0).data
    lat, lon = ds["lat"].values, ds["lon"].values
    res = float(abs(lon[1] - lon[0])) if lon.size > 1 else float(abs(lat[1] - lat[0]))
    north, west = float(lat[0]) + res / 2, float(lon[0]) - res / 2
    out = {}
    for var in variables:
        if var == "land_mask" or var not in ds:
            continue
        a = ds[var].data
        a3 = a[None] if a.ndim == 2 else a
        per_tile = da.map_blocks(_tile_stats, a3, land[None], north, west, res, new_axis=3,
                                 dtype="f8", chunks=(a3.chunks[0], (1,) * len(a3.chunks[1]),
                                                     (1,) * len(a3.chunks[2]), (_NC,)),
                                 name=f"land-stats-{var}-" + dask.base.tokenize(a3, land))
        out[var] = per_tile.rechunk({1: -1, 2: -1}).map_blocks(
            _combine, drop_axis=(1, 2), chunks=(a3.chunks[0], (_NC,)), dtype="f8")
    return out


def where_holes(computed: dict | None, var: str, step: int) -> str:
    """'; their cell centres lie within 30.50–34.50°N, 100.50–104.50°E' for the holes of one
    output step ('' without statistics)."""
    if not computed or var not in computed:
        return ""
    n, lat_n, lat_s, lon_w, lon_e = np.asarray(computed[var], dtype="f8")[step, 2:]
    if not n or not np.isfinite(lat_n):
        return ""
    if lat_n == lat_s and lon_w == lon_e:
        return f"; the cell is centred at {lat_n:.2f}°N {lon_w:.2f}°E"
    return f"; their cell centres lie within {lat_s:.2f}–{lat_n:.2f}°N, {lon_w:.2f}–{lon_e:.2f}°E"


# ================================================================================================
# The plausibility check
# ================================================================================================
def band_for(var: str, spec) -> tuple[Band | None, str]:
    """(band, 'carbonsink' | 'manifest') for a variable and its manifest spec; (None, '') if the
    variable has no check or the manifest skips it."""
    band = BANDS.get(var)
    if band is None or getattr(spec, "plausibility", "check") == "skip":
        return None, ""
    rng = getattr(spec, "plausible_range", None)
    if rng is not None:
        return Band(float(rng[0]), float(rng[1]), band.units, band.what, band.per_step), "manifest"
    return band, "carbonsink"


def variable_attrs(var: str, spec) -> dict:
    """The ``plausibility_check`` attribute of a published variable (none without a band)."""
    if var not in BANDS:
        return {}
    if getattr(spec, "plausibility", "check") == "skip":
        return {"plausibility_check": SKIPPED}
    band, origin = band_for(var, spec)
    where = "the manifest's plausible_range" if origin == "manifest" else \
        "carbonsink.io.plausibility's band"
    return {"plausibility_check": f"land-area mean ({band.what}) checked against {where} "
                                  f"{band.lo:g}..{band.hi:g} {band.units}"}


def _fmt(x: float) -> str:
    return f"{x:.0f}" if abs(x) >= 1000 else f"{x:.3g}"


_PRETTY = {"c": "C", "mj": "MJ", "gj": "GJ", "j": "J", "kwh": "kWh", "k": "K", "degc": "degC",
           "w": "W", "gc": "gC", "kgc": "kgC", "kelvin": "K", "celsius": "degC"}


def pretty_units(units: str) -> str:
    """'t C ha-1' for the unit table's 't c ha-1' (its keys are lower case); Mg for megagram."""
    tokens = units.split(" ")
    out = [_PRETTY.get(t, t) for t in tokens]
    for i, t in enumerate(tokens[:-1]):
        if t == "mg" and tokens[i + 1] in ("c", "ha-1"):
            out[i] = "Mg"
    return " ".join(out)


_PERIOD_SUFFIXES = (" month-1", " mon-1", "/month", " yr-1", " a-1", " year-1", "/yr", "/year")


def _unit_candidates(var: str, declared: str) -> list[str]:
    """Other spellings the source might be in: the unit table's spellings of the variable's
    quantity, their amounts (without the period) and those amounts per second and per day, and the
    declared amount per other periods."""
    # molar and CO₂-mass spellings (flux products: CarbonTracker's mol m-2 s-1) are not how gridded
    # inputs such as SOC or NPP are published, so they are never suggested as the likely mistake
    aliases = [a for a in u._TABLE.get(u.canonical(SCHEMA[var].units), {})
               if "mol" not in a and "co2" not in a]
    amounts = []
    for a in aliases:
        for suffix in _PERIOD_SUFFIXES:
            if a.endswith(suffix):
                amounts.append(a[: -len(suffix)])
                break
    amounts = list(dict.fromkeys(amounts))
    rates = [f"{a} {b}" for a in amounts for b in ("s-1", "d-1")]
    if "j m-2" in amounts:
        rates.insert(0, "w m-2")
    amount, _ = split_rate(declared)
    own = [f"{amount} {b}" for b in ("s-1", "d-1", "month-1", "yr-1")]
    return list(dict.fromkeys([*aliases, *amounts, *rates, amount, *own]))


def _effect(var: str, units: str, temporal: str, steps) -> tuple[float, float] | None:
    """(K, O) with canonical land mean ≈ K · source mean + O for ``units`` and ``temporal``; None
    if the unit plan is impossible."""
    try:
        p = unit_plan(var, units, temporal)
    except u.UnitError:
        return None
    d = p.step_factors(steps) if p.multiply_by else np.ones(1)
    if p.aggregate_months:
        return p.factor * 12.0 * float(np.mean(d)), 0.0
    return p.factor * float(np.mean(d)), p.offset


def suggestions(var: str, units: str, temporal: str, steps, mean: float, band: Band) -> list[str]:
    """Phrases 'it would be 6.21 — plausible — if the source were in ...' for every other units
    spelling and temporal meaning (same time step) that brings the canonical land ``mean`` (in band
    units) into ``band``: changes of one thing first; up to three."""
    here = _effect(var, units, temporal, steps)
    if here is None or here[0] == 0:
        return []
    k0, o0 = here
    source_mean = (mean / band.per_step - o0) / k0
    period = _PERIOD_OF[temporal]
    temporals = [t for t in ALLOWED_TEMPORAL[var] if _PERIOD_OF[t] == period and t != temporal]
    unit_list = [c for c in _unit_candidates(var, units) if u._key(c) != u._key(units)]
    tries = ([(c, temporal) for c in unit_list] + [(units, t) for t in temporals]
             + [(c, t) for t in temporals for c in unit_list])
    seen, fits = {f"{mean:.5g}"}, []
    for c, t in tries:
        eff = _effect(var, c, t, steps)
        if eff is None:
            continue
        value = (eff[0] * source_mean + eff[1]) * band.per_step
        if f"{value:.5g}" in seen:       # the same effect as one tried before (or as declared)
            continue
        seen.add(f"{value:.5g}")
        if band.lo <= value <= band.hi:
            change = []
            if c != units:
                change.append(f"the source were in {pretty_units(c)!r} (declared {units!r})")
            if t != temporal:
                change.append(f"temporal were {t!r} rather than {temporal!r}")
            fits.append((len(change), f"{_fmt(value)} — plausible — if {' and '.join(change)}"))
    fits.sort(key=lambda f: f[0])
    if fits and fits[0][0] == 1:
        fits = [f for f in fits if f[0] == 1]
    return [f for _, f in fits[:_MAX_SUGGESTIONS]]


def check_plausibility(plans: dict, variables, computed: dict, record: dict) -> None:
    """Raise :class:`InputError` when the land-area mean of a key variable is implausible, naming
    the mean, the band, the likely unit or temporal mistake and the fix; record every mean found
    in ``record["plausibility"]``."""
    for var in variables:
        plan = plans.get(var)
        if plan is None or var not in BANDS or var not in computed:
            continue
        spec = plan.spec
        if getattr(spec, "plausibility", "check") == "skip":
            record.setdefault("plausibility", {})[var] = {"status": SKIPPED}
            continue
        band, origin = band_for(var, spec)
        s = np.asarray(computed[var], dtype="f8")
        weight = s[:, 1].sum()
        if not weight > 0:
            continue
        mean = float(s[:, 0].sum() / weight) * band.per_step
        ok = band.lo <= mean <= band.hi
        record.setdefault("plausibility", {})[var] = {
            "land_mean": mean, "units": band.units, "band": [band.lo, band.hi],
            "band_from": origin, "status": "plausible" if ok else "implausible"}
        if ok:
            continue
        unit = plan.unit
        fixes = [] if unit is None else suggestions(var, plan.units_declared, spec.temporal,
                                                     plan.steps, mean, band)
        if spec.units is None:          # the units came from the file's own attribute
            fixes = [f.replace("(declared ", "(the file declares ") for f in fixes]
        if fixes:
            what = " or ".join(fixes)
            changed = ("the units" if all("source were in" in f for f in fixes) else
                       "`temporal`" if all("source were in" not in f for f in fixes) else
                       "the units and/or `temporal`")
            hint = f"; it would be {what}; fix {changed} of {var} in the manifest"
        else:
            hint = ("; no other units or temporal meaning in the unit table makes it plausible: "
                    "check scale_factor/add_offset, nodata and the source files")
        where = plan.step_files[0] if len(plan.files) == 1 else plan.pattern
        raise InputError(var, where, f"land mean {_fmt(mean)} {band.units} is implausible for "
                         f"{band.what} ({_fmt(band.lo)}–{_fmt(band.hi)} {band.units}"
                         f"{' from the manifest' if origin == 'manifest' else ''}){hint} (if the "
                         f"values are right for this study area, set `plausible_range: [lo, hi]` "
                         f"or `plausibility: skip` for {var})")


# ================================================================================================
# River chemistry against the basin layer
# ================================================================================================
def _ids(block):
    b = np.asarray(block, dtype="f8")
    return np.unique(b[np.isfinite(b) & (b != 0)])


def _union(parts):
    return np.unique(np.concatenate([np.asarray(p, dtype="f8") for p in parts] or [np.zeros(0)]))


def basin_ids(ds: xr.Dataset):
    """Lazy sorted basin ids present on land in ``ds["basin"]`` (one task per chunk), or None."""
    if "basin" not in ds:
        return None
    blocks = ds["basin"].data.to_delayed().ravel()
    return dask.delayed(_union)([dask.delayed(_ids)(b) for b in blocks])


def check_river_basins(tables: dict, ids, basin_source: str) -> None:
    """Refuse a river table whose basin ids no land cell of the gridded basin layer carries (the
    karst sink's forest could not be trained on them); ``tables``: {name: (path, table)}."""
    from ..ml import IonTableError, validate_ion_table

    if ids is None:
        return
    on_grid = xr.DataArray(np.asarray(ids, dtype="f8"), dims="id", name="basin")
    for name, (path, table) in tables.items():
        try:
            validate_ion_table(table, on_grid, source=path)
        except IonTableError as e:
            raise InputError(name, path, "; ".join(e.problems) + f" — the basin layer "
                             f"{basin_source} puts no land cell of the grid in them: fix basin_id "
                             "in the table or the basin source in the manifest") from None
