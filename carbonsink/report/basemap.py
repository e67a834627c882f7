"""Map frames for the atlas: a Lambert conformal projection of the study area, its boundaries from
cnmaps (shipped offline), a graticule, and for all China the provinces and the South China Sea inset.

Nothing here reads Natural Earth or anything else from the internet: every line drawn is a cnmaps
geometry (or the study area's own clip), simplified to the map's scale and projected once per
study area with pyproj, and drawn on plain matplotlib axes in projected metres (one compound path
per layer: fast to render and small in SVG). The graticule is drawn the same way.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from matplotlib.path import Path

SCS_BOX = (105.5, 123.0, 2.5, 24.5)      # lon0, lon1, lat0, lat1 of the South China Sea inset
BOUNDARY_DPI_PX = 1400                   # geometries are simplified to ~1/1400 of the map width


@dataclass(frozen=True)
class Basemap:
    """How maps of one study area are framed: ``bbox`` (W, S, E, N) of its grid in degrees."""

    domain: str
    label: str
    bbox: tuple[float, float, float, float]

    @property
    def is_china(self) -> bool:
        return self.domain == "china"

    @property
    def projection(self) -> str:
        """PROJ string of the map's Lambert conformal conic projection (WGS 84)."""
        return _projection(self.bbox, self.is_china)

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """(x0, x1, y0, y1) in projected metres covering the grid box."""
        return _extent(self.bbox, self.is_china)

    @property
    def tolerance(self) -> float:
        """Simplification tolerance in degrees for this map's scale."""
        w, s, e, n = self.bbox
        return max(e - w, n - s) / BOUNDARY_DPI_PX

    @property
    def aspect(self) -> float:
        """Height / width of the framed map."""
        x0, x1, y0, y1 = self.extent
        return (y1 - y0) / (x1 - x0)


@lru_cache(maxsize=8)
def _projection(bbox, is_china) -> str:
    w, s, e, n = bbox
    if is_china:   # the usual conformal projection of maps of China
        lon0, lat0, lat1, lat2 = 105.0, 35.0, 25.0, 47.0
    else:
        lon0, lat0 = (w + e) / 2.0, (s + n) / 2.0
        lat1, lat2 = s + (n - s) / 6.0, n - (n - s) / 6.0
        if abs(lat2 - lat1) < 0.5:
            lat1, lat2 = lat1 - 0.25, lat2 + 0.25
    return (f"+proj=lcc +lat_1={lat1:.6f} +lat_2={lat2:.6f} +lat_0={lat0:.6f} "
            f"+lon_0={lon0:.6f} +datum=WGS84 +units=m +no_defs")


@lru_cache(maxsize=8)
def _transformer(proj: str):
    from pyproj import Transformer

    return Transformer.from_crs("EPSG:4326", proj, always_xy=True)


def project(proj: str, lon, lat) -> tuple[np.ndarray, np.ndarray]:
    """Projected x, y (m) of lon/lat arrays of any shape."""
    lon, lat = np.broadcast_arrays(np.asarray(lon, "f8"), np.asarray(lat, "f8"))
    x, y = _transformer(proj).transform(lon.ravel(), lat.ravel())
    return np.asarray(x).reshape(lon.shape), np.asarray(y).reshape(lon.shape)


def _box_outline(w, s, e, n, k=64):
    t = np.linspace(0.0, 1.0, k)
    lon = np.concatenate([w + (e - w) * t, np.full(k, e), e - (e - w) * t, np.full(k, w)])
    lat = np.concatenate([np.full(k, s), s + (n - s) * t, np.full(k, n), n - (n - s) * t])
    return lon, lat


@lru_cache(maxsize=8)
def _extent(bbox, is_china):
    proj = _projection(bbox, is_china)
    if is_china:   # China's land: the grid box's corners are open sea and desert abroad
        x, y = project(proj, *_box_outline(73.5, 18.0, 135.0, 53.5))
        pad_x, pad_y = 0.01 * (x.max() - x.min()), 0.01 * (y.max() - y.min())
        return (x.min() - pad_x, x.max() + pad_x, y.min() + 0.08 * (y.max() - y.min()),
                y.max() + pad_y)
    x, y = project(proj, *_box_outline(*bbox))
    pad = 0.02 * max(x.max() - x.min(), y.max() - y.min())
    return (x.min() - pad, x.max() + pad, y.min() - pad, y.max() + pad)


# --- boundaries -----------------------------------------------------------------------------------
def _gcj02_to_wgs84(xy: np.ndarray) -> np.ndarray:
    """cnmaps' GCJ-02 → WGS 84 correction (:func:`cnmaps.geo.gcj02_to_wgs84`), vectorised: cnmaps
    applies it point by point in Python, ~7 s for the provinces."""
    lon, lat = xy[:, 0], xy[:, 1]
    x, y, pi = lon - 105.0, lat - 35.0, np.pi
    dlat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * np.sqrt(np.abs(x))
    dlat += (20.0 * np.sin(6.0 * x * pi) + 20.0 * np.sin(2.0 * x * pi)) * 2.0 / 3.0
    dlat += (20.0 * np.sin(y * pi) + 40.0 * np.sin(y / 3.0 * pi)) * 2.0 / 3.0
    dlat += (160.0 * np.sin(y / 12.0 * pi) + 320 * np.sin(y * pi / 30.0)) * 2.0 / 3.0
    dlon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * np.sqrt(np.abs(x))
    dlon += (20.0 * np.sin(6.0 * x * pi) + 20.0 * np.sin(2.0 * x * pi)) * 2.0 / 3.0
    dlon += (20.0 * np.sin(x * pi) + 40.0 * np.sin(x / 3.0 * pi)) * 2.0 / 3.0
    dlon += (150.0 * np.sin(x / 12.0 * pi) + 300.0 * np.sin(x / 30.0 * pi)) * 2.0 / 3.0
    sma, eer = 6378245.0, 0.00669342162296594323
    radlat = lat / 180.0 * pi
    magic = 1.0 - eer * np.sin(radlat) ** 2
    sqrtmagic = np.sqrt(magic)
    dlat = (dlat * 180.0) / ((sma * (1 - eer)) / (magic * sqrtmagic) * pi)
    dlon = (dlon * 180.0) / (sma / sqrtmagic * np.cos(radlat) * pi)
    return np.column_stack([lon - dlon, lat - dlat])


def _adm_geoms_fast(level: str) -> list[tuple[str, str, object]]:
    """(province, kind, geometry) of cnmaps' records of China at ``level``, read with shapely's
    GeoJSON parser and corrected to WGS 84 like cnmaps does for its AMap (高德) sources."""
    import shapely
    from cnmaps import get_data_provider
    from cnmaps.maps import _query_adm_metadata

    provider = get_data_provider()
    out = []
    for row in _query_adm_metadata(level=level, country="中华人民共和国"):
        province, source, kind, rel = row[1], row[5], row[6], row[7]
        with open(provider.resolve_dataset_path("administrative", rel), encoding="utf-8") as f:
            geom = shapely.from_geojson(f.read())
        if source == "高德" and "Polygon" in geom.geom_type:
            geom = shapely.transform(geom, _gcj02_to_wgs84)
        out.append((province, kind, geom))
    return out


@lru_cache(maxsize=2)
def adm_geoms(level: str) -> tuple:
    """China's provinces (``level="省"``) or land and maritime lines (``"国"``) from cnmaps, as
    (province, kind, geometry); cnmaps' own reader if the fast one does not fit its data."""
    try:
        return tuple(_adm_geoms_fast(level))
    except Exception:   # noqa: BLE001 - another cnmaps layout: its public (slow) API
        import cnmaps

        gdf = cnmaps.get_adm_maps(country="中华人民共和国", level=level, engine="geopandas")
        return tuple(zip(gdf["province"], gdf["kind"], gdf.geometry))


def _domain_geom(domain: str):
    from ..domains import get_domain

    try:
        return get_domain(domain).geometry()
    except Exception:   # noqa: BLE001 - e.g. a polygon file of the run not present here
        return None


def _rings(geom) -> list[np.ndarray]:
    """Coordinate arrays of every ring or line of a shapely geometry."""
    out = []
    if geom is None or geom.is_empty:
        return out
    for part in getattr(geom, "geoms", [geom]):
        if part.geom_type == "Polygon":
            out.append(np.asarray(part.exterior.coords))
            out.extend(np.asarray(r.coords) for r in part.interiors)
        elif part.geom_type in ("LineString", "LinearRing"):
            out.append(np.asarray(part.coords))
        elif hasattr(part, "geoms"):
            out.extend(_rings(part))
    return [r for r in out if len(r) > 1]


def _compound_path(geoms, tol, box, proj):
    """One matplotlib Path (MOVETO per ring) of the geometries clipped to ``box``, simplified to
    ``tol`` degrees and projected; rings smaller than the tolerance are dropped. One path per
    layer keeps SVGs small and fast (a path per island made a map's SVG take 10 s)."""
    import shapely
    rings = []
    for g in geoms:
        if g is None or g.is_empty:
            continue
        if box is not None:
            g = shapely.clip_by_rect(g, *box)
        if g.is_empty:
            continue
        g = shapely.simplify(g, tol, preserve_topology=False)
        for ring in _rings(g):
            if np.ptp(ring[:, 0]) < tol and np.ptp(ring[:, 1]) < tol:
                continue
            rings.append(ring)
    if not rings:
        return None
    xy = np.concatenate(rings)
    x, y = project(proj, xy[:, 0], xy[:, 1])
    codes = np.full(len(xy), Path.LINETO, dtype=Path.code_type)
    starts = np.cumsum([0] + [len(r) for r in rings[:-1]])
    codes[starts] = Path.MOVETO
    return Path(np.column_stack([x, y]), codes)


@lru_cache(maxsize=16)
def boundary_paths(bm: Basemap, inset: bool = False, coarse: bool = False) -> dict:
    """Projected boundary layers of the map, each one compound Path: ``provinces``, ``outline``
    (China, or the study area's clip), ``maritime`` (China only). ``inset``: those of the South
    China Sea inset only; ``coarse``: simplified for small panels."""
    proj, tol = bm.projection, bm.tolerance * (2.0 if coarse else 1.0)
    w, s, e, n = bm.bbox
    margin = 0.1 * max(e - w, n - s)
    box = (w - margin, s - margin, e + margin, n + margin)
    if inset:
        box, tol = (SCS_BOX[0] - 1, SCS_BOX[2] - 1, SCS_BOX[1] + 1, SCS_BOX[3] + 1), tol / 2
    provinces = [g for _, _, g in adm_geoms("省")]
    paths = {"provinces": _compound_path(provinces, tol, box, proj)}
    if bm.is_china:
        country = adm_geoms("国")
        if not inset:
            box = (SCS_BOX[0] - 40.0, 0.0, 140.0, 56.0)
        paths["outline"] = _compound_path(
            [g for _, _, g in country if "Polygon" in g.geom_type], tol, box, proj)
        paths["maritime"] = _compound_path(
            [g for _, _, g in country if "LineString" in g.geom_type], tol, box, proj)
    else:
        geom = _domain_geom(bm.domain)
        if geom is None:   # a box, or a polygon file not on this machine: the grid box
            from shapely import box as sbox
            geom = sbox(w, s, e, n)
        paths["outline"] = _compound_path([geom], tol / 2, None, proj)
    return {k: v for k, v in paths.items() if v is not None}


STYLE = {"provinces": {"edgecolor": "0.45", "linewidth": 0.35, "zorder": 4},
         "outline": {"edgecolor": "black", "linewidth": 0.8, "zorder": 5},
         "maritime": {"edgecolor": "black", "linewidth": 0.8, "zorder": 5}}


def draw_boundaries(ax, bm: Basemap, *, provinces: bool = True, inset: bool = False,
                    coarse: bool = False):
    from matplotlib.patches import PathPatch

    for key, path in boundary_paths(bm, inset, coarse).items():
        if key == "provinces" and not provinces:
            continue
        ax.add_patch(PathPatch(path, facecolor="none", **STYLE[key]))


# --- axes -----------------------------------------------------------------------------------------
def _nice_step(span: float) -> float:
    for step in (0.5, 1, 2, 5, 10, 20):
        if span / step <= 7:
            return float(step)
    return 30.0


def _deg(v: float, pos: str, neg: str) -> str:
    return f"{abs(v):g}°{pos if v >= 0 else neg}"


@lru_cache(maxsize=8)
def graticule(bm: Basemap):
    """(compound path of meridians and parallels, [(x, label)] along the bottom edge,
    [(y, label)] along the left edge) of the map frame."""
    w, s, e, n = bm.bbox
    step = _nice_step(max(e - w, n - s))
    x0, x1, y0, y1 = bm.extent
    lons = np.arange(np.floor(w / step) * step - 2 * step, e + 3 * step, step)
    lats = np.arange(np.floor(s / step) * step - 2 * step, n + 3 * step, step)
    lats = lats[(lats > -90) & (lats < 90)]
    t_lat = np.linspace(lats.min(), lats.max(), 200)
    t_lon = np.linspace(lons.min(), lons.max(), 400)
    lines, bottom, left = [], [], []
    for lon in lons:
        x, y = project(bm.projection, np.full_like(t_lat, lon), t_lat)
        lines.append(np.column_stack([x, y]))
        if y.min() <= y0 <= y.max():
            xb = float(np.interp(y0, y, x))
            if x0 <= xb <= x1:
                bottom.append((xb, _deg(lon, "E", "W")))
    for lat in lats:
        x, y = project(bm.projection, t_lon, np.full_like(t_lon, lat))
        lines.append(np.column_stack([x, y]))
        if x.min() <= x0 <= x.max():
            yl = float(np.interp(x0, x, y))
            if y0 <= yl <= y1:
                left.append((yl, _deg(lat, "N", "S")))
    xy = np.concatenate(lines)
    codes = np.full(len(xy), Path.LINETO, dtype=Path.code_type)
    codes[np.cumsum([0] + [len(v) for v in lines[:-1]])] = Path.MOVETO
    return Path(xy, codes), bottom, left


def map_axes(fig, rect, bm: Basemap, *, graticule_lines: bool = True, labels: bool = True,
             coarse: bool = False):
    """Axes at ``rect`` (figure fraction) in projected metres framing the study area (equal
    aspect), graticule and boundaries drawn."""
    from matplotlib.patches import PathPatch

    ax = fig.add_axes(rect)
    x0, x1, y0, y1 = bm.extent
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal", adjustable="box", anchor="C")
    ax.set_facecolor("white")
    for spine in ax.spines.values():
        spine.set_linewidth(0.8)
    ax.set_xticks([])
    ax.set_yticks([])
    if graticule_lines:
        path, bottom, left = graticule(bm)
        ax.add_patch(PathPatch(path, facecolor="none", edgecolor="0.75", linewidth=0.3,
                               zorder=1))
        if labels:
            ax.set_xticks([b[0] for b in bottom], [b[1] for b in bottom], fontsize=7)
            ax.set_yticks([b[0] for b in left], [b[1] for b in left], fontsize=7)
            ax.tick_params(length=2, width=0.5, pad=2)
    draw_boundaries(ax, bm, coarse=coarse)
    return ax


@lru_cache(maxsize=16)
def _mesh(proj: str, lat_edges: tuple, lon_edges: tuple):
    lon, lat = np.meshgrid(np.asarray(lon_edges), np.asarray(lat_edges))
    return project(proj, lon, lat)


def draw_field(ax, bm: Basemap, field, **kwargs):
    """pcolormesh of a :class:`~carbonsink.report.fields.MapField` in the map's projection
    (rasterized in SVG)."""
    x, y = _mesh(bm.projection, tuple(field.lat_edges), tuple(field.lon_edges))
    values = np.ma.masked_invalid(np.asarray(field.values, "f8"))
    if field.categories:
        values = np.ma.masked_where(np.asarray(field.values) <= 0, values)
    return ax.pcolormesh(x, y, values, rasterized=True, shading="flat", zorder=2, **kwargs)


def crop(field, box):
    """The part of a MapField inside ``box`` = (lon0, lon1, lat0, lat1), or None."""
    import dataclasses

    lon0, lon1, lat0, lat1 = box
    le, lo = np.asarray(field.lat_edges), np.asarray(field.lon_edges)
    rows = np.nonzero((le[:-1] > lat0) & (le[1:] < lat1))[0]
    cols = np.nonzero((lo[1:] > lon0) & (lo[:-1] < lon1))[0]
    if rows.size == 0 or cols.size == 0:
        return None
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    return dataclasses.replace(
        field, values=field.values[r0:r1, c0:c1], lat_edges=le[r0:r1 + 1],
        lon_edges=lo[c0:c1 + 1], area=None if field.area is None else field.area[r0:r1, c0:c1])


def scs_inset(fig, ax, bm: Basemap, field=None, **kwargs):
    """The South China Sea islands inset at the lower right of a map of China (with the field,
    where the grid reaches)."""
    if not bm.is_china:
        return None
    ax.apply_aspect()
    pos = ax.get_position()
    x0, x1, y0, y1 = SCS_BOX
    x, y = project(bm.projection, *_box_outline(x0, y0, x1, y1))
    ext = (x.min() + 0.08 * (x.max() - x.min()), x.max() - 0.05 * (x.max() - x.min()),
           y.min(), y.max())
    h = 0.30 * pos.height
    w = h * (ext[1] - ext[0]) / (ext[3] - ext[2]) * fig.get_figheight() / fig.get_figwidth()
    inset = fig.add_axes([pos.x1 - w, pos.y0, w, h])
    inset.set_xlim(ext[0], ext[1])
    inset.set_ylim(ext[2], ext[3])
    inset.set_aspect("equal", adjustable="box", anchor="SE")
    inset.set_xticks([])
    inset.set_yticks([])
    part = crop(field, (x0 - 2, x1 + 2, y0 - 2, y1 + 2)) if field is not None else None
    if part is not None:
        draw_field(inset, bm, part, **kwargs)
    draw_boundaries(inset, bm, inset=True)
    inset.set_facecolor("white")
    for spine in inset.spines.values():
        spine.set_linewidth(0.8)
    inset.set_zorder(6)
    return inset
