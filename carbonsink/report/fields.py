"""Map fields for the atlas: period means and classes of published products, coarsened lazily.

A map of a large grid is drawn from a coarsened field: blocks of ``factor × factor`` cells (at most
:data:`MAX_CELLS` blocks along a side) reduced with true cell areas — the area-weighted mean of the
valid cells for a continuous field (Σ x·A / Σ A), the class covering most of the block's area for a
class map (``change_class``, ``dominant_factor``). Everything stays a dask graph until
:func:`compute_fields` runs all of them in one pass on the active (or given) distributed client,
so only the coarsened arrays — at most ~1000 × 1000 values each — come back to this process.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import dask
import numpy as np
import xarray as xr

from ..grid import grid_of
from ..zonal import cell_area_da

MAX_CELLS = 1000     # blocks along the longer side of a drawn map


@dataclass
class MapField:
    """A (lat, lon) field ready to draw: values on blocks whose edges are ``lat_edges`` (north →
    south) and ``lon_edges`` (west → east), degrees."""

    values: np.ndarray
    lat_edges: np.ndarray
    lon_edges: np.ndarray
    units: str = ""
    long_name: str = ""
    factor: int = 1                       # source cells per block along each side
    source_res: float = 0.0               # degrees
    categories: dict[int, str] = field(default_factory=dict)   # code → name for class maps
    area: np.ndarray | None = None        # m² of each block (its cells with any value)

    @property
    def shape(self) -> tuple[int, int]:
        return self.values.shape

    def valid(self) -> np.ndarray:
        v = self.values
        return v[np.isfinite(v)] if not self.categories else v[v > 0]


def coarsen_factor(shape, max_cells: int = MAX_CELLS) -> int:
    """Cells per block so that neither side has more than ``max_cells`` blocks."""
    return max(1, math.ceil(max(shape) / max_cells))


def _edges(obj, factor: int) -> tuple[np.ndarray, np.ndarray, float]:
    g = grid_of(obj)
    nb_lat, nb_lon = math.ceil(g.nlat / factor), math.ceil(g.nlon / factor)
    step = g.res * factor
    lat_edges = np.maximum(g.north - step * np.arange(nb_lat + 1), g.south)
    lon_edges = np.minimum(g.west + step * np.arange(nb_lon + 1), g.east)
    return lat_edges, lon_edges, g.res


def area_of(obj, regions: xr.Dataset | None = None) -> xr.DataArray:
    """Cell areas (m², lat × lon) of ``obj``'s grid: the published ``cell_area`` of the run's
    regions when it is on the same grid, else computed (SCIENCE.md §0), chunked like ``obj``."""
    spatial = {d: c[0] for d, c in (obj.chunksizes or {}).items() if d in ("lat", "lon")}
    if regions is not None and "cell_area" in regions and \
            regions.sizes.get("lat") == obj.sizes.get("lat") and \
            regions.sizes.get("lon") == obj.sizes.get("lon") and \
            np.allclose(regions["lat"].values, obj["lat"].values) and \
            np.allclose(regions["lon"].values, obj["lon"].values):
        area = regions["cell_area"].assign_coords(lat=obj["lat"], lon=obj["lon"])
        return area.chunk(spatial) if spatial else area
    return cell_area_da(obj, chunks=spatial or {"lat": obj.sizes["lat"], "lon": obj.sizes["lon"]})


def _block_sum(da: xr.DataArray, factor: int) -> xr.DataArray:
    if factor == 1:
        return da
    return da.coarsen(lat=factor, lon=factor, boundary="pad").sum()   # skips NaN (floats)


class LazyMap:
    """A map field still to be computed: ``parts`` are lazy DataArrays, ``finish`` turns their
    computed values into a :class:`MapField`."""

    def __init__(self, parts: dict, finish):
        self.parts = parts
        self.finish = finish


def mean_map(da: xr.DataArray, area: xr.DataArray, *, max_cells: int = MAX_CELLS,
             where: xr.DataArray | None = None, units: str | None = None,
             long_name: str | None = None) -> LazyMap:
    """The area-weighted block mean of ``da`` (its mean over ``year``/``time`` first, if it has
    one), optionally only where ``where`` is true."""
    attrs = dict(da.attrs)
    for dim in ("year", "time", "member"):
        if dim in da.dims:
            da = da.mean(dim, skipna=True)
    if where is not None:
        da = da.where(where)
    da = da.astype("f8")
    factor = coarsen_factor(da.shape, max_cells)
    a = area.where(da.notnull())
    parts = {"num": _block_sum((da * area), factor), "den": _block_sum(a, factor)}
    lat_edges, lon_edges, res = _edges(da, factor)

    def finish(v):
        num, den = np.asarray(v["num"], "f8"), np.asarray(v["den"], "f8")
        with np.errstate(invalid="ignore", divide="ignore"):
            values = np.where(den > 0, num / den, np.nan)
        return MapField(values, lat_edges, lon_edges, units=units or attrs.get("units", ""),
                        long_name=long_name or attrs.get("long_name", ""), factor=factor,
                        source_res=res, area=den)
    return LazyMap(parts, finish)


def fraction_map(mask: xr.DataArray, valid: xr.DataArray, area: xr.DataArray, *,
                 max_cells: int = MAX_CELLS) -> LazyMap:
    """Area fraction of each block's valid cells where ``mask`` is true (e.g. p < 0.05)."""
    factor = coarsen_factor(mask.shape, max_cells)
    a = area.where(valid)
    parts = {"num": _block_sum(a.where(mask & valid, 0.0), factor), "den": _block_sum(a, factor)}
    lat_edges, lon_edges, res = _edges(mask, factor)

    def finish(v):
        num, den = np.asarray(v["num"], "f8"), np.asarray(v["den"], "f8")
        with np.errstate(invalid="ignore", divide="ignore"):
            values = np.where(den > 0, num / den, np.nan)
        return MapField(values, lat_edges, lon_edges, units="1", factor=factor, source_res=res,
                        area=den)
    return LazyMap(parts, finish)


def flag_names(da: xr.DataArray) -> dict[int, str]:
    """Code → name of a class map from its CF ``flag_values``/``flag_meanings`` attrs."""
    values = da.attrs.get("flag_values")
    if isinstance(values, str):
        values = [int(x) for x in values.strip("[]").replace(",", " ").split()]
    meanings = str(da.attrs.get("flag_meanings", "")).split()
    return {int(v): m for v, m in zip(values or [], meanings)}


def class_map(da: xr.DataArray, area: xr.DataArray, *, max_cells: int = MAX_CELLS) -> LazyMap:
    """The class covering most of each block's area (0 = no data), from integer codes with CF
    flag attrs."""
    names = flag_names(da)
    codes = sorted(c for c in names if c > 0)
    factor = coarsen_factor(da.shape, max_cells)
    cats = da.fillna(0).astype("i4")
    parts = {f"c{c}": _block_sum(area.where(cats == c, 0.0), factor) for c in codes}
    lat_edges, lon_edges, res = _edges(da, factor)

    def finish(v):
        stack = np.stack([np.asarray(v[f"c{c}"], "f8") for c in codes])
        total = stack.sum(axis=0)
        values = np.where(total > 0, np.asarray(codes)[np.argmax(stack, axis=0)], 0)
        return MapField(values.astype("i4"), lat_edges, lon_edges, units="1",
                        long_name=da.attrs.get("long_name", ""), factor=factor, source_res=res,
                        categories={c: names[c] for c in codes}, area=total)
    return LazyMap(parts, finish)


def compute_fields(lazy: dict[str, LazyMap], client=None) -> dict[str, MapField]:
    """Compute every lazy map in one pass (on ``client`` if given, else dask's default scheduler:
    the active distributed client if there is one) and finish them."""
    flat = {(k, p): v.data if hasattr(v, "data") else v
            for k, m in lazy.items() for p, v in m.parts.items()}
    keys = list(flat)
    if client is not None:
        values = client.gather(client.compute([flat[k] for k in keys]))
    else:
        values = dask.compute(*[flat[k] for k in keys])
    got: dict[str, dict] = {k: {} for k in lazy}
    for (k, p), v in zip(keys, values):
        got[k][p] = np.asarray(v)
    return {k: m.finish(got[k]) for k, m in lazy.items()}
