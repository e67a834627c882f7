"""Export a published dataset for GIS users: Cloud-Optimized GeoTIFFs or one CF NetCDF file.

The published Zarr (v2) already opens in GDAL and QGIS (``ZARR:"<path>.zarr":/nep:0`` is the
``nep`` array at the first index of its extra dimension), but many users want plain files: a
GeoTIFF per map, or one NetCDF file for CF tools. :func:`export` reads the dataset lazily through
the :class:`~carbonsink.io.store.Store` (any store: file://, s3://, memory://) and writes local
files only.

COG layout: one single-band COG per variable and time step (``nep_nep_2000.tif``), not one
multi-band COG per variable with a band per year. Why:

* in QGIS a band is a rendering channel (chosen in the symbology's band box), not a time step: a
  file per year is a layer per year, which is what QGIS users load (several files at once), style
  with their own statistics, compare side by side and place on the Temporal Controller (each
  layer gets a fixed time range); the year is in the file name and in the ``year`` tag;
* rasterio writes a COG by CreateCopy (the COG driver cannot write in place): the whole file is
  first built in memory. One file per year bounds memory to one 2-D slice (nlat × nlon × itemsize:
  93 MB for a float32 map of China at 0.01°) whatever the number of years; a band per year would
  hold the whole cube.

Each year's slice is read from the Zarr chunks with dask's local threads (tiles in parallel, one
slice resident at a time), then written with ``rio.to_raster(path, driver="COG")`` and tiled 512 ×
512 with DEFLATE, the floating-point predictor and overviews (average for continuous fields,
nearest for masks and integer classes). Products are chunked with the full time axis in every
chunk, so each year re-reads the variable's chunks: the price of the memory bound.

Georeferencing: EPSG:4326, north-up; the transform is the grid preset's exact cell edges
(``Grid.transform``, cell centres ± res/2) when the dataset is on a preset, else recomputed by
rioxarray from the cell-centre coordinates. Ascending latitude is flipped to north-up. NaN is the
nodata value of float variables (an integer variable with a ``_FillValue`` is written in its
stored dtype with that fill as nodata). ``units``, ``long_name`` and the variable's other
attributes become GeoTIFF tags (dataset and band), with ``dataset``, ``version``, ``variable`` and
the time step.

NetCDF: one NETCDF4 file of the dataset (or the chosen variables and years), zlib level 4 with
shuffle, chunked one time step (``year`` or ``time``) per chunk and spatial tiles of at most
1024 × 1024, CF ``grid_mapping`` (the ``spatial_ref`` variable with ``crs_wkt``) kept, written
lazily by ``to_netcdf(compute=False)`` and computed with local threads.

Files are written under a temporary name and renamed when complete, so an interrupted export
leaves no half-written file; existing outputs are refused unless ``overwrite=True`` (checked for
every planned file before anything is written).
"""
from __future__ import annotations

import itertools
import logging
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

log = logging.getLogger("carbonsink")

FORMATS = ("cog", "netcdf")
TIME_DIMS = ("year", "time")
NETCDF_TILE = 1024        # largest spatial chunk side of the NetCDF export
COG_BLOCK = 512


class ExportError(ValueError):
    """Bad export request (format, variable, years, output): a one-line message naming the
    dataset and the variable."""


def export(store, kind: str, name: str, *, version: str = "latest", fmt: str = "cog",
           out_dir, variables=None, years=None, overwrite: bool = False) -> list[Path]:
    """Write a published dataset as GIS files into the local directory ``out_dir``.

    ``store``: a :class:`~carbonsink.io.store.Store` (local or object store); ``kind``/``name``/
    ``version``: the dataset (``latest`` = the released version). ``fmt``: ``"cog"`` (one
    Cloud-Optimized GeoTIFF per variable and time step, see the module docstring for why) or
    ``"netcdf"`` (one CF NetCDF-4 file ``<name>.nc``). ``variables``: a name or names (default:
    every data variable; for COG, those on the lat/lon grid — others are skipped with a log
    message, or refused if asked for by name). ``years``: a year or years to keep along ``year``
    or ``time`` (default: all; variables without a time axis are written once).
    ``overwrite``: replace existing files (default: refuse).

    Returns the written paths. Raises :class:`ExportError` (a ValueError) for an unknown format,
    an unknown variable, a variable without lat/lon dims asked for by name, years not in the data,
    an existing output or a non-local ``out_dir``; StoreError if the dataset is not published.
    """
    fmt = str(fmt).lower()
    where = f"{kind}/{name}"
    if fmt not in FORMATS:
        raise ExportError(f"{where}: unknown export format {fmt!r}; choose one of "
                          f"{', '.join(FORMATS)}")
    out = _local_dir(out_dir, where)
    version = store.resolve(kind, name, version)
    where = f"{kind}/{name} {version}"
    ds = store.open(kind, name, version)
    source = ds.encoding.get("source", "")
    names = _variables(ds, variables, where)
    wanted = _years(years, where)

    if fmt == "cog":
        plan = _plan_cog(ds, names, explicit=variables is not None, years=wanted, where=where,
                         out=out, prefix=name)
        if not plan:
            raise ExportError(f"{where}: none of the variables {', '.join(names)} is on a "
                              "lat/lon grid; nothing to write as GeoTIFF")
    else:
        sub = _select_years(ds[names], wanted, where)
        plan = [(out / f"{_safe(name)}.nc", None, None)]
    for path, var, _ in plan:
        if path.exists() and not overwrite:
            what = f"variable {var!r}" if var else f"variables {', '.join(names)}"
            raise ExportError(f"{where} {what}: {path} already exists; pass overwrite=True to "
                              "replace it")

    out.mkdir(parents=True, exist_ok=True)
    meta = {"dataset": f"{kind}/{name}", "version": version, "source": source}
    written = []
    if fmt == "cog":
        for path, var, index in plan:
            _atomic(path, lambda tmp, var=var, index=index: _write_cog(
                ds[var], index, tmp, {**meta, "variable": var}))
            written.append(path)
    else:
        path = plan[0][0]
        _atomic(path, lambda tmp: _write_netcdf(sub, tmp, meta))
        written.append(path)
    log.info("%s: exported %d file(s) to %s", where, len(written), out)
    return written


# --- validation -----------------------------------------------------------------------------------
def _local_dir(out_dir, where: str) -> Path:
    text = os.fspath(out_dir)
    if "://" in text:
        if not text.startswith("file://"):
            raise ExportError(f"{where}: exports are written to a local directory, not {text!r}")
        text = text[len("file://"):]
    return Path(text).expanduser().absolute()


def _variables(ds: xr.Dataset, variables, where: str) -> list[str]:
    if variables is None:
        return list(ds.data_vars)
    names = [variables] if isinstance(variables, str) else list(variables)
    if not names:
        raise ExportError(f"{where}: no variables asked for")
    for v in names:
        if v not in ds.data_vars:
            raise ExportError(f"{where} has no variable {v!r}; it has "
                              f"{', '.join(sorted(ds.data_vars)) or 'none'}")
    return list(dict.fromkeys(names))


def _years(years, where: str) -> list[int] | None:
    if years is None:
        return None
    seq = [years] if isinstance(years, (int, np.integer, str)) else list(years)
    try:
        out = sorted({int(y) for y in seq})
    except (TypeError, ValueError):
        raise ExportError(f"{where}: years must be whole numbers, got {years!r}") from None
    if not out:
        raise ExportError(f"{where}: no years asked for")
    return out


def _year_of(da, dim: str) -> np.ndarray:
    values = da[dim].values
    if dim == "time" and np.issubdtype(values.dtype, np.datetime64):
        return pd.DatetimeIndex(values).year.to_numpy()
    if dim == "time":       # cftime or numbers: ask xarray
        return np.asarray(da[dim].dt.year.values)
    return values.astype("i8")


def _select_years(obj, years, where: str, var: str | None = None):
    """``obj`` restricted to ``years`` along its time axis (unchanged without one); every asked
    year must exist on every time axis."""
    if years is None:
        return obj
    for dim in TIME_DIMS:
        if dim not in obj.dims:
            continue
        have = _year_of(obj, dim)
        missing = sorted(set(years) - set(have.tolist()))
        if missing:
            what = f" variable {var!r}" if var else ""
            raise ExportError(f"{where}{what}: years {missing} are not in its {dim} axis "
                              f"({int(have.min())}–{int(have.max())})")
        obj = obj.isel({dim: np.isin(have, years)})
    return obj


# --- COG ----------------------------------------------------------------------------------------
def _plan_cog(ds, names, *, explicit, years, where, out, prefix):
    """[(path, variable, {dim: index})] of every GeoTIFF to write, in order."""
    plan = []
    for var in names:
        da = ds[var]
        if "lat" not in da.dims or "lon" not in da.dims:
            msg = (f"{where} variable {var!r} has dims {da.dims}, not lat/lon: it cannot be "
                   "written as a GeoTIFF")
            if explicit:
                raise ExportError(msg)
            log.warning("%s (skipped)", msg)
            continue
        da = _select_years(da, years, where, var)
        extra = [d for d in da.dims if d not in ("lat", "lon")]
        labels = {d: _labels(da, d) for d in extra}
        for combo in itertools.product(*(range(da.sizes[d]) for d in extra)):
            index = dict(zip(extra, combo, strict=True))
            # indices into the unfiltered variable (the year filter is re-applied by value)
            index = {d: int(_position(ds[var], d, da[d].values[i])) for d, i in index.items()}
            parts = [labels[d][i] for d, i in zip(extra, combo, strict=True)]
            stem = "_".join([_safe(prefix), _safe(var), *parts])
            plan.append((out / f"{stem}.tif", var, index))
    return plan


def _position(da, dim: str, value) -> int:
    pos = np.flatnonzero(da[dim].values == value)
    return int(pos[0])


def _labels(da, dim: str) -> list[str]:
    """File-name labels of the steps of ``dim``: years as 2000, months as 2000-01, days as
    2000-01-15, anything else as <dim><value>."""
    values = da[dim].values
    if dim == "year":
        return [str(int(v)) for v in values]
    if np.issubdtype(values.dtype, np.datetime64):
        t = pd.DatetimeIndex(values)
        if (t == t.normalize()).all():
            if (t.day == 1).all():
                fmt = "%Y" if (t.month == 1).all() and t.year.is_unique else "%Y-%m"
            else:
                fmt = "%Y-%m-%d"
        else:
            fmt = "%Y-%m-%dT%H%M"
        return [s for s in t.strftime(fmt)]
    return [f"{_safe(dim)}{_safe(str(v))}" for v in values]


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip("-") or "x"


def _tag(value) -> str:
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


def _write_cog(da: xr.DataArray, index: dict, path: str, meta: dict) -> None:
    import rioxarray  # noqa: F401 - registers the .rio accessor

    from ..grid import grid_of

    step = da.isel(index) if index else da
    step = step.transpose("lat", "lon")
    if step.sizes["lat"] > 1 and float(step.lat[0]) < float(step.lat[-1]):
        step = step.isel(lat=slice(None, None, -1))          # north-up
    step = step.compute(scheduler="threads")                 # one 2-D slice in memory

    enc = da.encoding
    stored = np.dtype(enc["dtype"]) if "dtype" in enc else step.dtype
    nodata = None
    if np.issubdtype(step.dtype, np.floating) and np.issubdtype(stored, np.integer) \
            and "_FillValue" in enc:
        nodata = enc["_FillValue"]                            # an integer with a fill: as stored
        step = step.fillna(nodata).astype(stored)
    elif np.issubdtype(step.dtype, np.floating):
        nodata = np.nan
    elif step.dtype == bool:
        step = step.astype("u1")

    attrs = {k: v for k, v in da.attrs.items()
             if k not in ("grid_mapping", "coordinates", "_FillValue", "missing_value")}
    step = step.copy()
    step.attrs = attrs
    step.encoding = {}
    step = step.rio.set_spatial_dims(x_dim="lon", y_dim="lat")
    if step.rio.crs is None:
        step = step.rio.write_crs("EPSG:4326")
    step = step.rio.write_nodata(nodata, encoded=False)
    try:
        from affine import Affine
        step = step.rio.write_transform(Affine(*grid_of(step).transform))
        recalc = False
    except ValueError:                                         # not a preset: from the centres
        recalc = True

    tags = {**meta}
    for d, i in index.items():
        value = da[d].values[i]
        if np.issubdtype(np.asarray(value).dtype, np.datetime64):
            t = pd.Timestamp(value)
            tags[d] = str(t.date()) if t == t.normalize() else t.isoformat()
        else:
            tags[d] = _tag(value)
    band = {k: _tag(attrs[k]) for k in ("units", "long_name", "standard_name") if k in attrs}
    categorical = (not np.issubdtype(step.dtype, np.floating)) or "flag_values" in attrs
    step.rio.to_raster(
        path, driver="COG", recalc_transform=recalc,
        tags={**{k: _tag(v) for k, v in attrs.items()}, **tags, "band_tags": [band]},
        compress="DEFLATE", predictor="YES", blocksize=COG_BLOCK, bigtiff="IF_SAFER",
        overview_resampling="NEAREST" if categorical else "AVERAGE")


# --- NetCDF -------------------------------------------------------------------------------------
def _nc_attr(value):
    """An attribute value NetCDF can store (None dropped, bools as ints, mixed lists as text)."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (str, int, float, np.number, np.ndarray)):
        return value
    if isinstance(value, (list, tuple)):
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value) or \
                all(isinstance(v, str) for v in value):
            return list(value)
    return str(value)


def _clean_attrs(attrs: dict) -> dict:
    out = {}
    for k, v in attrs.items():
        v = _nc_attr(v)
        if v is not None:
            out[k] = v
    return out


def _write_netcdf(ds: xr.Dataset, path: str, meta: dict) -> None:
    ds = ds.copy()
    for v in ds.variables.values():
        v.encoding = {k: val for k, val in v.encoding.items()
                      if k in ("dtype", "_FillValue", "units", "calendar")}
        v.attrs = _clean_attrs(v.attrs)
    ds.attrs = _clean_attrs({**ds.attrs, "carbonsink_export":
                             f"{meta['dataset']} version {meta['version']} from {meta['source']}"})
    encoding = {}
    for name, var in ds.data_vars.items():
        if var.ndim == 0:
            continue
        chunks = tuple(1 if d in TIME_DIMS else
                       min(var.sizes[d], NETCDF_TILE) if d in ("lat", "lon") else var.sizes[d]
                       for d in var.dims)
        encoding[name] = {"zlib": True, "complevel": 4, "shuffle": True, "chunksizes": chunks}
    delayed = ds.to_netcdf(path, format="NETCDF4", engine="netcdf4", encoding=encoding,
                           compute=False)
    delayed.compute(scheduler="threads")


# --- files --------------------------------------------------------------------------------------
def _atomic(path: Path, write) -> None:
    """Run ``write(tmp)`` and move the result onto ``path``; nothing is left behind on failure."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        write(str(tmp))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
