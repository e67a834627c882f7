"""Putting any regular raster — any CRS, either latitude order, 0–360 longitudes — onto a carbonsink
grid, and polygons onto a fraction of each cell; lazily, tile by tile.

How, per time block (a year of months) and group of output tiles, in float32, each step's missing
pixels handled separately:

* **continuous fields, source as fine as the grid or finer** (``average``): each cell gets the mean
  of the source pixels it overlaps, each weighted by the true area of the part of it inside the
  cell, ignoring missing pixels (a cell is missing only when no valid pixel overlaps it).

  - *Geographic sources aligned with the grid* (pixel edges on cell edges: 0.01° or 1/120°·k onto
    0.05°…): GDAL's warper (``rasterio.warp.reproject``, ``average``) — each pixel lies wholly in
    one cell, so GDAL's pixel-count weights are the exact ones, and it is fast.
  - *Any other source* — projected (MODIS sinusoidal, SoilGrids Interrupted Goode Homolosine,
    Albers) or geographic off the grid's edges: exact overlaps
    (:mod:`carbonsink.io.exactregrid`): every pixel's footprint is clipped against the cells it
    touches and weighted by the shared area × cos φ. GDAL's ``average`` is *not* area-true there:
    it averages over each cell's bounding box in source space, which for a cell sheared ~45° (a
    0.05° cell at 100°E 35°N in sinusoidal) is twice the cell — a sharp 2000 g m⁻² square leaked
    ~26 % of its contrast into the neighbouring cells, and sharp fills (water, urban) shrank.

  When the source is coarser (ERA5-Land 0.1° onto 0.05°), averaging would just copy the covering
  pixel, so ``auto`` picks ``bilinear`` there (GDAL; smooth, and it does not invent extremes).
  ``nearest`` and ``cubic`` (GDAL) can be asked for explicitly.
* **classes and masks** (``mode``): the class covering the largest area of the cell, from the
  same exact overlaps (ties: the smallest class); GDAL's ``mode`` (the most frequent pixel) only for
  aligned geographic sources, where pixel counts are areas.
* **carbonate fraction**: polygons are rasterised on a supersampled grid (``supersample``² sub-cells
  per cell, default 10×10) and the carbonate share of the sub-cells covered by any lithology polygon
  is the fraction; a class raster is turned into a 0/1 carbonate indicator and averaged (the same
  thing on the raster's own pixels, area-true as above). Cells no polygon or pixel covers are
  missing, not zero.

A source keeps its own CRS and pixel grid: longitudes 0–360 need no shifting (the China box
73–136°E is the same number in both conventions), south-up rasters and ascending latitudes are
flipped lazily by the readers, projected grids are handled directly. Cells whose centre lies
outside the source are missing (:func:`outside_source`), with either method.

Per group of tiles, only the source window it needs (its bounds transformed to the source CRS, plus
a few pixels of margin for the bilinear/cubic kernels) is used, so memory is bounded by the tiles
and the time block, not by the grid or the file (the exact overlaps work on parts of it).
"""
from __future__ import annotations

import threading

import dask
import dask.array as da
import numpy as np
from affine import Affine

from ..grid import Grid
from . import exactregrid as ex

EPSG4326 = "EPSG:4326"
# margin (source pixels) around each tile's window: bilinear needs 1, cubic 2
PAD = 3
RESAMPLING_CHOICES = ("average", "bilinear", "cubic", "nearest", "mode")
# cells of the grid warped in one GDAL call (a few output tiles at once, fewer calls): 512² float32
# cells × a year of months ≈ 12 MB per task — larger groups save little GDAL time but let the
# threaded scheduler hold more of them in memory
SUPER_TILE_CELLS = 512 * 512
#: changes whenever :func:`regrid` gives other values for the same inputs — 2: ``average`` and
#: ``mode`` area-true from projected and off-grid sources (exact overlaps, not GDAL)
METHOD_VERSION = 2


def _resampling(name: str):
    from rasterio.enums import Resampling
    return {"average": Resampling.average, "bilinear": Resampling.bilinear,
            "cubic": Resampling.cubic, "nearest": Resampling.nearest,
            "mode": Resampling.mode}[name]


def _wkt(crs) -> str:
    return crs if isinstance(crs, str) else crs.to_wkt()


def tile_bounds(grid: Grid, i0: int, i1: int, j0: int, j1: int):
    """(west, south, east, north) of grid rows i0:i1, columns j0:j1."""
    return (grid.west + j0 * grid.res, grid.north - i1 * grid.res,
            grid.west + j1 * grid.res, grid.north - i0 * grid.res)


def pixel_window(transform: Affine, crs, shape, bounds, pad: int = PAD):
    """Rows/columns (r0, r1, c0, c1) of a north-up raster covering ``bounds`` (EPSG:4326), with a
    margin; None when they do not overlap."""
    from rasterio.warp import transform_bounds

    left, bottom, right, top = transform_bounds(EPSG4326, _wkt(crs), *bounds, densify_pts=21)
    c0 = int(np.floor((left - transform.c) / transform.a)) - pad
    c1 = int(np.ceil((right - transform.c) / transform.a)) + pad
    r0 = int(np.floor((top - transform.f) / transform.e)) - pad
    r1 = int(np.ceil((bottom - transform.f) / transform.e)) + pad
    h, w = shape
    r0, r1, c0, c1 = max(r0, 0), min(r1, h), max(c0, 0), min(c1, w)
    if r1 <= r0 or c1 <= c0:
        return None
    return r0, r1, c0, c1


def coverage(transform: Affine, crs, shape, grid: Grid, land: np.ndarray,
             max_points: int = 20000):
    """Share of the land cells of ``grid`` whose centre falls inside the raster, and the first
    uncovered one as (lat, lon) (None if all are covered). Land is sampled to ``max_points``."""
    from pyproj import Transformer

    rows, cols = np.nonzero(land)
    if rows.size == 0:
        return 1.0, None
    step = max(1, int(np.ceil(rows.size / max_points)))
    rows, cols = rows[::step], cols[::step]
    lat, lon = grid.lat[rows], grid.lon[cols]
    x, y = Transformer.from_crs(EPSG4326, _wkt(crs), always_xy=True).transform(lon, lat)
    h, w = shape
    col = (np.asarray(x) - transform.c) / transform.a
    row = (np.asarray(y) - transform.f) / transform.e
    inside = np.isfinite(col) & np.isfinite(row) & (col >= 0) & (col <= w) & (row >= 0) & (row <= h)
    frac = float(inside.mean())
    first = None if inside.all() else (float(lat[~inside][0]), float(lon[~inside][0]))
    return frac, first


def outside_source(transform: Affine, crs, shape, bounds, dst_shape):
    """Boolean (h, w) mask of the cells of a grid block (``bounds`` west, south, east, north;
    ``dst_shape`` cells) whose centre lies outside a raster of ``shape`` — the same rule as
    :func:`coverage` — or None when every centre is inside.

    GDAL's ``average`` and ``mode`` kernels give a cell *just outside* a source a value when its
    edge coincides with the source's edge: rounding puts the first source row/column into the
    cell's window with a weight of ~1e-12, and a weighted mean of one pixel (or a mode, which
    ignores weights) is that pixel. A land mask exactly covering a study box thus grew a row on
    its north edge and a column on its west edge. Such cells are no data."""
    from pyproj import Transformer

    west, south, east, north = bounds
    h, w = dst_shape
    res_y, res_x = (north - south) / h, (east - west) / w
    lat = north - res_y * (np.arange(h) + 0.5)
    lon = west + res_x * (np.arange(w) + 0.5)
    lon2, lat2 = np.meshgrid(lon, lat)
    x, y = Transformer.from_crs(EPSG4326, _wkt(crs), always_xy=True).transform(lon2, lat2)
    col = (np.asarray(x) - transform.c) / transform.a
    row = (np.asarray(y) - transform.f) / transform.e
    sh, sw = shape
    with np.errstate(invalid="ignore"):
        inside = np.isfinite(col) & np.isfinite(row) & (col >= 0) & (col <= sw) & (row >= 0) & \
            (row <= sh)
    return None if inside.all() else ~inside


def source_resolution_deg(transform: Affine, crs, shape) -> float:
    """Approximate pixel width in degrees at the raster's centre (for choosing a resampling)."""
    from pyproj import Transformer

    h, w = shape
    cx, cy = transform * (w / 2, h / 2)
    t = Transformer.from_crs(_wkt(crs), EPSG4326, always_xy=True)
    lon0, lat0 = t.transform(cx, cy)
    lon1, lat1 = t.transform(cx + transform.a, cy)
    lon2, lat2 = t.transform(cx, cy + transform.e)
    return float(max(abs(lon1 - lon0), abs(lat2 - lat0)))


def pick_resampling(requested: str, kind: str, transform: Affine, crs, shape, grid: Grid) -> str:
    """``auto``: mode for masks and classes (basin ids), average for fractions and for sources as
    fine as the grid or finer, bilinear for coarser continuous sources; anything else as
    requested. ``average`` and ``mode`` are area-true from any source (:func:`uses_exact`)."""
    if requested != "auto":
        return requested
    if kind in ("mask", "class"):
        return "mode"
    if kind == "fraction":
        return "average"
    res = source_resolution_deg(transform, crs, shape)
    return "average" if res <= grid.res * 1.001 else "bilinear"


_QUIET_LOCK = threading.Lock()
_QUIET_MESSAGE = "Dataset has no geotransform, gcps, or rpcs"


def _quiet_rasterio():
    """rasterio 1.4 builds the in-memory source of ``reproject`` before giving it its transform and
    warns NotGeoreferencedWarning for that transient dataset. Our arrays always carry a transform
    (files without georeferencing are rejected by the readers), so that one message is noise.
    A targeted filter, (re)installed if missing (test runners reset filters; ``catch_warnings`` is
    not thread-safe)."""
    import warnings

    if any(f[1] is not None and f[1].pattern == _QUIET_MESSAGE for f in warnings.filters[:8]):
        return
    from rasterio.errors import NotGeoreferencedWarning
    with _QUIET_LOCK:
        warnings.filterwarnings("ignore", message=_QUIET_MESSAGE,
                                category=NotGeoreferencedWarning)


def _warp(src, src_transform, src_crs, dst_transform, dst_shape, resampling):
    """One GDAL warp in float32 (GDAL weighs in double; values were converted to canonical
    units in float64 before, so float32 costs ~1e-7 relative). Windows without missing values
    skip GDAL's nodata path, which is ~2.5× slower for bilinear."""
    from rasterio.warp import reproject
    _quiet_rasterio()

    dst = np.full(dst_shape, np.nan, dtype="f4")
    src = np.ascontiguousarray(src, dtype="f4")
    if src.size == 0:
        return dst
    missing = np.isnan(src)
    if missing.all():
        return dst
    # each band (month) has its own missing pixels: GDAL's default for multi-band warps unifies
    # them (a pixel missing in one month would turn the whole cell missing in every month)
    nodata = {"src_nodata": np.nan, "UNIFIED_SRC_NODATA": "NO"} if missing.any() else {}
    reproject(source=src, destination=dst, src_transform=src_transform, src_crs=src_crs,
              dst_transform=dst_transform, dst_crs=EPSG4326, resampling=_resampling(resampling),
              dst_nodata=np.nan, num_threads=1, **nodata)
    return dst


def tiles(grid: Grid, tile: dict) -> list[tuple[int, int]]:
    """Row and column chunk boundaries [(start, stop), ...] for a tile of {'lat': n, 'lon': m}."""
    def edges(n, size):
        return [(s, min(s + size, n)) for s in range(0, n, size)]
    return edges(grid.nlat, tile["lat"]), edges(grid.nlon, tile["lon"])


def _warp_parts(parts, window, src_transform, src_crs, dst_transform, dst_shape, resampling,
                outside=None, exact=False):
    """Assemble a source window from the source chunks it overlaps, then warp it — with exact
    area weights (:func:`exactregrid.exact_block`) or GDAL; cells whose centre is ``outside`` the
    source get no data (:func:`outside_source`)."""
    src = np.block(parts) if len(parts) > 1 or len(parts[0]) > 1 else parts[0][0]
    r0, r1, c0, c1 = window
    out = (ex.exact_block if exact else _warp)(src[:, r0:r1, c0:c1], src_transform, src_crs,
                                               dst_transform, dst_shape, resampling)
    if outside is not None:
        out[:, outside] = np.nan
    return out


def uses_exact(resampling: str, transform: Affine, crs, grid: Grid) -> bool:
    """Whether :func:`regrid` computes ``resampling`` with exact area weights: ``average`` and
    ``mode`` from any source but a geographic one aligned with the grid (there GDAL is exact)."""
    return resampling in ("average", "mode") and not ex.is_aligned_geographic(
        transform, _wkt(crs), grid.res, grid.west, grid.north)


def describe(resampling: str, transform: Affine, crs, grid: Grid) -> str:
    """How :func:`regrid` computes ``resampling`` from this source onto ``grid``, in words (for
    provenance attributes; with :data:`METHOD_VERSION`, for content hashes)."""
    if uses_exact(resampling, transform, crs, grid):
        return {"average": "area-weighted mean of the valid pixels, exact pixel/cell overlaps",
                "mode": "class covering the largest area of the cell, exact pixel/cell overlaps "
                        "(ties: the smallest class)"}[resampling]
    if resampling in ("average", "mode"):
        return f"GDAL {resampling} (pixels aligned with the cells: exact)"
    return f"GDAL {resampling}"


def _take(block, index):
    """A copy, not a view: the super-tile is freed once every tile is cut from it."""
    return np.array(block[index], copy=True)


def _overlapping(edges: np.ndarray, start: int, stop: int) -> list[int]:
    """Indices of the chunks (boundaries ``edges``) that overlap [start, stop)."""
    first = int(np.searchsorted(edges, start, side="right") - 1)
    last = int(np.searchsorted(edges, stop, side="left") - 1)
    return list(range(first, max(first, last) + 1))


def regrid(data: da.Array, transform: Affine, crs, grid: Grid, tile: dict,
           resampling: str, max_cells: int = SUPER_TILE_CELLS, exact: bool = True) -> da.Array:
    """Warp a (steps, y, x) dask array on a north-up raster onto ``grid``.

    Output: (steps, nlat, nlon) float32 with NaN where the source has no data, chunked as the
    input's steps × the ``tile`` ({'lat', 'lon'} sizes). GDAL's per-call overhead dominates small
    warps, so output tiles are grouped into super-tiles of at most ``max_cells`` cells: one warp per
    step chunk and super-tile, fed directly by the source chunks its window overlaps, then one
    slicing task per output tile (a hand-built graph: linear in steps × tiles, no per-tile
    slicing of the source).

    ``average`` and ``mode`` are area-true (:func:`uses_exact`); ``exact=False`` forces GDAL's
    kernels everywhere (the old behaviour, for comparison and benchmarks).
    """
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    src_crs = _wkt(crs)
    rows, cols = tiles(grid, tile)
    shape = data.shape[1:]
    y_edges = np.cumsum((0,) + data.chunks[1])
    x_edges = np.cumsum((0,) + data.chunks[2])
    exact = exact and uses_exact(resampling, transform, crs, grid)
    token = tokenize(data.name, tuple(transform), src_crs, grid, rows, cols, resampling,
                     max_cells, exact)
    name, warp_name = "regrid-" + token, "regrid-warp-" + token
    # super-tiles: m × n output tiles, as square as the cell budget allows
    th, tw = tile["lat"], tile["lon"]
    m = max(1, min(len(rows), int(np.sqrt(max_cells / (th * tw)))))
    n = max(1, min(len(cols), int(max_cells / (m * th * tw))))
    supers = {}
    for si in range(0, len(rows), m):
        for sj in range(0, len(cols), n):
            i_idx, j_idx = range(si, min(si + m, len(rows))), range(sj, min(sj + n, len(cols)))
            i0, i1 = rows[i_idx[0]][0], rows[i_idx[-1]][1]
            j0, j1 = cols[j_idx[0]][0], cols[j_idx[-1]][1]
            bounds = tile_bounds(grid, i0, i1, j0, j1)
            win = pixel_window(transform, crs, shape, bounds)
            plan = None
            if win is not None:
                r0, r1, c0, c1 = win
                bi, bj = _overlapping(y_edges, r0, r1), _overlapping(x_edges, c0, c1)
                y0, x0 = int(y_edges[bi[0]]), int(x_edges[bj[0]])
                # at the source's own edges (the window is clipped), cells outside it get NaN
                at_edge = r0 == 0 or c0 == 0 or r1 == shape[0] or c1 == shape[1]
                outside = outside_source(transform, crs, shape, bounds, (i1 - i0, j1 - j0)) \
                    if at_edge else None
                plan = (bi, bj, (r0 - y0, r1 - y0, c0 - x0, c1 - x0),
                        transform * Affine.translation(c0, r0),
                        Affine(grid.res, 0, bounds[0], 0, -grid.res, bounds[3]), outside)
            supers[si // m, sj // n] = ((i0, i1, j0, j1), i_idx, j_idx, plan)
    dsk = {}
    for k, nt in enumerate(data.chunks[0]):
        for (a, b), ((i0, i1, j0, j1), i_idx, j_idx, plan) in supers.items():
            for i in i_idx:
                for j in j_idx:
                    out = (slice(None), slice(rows[i][0] - i0, rows[i][1] - i0),
                           slice(cols[j][0] - j0, cols[j][1] - j0))
                    if plan is None:
                        dsk[(name, k, i, j)] = (np.full, (nt, out[1].stop - out[1].start,
                                                          out[2].stop - out[2].start), np.nan)
                    else:
                        dsk[(name, k, i, j)] = (_take, (warp_name, k, a, b), out)
            if plan is not None:
                bi, bj, window, src_t, dst_t, outside = plan
                parts = [[(data.name, k, y, x) for x in bj] for y in bi]
                dsk[(warp_name, k, a, b)] = (_warp_parts, parts, window, src_t, src_crs, dst_t,
                                             (nt, i1 - i0, j1 - j0), resampling, outside, exact)
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=[data])
    chunks = (data.chunks[0], tuple(b - a for a, b in rows), tuple(b - a for a, b in cols))
    return da.Array(graph, name, chunks=chunks, dtype="f4")


# --- polygons → fraction ----------------------------------------------------------------------
def _sub_cells(shapes, bounds, shape, k, dtype):
    """The tile rasterised on k × k sub-cells per cell: (h, k, w, k), 0 where no polygon."""
    from rasterio import features

    h, w = shape
    res_x = (bounds[2] - bounds[0]) / (w * k)
    res_y = (bounds[3] - bounds[1]) / (h * k)
    sub = features.rasterize(shapes, out_shape=(h * k, w * k),
                             transform=Affine(res_x, 0, bounds[0], 0, -res_y, bounds[3]),
                             fill=0, dtype=dtype, all_touched=False)
    return sub.reshape(h, k, w, k)


def _fraction_tile(shapes, bounds, shape, k):
    """Carbonate share of the covered sub-cells of each cell of one tile (NaN if none covered)."""
    out = np.full(shape, np.nan, dtype="f8")
    if not shapes:
        return out
    sub = _sub_cells(shapes, bounds, shape, k, "uint8")
    covered = (sub > 0).sum(axis=(1, 3))
    carbonate = (sub == 2).sum(axis=(1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        np.divide(carbonate, covered, out=out, where=covered > 0)
    return out


def _majority_tile(shapes, bounds, shape, k):
    """Per cell, the id covering most of its sub-cells (ties: the smaller id); 0 where no polygon
    covers any sub-cell. One pass per id present in the tile, vectorised over the cells."""
    out = np.zeros(shape, dtype="f8")
    if not shapes:
        return out
    sub = _sub_cells(shapes, bounds, shape, k, "int32")
    best = np.zeros(shape, dtype="i8")
    for v in np.unique(sub):
        if v == 0:
            continue
        n = (sub == v).sum(axis=(1, 3))
        take = n > best
        out[take], best[take] = v, n[take]
    return out


def _polygon_tiles(gdf, values: np.ndarray, grid: Grid, tile: dict, supersample: int,
                   tile_fn) -> da.Array:
    """One delayed ``tile_fn(shapes, bounds, shape, k)`` per tile of the grid, on the polygons
    that intersect the tile (burned in the order given, later ones on top) with their ``values``."""
    from shapely.geometry import box

    geoms = gdf.geometry.to_numpy()
    index = gdf.sindex
    rows, cols = tiles(grid, tile)
    out_rows = []
    for i0, i1 in rows:
        row = []
        for j0, j1 in cols:
            bounds = tile_bounds(grid, i0, i1, j0, j1)
            hits = np.sort(index.query(box(*bounds)))
            shapes = [(geoms[h], values[h]) for h in hits
                      if geoms[h] is not None and not geoms[h].is_empty]
            block = dask.delayed(tile_fn, pure=True)(shapes, bounds, (i1 - i0, j1 - j0),
                                                     supersample)
            row.append(da.from_delayed(block, (i1 - i0, j1 - j0), dtype="f8"))
        out_rows.append(row)
    return da.block(out_rows)


def polygon_fraction(gdf, attribute: str, classes, grid: Grid, tile: dict,
                     supersample: int = 10) -> da.Array:
    """Fraction (0–1) of each cell on polygons whose ``attribute`` is in ``classes`` (EPSG:4326
    polygons), among the part of the cell any polygon covers; (nlat, nlon) float64 dask array."""
    wanted = {str(c) for c in classes}
    is_carb = gdf[attribute].astype(str).isin(wanted).to_numpy()
    order = np.argsort(is_carb, kind="stable")                 # carbonate drawn last
    return _polygon_tiles(gdf.iloc[order], np.where(is_carb[order], 2, 1), grid, tile,
                          supersample, _fraction_tile)


def polygon_ids(gdf, attribute: str, grid: Grid, tile: dict, supersample: int = 10) -> da.Array:
    """Integer ids (``attribute``, > 0) of EPSG:4326 polygons on the grid: each cell takes the id
    covering most of its ``supersample``² sub-cells, 0 if none; (nlat, nlon) float64 dask array."""
    ids = gdf[attribute].to_numpy()
    return _polygon_tiles(gdf, ids.astype("int32"), grid, tile, supersample, _majority_tile)
