"""Reading raw raster windows so that a corrupted file is an input error, not a traceback.

GDAL and netCDF4 fail deep inside a dask task when a tile of a GeoTIFF is corrupted or a NetCDF
chunk is truncated ("Read failed. See previous exception", "NetCDF: HDF error"), which used to
surface as an 81-line traceback. :func:`read_window` builds the raw dask array of a raster window
(one task per chunk, as xarray's ``.chunk()`` did) from :class:`_GuardedWindow`, whose reads turn
any failure into an :class:`~carbonsink.io.validate.InputError` naming the variable, the file, the
band(s) or time steps and the rows/columns being read. InputError pickles (distributed workers
raise it on the client unchanged).
"""
from __future__ import annotations

import uuid

import dask.array as da
import numpy as np
import xarray as xr
from dask.base import tokenize

from .readers import Raster
from .validate import InputError


class _GuardedWindow:
    """A lazy raw window (step, y, x) of a raster whose reads turn any failure (a corrupted or
    truncated tile, an HDF error) into an :class:`InputError` naming the variable, the file, the
    band(s) or time steps and the rows/columns of the file being read."""

    def __init__(self, win: xr.DataArray, var: str, path: str, steps: list[int],
                 first_band: int | None, row0: int, col0: int):
        self.win, self.var, self.path = win, var, path
        self.steps, self.first_band, self.row0, self.col0 = steps, first_band, row0, col0
        self.shape, self.dtype, self.ndim = tuple(win.shape), win.dtype, win.ndim

    def __getitem__(self, key):
        try:
            return np.asarray(self.win.variable[key].values)
        except (MemoryError, InputError):
            raise
        except Exception as e:  # noqa: BLE001 - GDAL/netCDF4/HDF raise many types
            raise InputError(self.var, self.path, self._where(key) + f": {_reason(e)}; the "
                             "file is corrupted or truncated: download it again (compare its "
                             "checksum) or leave it out") from None

    def _where(self, key) -> str:
        ks, ky, kx = (tuple(key) + (slice(None),) * 3)[:3]
        steps = self.steps[ks] if isinstance(ks, slice) else [self.steps[int(ks)]]
        y0, y1, _ = ky.indices(self.shape[1]) if isinstance(ky, slice) else (int(ky), int(ky) + 1,
                                                                              1)
        x0, x1, _ = kx.indices(self.shape[2]) if isinstance(kx, slice) else (int(kx), int(kx) + 1,
                                                                              1)
        if self.first_band is not None:
            bands = [self.first_band + i for i in steps]
            what = f"band {bands[0]}" if len(bands) == 1 else f"bands {bands[0]}–{bands[-1]}"
        else:
            what = f"time step {steps[0]}" if len(steps) == 1 else \
                f"time steps {steps[0]}–{steps[-1]}"
        return (f"cannot read {what}, rows {self.row0 + y0}–{self.row0 + y1 - 1}, columns "
                f"{self.col0 + x0}–{self.col0 + x1 - 1} of the file")


def _reason(e: BaseException) -> str:
    """The first lines of an error and its causes that say something (rasterio raises 'Read
    failed. See previous exception', its cause holds GDAL's message), without repeats."""
    lines = []
    for _ in range(4):
        if e is None:
            break
        line = (str(e).strip().splitlines() or [type(e).__name__])[0].strip().rstrip(".")
        if line and "see previous exception" not in line.lower():
            lines.append(line)
        e = e.__cause__ or e.__context__
    kept = [x for x in lines if not any(x != y and x in y for y in lines)]
    return " — ".join(dict.fromkeys(kept))[:300] or "read failed"


def read_window(r: Raster, var: str, window: tuple, steps, chunks: dict,
                name_prefix: str = "read-") -> da.Array:
    """The raw (step, y, x) dask array of rows/columns ``window`` (r0, r1, c0, c1) and steps
    ``steps`` (a slice or a list of indices) of ``r``: one task per chunk, each read guarded
    (:class:`_GuardedWindow`)."""
    r0, r1, c0, c1 = window
    win = r.data.isel(y=slice(r0, r1), x=slice(c0, c1)).isel(step=steps)
    idx = list(range(r.data.sizes["step"]))[steps] if isinstance(steps, slice) else list(steps)
    guarded = _GuardedWindow(win, var, r.path, idx, r.first_band, r0, c0)
    if getattr(r, "_read_token", None) is None:
        r._read_token = uuid.uuid4().hex      # one per opened file: never another file's chunks
    token = tokenize(r._read_token, r.path, window, idx, chunks)
    return da.from_array(guarded, chunks=(chunks["step"], chunks["y"], chunks["x"]),
                         name=f"{name_prefix}{token}", lock=False, asarray=False, fancy=False,
                         meta=np.empty((0, 0, 0), dtype=r.data.dtype))
