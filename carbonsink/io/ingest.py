"""Ingest: real data files named by a manifest → the canonical input Zarr, validated, published.

``ingest(manifest, store)`` (and ``carbonsink ingest MANIFEST --store URL``) runs:

1. **manifest** — :func:`carbonsink.io.manifest.load_manifest` (pydantic): schema variables, temporal
   meanings, units against the unit table, placeholders; nothing is read if it is wrong.
2. **plan** (metadata only, no data values): every ``{year}``/``{month}`` expansion must match one file
   (missing / duplicate years and months); every file opens, has the variable/band, a CRS (from the
   file or the manifest, never both differently), a north-up regular grid with monotonic coordinates,
   units that agree with the manifest, covers China's land cells, and all files of a variable share one
   grid. Each file gets a fingerprint (size + sha256; ETag on object stores).
3. **nothing to do?** — the content hash (grid, each variable's decoding/units/resampling spec, each
   year's source fingerprints, the land mask and tables) equals the latest version's: return
   ``unchanged`` without writing anything (not even the catalog).
4. **build** (lazy, dask): read the windows the grid needs, decode scale/offset/nodata to NaN, convert
   units (unit table + days/seconds of each month for rates, daily means and accumulations, months
   summed to years), regrid onto the grid preset (:mod:`carbonsink.io.regrid`), rasterise lithology to
   a carbonate fraction, mask to China's land, float32, CF attrs and provenance.
5. **validate + write in one pass** — :func:`carbonsink.io.validate.validate_inputs` checks structure
   before writing; value checks run on statistics computed in the same dask pass as the staged write:
   raw minima/maxima per file (undeclared fill values such as -9999 or 32767), per-step ranges and
   holes on land (so an error names the file, the month and where), then the schema's own checks,
   the land-area means against plausible bands (unit slips inside the physical range) and the river
   table against the gridded basins (:mod:`carbonsink.io.plausibility`). A failure removes the
   staged copy: the store is byte-for-byte unchanged.
6. **publish** atomically as ``inputs/<name>/<version>`` (version = timestamp + content hash) with the
   provenance in the attrs and the version record, the tables in canonical columns and units as
   ``river_chemistry.csv``, ``province_statistics.csv``, ``emission_factors.csv``,
   ``lulc_classes.csv`` and ``carbon_pools.csv`` (read and checked in step 2, before anything is
   written), then the catalog is regenerated.

Incremental append — design
---------------------------
The published inputs are chunked **one year per chunk along time** (12 months for monthly variables,
1 year for annual ones) and in fixed square spatial tiles chosen once (sized for a 21-year monthly
series, ~``chunk_mb`` MB per full-time tile) and then kept by every later version. A version is still
one self-contained Zarr (``store.open("inputs", name)`` and the catalog work as for any input), and
published versions are never modified. When a later manifest only adds years at the end — same grid,
same per-variable spec hash, same fingerprints for every earlier year and for the static layers — the
new version is assembled in staging from

* new metadata and coordinates for the longer time axis (small),
* the previous version's chunk objects **re-linked, not rewritten**: hard links on local disks (same
  inode, same mtime: zero bytes written), server-side copies on object stores (no data through the
  client; ETags preserved), so earlier years are neither re-read from the sources nor re-encoded,
* the new years only, read, regridded, validated and written as a Zarr region write,

then published like any version (checked, moved into place, record, ``latest``). Anything else — an
earlier year's file changed, years prepended or removed, a changed spec, a different chunk encoding —
rewrites all years into a new version and says why. Sources holding many years in one file (one NetCDF
for 2000–2020) change as a whole when a year is added, so they are rewritten too.
Products want the full time axis in each dask chunk: open ingested inputs with :func:`open_inputs`
(``chunks={"time": -1, "year": -1}``), which merges the yearly chunks of a tile into one dask chunk.
"""
from __future__ import annotations

import concurrent.futures as cf
import datetime as _dt
import io
import json
import logging
import os
import posixpath
import shutil
import time as _time
import warnings
from dataclasses import dataclass, field

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
from affine import Affine

from .. import __version__
from .. import units as u
from ..domains import get_domain
from ..grid import Grid

CNMAPS_LAND = "cnmaps provinces of China"
from . import plausibility as pl
from . import readers as rd
from . import regrid as rg
from .manifest import (MONTHLY, SERVICES_TABLES, Manifest, UnitPlan, _template_fields,
                       load_manifest, unit_plan)
from .names import validate_name
from .rawread import read_window
from .store import (ZARR_FORMAT, Published, Store, StoreError, _prepare_for_zarr,
                    compute_default, new_version)
from .validate import (OPTIONAL, REQUIRED, SCHEMA, InputError, check_value_stats,
                       validate_inputs)

log = logging.getLogger("carbonsink.ingest")

INGEST_FORMAT = 1
REFERENCE_YEARS = 21          # tiles are sized for a 21-year monthly series (2000–2020)
READ_CHUNK = 1024             # source pixels per dask chunk side when reading windows
RANGE_PHRASE = "outside the physical range"
NEAREST_FILL_CELLS = 8        # fill_on_land: nearest looks this many cells away at most


@dataclass
class IngestResult:
    action: str                  # created | appended | rewritten | unchanged | (dry run) would-*
    name: str
    version: str | None
    uri: str | None
    years: tuple[int, int]
    new_years: list[int] = field(default_factory=list)
    reused_chunks: int = 0
    source_bytes: int = 0
    seconds: float = 0.0
    reason: str = ""
    catalog: str | None = None
    published: Published | None = None

    @property
    def message(self) -> str:
        y = f"{self.years[0]}–{self.years[1]}"
        if self.action == "unchanged":
            return (f"inputs/{self.name} is up to date (version {self.version}, {y}): nothing to "
                    "do — no file or setting changed since it was ingested")
        if self.action.startswith("would-"):
            return f"dry run: would {self.action[6:]} inputs/{self.name} ({y}){self._why()}"
        what = {"created": "created", "rewritten": "rewrote all years of",
                "appended": "appended to"}[self.action]
        extra = ""
        if self.action == "appended":
            extra = (f": wrote {_years_text(self.new_years) or 'no new years'}, re-linked "
                     f"{self.reused_chunks} chunk objects of earlier years unchanged")
        rate = self.source_bytes / 1e6 / self.seconds if self.seconds else 0.0
        return (f"{what} inputs/{self.name} version {self.version} ({y}){extra}{self._why()}; "
                f"read {self.source_bytes / 1e6:.1f} MB of sources in {self.seconds:.1f} s "
                f"({rate:.1f} MB/s)")

    def _why(self) -> str:
        return f" — {self.reason}" if self.reason else ""


def _years_text(years) -> str:
    years = list(years)
    if not years:
        return ""
    return str(years[0]) if len(years) == 1 else f"{years[0]}–{years[-1]}"


# ================================================================================================
# Planning: files, steps, grids, units — metadata only
# ================================================================================================
@dataclass
class _Run:
    """Consecutive steps of one variable read from one file."""
    raster: int
    indices: list[int]


@dataclass
class VarPlan:
    var: str
    spec: object                         # VariableSource
    kind: str
    pattern: str
    steps: list[tuple]                   # (year, month|None) per source step, in order
    step_files: list[str] = field(default_factory=list)
    rasters: list[rd.Raster] = field(default_factory=list)
    decodings: list[rd.Decoding] = field(default_factory=list)
    runs: list[_Run] = field(default_factory=list)
    unit: UnitPlan | None = None
    units_declared: str | None = None
    window: tuple | None = None
    resampling: str = "average"
    polygons: object = None              # GeoDataFrame for lithology polygons
    fingerprints: dict = field(default_factory=dict)   # path → Fingerprint
    # years_available: the year whose map each year takes (None: every year has its own), the
    # distinct source steps the runs read (in order) and, per step, its index among them
    held: list[int] | None = None
    src_steps: list[tuple] | None = None
    take: list[int] | None = None

    @property
    def files(self) -> list[str]:
        if self.polygons is not None:
            return [self.pattern]
        return [r.path for r in self.rasters]

    @property
    def monthly(self) -> bool:
        return self.spec.temporal in MONTHLY


def _source_pattern(m: Manifest, var: str) -> str:
    return m.resolve(m.variables[var].source)


def _expand(m: Manifest, var: str, years) -> list[tuple[str, int | None, int | None]]:
    """(file, year, month) for every expansion of the source pattern; errors on missing or
    duplicate files."""
    spec = m.variables[var]
    pattern = _source_pattern(m, var)
    fields = _template_fields(spec.source)
    so = m.storage_options
    if not fields:
        files = rd.find_files(pattern, so)
        if not files:
            raise InputError(var, pattern, "no file matches the source path")
        if spec.temporal == "static" and len(files) > 1:
            raise InputError(var, pattern, f"{len(files)} files match a static source "
                                           f"(duplicate?): {', '.join(files[:3])}")
        if spec.format == "geotiff" and len(files) > 1:
            raise InputError(var, pattern, f"{len(files)} GeoTIFFs match; a GeoTIFF time series "
                                           "needs {year} in its path")
        return [(f, None, None) for f in files]
    out = []
    months = range(1, 13) if "month" in fields else [None]
    for y in years:
        for mo in months:
            path = pattern.format(year=y, month=mo) if mo else pattern.format(year=y)
            files = rd.find_files(path, so)
            when = f"{y}-{mo:02d}" if mo else str(y)
            if not files:
                raise InputError(var, path, f"missing {'month' if mo else 'year'} {when}: no file "
                                            "matches")
            if len(files) > 1:
                raise InputError(var, path, f"duplicate {'month' if mo else 'year'} {when}: "
                                            f"{len(files)} files match ({', '.join(files[:3])})")
            out.append((files[0], y, mo))
    return out


def _open(m: Manifest, var: str, path: str, monthly_bands: bool) -> rd.Raster:
    spec = m.variables[var]
    if spec.format == "geotiff":
        return rd.open_geotiff(path, var, band=spec.band, bands=12 if monthly_bands else None,
                               crs=spec.crs, storage_options=m.storage_options)
    return rd.open_netcdf(path, var, spec.variable, crs=spec.crs,
                          storage_options=m.storage_options)


def _required_steps(temporal: str, years) -> list[tuple]:
    if temporal == "static":
        return [(None, None)]
    if temporal in MONTHLY:
        return [(y, mo) for y in years for mo in range(1, 13)]
    return [(y, None) for y in years]


def _same_units(var: str, a: str, b: str, temporal: str) -> bool:
    if u._key(a) == u._key(b):
        return True
    try:
        pa, pb = unit_plan(var, a, temporal), unit_plan(var, b, temporal)
    except u.UnitError:
        return False
    return (pa.multiply_by == pb.multiply_by and np.isclose(pa.factor, pb.factor)
            and np.isclose(pa.offset, pb.offset))


def _plan_units(m: Manifest, var: str, plan: VarPlan):
    spec = m.variables[var]
    if var == "carbonate_fraction" and spec.carbonate_classes:
        return None, "class"
    file_units = {r.units for r in plan.rasters if r.units}
    first = plan.rasters[0]
    declared = spec.units
    if declared is not None:
        for r in plan.rasters:
            if r.units and not _units_known(var, r.units, spec.temporal):
                continue  # a spelling the unit table does not know: the manifest's word counts
            if r.units and not _same_units(var, r.units, declared, spec.temporal):
                raise InputError(var, r.path, f"the file declares units {r.units!r} but the "
                                              f"manifest says {declared!r} (mismatched units)")
    else:
        if len(file_units) > 1:
            raise InputError(var, first.path, f"files declare different units {sorted(file_units)}:"
                                              " declare `units` in the manifest")
        declared = next(iter(file_units), None)
        if declared is None:
            if SCHEMA[var].kind in ("mask", "class"):
                declared = "1"
            else:
                raise InputError(var, first.path, "has no units: declare `units` in the manifest "
                                                  "(the file carries none)")
    try:
        return unit_plan(var, declared, spec.temporal), declared
    except u.UnitError as e:
        raise InputError(var, first.path, str(e)) from None


def _units_known(var, units, temporal) -> bool:
    try:
        unit_plan(var, units, temporal)
        return True
    except u.UnitError:
        return False


def _plan_variable(m: Manifest, var: str, grid: Grid, land: np.ndarray) -> VarPlan:
    spec = m.variables[var]
    pattern = _source_pattern(m, var)
    plan = VarPlan(var, spec, SCHEMA[var].kind, pattern, [])
    if spec.format == "vector":
        files = _expand(m, var, m.year_list)
        gdf = rd.read_polygons(files[0][0], var, layer=spec.layer, attribute=spec.attribute,
                               crs=spec.crs, storage_options=m.storage_options)
        if len(gdf) == 0:
            raise InputError(var, files[0][0], "holds no polygons")
        if var == "basin":
            _check_basin_ids(gdf[spec.attribute], files[0][0], spec.attribute)
        left, bottom, right, top = gdf.total_bounds
        rows, cols = np.nonzero(land)
        lat, lon = grid.lat[rows], grid.lon[cols]
        inside = (lon >= left) & (lon <= right) & (lat >= bottom) & (lat <= top)
        if not inside.all():
            i = int(np.argmin(inside))
            out = 100 * (1 - inside.mean())
            raise InputError(var, files[0][0], f"does not cover China: {out:.1f}"
                             f"% of China's land cells lie outside its polygons' extent (e.g. "
                             f"{lat[i]:.2f}°N {lon[i]:.2f}°E); extent {left:.2f}..{right:.2f}°E, "
                             f"{bottom:.2f}..{top:.2f}°N")
        plan.polygons, plan.pattern = gdf, files[0][0]
        plan.steps, plan.step_files = [(None, None)], [files[0][0]]
        return plan

    fields = _template_fields(spec.source)
    monthly_bands = (spec.format == "geotiff" and spec.temporal in MONTHLY
                     and "month" not in fields)
    # years_available: only the years with their own map are looked for; the others take one
    src_of = m.source_years(var) if spec.years_available else None
    entries = _expand(m, var, sorted(set(src_of.values())) if src_of else m.year_list)
    opened: dict[str, int] = {}
    for path, _, _ in entries:
        if path not in opened:
            opened[path] = len(plan.rasters)
            plan.rasters.append(_open(m, var, path, monthly_bands))
    # which (file, band/step) holds each required step
    where: dict[tuple, tuple[int, int]] = {}
    for path, y, mo in entries:
        ri = opened[path]
        r = plan.rasters[ri]
        if spec.format == "geotiff":
            if monthly_bands:
                keys = [((y, k), k - 1) for k in range(1, 13)]
            else:
                keys = [((y, mo) if y is not None else (None, None), 0)]
        else:
            keys = _netcdf_keys(var, r, spec.temporal, y, mo)
        for key, idx in keys:
            if key in where and where[key] != (ri, idx):
                other = plan.rasters[where[key][0]].path
                when = _when(key)
                raise InputError(var, r.path, f"duplicate time step {when}: also in {other}"
                                 if other != r.path else f"duplicate time step {when} in the "
                                 "time coordinate")
            where[key] = (ri, idx)
    required = _required_steps(spec.temporal, m.year_list)
    # the steps read: every required one, or (years_available) each available year used once
    read = sorted({(src_of[y], None) for y, _ in required}) if src_of else required
    missing = [k for k in read if k not in where]
    if missing:
        what = "months" if spec.temporal in MONTHLY else "years"
        listed = ", ".join(_when(k) for k in missing[:6]) + (" ..." if len(missing) > 6 else "")
        held = (f" (years_available {spec.years_available}: the years "
                f"{[y for y, _ in required]} take their maps from {[y for y, _ in read]})"
                if src_of else "")
        raise InputError(var, pattern, f"missing {what} {listed} ({len(missing)} of "
                                       f"{len(read)}): no source holds them{held}")
    plan.steps = required
    # runs of consecutive steps from one file, in step order
    for key in read:
        ri, idx = where[key]
        if plan.runs and plan.runs[-1].raster == ri:
            plan.runs[-1].indices.append(idx)
        else:
            plan.runs.append(_Run(ri, [idx]))
    for y, mo in required:
        plan.step_files.append(plan.rasters[where[(src_of[y], None) if src_of else (y, mo)][0]]
                               .path)
    if src_of:
        plan.held = [src_of[y] for y, _ in required]
        plan.src_steps = read
        plan.take = [read.index((src_of[y], None)) for y, _ in required]
    used = sorted({r.raster for r in plan.runs})
    plan.rasters = [plan.rasters[i] for i in used]
    remap = {old: new for new, old in enumerate(used)}
    for run in plan.runs:
        run.raster = remap[run.raster]
    first = plan.rasters[0]
    checked = []
    for r in plan.rasters:
        if any(r.same_grid(c) for c in checked):
            continue
        checked.append(r)
        frac, example = rg.coverage(r.transform, r.crs, r.shape, grid, land)
        if frac < 1.0:
            b = r.bounds
            raise InputError(var, r.path, f"does not cover China: {100 * (1 - frac):.1f}% of "
                             f"China's land cells fall outside the file (e.g. {example[0]:.2f}°N "
                             f"{example[1]:.2f}°E); its extent is x {b[0]:g}..{b[2]:g}, y "
                             f"{b[1]:g}..{b[3]:g} in {rd._crs_name(r.crs)}")
    for r in plan.rasters[1:]:
        if not r.same_grid(first):
            raise InputError(var, r.path, f"is on a different grid than {first.path} (shape "
                                          f"{r.shape} vs {first.shape}, or CRS/transform); all "
                                          "files of a variable must share one grid")
    plan.window = rg.pixel_window(first.transform, first.crs, first.shape,
                                  (grid.west, grid.south, grid.east, grid.north),
                                  pad=rg.PAD + 2)
    plan.unit, plan.units_declared = _plan_units(m, var, plan)
    for r in plan.rasters:
        plan.decodings.append(rd.decoding_for(r, var, spec.nodata, spec.scale_factor,
                                              spec.add_offset, spec.valid_range))
    kind = "fraction" if (var == "carbonate_fraction") else SCHEMA[var].kind
    plan.resampling = rg.pick_resampling(spec.resampling, kind, first.transform, first.crs,
                                         first.shape, grid)
    return plan


def _check_basin_ids(ids, path: str, attribute: str):
    """Basin ids must be whole numbers in 1..2**24 (stored exactly in float32; 0 = no basin)."""
    vals = pd.to_numeric(ids, errors="coerce").to_numpy(dtype="f8")
    bad = ~np.isfinite(vals) | (vals != np.round(vals)) | (vals < 1) | (vals > 2 ** 24)
    if bad.any():
        examples = list(dict.fromkeys(ids[bad].astype(str)))[:5]
        raise InputError("basin", path, f"column {attribute!r} must hold whole basin ids "
                                        f"1..{2 ** 24}; {int(bad.sum())} polygons hold "
                                        f"{examples}")


def _when(key) -> str:
    y, mo = key
    return "static" if y is None else (f"{y}-{mo:02d}" if mo else str(y))


def _netcdf_keys(var, r: rd.Raster, temporal, year, month):
    """(step key, index in file) for each time step of a NetCDF file."""
    if temporal == "static":
        if r.data.sizes["step"] != 1:
            raise InputError(var, r.path, f"a static source has {r.data.sizes['step']} time steps")
        return [((None, None), 0)]
    if r.times is None:
        raise InputError(var, r.path, "has no time coordinate; a time series needs one (or a "
                                      "{year} file pattern with one GeoTIFF per step)")
    keys = []
    seen = {}
    for i, (y, mo) in enumerate(r.times):
        key = (y, mo) if temporal in MONTHLY else (y, None)
        if key in seen:
            raise InputError(var, r.path, f"duplicate time step {_when(key)} in the time coordinate"
                             f" (indices {seen[key]} and {i})"
                             + ("; monthly data? declare a monthly temporal meaning"
                                if temporal not in MONTHLY else ""))
        seen[key] = i
        if year is not None and y != year:
            raise InputError(var, r.path, f"is the file for {year} but holds time step "
                                          f"{_when(key)}")
        if month is not None and mo != month:
            raise InputError(var, r.path, f"is the file for {year}-{month:02d} but holds "
                                          f"{_when(key)}")
        keys.append((key, i))
    return keys


# ================================================================================================
# Land mask, fingerprints, tables, content hash
# ================================================================================================
def _land_mask(m: Manifest, grid: Grid) -> tuple[np.ndarray, dict, VarPlan | None]:
    """The domain's mask (China's land inside the study area's clip, cnmaps, as the synthetic
    inputs use), intersected with the manifest's mask raster if it has one."""
    domain = get_domain(m.domain)
    inside = domain.mask(grid)
    if "land_mask" not in m.variables:
        source = CNMAPS_LAND if domain.kind == "china" else f"domain {domain.key}"
        return inside, {"source": source, "domain": domain.fingerprint}, None
    # no coverage requirement: cells outside the mask raster are not land
    plan = _plan_variable(m, "land_mask", grid, np.zeros(grid.shape, dtype=bool))
    values = _regridded_source(plan, grid, grid.chunks(1), 0, raw_stats={})[0].compute()
    mask = ((np.nan_to_num(values, nan=0.0) >= 0.5) & (inside > 0)).astype("u1")
    return mask, {"source": plan.pattern, "domain": domain.fingerprint}, plan


def _fingerprints(m: Manifest, plans: dict[str, VarPlan], table_paths: list[str]) -> dict:
    paths = sorted({p for plan in plans.values() for p in plan.files} | set(table_paths))
    if not paths:
        return {}
    with cf.ThreadPoolExecutor(max_workers=min(8, len(paths))) as ex:
        fps = list(ex.map(lambda p: rd.fingerprint(p, m.checksum, m.storage_options), paths))
    return dict(zip(paths, fps))


def _read_tables(m: Manifest) -> dict[str, tuple[str, pd.DataFrame]]:
    """Every table of the manifest read, converted to its canonical columns and units and checked
    (name → (path, canonical table)); an InputError names the table before anything is written."""
    from ..ml import IonTableError, validate_ion_table

    out = {}
    for name, spec in m.tables.items():
        if name != "river_chemistry":
            continue
        path = m.resolve(spec.source)
        table = rd.read_ion_table(path, columns=spec.columns, units=spec.units, sep=spec.sep,
                                  storage_options=m.storage_options)
        try:
            table = validate_ion_table(table, None, source=path)
        except IonTableError as e:
            raise InputError(name, path, "; ".join(e.problems)) from None
        out[name] = (path, table)
    out.update(_read_services_tables(m))
    return out


def _read_csv_table(m: Manifest, name: str, path: str, sep: str) -> pd.DataFrame:
    what = f"table {name}"
    try:
        if "://" in path and not path.startswith("file://"):
            fs, p = rd._fs(path, m.storage_options)
            with fs.open(p, "rb") as f:
                return pd.read_csv(f, sep=sep)
        return pd.read_csv(path.removeprefix("file://"), sep=sep)
    except (OSError, ValueError, pd.errors.ParserError) as e:
        raise InputError(None, path, f"{what}: cannot be read as CSV: {e}") from None


def _services_frame(m: Manifest, name: str, spec, path: str) -> pd.DataFrame:
    """A services table with its mapped columns renamed to the canonical names (other columns
    kept: the carbon pool table keeps e.g. ``LULC_name``)."""
    raw = _read_csv_table(m, name, path, spec.sep)
    raw.columns = [str(c).strip() for c in raw.columns]
    absent = [f"{canon} (column {src!r})" for canon, src in spec.columns.items()
              if src not in raw.columns]
    if absent:
        raise InputError(None, path, f"table {name}: the manifest maps columns the file does not "
                                     f"have: {', '.join(absent)}; the file has "
                                     f"{list(raw.columns)}")
    rename = {src: canon for canon, src in spec.columns.items()}
    clash = [c for c in raw.columns if c in spec.columns and c not in rename]
    raw = raw.drop(columns=clash).rename(columns=rename)
    return raw


def _scaled(df: pd.DataFrame, column: str, factor: float) -> None:
    if factor != 1.0 and column in df.columns:
        # text cells become NaN here and are reported by the table's own check (not finite)
        df[column] = pd.to_numeric(df[column], errors="coerce") * factor


def _read_services_tables(m: Manifest) -> dict[str, tuple[str, pd.DataFrame]]:
    """The services tables (:mod:`carbonsink.io.services_tables`): columns renamed, units
    converted (pool densities to t C ha-1, yearbook 10^4 / 10^8 multipliers), then checked by the
    table's own reader — missing columns, negative or non-numeric values, unknown provinces,
    duplicated rows, missing years — naming the manifest entry and the file."""
    from . import services_tables as st
    from .manifest import POOL_UNITS

    out = {}
    if not any(k in m.tables for k in SERVICES_TABLES):
        return out

    def label(name, path):
        return f"{name} table {path} (manifest tables.{name})"

    if "emission_factors" in m.tables:
        spec = m.tables["emission_factors"]
        path = m.resolve(spec.source)
        out["emission_factors"] = (path, st.read_emission_factors(
            _services_frame(m, "emission_factors", spec, path), table=label("emission_factors",
                                                                            path)))
        fuels = out["emission_factors"][1]["fuel"].tolist()
    else:
        fuels = st.read_emission_factors()["fuel"].tolist()
    if "lulc_classes" in m.tables:
        spec = m.tables["lulc_classes"]
        path = m.resolve(spec.source)
        out["lulc_classes"] = (path, st.read_classes(
            _services_frame(m, "lulc_classes", spec, path), table=label("lulc_classes", path)))
    if "carbon_pools" in m.tables:
        spec = m.tables["carbon_pools"]
        path = m.resolve(spec.source)
        df = _services_frame(m, "carbon_pools", spec, path)
        factor, _ = u.conversion(spec.units, POOL_UNITS)
        for c in st.POOL_COLUMNS:
            _scaled(df, c, factor)
        out["carbon_pools"] = (path, st.read_pools(df, table=label("carbon_pools", path)))
    if "province_statistics" in m.tables:
        spec = m.tables["province_statistics"]
        path = m.resolve(spec.source)
        df = _services_frame(m, "province_statistics", spec, path)
        for c in st.STAT_COLUMNS + tuple(f"energy_{f}" for f in fuels):
            _scaled(df, c, spec.multiplier(c))
        out["province_statistics"] = (path, st.read_province_statistics(
            df, fuels, years=m.year_list, table=label("province_statistics", path)))
    return out


def _content(m: Manifest, plans: dict[str, VarPlan], fps: dict, land_info: dict,
             tables: dict) -> dict:
    """What determines the published values: per variable its spec hash and, per year, the
    fingerprints of the files (and steps) it is read from."""
    variables = {}
    for var, plan in plans.items():
        per_year: dict[str, list] = {}
        for (y, _), path in zip(plan.steps, plan.step_files):
            key = "static" if y is None else str(y)
            fp = fps[path]
            entry = f"{fp.digest}:{fp.size}"
            if entry not in per_year.setdefault(key, []):
                per_year[key].append(entry)
        variables[var] = {"spec": m.variable_hash(var), "sources": per_year}
    land = land_info.get("source")
    fp = fps.get(land_info["source"])
    land = f"{fp.digest}:{fp.size}" if fp else land
    return {"format": INGEST_FORMAT, "grid": m.grid, "years": list(m.years),
            "domain": m.domain, "domain_fingerprint": land_info.get("domain", ""),
            "regrid_method": rg.METHOD_VERSION,
            "land_mask": {"spec": m.variable_hash("land_mask") if "land_mask" in m.variables
                          else "cnmaps", "source": land},
            "variables": variables,
            "tables": {k: f"{fps[p].digest}:{fps[p].size}|{m.tables[k].model_dump_json()}"
                       for k, (p, _) in tables.items()},
            "chunk_mb": m.chunk_mb}


def _hash(obj) -> str:
    import hashlib
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


# ================================================================================================
# Building the canonical dataset (lazy)
# ================================================================================================
def _source_steps(plan: VarPlan, step_slice: slice) -> tuple[list[da.Array], list]:
    """Decoded float64 dask arrays (steps, y, x) of the plan's window for the steps in
    ``step_slice``, one per run of one file, and the raw (min, max) per file for fill checks."""
    r0, r1, c0, c1 = plan.window
    arrays, raw_stats = [], {}
    pos = 0
    for run in plan.runs:
        lo, hi = pos, pos + len(run.indices)
        pos = hi
        a, b = max(lo, step_slice.start), min(hi, step_slice.stop)
        if a >= b:
            continue
        idx = run.indices[a - lo:b - lo]
        r = plan.rasters[run.raster]
        dec = plan.decodings[run.raster]
        # a slice when the steps are consecutive: netCDF4 reads lists of indices one by one
        steps = slice(idx[0], idx[-1] + 1) if idx == list(range(idx[0], idx[-1] + 1)) else idx
        # reads guarded: a corrupted tile is an InputError naming the file, band and window
        chunks = {"step": min(len(idx), 12), "y": READ_CHUNK, "x": READ_CHUNK}
        raw = read_window(r, plan.var, (r0, r1, c0, c1), steps, chunks)
        # Raw extremes (undeclared fill values) from a second, separate read of the same window:
        # a second consumer of the chunks the regridding reads makes dask's ordering run the
        # regridding far ahead of the writes (every regridded tile of the run held in memory,
        # ~2 GB at 0.05° × 21 years); reading twice costs a little I/O, not memory.
        raw2 = read_window(r, plan.var, (r0, r1, c0, c1), steps, chunks, "rawstats-read-")
        minmax = raw2.map_blocks(_raw_minmax, dec, new_axis=3, dtype="f8",
                                 chunks=tuple((1,) * len(c) for c in raw.chunks) + ((2,),))
        raw_stats.setdefault(r.path, [r.data.dtype, dec, []])[2].append(minmax)
        arrays.append(dec.decode(raw))
    return arrays, raw_stats


def _raw_minmax(raw, dec: rd.Decoding):
    """(1, 1, 1, 2): min and max of the raw values that are not declared missing (NaN if none)."""
    x = raw.astype("f8")
    x[dec.missing(raw)] = np.nan
    out = np.full((1, 1, 1, 2), np.nan)
    if np.isfinite(x).any():
        out[..., 0], out[..., 1] = np.nanmin(x), np.nanmax(x)
    return out


def _regridded_source(plan: VarPlan, grid: Grid, tile: dict, first_step: int,
                      n_steps: int | None = None, raw_stats: dict | None = None) -> da.Array:
    """Steps ``first_step``.. of a raster variable, decoded, in canonical units, on ``grid``
    (float32, or float64 for monthly sums, before land masking); (steps, nlat, nlon)."""
    n_steps = len(plan.steps) - first_step if n_steps is None else n_steps
    take = None
    steps = plan.steps[first_step:first_step + n_steps]
    if plan.take is not None:
        # years_available: each map read and regridded once, then repeated for the years it holds
        want = np.asarray(plan.take[first_step:first_step + n_steps])
        first_step, n_steps = int(want.min()), int(want.max()) + 1 - int(want.min())
        take = want - first_step
        steps = plan.src_steps[first_step:first_step + n_steps]
    arrays, stats = _source_steps(plan, slice(first_step, first_step + n_steps))
    if raw_stats is not None:
        raw_stats.update(stats)
    values = da.concatenate(arrays, axis=0) if len(arrays) > 1 else arrays[0]
    block = 12 if plan.monthly else 1
    values = values.rechunk({0: block})
    spec = plan.spec
    if plan.unit is None:                       # carbonate classes → 0/1 indicator
        classes = np.array([float(c) for c in spec.carbonate_classes])
        values = da.where(da.isnan(values), np.nan, da.isin(values, classes).astype("f8"))
    else:
        factors = plan.unit.step_factors(steps)
        if not plan.unit.aggregate_months:
            factors = factors * plan.unit.factor
        if np.any(factors != 1.0):
            values = values * factors[:, None, None]
        if not plan.unit.aggregate_months and plan.unit.offset:
            values = values + plan.unit.offset
    r = plan.rasters[0]
    r0, _, c0, _ = plan.window
    transform = r.transform * Affine.translation(c0, r0)
    out = rg.regrid(values, transform, r.crs, grid, tile, plan.resampling)
    if take is not None:
        out = out[take]
    if plan.unit is not None and plan.unit.aggregate_months:
        # each time chunk is one year of 12 months: sum chunk by chunk (a dask reshape would
        # rechunk to whole-grid chunks and hold every month in memory)
        assert all(c == 12 for c in out.chunks[0]), out.chunks[0]
        out = out.map_blocks(_year_sum, plan.unit.factor, dtype="f8",
                             chunks=((1,) * len(out.chunks[0]),) + out.chunks[1:])
    return out


def _nearest_fill(block):
    """NaN cells of each 2-D slice take the value of the nearest cell with data (within the block
    and its halo); all-NaN slices stay NaN."""
    from scipy import ndimage

    out = np.array(block, copy=True)
    planes = out.reshape((-1,) + out.shape[-2:])
    for p in planes:
        missing = np.isnan(p)
        if missing.any() and not missing.all():
            dist, (ii, jj) = ndimage.distance_transform_edt(missing, return_indices=True)
            near = missing & (dist <= NEAREST_FILL_CELLS)
            p[near] = p[ii[near], jj[near]]
    return out


def _year_sum(block, factor):
    """The 12 months of one year summed (NaN if any month is missing), × the unit factor."""
    return block.astype("f8").sum(axis=0, keepdims=True) * factor


def _variable(plan: VarPlan, grid: Grid, tile: dict, years_slice: slice, land: np.ndarray,
              raw_stats: dict, fill_counts: dict) -> da.Array:
    """The canonical (float32, land-masked) dask array of one variable for the years in
    ``years_slice`` (indices into the manifest's years); static variables ignore it.
    ``raw_stats[var]`` and ``fill_counts[var]`` receive lazy statistics for the value checks."""
    land2d = da.from_array(land > 0, chunks=(tile["lat"], tile["lon"]))
    if plan.polygons is not None:
        spec = plan.spec
        if plan.var == "basin":
            out = rg.polygon_ids(plan.polygons, spec.attribute, grid, tile, spec.supersample)
        else:
            out = rg.polygon_fraction(plan.polygons, spec.attribute, spec.carbonate_classes,
                                      grid, tile, spec.supersample)
    else:
        if plan.spec.temporal == "static":
            first, n = 0, 1
        else:
            per = 12 if plan.monthly else 1
            first, n = years_slice.start * per, (years_slice.stop - years_slice.start) * per
        out = _regridded_source(plan, grid, tile, first, n, raw_stats.setdefault(plan.var, {}))
        if plan.spec.temporal == "static":
            out = out[0]
    fill = plan.spec.fill_on_land
    if plan.var == "basin":
        fill = 0.0 if fill is None else fill     # land in no basin (or nodata): 0
    if fill is not None:
        holes = land2d & da.isnan(out)
        fill_counts[plan.var] = holes.sum()
        if fill == "nearest":
            depth = {out.ndim - 2: NEAREST_FILL_CELLS, out.ndim - 1: NEAREST_FILL_CELLS}
            if out.ndim == 3:
                depth[0] = 0
            out = da.map_overlap(_nearest_fill, out, depth=depth, boundary="none",
                                 dtype=out.dtype, trim=True)
        else:
            out = da.where(holes, float(fill), out)
    out = da.where(land2d, out, np.nan)
    return out.astype("f4")


def _coords(grid: Grid, years) -> dict:
    coords = {k: xr.Variable(*v) for k, v in grid.coords().items()}
    years = np.asarray(years, dtype="i8")
    coords["year"] = xr.Variable("year", years, {"long_name": "calendar year"})
    time = pd.date_range(f"{years[0]}-01-01", periods=12 * years.size, freq="MS")
    coords["time"] = xr.Variable("time", time, {"long_name": "month (start of month)",
                                                "standard_name": "time"})
    return coords


_CELL_METHODS = {"tas": "time: mean", "pr": "time: sum", "npp": "year: sum", "rsds": "year: sum",
                 "aet": "year: sum", "uas": "time: mean", "vas": "time: mean",
                 "lulc": "area: mode"}


def _var_attrs(var: str, plan: VarPlan | None, land_info: dict, grid: Grid) -> dict:
    spec = SCHEMA[var]
    attrs = {"units": spec.units, "long_name": spec.long_name}
    if spec.standard_name:
        attrs["standard_name"] = spec.standard_name
    if var in _CELL_METHODS:
        attrs["cell_methods"] = _CELL_METHODS[var]
    if var == "land_mask":
        attrs.update({"flag_values": [0, 1], "flag_meanings": "outside china_land",
                      "source": land_info["source"]})
        if plan is not None:
            attrs["resampling"] = plan.resampling
        return attrs
    s = plan.spec
    attrs.update({
        "source": plan.pattern, "source_files": len(plan.files),
        "source_format": s.format, "source_temporal": s.temporal,
    })
    if plan.polygons is not None and var == "basin":
        attrs.update({"source_attribute": s.attribute,
                      "method": f"polygons rasterised on {s.supersample}x{s.supersample} sub-cells "
                                "per cell; the id covering most sub-cells; 0 where none"})
        return attrs
    if plan.polygons is not None:
        attrs.update({"source_attribute": s.attribute,
                      "carbonate_classes": [str(c) for c in s.carbonate_classes],
                      "method": f"polygons rasterised on {s.supersample}x{s.supersample} sub-cells "
                                "per cell; carbonate share of the covered sub-cells"})
        return attrs
    r = plan.rasters[0]
    dec = plan.decodings[0]
    attrs.update({
        "source_variable": s.variable or f"band {s.band or 1}",
        "source_crs": rd._crs_name(r.crs), "source_crs_from": r.crs_origin,
        "source_units": plan.units_declared or "",
        "conversion": plan.unit.describe() if plan.unit else
        f"carbonate classes {[str(c) for c in s.carbonate_classes]} → 1, others → 0, averaged",
        "decoding": f"raw * {dec.scale:g} + {dec.offset:g}; missing: nodata {list(dec.nodata)}"
                    + (f", outside raw valid_range {list(dec.valid_range)}" if dec.valid_range
                       else ""),
        "resampling": plan.resampling,
        "resampling_method": rg.describe(plan.resampling, r.transform, r.crs, grid),
    })
    attrs.update(pl.variable_attrs(var, s))
    if plan.held is not None:
        attrs["years_available"] = list(s.years_available)
        attrs["source_year"] = list(plan.held)
        attrs["source_year_note"] = (
            "source_year[i]: the year of the map used for year[i] — the latest of years_available "
            "not after it (the first available year for years before all of them)")
    if s.fill_on_land is not None:
        attrs["fill_on_land"] = s.fill_on_land
        attrs["fill_on_land_note"] = (
            "land cells the source leaves empty are set to this value" if s.fill_on_land !=
            "nearest" else f"land cells the source leaves empty take the value of the nearest "
            f"cell with data within {NEAREST_FILL_CELLS} cells") + "; the count is in the " \
            "version record"
    return attrs


def _tile(grid: Grid, years, chunk_mb: float) -> dict:
    return grid.chunks(12 * max(len(years), REFERENCE_YEARS), target_mb=chunk_mb)


def _build(m: Manifest, plans: dict[str, VarPlan], grid: Grid, land: np.ndarray, tile: dict,
           years_slice: slice, land_info: dict, land_plan, with_static: bool, attrs: dict,
           raw_stats: dict | None = None, fill_counts: dict | None = None) -> xr.Dataset:
    years = m.year_list[years_slice]
    coords = _coords(grid, years)
    data = {}
    for var in SCHEMA:
        if var == "land_mask":
            if with_static:
                data[var] = xr.Variable(
                    ("lat", "lon"), da.from_array(land, chunks=(tile["lat"], tile["lon"])),
                    _var_attrs(var, land_plan, land_info, grid))
            continue
        if var not in plans:       # an optional variable the manifest does not name
            continue
        plan = plans[var]
        static = plan.spec.temporal == "static"
        if static and not with_static:
            continue
        arr = _variable(plan, grid, tile, years_slice, land,
                        {} if raw_stats is None else raw_stats,
                        {} if fill_counts is None else fill_counts)
        dims = SCHEMA[var].dims
        data[var] = xr.Variable(dims, arr, _var_attrs(var, plan, land_info, grid))
    ds = xr.Dataset(data, coords=coords)
    ds = ds.chunk({"time": 12, "year": 1, "lat": tile["lat"], "lon": tile["lon"]})
    ds.attrs.update(attrs)
    return ds


def _dataset_attrs(m: Manifest, grid: Grid, content_hash: str, mode: str) -> dict:
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    where = m.path or "<manifest>"
    return {
        "title": m.title or f"carbonsink inputs {m.name!r} ingested from {os.path.basename(where)}",
        "Conventions": "CF-1.10",
        "source": f"carbonsink ingest of {where} (manifest sha256 {m.sha256()[:16]})",
        "history": f"{now} {mode} by carbonsink {__version__} ingest from {where}",
        "carbonsink_version": __version__,
        "ingest_manifest": where,
        "ingest_manifest_sha256": m.sha256(),
        "ingest_content_sha256": content_hash,
        "ingest_years": list(m.years),
        "lat_order": "descending (north to south)",
        **grid.attrs(),
        **get_domain(m.domain).attrs(grid),
    }


# ================================================================================================
# Value checks (computed in the same pass as the write)
# ================================================================================================
def _block_stats(a, land):
    """(steps, 1, 1, 4): min, max, NaNs on land and valid count of each step of one tile."""
    a = a if a.ndim == 3 else a[None]
    out = np.empty((a.shape[0], 1, 1, 4), dtype="f8")
    with np.errstate(invalid="ignore"):
        flat = a.reshape(a.shape[0], -1)
        valid = ~np.isnan(flat)
        any_valid = valid.any(axis=1)
        out[:, 0, 0, 0] = np.where(any_valid, np.min(np.where(valid, flat, np.inf), axis=1), np.nan)
        out[:, 0, 0, 1] = np.where(any_valid, np.max(np.where(valid, flat, -np.inf), axis=1),
                                   np.nan)
        out[:, 0, 0, 2] = (~valid & land.reshape(1, -1)).sum(axis=1)
        out[:, 0, 0, 3] = valid.sum(axis=1)
    return out


def _combine_stats(s):
    """(steps, ni, nj, 4) per-tile statistics → (steps, 4) over space."""
    with np.errstate(invalid="ignore"):
        mins = s[..., 0].reshape(s.shape[0], -1)
        maxs = s[..., 1].reshape(s.shape[0], -1)
        out = np.empty((s.shape[0], 4))
        out[:, 0] = np.where(np.isnan(mins).all(axis=1), np.nan,
                             np.min(np.where(np.isnan(mins), np.inf, mins), axis=1))
        out[:, 1] = np.where(np.isnan(maxs).all(axis=1), np.nan,
                             np.max(np.where(np.isnan(maxs), -np.inf, maxs), axis=1))
        out[:, 2] = s[..., 2].reshape(s.shape[0], -1).sum(axis=1)
        out[:, 3] = s[..., 3].reshape(s.shape[0], -1).sum(axis=1)
    return out


def _step_stats(ds: xr.Dataset, variables) -> dict:
    """Per variable and output step (month, year or the static field): min, max, NaNs on land,
    count — lazy, one task per chunk plus one per time block; reduced over space only so a
    failure can name its file and month."""
    land = (ds["land_mask"] > 0).data
    out = {}
    for var in variables:
        a = ds[var].data
        static = a.ndim == 2
        a3 = a[None] if static else a
        per_tile = da.map_blocks(_block_stats, a3, land[None], new_axis=3, dtype="f8",
                                 chunks=(a3.chunks[0], (1,) * len(a3.chunks[1]),
                                         (1,) * len(a3.chunks[2]), (4,)))
        per_step = per_tile.rechunk({1: -1, 2: -1}).map_blocks(
            _combine_stats, drop_axis=(1, 2), chunks=(a3.chunks[0], (4,)), dtype="f8")
        out[var] = per_step
    out["_not_binary"] = (~ds["land_mask"].isin([0, 1])).sum().data
    return out


def _step_label(plan: VarPlan | None, var: str, i: int,
                year_offset: int = 0) -> tuple[str | None, str]:
    """(file, ' in 2003-07') of output step ``i`` of ``var`` (of a part starting ``year_offset``
    years into the manifest's years)."""
    if plan is None:
        return None, ""
    i += year_offset * (12 if SCHEMA[var].dims[0] == "time" else 1)
    if plan.polygons is not None or plan.spec.temporal == "static":
        return plan.step_files[0] if plan.step_files else plan.pattern, ""
    if plan.monthly and SCHEMA[var].dims[0] == "year":   # months summed to a year
        files = sorted(set(plan.step_files[12 * i:12 * i + 12]))
        year = plan.steps[12 * i][0]
        more = f" (and {len(files) - 1} more files)" if len(files) > 1 else ""
        return files[0] + more, f" in {year}"
    held = (f" (the {plan.held[i]} map, years_available)" if plan.held is not None
            and plan.held[i] != plan.steps[i][0] else "")
    return plan.step_files[i], f" in {_when(plan.steps[i])}{held}"


def _unit_hint(var: str, plan: VarPlan | None, lo: float, hi: float) -> str:
    """'; they would fit if the source were in 'k' rather than 'degC'' — for values converted
    without a time factor (states, amounts per period), from the unit table's other spellings."""
    if plan is None or plan.unit is None or plan.unit.multiply_by or plan.unit.aggregate_months:
        return ""
    spec = SCHEMA[var]
    f, o = plan.unit.factor, plan.unit.offset
    src_lo, src_hi = (lo - o) / f, (hi - o) / f
    for alt in u._TABLE.get(spec.units, {}):
        fa, oa = u.conversion(alt, spec.units)
        if np.isclose(fa, f) and np.isclose(oa, o):
            continue
        a, b = src_lo * fa + oa, src_hi * fa + oa
        if spec.valid_range[0] <= a and b <= spec.valid_range[1]:
            return (f"; they would fit if the source were in {alt!r} rather than "
                    f"{plan.units_declared!r} — mismatched units?")
    return ""


def _check(ds: xr.Dataset, plans: dict, variables, computed: dict, source: str, record: dict,
           year_offset: int = 0):
    """Raise InputError for the first problem; record the cells filled on land."""
    raw, steps = computed["raw"], computed["steps"]
    for var in variables:
        for path, (dtype, dec, parts) in raw.get(var, {}).items():
            vals = np.concatenate([np.asarray(p, dtype="f8").reshape(-1, 2) for p in parts])
            if np.isfinite(vals).any():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    vmin, vmax = np.nanmin(vals[:, 0]), np.nanmax(vals[:, 1])
                bad = rd.suspicious_fill(vmin, vmax, dtype, dec)
                if bad is not None:
                    raise InputError(var, path, rd.fill_message(bad, vmin, vmax, dtype, dec))
    for var in variables:
        spec = SCHEMA[var]
        vmin, vmax, nan_land, count = np.asarray(steps[var], dtype="f8").T
        plan = plans.get(var)
        for i in range(vmin.size):
            if count[i] == 0:
                path, when = _step_label(plan, var, i, year_offset)
                raise InputError(var, path, f"is entirely missing{when} (every cell NaN): nodata "
                                            "everywhere, or a source that does not overlap China")
            if nan_land[i]:
                path, when = _step_label(plan, var, i, year_offset)
                hint = ("; set `fill_on_land` in the manifest if the source leaves some land "
                        "(e.g. barren or urban) empty on purpose") if plan is not None else ""
                where = pl.where_holes(computed.get("land"), var, i)
                raise InputError(var, path, f"has {int(nan_land[i])} missing (NaN) values on land "
                                            f"pixels{when} (holes, nodata, or a source that does "
                                            f"not cover all of China){where}{hint}")
            lo, hi = vmin[i], vmax[i]
            if lo < spec.valid_range[0] or hi > spec.valid_range[1]:
                path, when = _step_label(plan, var, i, year_offset)
                raise InputError(var, path, f"values {lo:g}..{hi:g} {spec.units}{when} fall "
                                 f"{RANGE_PHRASE} {spec.valid_range} — wrong units, a fill value "
                                 f"or negative amounts{_unit_hint(var, plan, lo, hi)}")
    for var, n in computed.get("filled", {}).items():
        # the version record is written after this check: the counts land in it
        record.setdefault("filled_on_land", {})[var] = int(n)
    # the schema's own checks, on the same statistics (one enforcement path)
    generic = {"_not_binary": computed["steps"]["_not_binary"]}
    for var in variables:
        vmin, vmax, nan_land, count = np.asarray(steps[var], dtype="f8").T
        generic[var] = (np.nanmin(vmin) if np.isfinite(vmin).any() else np.nan,
                        np.nanmax(vmax) if np.isfinite(vmax).any() else np.nan,
                        nan_land.sum(), count.sum())
    check_value_stats(ds, variables, generic, source)


# ================================================================================================
# Publishing
# ================================================================================================
class _NoReuse(Exception):
    """The previous version's chunks cannot be reused (encoding differs): rewrite everything."""


def _csv(table: pd.DataFrame, float_format: str = "%.6g") -> bytes:
    buf = io.StringIO()
    table.to_csv(buf, index=False, float_format=float_format)
    return buf.getvalue().encode()


_ZARR_META_FILES = {"zarr.json", ".zarray", ".zattrs", ".zgroup", ".zmetadata"}


def _zarr_meta(store: Store, rel: str, var: str) -> dict:
    """What decides the bytes of ``var``'s chunks (dtype, chunk grid, codecs, fill value), from its
    Zarr v3 ``zarr.json`` or v2 ``.zarray``; ``{}`` in one and not the other never compares equal."""
    for leaf, keys in (("zarr.json", ("data_type", "chunk_grid", "chunk_key_encoding", "codecs",
                                      "fill_value", "dimension_names")),
                       (".zarray", ("dtype", "chunks", "compressor", "filters", "fill_value",
                                    "order", "dimension_separator"))):
        if store.exists(f"{rel}/{var}/{leaf}"):
            meta = json.loads(store.read_text(f"{rel}/{var}/{leaf}"))
            return {"format": leaf, **{k: meta.get(k) for k in keys}}
    return {"format": None}


def _reuse_chunks(store: Store, src_rel: str, dst_rel: str, variables) -> int:
    """Link (local) or server-side copy (object stores) every chunk object of ``variables`` from
    one Zarr to another with the same chunk grid (any object under the variable's folder but its
    metadata); returns the number of objects."""
    n = 0
    for var in variables:
        src_dir, dst_dir = store.path(src_rel, var), store.path(dst_rel, var)
        if store.protocol == "file":
            if not os.path.isdir(src_dir):
                continue
            for dirpath, _, filenames in os.walk(src_dir):
                target = os.path.join(dst_dir, os.path.relpath(dirpath, src_dir))
                os.makedirs(target, exist_ok=True)
                for f in filenames:
                    if f in _ZARR_META_FILES:
                        continue
                    try:
                        os.link(os.path.join(dirpath, f), os.path.join(target, f))
                    except OSError:   # no hard links here (other filesystem): a plain copy
                        shutil.copy2(os.path.join(dirpath, f), os.path.join(target, f))
                    n += 1
        else:
            if not store.fs.exists(src_dir):
                continue
            srcs = [f for f in store.fs.find(src_dir)
                    if posixpath.basename(f) not in _ZARR_META_FILES]
            dsts = [posixpath.join(dst_dir, posixpath.relpath(s, src_dir)) for s in srcs]
            if srcs:
                store.fs.copy(srcs, dsts)
            n += len(srcs)
    return n


def _publish_append(store: Store, name: str, version: str, prev: str, full: xr.Dataset,
                    new: xr.Dataset, n_old: int, stats, check, record: dict,
                    attachments: dict, compute) -> tuple[Published, int]:
    """A new version = the previous version's chunks (re-linked) + the new years (written).

    ``full``: a lazy template of the whole new version (never computed); ``new``: the new years of
    the time-varying variables. Staged, checked and committed through the Store like any publish.
    """
    kind = "inputs"
    prev_rel = f"{kind}/{name}/{prev}.zarr"
    opts = None if store.protocol == "file" else (store.storage_options or None)
    n_new_years = new.sizes.get("year", 0)
    with store.stage(kind, name, version) as staged:
        target = store.zarr_target(staged)
        encoding = {v: {"chunks": tuple(full[v].data.chunksize)} for v in full.data_vars}
        # the store layer's own preparation (georeferencing, encodings) as for any publish
        _prepare_for_zarr(full).to_zarr(target, mode="w", compute=False,
                                        zarr_format=ZARR_FORMAT, consolidated=False,
                                        storage_options=opts, encoding=encoding,
                                        write_empty_chunks=True)
        for var in full.data_vars:
            if _zarr_meta(store, staged, var) != _zarr_meta(store, prev_rel, var):
                raise _NoReuse(f"the chunk encoding of {var} differs from version {prev}")
        reused = _reuse_chunks(store, prev_rel, staged, list(full.data_vars))
        if n_new_years:
            region = {"time": slice(12 * n_old, 12 * (n_old + n_new_years)),
                      "year": slice(n_old, n_old + n_new_years)}
            part = new.drop_vars([c for c in new.coords])
            delayed = part.to_zarr(target, region=region, compute=False,
                                   zarr_format=ZARR_FORMAT, consolidated=False,
                                   storage_options=opts, write_empty_chunks=True)
            computed = compute(delayed, dask.delayed(stats))[1]
            check(computed)
        back = store.open_zarr(staged)
        if dict(back.sizes) != dict(full.sizes) or set(back.data_vars) != set(full.data_vars):
            raise StoreError(f"staged append of {kind}/{name} is incomplete: sizes "
                             f"{dict(back.sizes)} vs {dict(full.sizes)}")
    return store.commit(kind, name, version, full, staged=staged, attachments=attachments,
                        record=record), reused


def _decide(prev_rec: dict | None, content: dict, years) -> tuple[str, str, int]:
    """('created' | 'appended' | 'rewritten', reason, number of earlier years kept)."""
    if prev_rec is None:
        return "created", "", 0
    old = (prev_rec.get("ingest") or {}).get("content")
    if not old:
        return "rewritten", "the latest version was not made by ingest", 0
    for key, what in (("format", "ingest format"), ("grid", "grid"), ("land_mask", "land mask"),
                      ("chunk_mb", "chunk size"), ("domain", "domain"),
                      ("domain_fingerprint", "domain's polygons"),
                      ("regrid_method", "regridding method")):
        if old.get(key) != content.get(key):
            return "rewritten", f"the {what} changed", 0
    oy, ny = old["years"], content["years"]
    if oy[0] != ny[0] or ny[1] < oy[1]:
        return "rewritten", f"years {oy[0]}–{oy[1]} became {ny[0]}–{ny[1]} (only appending " \
                            "years at the end keeps earlier ones)", 0
    dropped = sorted(set(old["variables"]) - set(content["variables"]))
    if dropped:
        return "rewritten", f"the manifest no longer names {dropped}", 0
    for var, new_v in content["variables"].items():
        old_v = old["variables"].get(var)
        if old_v is None or old_v["spec"] != new_v["spec"]:
            return "rewritten", f"the manifest settings of {var} changed", 0
        for key, digests in old_v["sources"].items():
            if new_v["sources"].get(key) != digests:
                what = "the static source" if key == "static" else f"the source of {key}"
                return "rewritten", f"{var}: {what} changed (different size or checksum)", 0
    n_old = oy[1] - oy[0] + 1
    return "appended", "", n_old


# ================================================================================================
# The entry points
# ================================================================================================
def ingest(manifest, store: Store | str, *, name: str | None = None, dry_run: bool = False,
           progress: bool = False, compute=None) -> IngestResult:
    """Ingest the sources a manifest names into ``inputs/<name>`` of ``store`` (see module doc).

    ``manifest``: a YAML path, a YAML string or a dict (relative sources then resolve against the
    working directory) or a :class:`~carbonsink.io.manifest.Manifest`. ``compute(*collections)``:
    how dask graphs run (default: the active distributed client, else the local scheduler).
    Raises :class:`~carbonsink.io.validate.InputError` (ManifestError for the manifest itself) for
    bad input, before anything in the store changes.
    """
    t0 = _time.perf_counter()
    if name is not None:
        validate_name(name, "inputs name")    # a store path: checked before anything is read
    m = load_manifest(manifest)
    store = store if isinstance(store, Store) else Store(store)
    name = validate_name(name or m.name, "inputs name")   # a store path: checked before any work
    grid = get_domain(m.domain).grid(m.grid)
    years = m.year_list
    land, land_info, land_plan = _land_mask(m, grid)
    plans = {var: _plan_variable(m, var, grid, land) for var in SCHEMA
             if var != "land_mask" and var in m.variables}
    tables = _read_tables(m)
    river = {k: v for k, v in tables.items() if k == "river_chemistry"}
    all_plans = dict(plans, **({"land_mask": land_plan} if land_plan else {}))
    fps = _fingerprints(m, all_plans, [p for p, _ in tables.values()])
    content = _content(m, plans, fps, land_info, tables)
    content_hash = _hash(content)
    source_bytes = sum(fp.size for fp in fps.values())

    prev = store.latest("inputs", name)
    prev_rec = store.record("inputs", name, prev) if prev else None
    if prev_rec and (prev_rec.get("ingest") or {}).get("content_sha256") == content_hash:
        return IngestResult("unchanged", name, prev, store.uri(prev_rec["path"]), m.years,
                            seconds=_time.perf_counter() - t0)
    mode, reason, n_old = _decide(prev_rec, content, years)
    new_years = years[n_old:]
    if dry_run:
        verb = {"created": "create", "appended": "append", "rewritten": "rewrite"}[mode]
        return IngestResult(f"would-{verb}", name, None, None, m.years, new_years=new_years,
                            reason=reason)

    tile = _tile(grid, years, m.chunk_mb)
    if mode == "appended":
        prev_ds = store.open("inputs", name, prev)
        enc = prev_ds["soc"].encoding.get("chunks")
        if enc:
            tile = {"lat": int(enc[0]), "lon": int(enc[1])}
        if river and "basin" in plans and "basin" in prev_ds:    # a table may come with years
            pl.check_river_basins(river, dask.compute(pl.basin_ids(prev_ds))[0],
                                  plans["basin"].pattern)
    version = new_version(content_hash)
    attrs = _dataset_attrs(m, grid, content_hash, mode)
    sources = {var: [{**fps[p].to_dict(), "steps": [_when(k) for k, f in
                                                   zip(plan.steps, plan.step_files) if f == p]}
                     for p in plan.files] for var, plan in all_plans.items()}
    record = {
        "description": f"canonical carbonsink inputs ingested from {m.path or 'a manifest'}",
        "units": {v: SCHEMA[v].units for v in SCHEMA if v in plans or v == "land_mask"},
        "grid": grid.name,
        "grid_bbox": list(grid.bounds),
        "domain": m.domain,
        "domain_name": get_domain(m.domain).label,
        "years": list(m.years),
        "ingest": {"format": INGEST_FORMAT, "mode": mode, "reason": reason,
                   "manifest_path": m.path, "manifest_sha256": m.sha256(),
                   "manifest": m.canonical_dict(), "content_sha256": content_hash,
                   "content": content, "sources": sources, "tile": tile,
                   "land_mask": land_info, "previous_version": prev,
                   "new_years": list(new_years), "source_bytes": source_bytes},
    }
    # the tables in canonical columns and units: river_chemistry.csv, province_statistics.csv,
    # emission_factors.csv, lulc_classes.csv, carbon_pools.csv
    attachments = {f"{k}.csv": _csv(t) if k == "river_chemistry" else _csv(t, "%.12g")
                   for k, (_, t) in tables.items()}
    compute = compute or (lambda *c: compute_default(*c, progress=progress))
    variables = list(REQUIRED["all"]) + [v for v in OPTIONAL if v in plans]
    source = attrs["source"]
    reused = 0

    def stats_and_check(ds, checked, raw_stats, fill_counts, year_offset):
        stats = {"raw": raw_stats, "steps": _step_stats(ds, checked), "filled": fill_counts,
                 "land": pl.land_stats(ds, checked), "basins": pl.basin_ids(ds) if river else None}

        def check(computed):
            with np.errstate(invalid="ignore"):
                _check(ds, plans, checked, computed, source, record["ingest"], year_offset)
                pl.check_plausibility(plans, checked, computed["land"], record["ingest"])
                if "basin" in plans:
                    pl.check_river_basins(river, computed["basins"], plans["basin"].pattern)
        return stats, check

    published = None
    if mode == "appended":
        # the whole new version as a template (metadata, coordinates; its data never computed)
        full = _build(m, plans, grid, land, tile, slice(0, len(years)), land_info, land_plan,
                      True, attrs)
        validate_inputs(full, variables, source=source, check_values=False)
        new, stats, check = xr.Dataset(), None, None
        if new_years:
            raw_stats, fill_counts = {}, {}
            new = _build(m, plans, grid, land, tile, slice(n_old, len(years)), land_info,
                         land_plan, False, attrs, raw_stats, fill_counts)
            checked = [v for v in variables if v in new.data_vars]
            stats, check = stats_and_check(new.assign(land_mask=full["land_mask"]), checked,
                                           raw_stats, fill_counts, n_old)
        try:
            published, reused = _publish_append(store, name, version, prev, full, new, n_old,
                                                stats, check, record, attachments, compute)
        except _NoReuse as e:
            mode, reason, new_years = "rewritten", str(e), years
            record["ingest"].update(mode=mode, reason=reason, new_years=list(years))
    if published is None:
        raw_stats, fill_counts = {}, {}
        ds = _build(m, plans, grid, land, tile, slice(0, len(years)), land_info, land_plan, True,
                    attrs, raw_stats, fill_counts)
        validate_inputs(ds, variables, source=source, check_values=False)
        stats, check = stats_and_check(ds, variables, raw_stats, fill_counts, 0)
        published = store.publish(ds, "inputs", name, version=version, compute=compute,
                                  attachments=attachments, check=(stats, check), record=record)
    from ..catalog import write_catalog
    catalog = write_catalog(store)
    return IngestResult(mode, name, published.version, published.uri, m.years,
                        new_years=list(new_years), reused_chunks=reused,
                        source_bytes=source_bytes if mode != "appended" else
                        _bytes_of_years(all_plans, fps, new_years),
                        seconds=_time.perf_counter() - t0, reason=reason, catalog=catalog,
                        published=published)


def _bytes_of_years(plans: dict, fps: dict, years) -> int:
    years = set(years)
    paths = {f for plan in plans.values() for (y, _), f in zip(plan.steps, plan.step_files)
             if y in years}
    return sum(fps[p].size for p in paths if p in fps)


def open_inputs(store: Store | str, name: str = "observed", version: str = "latest",
                **kwargs) -> xr.Dataset:
    """Published inputs opened for the products: the full time axis in every dask chunk (the
    stored chunks hold one year each so years can be appended), tiles as stored."""
    store = store if isinstance(store, Store) else Store(store)
    kwargs.setdefault("chunks", {"time": -1, "year": -1})
    return store.open("inputs", name, version, **kwargs)
