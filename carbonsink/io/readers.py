"""Readers for the real-world sources of the canonical inputs: GeoTIFF, NetCDF, polygons, CSV.

Everything here is lazy: rasters are opened with rioxarray / xarray without loading data, cut to the
window the grid needs and only then chunked for dask, so a task reads only its part of a file. A
raster comes back *raw* (the stored integers or floats, north-up, west → east) with what the file
declares about itself (CRS, transform, nodata, scale/offset, valid range, units); :func:`decode`
turns raw numbers into physical values with NaN for missing ones. Structural problems — no CRS, a
rotated or irregular grid, coordinates that are not monotonic, a variable or band that is not there
— raise :class:`carbonsink.io.validate.InputError` naming the variable, the file and the problem.

Local paths and fsspec URLs (``s3://``) both work. A source behind a URL is fetched once into a
local copy named by its URL and ETag (:func:`_local_path`; a replaced file gets a new copy) and read
from there: netCDF4 reads local files only, and rasterio's Python ``opener`` (GDAL VSI callbacks) is
not thread-safe — handles closed from another thread (the garbage collector, a dask worker's event
loop) raise LookupError and crashed dask workers with SIGSEGV. The copies live in a temporary
directory of the ingesting process (removed at exit): dask workers read them by path, so they must
share its filesystem (same machine or a shared disk); no storage option or key enters the task
graph. Storage options never carry secrets (see :mod:`carbonsink.config`): S3 keys come from the
AWS_* environment of the ingesting process.
"""
from __future__ import annotations

import glob as _glob
import hashlib
import json
import os
from dataclasses import dataclass, field

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
from affine import Affine

from .validate import InputError

# Raw values that are fill values far more often than data. A raw minimum or maximum equal to one
# of them (or beyond the float sentinel magnitude) that the manifest and the file do not declare is
# reported as an undeclared fill value.
FILL_SENTINELS = (-9999.0, -999.0, -32768.0, 32767.0, 65535.0, -2147483648.0, 2147483647.0)
FLOAT_SENTINEL_MAGNITUDE = 1e20          # 9.96921e36 (netCDF default), 3.4e38 (float32 max), 1e20
# MODIS land products keep fill codes at the top of the integer range (e.g. MOD17A3HGF NPP:
# 32761–32767 for int16, 65529–65535 for uint16)
INT_FILL_TOP = {"int16": 32761, "uint16": 65529, "uint8": 255, "int32": 2147483640}

_LAT_NAMES = ("lat", "latitude", "y", "rlat", "nav_lat")
_LON_NAMES = ("lon", "longitude", "x", "rlon", "nav_lon")


def _err(var, path, problem):
    return InputError(var, path, problem)


# --- finding the files --------------------------------------------------------------------------
def _fs(url: str, storage_options: dict | None):
    import fsspec
    return fsspec.core.url_to_fs(url, **source_options(url, storage_options))


def source_options(url: str, storage_options: dict | None) -> dict:
    """fsspec options for a source URL: the manifest's (never secrets), for ``s3://`` the endpoint
    of ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` as :func:`carbonsink.config.load_config` does
    for the store (keys: the client library reads AWS_* itself), and no listing cache
    (``use_listings_cache: false`` unless the manifest says otherwise): a long-lived process (a
    flow worker, a notebook) would otherwise keep a directory listing from an earlier ingest and
    see the old size/ETag of a replaced file, or not see a new year's file."""
    opts = json.loads(json.dumps(storage_options or {}))
    opts.setdefault("use_listings_cache", False)
    if url.split("://", 1)[0] not in ("s3", "s3a"):
        return opts
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint and "endpoint_url" not in opts and "endpoint_url" not in opts.get(
            "client_kwargs", {}):
        opts.setdefault("client_kwargs", {})["endpoint_url"] = endpoint
    return opts


def _has_magic(path: str) -> bool:
    return any(c in path for c in "*?[")


def find_files(pattern: str, storage_options: dict | None = None) -> list[str]:
    """Files matching a glob pattern (or the one path), sorted; URLs keep their protocol."""
    if "://" not in pattern or pattern.startswith("file://"):
        local = pattern.removeprefix("file://")
        if _has_magic(local):
            return sorted(_glob.glob(local))
        return [local] if os.path.isfile(local) else []
    fs, path = _fs(pattern, storage_options)
    protocol = pattern.split("://", 1)[0]
    found = fs.glob(path) if _has_magic(path) else ([path] if fs.exists(path) else [])
    return sorted(f"{protocol}://{p}" for p in found)


@dataclass(frozen=True)
class Fingerprint:
    """What identifies a source file's content: size plus sha256 (or mtime, or ETag)."""

    path: str
    size: int
    digest: str          # "sha256:<hex>" | "mtime:<ns>" | "etag:<etag>"

    def to_dict(self) -> dict:
        return {"path": self.path, "size": self.size, "digest": self.digest}


def fingerprint(path: str, mode: str = "sha256",
                storage_options: dict | None = None) -> Fingerprint:
    """Size and content digest of a source file (streamed; object stores give their ETag)."""
    if "://" in path and not path.startswith("file://"):
        fs, p = _fs(path, storage_options)
        info = fs.info(p)
        etag = str(info.get("ETag") or info.get("etag") or "").strip('"')
        if etag:
            return Fingerprint(path, int(info.get("size") or 0), f"etag:{etag}")
        h = hashlib.sha256()
        with fs.open(p, "rb") as f:
            for block in iter(lambda: f.read(8 << 20), b""):
                h.update(block)
        return Fingerprint(path, int(info.get("size") or 0), f"sha256:{h.hexdigest()}")
    local = path.removeprefix("file://")
    st = os.stat(local)
    if mode == "stat":
        return Fingerprint(path, st.st_size, f"mtime:{st.st_mtime_ns}")
    h = hashlib.sha256()
    with open(local, "rb") as f:
        for block in iter(lambda: f.read(8 << 20), b""):
            h.update(block)
    return Fingerprint(path, st.st_size, f"sha256:{h.hexdigest()}")


# --- rasters ----------------------------------------------------------------------------------
@dataclass
class Raster:
    """One opened raster file: raw lazy data (step, y, x), north-up, and what the file declares."""

    path: str
    data: xr.DataArray                      # raw, dims ("step", "y", "x"), lazy (not yet dask)
    crs: object                             # pyproj.CRS
    transform: Affine                       # of ``data``
    crs_origin: str                         # "file" | "manifest" | "coordinates (CF lat/lon)"
    nodata: list[float] = field(default_factory=list)
    scale: float | None = None
    offset: float | None = None
    valid_range: tuple[float, float] | None = None
    units: str | None = None
    times: list | None = None               # per step: (year, month) from a time coordinate
    first_band: int | None = None           # GeoTIFF: the band number of step 0

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.data.sizes["y"]), int(self.data.sizes["x"]))

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in the raster's CRS."""
        h, w = self.shape
        left, top = self.transform.c, self.transform.f
        return (left, top + self.transform.e * h, left + self.transform.a * w, top)

    def same_grid(self, other: "Raster") -> bool:
        return (self.shape == other.shape and self.crs == other.crs
                and np.allclose(tuple(self.transform)[:6], tuple(other.transform)[:6],
                                rtol=1e-9, atol=1e-9 * max(1.0, abs(self.transform.a))))


def _crs(value):
    from pyproj import CRS
    return CRS.from_user_input(value)


def _resolve_crs(var, path, file_crs, manifest_crs, origin="file"):
    """The CRS of a source: the file's, else the manifest's; both present must agree."""
    if file_crs is None and manifest_crs is None:
        raise _err(var, path, "has no CRS (no georeferencing in the file): declare `crs` in the "
                              "manifest, e.g. 'EPSG:4326' or the MODIS sinusoidal proj string")
    if file_crs is not None and manifest_crs is not None:
        m = _crs(manifest_crs)
        if not _crs_equal(file_crs, m):
            raise _err(var, path, f"the file's CRS ({_crs_name(file_crs)}) differs from the "
                                  f"manifest's crs ({_crs_name(m)}); `crs` is only for files "
                                  "that lack one")
        return file_crs, origin
    if file_crs is not None:
        return file_crs, origin
    return _crs(manifest_crs), "manifest"


def _crs_equal(a, b) -> bool:
    """Same CRS, or two spellings (WKT from GDAL, a proj string) that put China's points at the
    same coordinates (to a millimetre/1e-8 degree)."""
    try:
        if a == b or a.equals(b, ignore_axis_order=True):
            return True
        from pyproj import Transformer
        lon = np.array([73.0, 100.0, 136.0, 100.0, 120.0])
        lat = np.array([17.0, 35.0, 54.0, 20.0, 45.0])
        xa, ya = Transformer.from_crs("EPSG:4326", a, always_xy=True).transform(lon, lat)
        xb, yb = Transformer.from_crs("EPSG:4326", b, always_xy=True).transform(lon, lat)
        tol = 1e-8 if a.is_geographic else 1e-3
        return bool(a.is_geographic == b.is_geographic and np.allclose(xa, xb, atol=tol, rtol=0)
                    and np.allclose(ya, yb, atol=tol, rtol=0))
    except Exception:  # noqa: BLE001 - pyproj raises varied errors on exotic CRSs
        return False


def _crs_name(crs) -> str:
    """'EPSG:4326', or without an EPSG code the PROJ string (the WKT if PROJ cannot say it), after
    the CRS's name when it has a real one: a MODIS sinusoidal CRS is named 'unknown'."""
    if crs is None:
        return "none"
    epsg = crs.to_epsg(min_confidence=90)
    if epsg:
        return f"EPSG:{epsg}"
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)   # "you will likely lose information"
        try:
            text = crs.to_proj4()
        except Exception:  # noqa: BLE001 - pyproj raises CRSError and others
            text = None
    text = (text or crs.to_wkt()).replace(" +type=crs", "")
    name = crs.name if crs.name and crs.name.lower() not in ("unknown", "unnamed", "undefined",
                                                             "") else ""
    return f"{name} ({text})" if name else text


def _north_up(data: xr.DataArray, transform: Affine, var, path) -> tuple[xr.DataArray, Affine]:
    """Flip rows/columns (lazily) so rows run north → south and columns west → east."""
    if transform.b != 0 or transform.d != 0:
        raise _err(var, path, f"has a rotated/sheared geotransform {tuple(transform)[:6]}; "
                              "warp it to a north-up grid first")
    h, w = int(data.sizes["y"]), int(data.sizes["x"])
    if transform.e > 0:
        data = data.isel(y=slice(None, None, -1))
        transform = Affine(transform.a, 0, transform.c, 0, -transform.e,
                           transform.f + transform.e * h)
    if transform.a < 0:
        data = data.isel(x=slice(None, None, -1))
        transform = Affine(-transform.a, 0, transform.c + transform.a * w, 0, transform.e,
                           transform.f)
    return data, transform


def open_geotiff(path: str, var: str, *, band: int | None = None, bands: int | None = None,
                 crs: str | None = None, storage_options: dict | None = None) -> Raster:
    """Open a GeoTIFF lazily: ``band`` (1-based) as one step, or the first ``bands`` bands as
    steps."""
    import rasterio
    import rioxarray

    try:
        # a local file (URLs: the local copy): a new handle per read, fully parallel
        raw = rioxarray.open_rasterio(_local_path(path, storage_options), chunks=None,
                                      cache=False, mask_and_scale=False, lock=False)
    except (rasterio.errors.RasterioIOError, OSError) as e:
        raise _err(var, path, f"cannot be read as a GeoTIFF: {e}") from None
    nband = int(raw.sizes["band"])
    if bands is not None:
        if nband < bands:
            raise _err(var, path, f"has {nband} band(s); a yearly file of monthly data needs "
                                  f"{bands} (January first)")
        data = raw.isel(band=slice(0, bands))
    else:
        b = band or 1
        if b > nband:
            raise _err(var, path, f"has no band {b} (it has {nband})")
        data = raw.isel(band=slice(b - 1, b))
    data = data.rename(band="step")
    data = data.drop_vars(list(data.coords), errors="ignore")
    file_crs = raw.rio.crs
    if file_crs is not None:
        file_crs = _crs(file_crs.to_wkt())
    the_crs, origin = _resolve_crs(var, path, file_crs, crs)
    transform = raw.rio.transform()
    data, transform = _north_up(data, transform, var, path)
    attrs = raw.attrs
    nodata = [] if raw.rio.nodata is None else [float(raw.rio.nodata)]
    scale = float(attrs.get("scale_factor", 1.0))
    offset = float(attrs.get("add_offset", 0.0))
    return Raster(path, data, the_crs, transform, origin, nodata=nodata,
                  scale=None if scale == 1.0 else scale, offset=None if offset == 0.0 else offset,
                  units=attrs.get("units") or None, first_band=1 if bands else (band or 1))


def _find_dim(da_: xr.DataArray, ds: xr.Dataset, names, std, axis):
    for d in da_.dims:
        c = ds[d] if d in ds.variables else None
        if c is not None and (c.attrs.get("standard_name") == std or c.attrs.get("axis") == axis):
            return d
    for d in da_.dims:
        if str(d).lower() in names:
            return d
    return None


def _regular_axis(values: np.ndarray, var, path, name) -> tuple[float, float]:
    """(first value, step) of a 1-D coordinate; errors if it is not strictly monotonic or
    regular."""
    v = np.asarray(values, dtype="f8")
    if v.size < 2:
        raise _err(var, path, f"coordinate {name!r} has {v.size} value(s); need at least 2")
    d = np.diff(v)
    if not (np.all(d > 0) or np.all(d < 0)):
        bad = int(np.argmax(d <= 0) if d[0] > 0 else np.argmax(d >= 0))
        raise _err(var, path, f"coordinate {name!r} is not monotonic (at index {bad + 1}: "
                              f"{v[bad]:g} then {v[bad + 1]:g})")
    step = (v[-1] - v[0]) / (v.size - 1)
    if np.max(np.abs(d - step)) > 1e-3 * abs(step):
        raise _err(var, path, f"coordinate {name!r} is not regularly spaced (steps "
                              f"{d.min():g}..{d.max():g}); only regular grids can be regridded")
    return float(v[0]), float(step)


_COPIES: dict = {}     # "dir": this process's directory of local copies of remote sources


def _local_path(path: str, storage_options) -> str:
    """A local path for a source: the path itself, or for a URL a local copy named by the URL and
    the file's ETag/checksum (``fs.ukey``), fetched once (see the module doc). A replaced remote
    file gets a new copy under a new name: never a stale copy (fsspec's simplecache keeps the first
    one for the life of the process, so a long-lived process recorded the new file's fingerprint
    with the old file's values), never a copy rewritten under a handle that still reads it."""
    if "://" not in path or path.startswith("file://"):
        return path.removeprefix("file://")
    import atexit
    import shutil
    import tempfile
    import uuid

    fs, p = _fs(path, storage_options)
    if "dir" not in _COPIES:
        _COPIES["dir"] = tempfile.mkdtemp(prefix="carbonsink-sources-")
        atexit.register(shutil.rmtree, _COPIES["dir"], ignore_errors=True)
    url = hashlib.sha256(path.encode()).hexdigest()[:16]
    content = hashlib.sha256(str(fs.ukey(p)).encode()).hexdigest()[:16]
    local = os.path.join(_COPIES["dir"], f"{url}-{content}-{os.path.basename(p)}")
    if not os.path.exists(local):
        part = f"{local}.{uuid.uuid4().hex}.part"
        try:
            fs.get_file(p, part)
            os.replace(part, local)
        finally:
            if os.path.exists(part):
                os.remove(part)
        for old in _glob.glob(os.path.join(_COPIES["dir"], f"{url}-*")):
            if old != local and not old.endswith(".part"):
                os.remove(old)     # an earlier content of the same URL (open handles keep it)
    return local


def open_netcdf(path: str, var: str, variable: str, *, crs: str | None = None,
                storage_options: dict | None = None) -> Raster:
    """Open one variable of a NetCDF file lazily, with its time steps as (year, month)."""
    try:
        ds = xr.open_dataset(_local_path(path, storage_options), engine="netcdf4",
                             chunks=None, mask_and_scale=False, decode_times=True,
                             decode_timedelta=False, cache=False)
    except (OSError, ValueError) as e:
        raise _err(var, path, f"cannot be read as NetCDF: {e}") from None
    if variable not in ds.data_vars:
        raise _err(var, path, f"has no variable {variable!r} (it has {sorted(ds.data_vars)})")
    raw = ds[variable]
    ydim = _find_dim(raw, ds, _LAT_NAMES, "latitude", "Y")
    xdim = _find_dim(raw, ds, _LON_NAMES, "longitude", "X")
    if ydim is None or xdim is None:
        raise _err(var, path, f"variable {variable!r} has dims {raw.dims}: cannot tell latitude/y "
                              "and longitude/x apart (name them lat/lon or x/y, or set "
                              "standard_name/axis)")
    others = [d for d in raw.dims if d not in (ydim, xdim)]
    tdim = None
    for d in others:
        if d in ds.variables and np.issubdtype(ds[d].dtype, np.datetime64) or (
                d in ds.variables and ds[d].dtype == object):
            tdim = d
    for d in others:
        if d != tdim:
            if tdim is None and str(d).lower() in ("time", "valid_time", "t", "month", "year") \
                    and raw.sizes[d] > 1:
                raise _err(var, path, f"time coordinate {d!r} is not decodable to dates (units "
                                      f"{ds[d].attrs.get('units', '?')!r} if present); give it CF "
                                      "units such as 'days since 2000-01-01'")
            if raw.sizes[d] != 1:
                raise _err(var, path, f"variable {variable!r} has an extra dimension {d!r} of "
                                      f"size {raw.sizes[d]} (select one level first)")
            raw = raw.isel({d: 0})
    # the CRS: a CF grid mapping, else 1-D latitude/longitude coordinates mean EPSG:4326
    file_crs, origin = None, "file"
    gm = raw.attrs.get("grid_mapping")
    if gm and gm in ds.variables:
        from pyproj import CRS
        gattrs = ds[gm].attrs
        try:
            wkt = gattrs.get("crs_wkt") or gattrs.get("spatial_ref")
            file_crs = CRS.from_wkt(wkt) if wkt else CRS.from_cf(gattrs)
        except Exception as e:  # noqa: BLE001 - pyproj raises CRSError and others
            raise _err(var, path, f"has an unreadable grid mapping {gm!r}: {e}") from None
    else:
        yunits = str(ds[ydim].attrs.get("units", "")) if ydim in ds.variables else ""
        geographic = (str(ydim).lower() in ("lat", "latitude") and str(xdim).lower() in
                      ("lon", "longitude")) or yunits.startswith("degree")
        if geographic:
            file_crs, origin = _crs("EPSG:4326"), "coordinates (CF lat/lon)"
    the_crs, origin = _resolve_crs(var, path, file_crs, crs, origin)
    if ydim not in ds.variables or xdim not in ds.variables:
        raise _err(var, path, f"has no coordinate values for {ydim!r}/{xdim!r}")
    if ds[ydim].ndim != 1 or ds[xdim].ndim != 1:
        raise _err(var, path, "has 2-D (curvilinear) coordinates; only regular grids are supported")
    y0, dy = _regular_axis(ds[ydim].values, var, path, ydim)
    x0, dx = _regular_axis(ds[xdim].values, var, path, xdim)
    transform = Affine(dx, 0, x0 - dx / 2, 0, dy, y0 - dy / 2)
    if tdim is None:
        raw = raw.expand_dims(step=1)
        times = None
    else:
        t = ds[tdim]
        try:
            years, months = t.dt.year.values, t.dt.month.values
        except (TypeError, AttributeError) as e:
            raise _err(var, path, f"time coordinate {tdim!r} is not decodable: {e}") from None
        times = [(int(y), int(m)) for y, m in zip(years, months)]
        raw = raw.rename({tdim: "step"})
    data = raw.rename({ydim: "y", xdim: "x"}).transpose("step", "y", "x")
    data = data.drop_vars(list(data.coords), errors="ignore")
    data, transform = _north_up(data, transform, var, path)
    a = raw.attrs
    fills = [a[k] for k in ("_FillValue", "missing_value") if k in a]
    nodata = [float(x) for f in fills for x in np.atleast_1d(f)]
    vr = a.get("valid_range")
    if vr is None and ("valid_min" in a or "valid_max" in a):
        vr = (a.get("valid_min", -np.inf), a.get("valid_max", np.inf))
    scale, offset = a.get("scale_factor"), a.get("add_offset")
    return Raster(path, data, the_crs, transform, origin, nodata=nodata,
                  scale=None if scale is None or float(scale) == 1.0 else float(scale),
                  offset=None if offset is None or float(offset) == 0.0 else float(offset),
                  valid_range=None if vr is None else (float(vr[0]), float(vr[1])),
                  units=a.get("units") or None, times=times)


# --- decoding ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Decoding:
    """raw → value: NaN where raw is nodata or outside ``valid_range``, else
    raw * scale + offset."""

    nodata: tuple[float, ...] = ()
    valid_range: tuple[float, float] | None = None
    scale: float = 1.0
    offset: float = 0.0
    packed: bool = False                  # the file itself declares scale_factor/add_offset
    file_nodata: tuple[float, ...] = ()   # the missing values the file itself declares

    def missing(self, raw):
        """Boolean mask of declared-missing raw values (lazy for dask input)."""
        x = raw
        bad = x != x  # NaN (floats); all False for integers
        for v in self.nodata:
            bad = bad | (x == v) if not np.isnan(v) else bad
        if self.valid_range is not None:
            bad = bad | (x < self.valid_range[0]) | (x > self.valid_range[1])
        return bad

    def decode(self, raw):
        x = raw.astype("f8")
        x = da.where(self.missing(raw), np.nan, x) if isinstance(raw, da.Array) else \
            np.where(self.missing(raw), np.nan, x)
        if self.scale != 1.0:
            x = x * self.scale
        if self.offset != 0.0:
            x = x + self.offset
        return x


def decoding_for(r: Raster, var: str, manifest_nodata, manifest_scale, manifest_offset,
                 manifest_valid_range) -> Decoding:
    """The file's declarations and the manifest's together; a scale/offset the two declare
    differently is an error (which one is right cannot be guessed)."""
    for what, mine, theirs in (("scale_factor", manifest_scale, r.scale),
                               ("add_offset", manifest_offset, r.offset)):
        if mine is not None and theirs is not None and not np.isclose(mine, theirs, rtol=1e-9):
            raise _err(var, r.path, f"the file declares {what} {theirs:g} but the manifest says "
                                    f"{mine:g}; remove one of them")
    scale = manifest_scale if manifest_scale is not None else (r.scale or 1.0)
    offset = manifest_offset if manifest_offset is not None else (r.offset or 0.0)
    nodata = tuple(sorted(set(float(v) for v in list(manifest_nodata) + list(r.nodata))))
    vr = manifest_valid_range if manifest_valid_range is not None else r.valid_range
    return Decoding(nodata, None if vr is None else tuple(vr), float(scale), float(offset),
                    packed=r.scale is not None or r.offset is not None,
                    file_nodata=tuple(float(v) for v in r.nodata))


def _packing_extreme(v: float, vmin: float, vmax: float, dtype, decoding: Decoding) -> bool:
    """Whether ``v`` is the end of an integer type that packed data reach by construction: a
    variable the file packs with an offset (``scale_factor``/``add_offset`` chosen from its
    extremes) spans the whole integer range, so ERA5's int16 has a raw maximum of exactly 32767
    (and a minimum near −32767) while its fill value is −32767. A product that only scales
    (SoilGrids, MODIS: no offset, values in one half of the range) is not packed that way."""
    if not decoding.packed or decoding.offset == 0.0 or np.dtype(dtype).kind not in "iu":
        return False
    info = np.iinfo(np.dtype(dtype))
    middle = (float(info.min) + float(info.max)) / 2
    return (v == vmax == float(info.max) and vmin < middle) or \
        (v == vmin == float(info.min) and vmax > middle)


def suspicious_fill(vmin: float, vmax: float, dtype, decoding: Decoding) -> float | None:
    """An undeclared fill value at the raw minimum or maximum, or None. The end of the integer
    range in a variable the file packs over that range (:func:`_packing_extreme`) and whose
    declared fill values (_FillValue, missing_value, nodata) are other numbers is data."""
    dtype = np.dtype(dtype)
    for v in (vmax, vmin):
        if not np.isfinite(v):
            continue
        if decoding.valid_range is not None and decoding.valid_range[0] <= v <= \
                decoding.valid_range[1]:
            continue   # explicitly declared valid
        if _packing_extreme(v, vmin, vmax, dtype, decoding) and decoding.file_nodata:
            continue   # the file says which raw values are missing, and this is not one of them
        if v in FILL_SENTINELS or abs(v) >= FLOAT_SENTINEL_MAGNITUDE:
            return v
        top = INT_FILL_TOP.get(dtype.name)
        if top is not None and v >= top and v == vmax:
            return v
    return None


def fill_message(bad: float, vmin: float, vmax: float, dtype, decoding: Decoding) -> str:
    """The problem text of an undeclared fill value; for packed data at the end of the integer
    range (maybe real data) it never suggests turning the value into nodata first."""
    which = "maximum" if bad == vmax else "minimum"
    if _packing_extreme(bad, vmin, vmax, dtype, decoding):
        info = np.iinfo(np.dtype(dtype))
        lo, hi = (int(info.min) + 1, int(info.max)) if bad == vmax else (int(info.min),
                                                                       int(info.max) - 1)
        return (f"holds the raw value {bad:g} (the file's {which}, the end of {np.dtype(dtype)}, "
                "before scale/offset), which packed data (scale_factor/add_offset) reach by "
                "construction, and the file declares no _FillValue/missing_value: if it is data, "
                f"declare the raw `valid_range: [{lo}, {hi}]` in the manifest; only if the "
                "product documents it as a fill value, declare it under `nodata`")
    return (f"holds the raw value {bad:g} (the file's {which}, before scale/offset), an "
            "undeclared fill value: declare it under `nodata` in the manifest (or `valid_range`)")


# --- polygons ---------------------------------------------------------------------------------
def read_polygons(path: str, var: str, *, layer: str | None, attribute: str,
                  crs: str | None = None, storage_options: dict | None = None):
    """A GeoDataFrame of polygons with the class column, in EPSG:4326."""
    import geopandas as gpd

    try:
        kw = {"layer": layer} if layer else {}
        if "://" in path and not path.startswith("file://"):
            fs, p = _fs(path, storage_options)
            with fs.open(p, "rb") as f:
                gdf = gpd.read_file(f, **kw)
        else:
            gdf = gpd.read_file(path.removeprefix("file://"), **kw)
    except Exception as e:  # noqa: BLE001 - pyogrio/fiona raise many types
        raise _err(var, path, f"cannot be read as polygons: {e}") from None
    if attribute not in gdf.columns:
        raise _err(var, path, f"has no attribute column {attribute!r} (it has "
                              f"{[c for c in gdf.columns if c != 'geometry']})")
    types = set(gdf.geom_type.dropna().unique())
    if not types <= {"Polygon", "MultiPolygon"}:
        raise _err(var, path, f"holds {sorted(types)} geometries; lithology must be polygons")
    file_crs = None if gdf.crs is None else _crs(gdf.crs.to_wkt())
    the_crs, _ = _resolve_crs(var, path, file_crs, crs)
    gdf = gdf.set_crs(the_crs, allow_override=True)
    if not _crs_equal(the_crs, _crs("EPSG:4326")):
        gdf = gdf.to_crs("EPSG:4326")
    return gdf[[attribute, "geometry"]]


# --- the river ion table ----------------------------------------------------------------------
def read_ion_table(path: str, *, columns: dict, units: str, sep: str = ",",
                   storage_options: dict | None = None) -> pd.DataFrame:
    """A river ion-chemistry CSV as the canonical table (basin_id, year, 7 ions in mmol L-1)."""
    from .. import units as u
    from ..ml import ION_COLUMNS, KEY_COLUMNS

    try:
        if "://" in path and not path.startswith("file://"):
            fs, p = _fs(path, storage_options)
            with fs.open(p, "rb") as f:
                raw = pd.read_csv(f, sep=sep)
        else:
            raw = pd.read_csv(path.removeprefix("file://"), sep=sep)
    except (OSError, ValueError, pd.errors.ParserError) as e:
        raise _err("river_chemistry", path, f"cannot be read as CSV: {e}") from None
    mapping = {c: columns.get(c, c) for c in KEY_COLUMNS + ION_COLUMNS}
    missing = [f"{c} (column {src!r})" for c, src in mapping.items() if src not in raw.columns]
    if missing:
        raise _err("river_chemistry", path, f"missing columns: {', '.join(missing)}; the file "
                                            f"has {list(raw.columns)}")
    table = pd.DataFrame({c: raw[src] for c, src in mapping.items()})
    canon = u.canonical(units)
    f, _ = u.conversion(units, canon)
    for ion in ION_COLUMNS:
        col = table[ion]
        if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
            continue   # reported by carbonsink.ml.validate_ion_table
        if canon == "mg L-1":
            col = col * f / u.ION_MOLAR_MASS[ion]
        elif canon == "meq L-1":
            col = col * f / u.ION_CHARGE[ion]
        else:
            col = col * f
        table[ion] = col
    return table
