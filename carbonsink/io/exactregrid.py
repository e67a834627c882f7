"""Area-true regridding: each source pixel weighted by the exact area it shares with each cell.

Why: GDAL's ``average`` (and ``mode``) resampling takes, for each target cell, the source pixels
inside the cell's *bounding box in source space*. For a geographic source aligned with the grid
that box is the cell, and the result is exact. For a projected source the cell's footprint is a
slanted quadrilateral — at 100°E, 35°N a 0.05° cell is sheared ~45° in MODIS sinusoidal — and
its bounding box is about twice its area: a sharp 2000 g m⁻² square planted in a sinusoidal file
came back with ~26 % of its contrast smeared into the neighbouring cells (~23 % in SoilGrids'
Homolosine), and sharp fills (water, urban) shrank.

How, per block of grid cells (any CRS pyproj knows):

1. **Pixel footprints in grid space** (:func:`corner_grid`): the corners of the block's source
   pixels, transformed to longitude/latitude and expressed in cell units (column, row of the
   grid). Only a lattice of every ``LATTICE_STEP``-th corner goes through PROJ; the others are
   interpolated bilinearly (like GDAL's approximate transformer) where that is within
   ``TOLERANCE_PX`` of a pixel (checked at each lattice cell's centre; else that cell's corners go
   through PROJ). Shared corners keep the footprints a gap-free tiling, so nothing is created or
   lost, and the lattice is anchored to the source's pixel grid, so tiles leave no seams.
2. **Exact overlaps** (:func:`overlap_pieces`, numba): each footprint (a quadrilateral; a pixel's
   edges are straight to ~1e-5 of a pixel in grid space) is cut along the grid's row and column
   edges it crosses (Sutherland–Hodgman, both sides of a line in one pass); the area of each
   piece times cos φ at its centroid (a lat/lon cell's true area is R²·Δλ·(sin φ₂ − sin φ₁), i.e.
   ∝ cos φ per square degree) is its weight. The pieces — (pixel, cell, weight) — are the whole
   geometry of the block. For an equal-area source (sinusoidal, Homolosine) the weights match
   polygon intersections in the source plane to ~1e-5 of a cell.
3. **Values** on the pieces, every step with its own missing pixels: :func:`area_mean` for
   continuous fields (one numba pass over the pieces for all steps), the area-weighted mean of the
   valid pixels (missing pixels drop out; a cell is missing only when no valid pixel overlaps it);
   :func:`area_majority` for classes and masks (NumPy), the class covering the largest area of the
   cell (ties, to 1e-9 of the cell: the smallest class).

Memory is bounded by a part of the block (``STRIP_PIXELS`` source pixels at a time), never by the
grid or the file; the numba kernel releases the GIL, so dask's threads run blocks in parallel.
"""
from __future__ import annotations

import math
import threading

import numpy as np
from affine import Affine
from numba import njit

EPSG4326 = "EPSG:4326"
#: source pixels handled at once within a block (the pieces take ~60 B per pixel)
STRIP_PIXELS = 1 << 19
#: corners transformed exactly: every LATTICE_STEP-th row and column of them
LATTICE_STEP = 4
#: largest error of the interpolated corners, in source pixels, before falling back to PROJ
TOLERANCE_PX = 0.01
#: pieces smaller than this share of a cell are rounding noise (an edge shared by a pixel and a
#: cell yields a sliver of ~1e-16): dropped, so a cell just outside a source gets no value
MIN_PIECE = 1e-9
#: class shares of a cell equal to this (relative) tolerance are a tie
TIE_RTOL = 1e-9
#: cells × classes up to which the majority uses a dense histogram (float64: 32 MB)
DENSE_HISTOGRAM = 1 << 22

_LOCAL = threading.local()


def _to_lonlat(crs_wkt: str):
    """A pyproj Transformer source CRS → EPSG:4326 (lon, lat), one per thread and CRS
    (transformers are not shareable between threads)."""
    cache = getattr(_LOCAL, "transformers", None)
    if cache is None:
        cache = _LOCAL.transformers = {}
    t = cache.get(crs_wkt)
    if t is None:
        from pyproj import Transformer
        t = cache[crs_wkt] = Transformer.from_crs(crs_wkt, EPSG4326, always_xy=True)
    return t


def is_aligned_geographic(transform: Affine, crs, res: float, west: float, north: float,
                          rtol: float = 1e-6) -> bool:
    """True for a geographic, north-up source whose pixel edges fall on the grid's cell edges
    (the cell size a whole number of pixels, the grid's corner on a pixel corner): there GDAL's
    ``average`` already weighs every pixel exactly (each lies wholly in one cell), and fast."""
    from pyproj import CRS

    if not CRS.from_user_input(crs).is_geographic:
        return False
    a, b, c, d, e, f = transform[:6]
    if b != 0 or d != 0 or a <= 0 or e >= 0:
        return False

    def whole(x):
        return abs(x - round(x)) <= rtol * max(1.0, abs(x))
    return whole(res / a) and whole(res / -e) and whole((west - c) / a) and \
        whole((north - f) / e)


def _cells_of(knots: np.ndarray, n: int):
    """For positions 0..n-1 strictly inside sorted integer ``knots``: the lattice interval each lies
    in (``knots[a] ≤ pos < knots[a+1]``), the fraction along it, and the interval on the other
    side when the position is a knot itself (else the same one)."""
    pos = np.arange(n)
    a = np.searchsorted(knots, pos, side="right") - 1
    t = (pos - knots[a]) / (knots[a + 1] - knots[a])
    b = np.where(pos == knots[a], a - 1, a)
    return a, t, b


@njit(cache=True, nogil=True)
def _bilinear(values, ri, rt, ci, ct):
    """``values`` on the lattice rows × columns interpolated to every row and column (``ri``,
    ``rt``, ``ci``, ``ct``: lattice interval and fraction of each, from :func:`_cells_of`)."""
    out = np.empty((ri.shape[0], ci.shape[0]))
    for r in range(ri.shape[0]):
        a, t = ri[r], rt[r]
        for c in range(ci.shape[0]):
            b, u = ci[c], ct[c]
            top = values[a, b] * (1.0 - u) + values[a, b + 1] * u
            bottom = values[a + 1, b] * (1.0 - u) + values[a + 1, b + 1] * u
            out[r, c] = top * (1.0 - t) + bottom * t
    return out


def _pixel_degrees(lon, lat, step) -> float:
    """A source pixel's size in degrees (the smaller of its two sides, median over the lattice);
    NaN if unknown."""
    coslat = np.cos(np.deg2rad(lat))
    along_x = np.hypot(np.diff(lon, axis=1) * coslat[:, 1:], np.diff(lat, axis=1)).ravel()
    along_y = np.hypot(np.diff(lon, axis=0) * coslat[1:], np.diff(lat, axis=0)).ravel()
    along_x, along_y = along_x[np.isfinite(along_x)], along_y[np.isfinite(along_y)]
    if along_x.size == 0 or along_y.size == 0:
        return np.nan
    return float(min(np.median(along_x), np.median(along_y))) / step


def corner_lonlat(transform: Affine, crs_wkt: str, shape, center_lon: float,
                  step: int = LATTICE_STEP, cells=None):
    """Longitude and latitude of the (h+1, w+1) pixel corners of a raster of ``shape``,
    longitudes within 180° of ``center_lon`` (0–360 or −180–180 sources alike), NaN outside the
    projection's domain; with ``cells`` = (west, north, res), in the cell units of that grid
    instead: ((lon − west) / res, (north − lat) / res) (interpolated as such: it is affine).

    Like GDAL's approximate transformer: PROJ transforms a lattice of every ``step``-th corner —
    anchored to the source's own pixel grid (counted from the CRS origin), so every window of a
    source gets the same corners and tiles leave no seams — and the corners in between are
    interpolated bilinearly. A lattice cell whose centre, so interpolated, is off by more than
    ``TOLERANCE_PX`` pixels (strong curvature, a projection's seam or interruption, the edge of its
    domain) has its corners transformed by PROJ instead."""
    h, w = shape
    t = _to_lonlat(crs_wkt)

    def lonlat(cols, rows):
        x, y = transform * (cols, rows)
        lon, lat = (np.asarray(v, dtype="f8") for v in t.transform(x, y))
        bad = ~(np.isfinite(lon) & np.isfinite(lat))
        lon[bad] = lat[bad] = np.nan
        return lon + 360.0 * np.round((center_lon - lon) / 360.0), lat

    def output(lon, lat):
        if cells is None:
            return lon, lat
        west, north, res = cells
        return (lon - west) / res, (north - lat) / res

    # lattice rows/columns: the source's multiples of step, from a step before the window to a
    # step past it (so a corner on a lattice line has lattice cells on both sides)
    rows = np.arange(-(int(np.floor(transform.f / transform.e + 0.5)) % step) - step,
                     h + 2 * step, step)
    cols = np.arange(-(int(np.floor(transform.c / transform.a + 0.5)) % step) - step,
                     w + 2 * step, step)
    lon, lat = lonlat(cols[None, :].astype("f8"), rows[:, None].astype("f8"))
    rm, cm = (rows[:-1] + rows[1:]) / 2, (cols[:-1] + cols[1:]) / 2
    elon, elat = lonlat(cm[None, :], rm[:, None])
    ilon = (lon[:-1, :-1] + lon[1:, :-1] + lon[:-1, 1:] + lon[1:, 1:]) / 4
    ilat = (lat[:-1, :-1] + lat[1:, :-1] + lat[:-1, 1:] + lat[1:, 1:]) / 4
    err = np.hypot((elon - ilon) * np.cos(np.deg2rad(elat)), elat - ilat)
    bad = ~(err <= TOLERANCE_PX * _pixel_degrees(lon, lat, step))     # NaN: bad
    (ra, rt, rb), (ca, ct, cb) = _cells_of(rows, h + 1), _cells_of(cols, w + 1)
    lattice_x, lattice_y = output(lon, lat)
    out_x, out_y = _bilinear(lattice_x, ra, rt, ca, ct), _bilinear(lattice_y, ra, rt, ca, ct)
    if bad.any():
        exact = bad[ra][:, ca] | bad[rb][:, ca] | bad[ra][:, cb] | bad[rb][:, cb]
        r, c = np.nonzero(exact)
        out_x[r, c], out_y[r, c] = output(*lonlat(c.astype("f8"), r.astype("f8")))
    return out_x, out_y


def corner_grid(transform: Affine, crs_wkt: str, shape, west: float, north: float, res: float,
                width: int):
    """Pixel corners of a raster in the cell units of a grid block ``width`` cells wide whose
    north-west corner is (``west``, ``north``): gx = (lon − west) / res, gy = (north − lat) / res,
    each (h+1, w+1) float64; plus the pixels' typical size in cells (for ``max_span``)."""
    gx, gy = corner_lonlat(transform, crs_wkt, shape, west + 0.5 * width * res,
                           cells=(west, north, res))
    span = np.hypot(np.diff(gx[::7], axis=1), np.diff(gy[::7], axis=1))
    size = float(np.nanmedian(span)) if np.isfinite(span).any() else 1.0
    return gx, gy, size


# --- exact overlaps (numba) -----------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _split(xin, yin, n, on_x, bound, lox, loy, hix, hiy):
    """Sutherland–Hodgman against both sides of a line at once: the polygon (xin, yin)[:n] cut
    into its part with v ≤ ``bound`` → (lox, loy) and its part with v ≥ ``bound`` → (hix, hiy),
    v = x if ``on_x`` else y; returns both vertex counts. One pass, half the branches of two
    clips. Concave input is fine for areas (a cut may leave zero-width seams, of no area)."""
    nlo = 0
    nhi = 0
    if n == 0:
        return 0, 0
    px, py = xin[n - 1], yin[n - 1]
    pd = (px if on_x else py) - bound
    for k in range(n):
        cx, cy = xin[k], yin[k]
        cd = (cx if on_x else cy) - bound
        if (pd < 0.0 and cd > 0.0) or (pd > 0.0 and cd < 0.0):      # the edge crosses
            t = pd / (pd - cd)
            ix, iy = px + t * (cx - px), py + t * (cy - py)
            lox[nlo], loy[nlo] = ix, iy
            hix[nhi], hiy[nhi] = ix, iy
            nlo += 1
            nhi += 1
        if cd <= 0.0:
            lox[nlo], loy[nlo] = cx, cy
            nlo += 1
        if cd >= 0.0:
            hix[nhi], hiy[nhi] = cx, cy
            nhi += 1
        px, py, pd = cx, cy, cd
    return nlo, nhi


@njit(cache=True, nogil=True)
def _area_centroid_y(x, y, n):
    """Unsigned area of the polygon (x, y)[:n] (shoelace) and the y of its centroid."""
    s = 0.0
    sy = 0.0
    for k in range(n):
        k1 = k + 1 if k + 1 < n else 0
        cross = x[k] * y[k1] - x[k1] * y[k]
        s += cross
        sy += (y[k] + y[k1]) * cross
    if s == 0.0:
        return 0.0, 0.0
    return abs(0.5 * s), sy / (3.0 * s)


@njit(cache=True, nogil=True)
def _bbox(gx, gy, r, c):
    x0, x1, x2, x3 = gx[r, c], gx[r, c + 1], gx[r + 1, c + 1], gx[r + 1, c]
    y0, y1, y2, y3 = gy[r, c], gy[r, c + 1], gy[r + 1, c + 1], gy[r + 1, c]
    return (min(min(x0, x1), min(x2, x3)), max(max(x0, x1), max(x2, x3)),
            min(min(y0, y1), min(y2, y3)), max(max(y0, y1), max(y2, y3)))


@njit(cache=True, nogil=True)
def overlap_pieces(gx, gy, h, w, north, res, max_span):
    """Exact overlaps of source pixels with the cells of an (h, w) grid block.

    ``gx``, ``gy``: (sh+1, sw+1) pixel corners in cell units of the block (column, row; see
    :func:`corner_grid`); pixel (r, c) is the quadrilateral of corners (r, c), (r, c+1),
    (r+1, c+1), (r+1, c). ``north``, ``res``: the block's north edge and cell size (degrees), for
    the true-area factor cos φ of each piece (at its centroid). Pixels with a missing corner
    (outside the projection's domain) or spanning more than ``max_span`` cells (cut by an
    interruption of the projection) are left out.

    Returns (pixel, cell, weight): flat pixel index r·sw + c, flat cell index i·w + j, and the
    area of the piece in cells × cos φ — per cell, the weights of all pixels add up to its true
    area in units of a cell at the equator (pieces under ``MIN_PIECE`` of a cell dropped)."""
    sh, sw = gx.shape[0] - 1, gx.shape[1] - 1
    bound = 0
    for r in range(sh):
        for c in range(sw):
            xmin, xmax, ymin, ymax = _bbox(gx, gy, r, c)
            if not (xmax - xmin <= max_span and ymax - ymin <= max_span):   # also NaN corners
                continue
            i0, i1 = max(int(math.floor(ymin)), 0), min(int(math.ceil(ymax)), h)
            j0, j1 = max(int(math.floor(xmin)), 0), min(int(math.ceil(xmax)), w)
            if i1 > i0 and j1 > j0:
                bound += (i1 - i0) * (j1 - j0)
    pix = np.empty(bound, np.int64)
    cell = np.empty(bound, np.int64)
    weight = np.empty(bound, np.float64)
    # polygon buffers (a convex pixel cut by lines has at most 8 vertices; room for worse)
    rest_x, rest_y, next_x, next_y = np.empty(64), np.empty(64), np.empty(64), np.empty(64)
    band_x, band_y, piece_x, piece_y = np.empty(64), np.empty(64), np.empty(64), np.empty(64)
    crest_x, crest_y, cnext_x, cnext_y = np.empty(64), np.empty(64), np.empty(64), np.empty(64)
    to_rad = math.pi / 180.0
    n = 0
    for r in range(sh):
        for c in range(sw):
            xmin, xmax, ymin, ymax = _bbox(gx, gy, r, c)
            if not (xmax - xmin <= max_span and ymax - ymin <= max_span):
                continue
            fi0, fi1 = int(math.floor(ymin)), int(math.ceil(ymax))
            fj0, fj1 = int(math.floor(xmin)), int(math.ceil(xmax))
            if min(fi1, h) <= max(fi0, 0) or min(fj1, w) <= max(fj0, 0):
                continue
            p = r * sw + c
            # true-area factor cos φ at a piece's centroid yc, to first order around the pixel's
            # middle ym (the second-order term is < 1e-8 for a 500 m pixel)
            ym = 0.5 * (ymin + ymax)
            phi = (north - ym * res) * to_rad
            cos_m, dcos = math.cos(phi), math.sin(phi) * res * to_rad
            rest_x[0], rest_x[1], rest_x[2], rest_x[3] = \
                gx[r, c], gx[r, c + 1], gx[r + 1, c + 1], gx[r + 1, c]
            rest_y[0], rest_y[1], rest_y[2], rest_y[3] = \
                gy[r, c], gy[r, c + 1], gy[r + 1, c + 1], gy[r + 1, c]
            if fi1 - fi0 == 1 and fj1 - fj0 == 1:          # wholly inside one cell
                a, yc = _area_centroid_y(rest_x, rest_y, 4)
                a *= cos_m + dcos * (yc - ym)
                if a > MIN_PIECE:
                    pix[n], cell[n], weight[n] = p, fi0 * w + fj0, a
                    n += 1
                continue
            # peel off one row band at a time (split at each row edge), and each band into cells
            m = 4
            for i in range(fi0, fi1):
                if i + 1 < fi1:
                    nb, m2 = _split(rest_x, rest_y, m, False, float(i + 1),
                                    band_x, band_y, next_x, next_y)
                    rest_x, next_x = next_x, rest_x
                    rest_y, next_y = next_y, rest_y
                else:
                    nb, m2 = m, 0
                    band_x, rest_x = rest_x, band_x
                    band_y, rest_y = rest_y, band_y
                m = m2
                if i < 0 or i >= h or nb < 3:
                    continue
                k = nb
                for q in range(nb):
                    crest_x[q], crest_y[q] = band_x[q], band_y[q]
                for j in range(fj0, fj1):
                    if j + 1 < fj1:
                        npc, k2 = _split(crest_x, crest_y, k, True, float(j + 1),
                                         piece_x, piece_y, cnext_x, cnext_y)
                        crest_x, cnext_x = cnext_x, crest_x
                        crest_y, cnext_y = cnext_y, crest_y
                    else:
                        npc, k2 = k, 0
                        piece_x, crest_x = crest_x, piece_x
                        piece_y, crest_y = crest_y, piece_y
                    k = k2
                    if j < 0 or j >= w or npc < 3:
                        continue
                    a, yc = _area_centroid_y(piece_x, piece_y, npc)
                    a *= cos_m + dcos * (yc - ym)
                    if a > MIN_PIECE:
                        pix[n], cell[n], weight[n] = p, i * w + j, a
                        n += 1
    return pix[:n], cell[:n], weight[:n]


# --- values on the pieces -------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _weighted_sums(pix, cell, weight, values_t, ncells):
    """Σ weight·value and Σ weight over the valid (non-NaN) pieces of each cell, per step:
    ``values_t`` is (pixels, steps); one pass over the pieces, all steps at once."""
    nt = values_t.shape[1]
    total = np.zeros((ncells, nt))
    wsum = np.zeros((ncells, nt))
    for q in range(pix.shape[0]):
        p, c, a = pix[q], cell[q], weight[q]
        for b in range(nt):
            v = values_t[p, b]
            if v == v:                                   # not NaN
                total[c, b] += a * v
                wsum[c, b] += a
    return total, wsum


def area_mean(pix: np.ndarray, cell: np.ndarray, weight: np.ndarray, values: np.ndarray,
              ncells: int) -> np.ndarray:
    """Per step and cell, the mean of the source ``values`` (steps, pixels) over the pieces
    (``pix``, ``cell``, ``weight``: from :func:`overlap_pieces`), weighted by their area, ignoring
    missing (NaN) pixels; (steps, ncells) float64, NaN where a cell has no valid piece."""
    values_t = np.ascontiguousarray(np.asarray(values, dtype=np.float64).T)
    total, wsum = _weighted_sums(pix, cell, weight, values_t, ncells)
    out = np.full(total.shape, np.nan)
    np.divide(total, wsum, out=out, where=wsum > 0)
    return out.T


def area_majority(pix: np.ndarray, cell: np.ndarray, weight: np.ndarray, values: np.ndarray,
                  ncells: int, rtol: float = TIE_RTOL) -> np.ndarray:
    """Per step and cell, the class among the source ``values`` (steps, pixels) covering the
    largest area of the cell — the summed ``weight`` of its pieces (``pix``, ``cell``, ``weight``:
    from :func:`overlap_pieces`) — ignoring missing (NaN) pixels; shares within ``rtol`` of the
    cell's total are a tie, won by the smallest class (deterministic). (steps, ncells) float64, NaN
    where a cell has no valid piece."""
    return np.stack([_majority(cell, weight, v[pix], ncells, rtol) for v in values])


def _majority(cell, weight, classes, ncells, rtol):
    """:func:`area_majority` of one step, ``classes`` given per piece.

    Vectorised: with few classes (land cover), a dense cells × classes histogram (``bincount``) and
    the first maximum of each row (classes ascending); with many (basin ids), the pieces sorted by
    (cell, class), summed per pair, then per cell the first of (−share, class)."""
    out = np.full(ncells, np.nan)
    ok = ~np.isnan(classes)
    if not ok.any():
        return out
    if not ok.all():
        cell, weight, classes = cell[ok], weight[ok], classes[ok]
    lo, hi = classes.min(), classes.max()
    if lo >= 0 and hi < 4096 and np.array_equal(classes, np.floor(classes)):
        # small whole classes (land cover codes, 0/1 masks) index the histogram directly
        index = classes.astype(np.int64)
        uniq = np.arange(int(hi) + 1, dtype="f8")
    else:
        uniq, index = np.unique(classes, return_inverse=True)
    nk = len(uniq)
    if ncells * nk <= DENSE_HISTOGRAM:
        hist = np.bincount(cell * nk + index, weights=weight, minlength=ncells * nk)
        hist = hist.reshape(ncells, nk)
        total = hist.sum(axis=1)
        has = total > 0
        share = np.round(hist[has] / total[has, None] / rtol)
        out[has] = uniq[np.argmax(share, axis=1)]
        return out
    order = np.lexsort((index, cell))
    cell, weight, index = cell[order], weight[order], index[order]
    start = np.flatnonzero(np.r_[True, (cell[1:] != cell[:-1]) | (index[1:] != index[:-1])])
    gcell, gindex, garea = cell[start], index[start], np.add.reduceat(weight, start)
    total = np.bincount(gcell, weights=garea, minlength=ncells)
    share = np.round(garea / total[gcell] / rtol)
    order = np.lexsort((gindex, -share, gcell))
    gcell, gindex = gcell[order], gindex[order]
    first = np.r_[True, gcell[1:] != gcell[:-1]]
    out[gcell[first]] = uniq[gindex[first]]
    return out


def _parts(src_pixels: int, h: int, w: int) -> tuple[int, int]:
    """Grid rows and columns per part of a block so that a part's source window holds about
    ``STRIP_PIXELS`` pixels: whole-width strips of rows, and narrower when one row is too many
    (a coarse grid over a fine source)."""
    per_cell = max(src_pixels, 1) / (h * w)
    rows = max(1, min(h, int(STRIP_PIXELS / (per_cell * w))))
    cols = max(1, min(w, int(STRIP_PIXELS / (per_cell * rows))))
    return rows, cols


def exact_block(src: np.ndarray, transform: Affine, crs_wkt: str, dst_transform: Affine,
                dst_shape, resampling: str) -> np.ndarray:
    """A (steps, y, x) source window on the cells of a grid block (``dst_transform``: its
    north-west corner and cell size; ``dst_shape``: (steps, h, w)), area-true: ``average`` →
    :func:`area_mean`, ``mode`` → :func:`area_majority`, each step with its own missing pixels.
    float32, NaN where no valid pixel overlaps a cell. Parts of the block (:func:`_parts`) bound
    the memory."""
    nt, h, w = dst_shape
    res, west, north = dst_transform.a, dst_transform.c, dst_transform.f
    out = np.full(dst_shape, np.nan, dtype="f4")
    if src.size == 0:
        return out
    rows, cols = _parts(src.shape[1] * src.shape[2], h, w)
    for s0 in range(0, h, rows):
        s1 = min(h, s0 + rows)
        for t0 in range(0, w, cols):
            t1 = min(w, t0 + cols)
            out[:, s0:s1, t0:t1] = _exact_part(
                src, transform, crs_wkt, west + t0 * res, north - s0 * res, res,
                (nt, s1 - s0, t1 - t0), resampling)
    return out


def _exact_part(src, transform, crs_wkt, west, north, res, shape, resampling):
    """:func:`exact_block` on one part of the block: ``shape`` (steps, h, w) cells from its
    north-west corner (``west``, ``north``)."""
    from .regrid import pixel_window

    nt, h, w = shape
    win = pixel_window(transform, crs_wkt, src.shape[1:], (west, north - h * res,
                                                           west + w * res, north), pad=2)
    if win is None:
        return np.nan
    r0, r1, c0, c1 = win
    vals = src[:, r0:r1, c0:c1].reshape(nt, -1)
    if np.isnan(vals).all():
        return np.nan
    gx, gy, size = corner_grid(transform * Affine.translation(c0, r0), crs_wkt,
                               (r1 - r0, c1 - c0), west, north, res, w)
    pix, cell, weight = overlap_pieces(gx, gy, h, w, north, res, 4.0 + 64.0 * size)
    del gx, gy
    kernel = area_majority if resampling == "mode" else area_mean
    return kernel(pix, cell, weight, vals, h * w).reshape(shape)
