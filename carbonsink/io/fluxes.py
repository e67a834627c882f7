"""Flux-product manifest and readers of the bottom-up vs top-down comparison (SCIENCE.md §8).

A manifest (YAML path or dict) lists gridded flux products and says what their numbers mean::

    grid: "1"                 # comparison grid: a resolution dividing 1° (default 1°)
    domain: china             # the study area (carbonsink.domains; default china)
    years: 2015-2019          # or [2015, 2019]; every month of these years must be present
    reference: OCO2_MIP       # the product the others are scored against
    landcover:                # optional: class map, majority (area-true) to the grid
      files: landcover_1deg.nc
      variable: landcover
      classes: {1: forest, 2: shrub, 3: grassland, 4: cropland}   # other codes → "other"
    products:
      - name: BEPS
        kind: bottom_up                       # bottom_up | top_down
        files: beps/BEPS_NEP_{year}.nc        # glob, one file, {year} {month} {member} placeholders
        variable: nep
        units: g C m-2 d-1                    # as declared (the file's units attr is checked)
        sign: NEP                             # uptake_positive | emission_positive | NEE NBE NBP NEP
        time: cf                              # cf | start_date | mid_month
      - name: OCO2_MIP
        kind: top_down
        files: oco2mip/{member}_gridded_fluxes_LNLGIS.nc4
        members: "*"                          # a list of names or a glob; EnsMean/EnsStd excluded
        variable: land
        units: g C m-2 yr-1
        sign: emission_positive
        time: start_date                      # start_date(time, date_component) int array

Relative paths are relative to the manifest's directory (``root`` for a dict, default the working
directory). Every product becomes **sink-positive g C m⁻² month⁻¹** on the comparison grid: the
amount part of the declared unit goes through the one unit table (:mod:`carbonsink.units`; mol of
CO₂ or C → 12.011 g C), the rate part is multiplied by the length of each month (seconds, days, or
days/days-of-the-year for per-year rates; leap years counted, :func:`carbonsink.io.manifest.duration`),
an emission-positive sign is flipped, and the field is regridded conservatively
(:mod:`carbonsink.kernels.compare`) and set to NaN outside the study area.

Sign words (:mod:`carbonsink.io.flux_manifest`): ``uptake_positive`` (= NEP, NBP) or
``emission_positive`` (= NEE, NBE; the OCO-2 MIP's ``land``, CarbonTracker's ``bio_flux_opt``);
a product without a sign is refused.

Time axes: ``cf`` (a CF time coordinate; the month of its ``bounds`` midpoint when it has bounds,
else of the stamp), ``mid_month`` (stamps in the middle of each month, checked; ``months since``
units too, which CF decoders refuse for real calendars) and ``start_date`` (the OCO-2 MIP's integer
``start_date(time, date_component)`` array: year, month, day…).

``role: spread`` marks a product that is a spread, not a flux (the MIP's ``EnsStd``): converted in
magnitude (no sign flip), kept out of totals and scores.

Bad input raises :class:`FluxInputError` (a ValueError naming product, file and problem) before
any value is computed: undeclared sign, unknown units (or units contradicting the file's), members
on different grids, missing or duplicate months, a product whose grid does not cover the study area.
"""
from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from .. import units as u
from ..domains import get_domain
from ..grid import Grid
from ..kernels import compare as k
from .flux_manifest import (FluxInputError, FluxManifest, LandCoverSpec, ProductSpec, _ranges,
                            load_flux_manifest, rate_plan, resolve_files, sign_factor)
from .manifest import duration

__all__ = ["OUT_UNITS", "FluxInputError", "FluxManifest", "load_flux_manifest", "load_fluxes"]

OUT_UNITS = "g m-2 month-1"
_LAT = ("lat", "latitude", "nav_lat", "y")
_LON = ("lon", "longitude", "nav_lon", "x")


# --- one file's structure ------------------------------------------------------------------------------
@dataclass
class FileInfo:
    """What a file holds: its variable's dims, source grid edges and the month of each step."""

    path: str
    lat_dim: str
    lon_dim: str
    time_dim: str
    lat_edges: np.ndarray
    lon_edges: np.ndarray
    months: list[tuple[int, int]]
    units: str | None
    extra: dict = field(default_factory=dict)


def _is_axis(ds: xr.Dataset, dim: str, names, units_prefix: str, std: str) -> bool:
    var = ds[dim] if dim in ds.variables else None
    attrs = var.attrs if var is not None else {}
    return (dim.lower() in names or str(attrs.get("standard_name", "")).lower() == std
            or str(attrs.get("units", "")).lower().replace(" ", "").startswith(units_prefix))


def _edges(ds: xr.Dataset, dim: str, product: str, path: str) -> np.ndarray:
    if dim not in ds.variables:
        raise FluxInputError(product, path, f"dimension {dim!r} has no coordinate values")
    coord = ds[dim]
    bname = coord.attrs.get("bounds")
    if bname and bname in ds.variables:
        b = np.asarray(ds[bname].values, dtype="f8")
        if b.ndim == 2 and b.shape == (coord.size, 2) and np.allclose(b[1:, 0], b[:-1, 1]):
            return np.concatenate([b[:, 0], b[-1:, 1]])
    try:
        return k.regular_edges(coord.values)
    except ValueError as e:
        raise FluxInputError(product, path, f"{dim}: {e}") from None


def inspect_file(path: str, spec: ProductSpec) -> FileInfo:
    """Open ``path`` (decoding no times) and describe its ``spec.variable``."""
    try:
        ds = xr.open_dataset(path, decode_times=False)
    except Exception as e:  # noqa: BLE001 - netCDF4/h5 raise many types
        raise FluxInputError(spec.name, path, f"cannot open the file: {e}") from None
    with ds:
        if spec.variable not in ds.data_vars:
            raise FluxInputError(spec.name, path, f"no variable {spec.variable!r} (it has "
                                 f"{sorted(ds.data_vars)})")
        var = ds[spec.variable]
        lat = [d for d in var.dims if _is_axis(ds, d, _LAT, "degrees_n", "latitude")]
        lon = [d for d in var.dims if _is_axis(ds, d, _LON, "degrees_e", "longitude")]
        rest = [d for d in var.dims if d not in lat + lon]
        if len(lat) != 1 or len(lon) != 1 or len(rest) != 1:
            raise FluxInputError(spec.name, path, f"{spec.variable}{var.dims}: expected one time, "
                                 "one latitude and one longitude dimension")
        tdim = rest[0]
        months = _months(ds, tdim, spec, path)
        if len(months) != ds.sizes[tdim]:
            raise FluxInputError(spec.name, path, f"{len(months)} dates for {ds.sizes[tdim]} "
                                 "time steps")
        return FileInfo(path, lat[0], lon[0], tdim, _edges(ds, lat[0], spec.name, path),
                        _edges(ds, lon[0], spec.name, path), months, var.attrs.get("units"))


# --- time axes ------------------------------------------------------------------------------------------
_SINCE = re.compile(r"^\s*(\w+)\s+since\s+(\d{1,4})-(\d{1,2})(?:-(\d{1,2}))?", re.IGNORECASE)


def _months(ds: xr.Dataset, tdim: str, spec: ProductSpec, path: str) -> list[tuple[int, int]]:
    if spec.time == "start_date":
        name = spec.start_date_variable
        if name not in ds.variables:
            raise FluxInputError(spec.name, path, f"time: start_date, but the file has no "
                                 f"{name!r} variable")
        sd = np.asarray(ds[name].values)
        if sd.ndim != 2 or sd.shape[0] != ds.sizes[tdim] or sd.shape[1] < 2:
            raise FluxInputError(spec.name, path, f"{name}{ds[name].dims} is not a "
                                 f"({tdim}, date_component) array of year, month, …")
        out = [(int(y), int(mo)) for y, mo in sd[:, :2]]
        _check_months(out, spec, path)
        return out
    if tdim not in ds.variables:
        raise FluxInputError(spec.name, path, f"time: {spec.time}, but dimension {tdim!r} has "
                             "no coordinate (OCO-2 MIP files: time: start_date)")
    t = ds[tdim]
    units = t.attrs.get("units")
    if not units or "since" not in str(units):
        raise FluxInputError(spec.name, path, f"time coordinate {tdim!r} has no 'UNITS since "
                             f"DATE' units (it has {units!r})")
    calendar = t.attrs.get("calendar", "standard")
    values = np.asarray(t.values, dtype="f8")
    bname = t.attrs.get("bounds")
    if spec.time == "cf" and bname and bname in ds.variables:
        values = np.asarray(ds[bname].values, dtype="f8").mean(axis=-1)
    ymd = _decode(values, str(units), calendar, spec, path)
    out = [(y, mo) for y, mo, _ in ymd]
    if spec.time == "mid_month":
        bad = [f"{y}-{mo:02d} ({frac:.2f} of the month)" for y, mo, frac in ymd
               if not 0.3 <= frac <= 0.7]
        if bad:
            raise FluxInputError(spec.name, path, "time: mid_month, but stamps are not in the "
                                 f"middle of their month: {_ranges(bad)} (declare time: cf)")
    _check_months(out, spec, path)
    return out


def _decode(values, units: str, calendar: str, spec, path) -> list[tuple[int, int, float]]:
    """(year, month, fraction of the month elapsed) of each time value."""
    hit = _SINCE.match(units)
    if hit and hit.group(1).lower() in ("month", "months"):
        base = int(hit.group(2)) * 12 + int(hit.group(3)) - 1
        whole = np.floor(values + 1e-9).astype("i8")
        idx = base + whole
        return [(int(i // 12), int(i % 12) + 1, float(v - w)) for i, v, w in
                zip(idx, values, whole)]
    import cftime

    try:
        dates = cftime.num2date(values, units, calendar=calendar)
    except Exception as e:  # noqa: BLE001 - cftime raises ValueError/TypeError
        raise FluxInputError(spec.name, path, f"cannot decode the time axis ({units!r}, "
                             f"{calendar!r}): {e}") from None
    out = []
    for d in np.atleast_1d(dates):
        start = cftime.datetime(d.year, d.month, 1, calendar=d.calendar)
        nxt = cftime.datetime(d.year + d.month // 12, d.month % 12 + 1, 1, calendar=d.calendar)
        out.append((d.year, d.month, (d - start) / (nxt - start)))
    return out


def _check_months(months, spec, path):
    bad = [f"{y}-{mo}" for y, mo in months if not 1 <= mo <= 12]
    if bad:
        raise FluxInputError(spec.name, path, f"invalid months {_ranges(bad)}")


# --- units ------------------------------------------------------------------------------------------------
def product_units(spec: ProductSpec, infos: list[FileInfo]) -> tuple[str, float, str]:
    """(declared units, factor to g C m-2 per basis, basis), checked against the files' attrs."""
    declared = spec.units
    for info in infos:
        if info.units is None:
            continue
        try:
            file_plan = rate_plan(info.units)
        except u.UnitError:
            continue                      # a spelling the table does not know: the manifest rules
        if declared is None:
            declared = info.units
        elif not np.isclose(file_plan[0], rate_plan(declared)[0], rtol=1e-9) or \
                file_plan[1] != rate_plan(declared)[1]:
            raise FluxInputError(spec.name, info.path, f"declared units {declared!r} contradict "
                                 f"the file's {info.units!r}")
    if declared is None:
        raise FluxInputError(spec.name, infos[0].path if infos else spec.files,
                             "unknown units: neither the manifest nor the file declares them")
    try:
        factor, basis = rate_plan(declared)
    except u.UnitError as e:
        raise FluxInputError(spec.name, infos[0].path if infos else spec.files, str(e)) from None
    return declared, factor, basis


def step_factors(months, factor: float, basis: str, sign: float) -> np.ndarray:
    """Multiplier of each (year, month) step: declared rate → sink-positive g C m-2 month-1."""
    return np.array([sign * factor * duration(y, mo, basis) for y, mo in months], dtype="f8")


# --- reading and regridding -----------------------------------------------------------------------------
def grid_edges(grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Latitude edges (north → south) and longitude edges of a comparison grid, exact multiples."""
    n = grid.per_degree
    lat = (round(grid.north * n) - np.arange(grid.nlat + 1)) / n
    lon = (round(grid.west * n) + np.arange(grid.nlon + 1)) / n
    return lat, lon


def same_grid(a: FileInfo, b: FileInfo, tol: float = 1e-6) -> bool:
    return (a.lat_edges.shape == b.lat_edges.shape and a.lon_edges.shape == b.lon_edges.shape
            and np.allclose(a.lat_edges, b.lat_edges, atol=tol)
            and np.allclose(a.lon_edges, b.lon_edges, atol=tol))


def describe_grid(info: FileInfo) -> str:
    dy = abs(info.lat_edges[1] - info.lat_edges[0])
    dx = abs(info.lon_edges[1] - info.lon_edges[0])
    return (f"{dy:.6g}°×{dx:.6g}° ({info.lat_edges.size - 1}×{info.lon_edges.size - 1}), "
            f"{info.lon_edges.min():g}–{info.lon_edges.max():g}°E, "
            f"{info.lat_edges.min():g}–{info.lat_edges.max():g}°N")


@dataclass
class Weights:
    """Separable regridding weights of one source grid onto the comparison grid, trimmed to the
    source rows/columns that matter."""

    wy: np.ndarray
    wx: np.ndarray
    rows: slice
    cols: slice


def weights_for(info: FileInfo, grid: Grid, inside: np.ndarray, product: str) -> Weights:
    """Weights of ``info``'s grid on ``grid``; FluxInputError unless the source grid covers every
    cell of the study area (``inside``) completely."""
    dst_lat, dst_lon = grid_edges(grid)
    wy = k.lat_weights(dst_lat, info.lat_edges)
    wx = k.lon_weights(dst_lon, info.lon_edges)
    cover = k.coverage(wy, wx)
    short = (inside > 0) & (cover < 1.0 - 1e-9)
    if short.any():
        raise FluxInputError(product, info.path, f"the product does not cover the study area: "
                             f"{int(short.sum())} of its {int((inside > 0).sum())} cells lie "
                             f"(partly) outside the product's grid {describe_grid(info)}")
    rows, cols = k.active_window(wy), k.active_window(wx)
    return Weights(wy[:, rows], wx[:, cols], rows, cols)


def read_regridded(info: FileInfo, spec: ProductSpec, steps: list[int], factors: np.ndarray,
                   w: Weights) -> np.ndarray:
    """The chosen time steps of one file × their unit factors, regridded: (nsteps, nlat, nlon)."""
    with xr.open_dataset(info.path, decode_times=False) as ds:
        var = ds[spec.variable].transpose(info.time_dim, info.lat_dim, info.lon_dim)
        block = var.isel({info.time_dim: steps, info.lat_dim: w.rows, info.lon_dim: w.cols})
        values = np.asarray(block.values, dtype="f8")
    values = values * factors[:, None, None]
    return k.conservative_regrid(values, w.wy, w.wx)


def read_landcover(spec: LandCoverSpec, m: FluxManifest, grid: Grid,
                   inside: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Land-cover classes on ``grid`` by area-true majority (classes merged by name first, codes
    not listed → ``other``), 0 outside the study area. Returns (codes 1..n, names)."""
    path = m.resolve(spec.files)
    hits = sorted(glob.glob(path))
    if len(hits) != 1:
        raise FluxInputError("landcover", path, f"{len(hits)} files match (need one)")
    names = list(dict.fromkeys(spec.classes.values())) + [spec.other]
    with xr.open_dataset(hits[0]) as ds:
        if spec.variable not in ds.data_vars:
            raise FluxInputError("landcover", hits[0], f"no variable {spec.variable!r}")
        var = ds[spec.variable].squeeze(drop=True)
        if var.ndim != 2:
            raise FluxInputError("landcover", hits[0], f"{spec.variable} must be 2-D (lat, lon)")
        lat = next((d for d in var.dims if _is_axis(ds, d, _LAT, "degrees_n", "latitude")), None)
        lon = next((d for d in var.dims if _is_axis(ds, d, _LON, "degrees_e", "longitude")), None)
        if lat is None or lon is None:
            raise FluxInputError("landcover", hits[0], "no latitude/longitude dimensions")
        raw = np.asarray(var.transpose(lat, lon).values)
        lat_e, lon_e = _edges(ds, lat, "landcover", hits[0]), _edges(ds, lon, "landcover", hits[0])
    lut = {code: names.index(name) + 1 for code, name in spec.classes.items()}
    finite = np.isfinite(raw) if raw.dtype.kind == "f" else np.ones(raw.shape, bool)
    ints = np.where(finite, raw, 0).astype("i8")
    mapped = np.full(ints.shape, len(names), dtype="i4")          # other
    for code, cls in lut.items():
        mapped[ints == code] = cls
    nodata = (~finite) | (ints == 0) & (0 not in lut)
    mapped[nodata] = 0
    dst_lat, dst_lon = grid_edges(grid)
    wy, wx = k.lat_weights(dst_lat, lat_e), k.lon_weights(dst_lon, lon_e)
    classes = k.majority_regrid(mapped, wy, wx, range(1, len(names) + 1), nodata=0)
    return np.where(inside > 0, classes, 0).astype("i2"), names


# --- whole products ------------------------------------------------------------------------------------
@dataclass
class ProductPlan:
    """Everything about a product checked before a value is read."""

    spec: ProductSpec
    members: dict[str, list[FileInfo]]
    # member → per file: (time indices to read, their positions in the output series)
    steps: dict[str, list[tuple[list[int], list[int]]]]
    units: str
    factor: float
    basis: str
    sign: float
    weights: Weights


def plan_product(spec: ProductSpec, m: FluxManifest, grid: Grid,
                 inside: np.ndarray) -> ProductPlan:
    """Resolve, open and check every file of a product (grids, months, units, coverage)."""
    files = resolve_files(spec, m)
    infos = {member: [inspect_file(p, spec) for p in paths] for member, paths in files.items()}
    first = next(iter(infos.values()))[0]
    for member, fis in infos.items():
        for fi in fis:
            if not same_grid(first, fi):
                what = "members" if len(infos) > 1 else "files"
                raise FluxInputError(spec.name, fi.path, f"{what} on different grids: "
                                     f"{os.path.basename(first.path)} is {describe_grid(first)}, "
                                     f"{os.path.basename(fi.path)} is {describe_grid(fi)}")
    wanted = [(y, mo) for y in m.year_list for mo in range(1, 13)]
    position = {ym: i for i, ym in enumerate(wanted)}
    steps = {}
    for member, fis in infos.items():
        seen: dict[tuple[int, int], str] = {}
        per_file = []
        for fi in fis:
            idx, pos = [], []
            for t, ym in enumerate(fi.months):
                if ym not in position:
                    continue
                if ym in seen:
                    raise FluxInputError(spec.name, fi.path, f"{ym[0]}-{ym[1]:02d} is also in "
                                         f"{os.path.basename(seen[ym])} (duplicate month)")
                seen[ym] = fi.path
                idx.append(t)
                pos.append(position[ym])
            per_file.append((idx, pos))
        missing = [f"{y}-{mo:02d}" for y, mo in wanted if (y, mo) not in seen]
        if missing:
            where = f"member {member}: " if member else ""
            raise FluxInputError(spec.name, fis[0].path if len(fis) == 1 else spec.files,
                                 f"{where}missing months {_ranges(missing)}")
        steps[member] = per_file
    declared, factor, basis = product_units(spec, [fi for fis in infos.values() for fi in fis])
    sign = sign_factor(spec.sign) if spec.role == "flux" else 1.0
    weights = weights_for(first, grid, inside, spec.name)
    return ProductPlan(spec, infos, steps, declared, factor, basis, sign, weights)


def read_product(plan: ProductPlan, m: FluxManifest, grid: Grid, inside: np.ndarray,
                 attrs: dict) -> xr.DataArray:
    """The product as sink-positive g C m-2 month-1 on ``grid``, NaN outside the study area."""
    spec = plan.spec
    wanted = [(y, mo) for y in m.year_list for mo in range(1, 13)]
    out = np.full((len(plan.members), len(wanted)) + grid.shape, np.nan)
    for i, (member, fis) in enumerate(plan.members.items()):
        for fi, (idx, pos) in zip(fis, plan.steps[member]):
            if not idx:
                continue
            factors = step_factors([fi.months[t] for t in idx], plan.factor, plan.basis,
                                   plan.sign)
            if spec.role == "spread":
                factors = np.abs(factors)
            out[i, pos] = read_regridded(fi, spec, idx, factors, plan.weights)
    out[:, :, inside == 0] = np.nan
    time = np.array([f"{y}-{mo:02d}-01" for y, mo in wanted], dtype="datetime64[ns]")
    coords = {"time": ("time", time, {"long_name": "month (stamp: its first day)"}),
              **grid.coords()}
    dims = ("time", "lat", "lon")
    members = list(plan.members)
    if members != [""]:
        coords["member"] = ("member", np.array(members, dtype=str),
                            {"long_name": f"ensemble member of {spec.name}"})
        dims = ("member",) + dims
    else:
        out = out[0]
    fis = [fi for v in plan.members.values() for fi in v]
    nodata = int((np.isnan(out).all(axis=tuple(range(out.ndim - 2))) & (inside > 0)).sum())
    da = xr.DataArray(out, dims=dims, coords={c: v for c, v in coords.items()}, name=spec.name)
    flips = plan.sign < 0
    da.attrs = {
        "units": OUT_UNITS,
        "long_name": (f"{spec.name}: net land carbon sink per month (positive = uptake by the "
                      "land)" if spec.role == "flux" else
                      f"{spec.name}: spread of the monthly land carbon flux"),
        "sign_convention": "positive = sink (uptake by the land)",
        "cell_methods": "time: sum (amount per month) area: mean",
        "product_kind": spec.kind, "product_role": spec.role,
        "declared_units": plan.units, "declared_sign": str(spec.sign),
        "conversion": (f"{plan.units!r} × {plan.factor:g} g C m-2 per unit amount × length of the "
                       f"month in {plan.basis}" + (" × −1 (emission-positive → sink-positive)"
                                                   if flips else "")),
        "time_axis": spec.time, "source_variable": spec.variable,
        "source_files": "; ".join(os.path.basename(fi.path) for fi in fis[:20])
                        + (f"; … ({len(fis)} files)" if len(fis) > 20 else ""),
        "source_grid": describe_grid(fis[0]),
        "regridding": "conservative (exact sin-latitude × longitude overlaps), renormalised "
                      "over valid source cells",
        "cells_without_data": nodata,
        **({"description": spec.description} if spec.description else {}),
        **attrs,
    }
    return da


def load_fluxes(manifest) -> tuple[dict[str, xr.DataArray], FluxManifest]:
    """Every product of ``manifest`` normalised onto the comparison grid (see the module
    docstring), plus the validated manifest. All files are opened and checked (grids, months,
    units, coverage) before any values are read; the land-cover classes, when given, ride along
    as the ``landcover`` coordinate (lat, lon) with flag attributes."""
    m = load_flux_manifest(manifest)
    domain = get_domain(m.domain)
    grid = domain.grid(m.grid)
    inside = domain.mask(grid)
    plans = [plan_product(spec, m, grid, inside) for spec in m.products if spec.store is None]
    landcover = None
    if m.landcover is not None:
        codes, names = read_landcover(m.landcover, m, grid, inside)
        present = [i + 1 for i in range(len(names)) if (codes == i + 1).any()]
        landcover = xr.Variable(("lat", "lon"), codes, {
            "long_name": "land-cover class (area-true majority)", "units": "1",
            "flag_values": present, "region_names": [names[i - 1] for i in present],
            "flag_meanings": " ".join(names[i - 1].replace(" ", "_") for i in present),
            "source": os.path.basename(m.resolve(m.landcover.files))})
    attrs = {**grid.attrs(), **domain.attrs(), "years": f"{m.years[0]}-{m.years[1]}",
             "reference_product": m.reference or ""}
    read = {plan.spec.name: (lambda plan=plan: read_product(plan, m, grid, inside, attrs))
            for plan in plans}
    for spec in m.products:
        if spec.store is not None:              # carbonsink's own annual product
            from .flux_store import read_store_product
            read[spec.name] = (lambda spec=spec: read_store_product(spec, m, grid, inside, attrs))
    out = {}
    for spec in m.products:                     # the manifest's order
        da = read[spec.name]()
        if landcover is not None:
            da = da.assign_coords(landcover=landcover)
        out[spec.name] = da
    return out, m
