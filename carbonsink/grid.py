"""Grids: resolutions, boxes, coordinates, true cell areas on the sphere and the chunk policy.

A grid is a geographic (EPSG:4326) resolution that divides 1° (0.005°, 0.01°, 1/120°, 0.05°, … 1°)
plus a box whose edges lie on multiples of it — the China box 73–136°E, 17–54°N by default, or a
study area's box (:mod:`carbonsink.domains` adds the clip polygon). Latitude runs north → south
(descending, like most rasters); coordinates are cell centres. Because edges sit on exact multiples
of the resolution, grids nest: a 0.01° grid's cells tile every coarser grid's cells (SCIENCE.md §0).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

# SCIENCE.md §0: authalic Earth radius
EARTH_RADIUS_M = 6_371_007.2

CHINA_BBOX = (73.0, 17.0, 136.0, 54.0)  # west, south, east, north

# name → resolution in degrees; "1km" is the headline 0.01° product, "500m" MODIS' 0.005°. Any
# other resolution that divides 1° is valid too ("0.02", "1/120"); these are just names.
PRESETS: dict[str, float] = {
    "500m": 0.005,
    "0.005": 0.005,
    "1km": 0.01,
    "0.01": 0.01,
    "0.05": 0.05,
    "0.1": 0.1,
    "0.25": 0.25,
    "0.5": 0.5,
    "1": 1.0,
}


def cell_area(lat_north, lat_south, dlon_deg, radius=EARTH_RADIUS_M):
    """Area in m² of a lat/lon cell on the sphere: A = R²·Δλ·(sin φ₂ − sin φ₁) (SCIENCE.md §0).

    Vectorised over any broadcastable ``lat_north``/``lat_south`` (degrees).
    """
    phi2 = np.deg2rad(np.asarray(lat_north, dtype="f8"))
    phi1 = np.deg2rad(np.asarray(lat_south, dtype="f8"))
    return radius**2 * np.deg2rad(dlon_deg) * np.abs(np.sin(phi2) - np.sin(phi1))


@dataclass(frozen=True)
class Grid:
    """A regular lat/lon grid over a box; ``res`` in degrees."""

    res: float
    west: float = CHINA_BBOX[0]
    south: float = CHINA_BBOX[1]
    east: float = CHINA_BBOX[2]
    north: float = CHINA_BBOX[3]

    def __post_init__(self):
        object.__setattr__(self, "res", snap_resolution(self.res))
        res, n = self.res, self.per_degree
        for edge, name in ((self.west, "west"), (self.south, "south"), (self.east, "east"),
                           (self.north, "north")):
            k = float(edge) * n
            if abs(k - round(k)) > 1e-6:
                raise ValueError(f"grid {name} edge {edge}° is not a multiple of the {res:g}° "
                                 "resolution (edges must lie on multiples of it)")
            object.__setattr__(self, name, round(round(k) / n, 10))
        if not (-180.0 <= self.west < self.east <= 360.0 and -90.0 <= self.south < self.north
                <= 90.0):
            raise ValueError(f"grid box W={self.west} S={self.south} E={self.east} N={self.north} "
                             "is empty or outside the globe")

    @classmethod
    def covering(cls, res, bounds) -> "Grid":
        """The smallest grid of resolution ``res`` whose box (edges on multiples of ``res``)
        covers ``bounds`` = (west, south, east, north) in degrees."""
        res = snap_resolution(res)
        w, s, e, n = (float(b) for b in bounds)
        k, eps = round(1.0 / res), 1e-9
        return cls(res, math.floor(w * k + eps) / k, math.floor(s * k + eps) / k,
                   math.ceil(e * k - eps) / k, math.ceil(n * k - eps) / k)

    @property
    def per_degree(self) -> int:
        """Cells per degree (the resolution is exactly 1/per_degree)."""
        return int(round(1.0 / self.res))

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return (self.west, self.south, self.east, self.north)

    def window_of(self, other: "Grid") -> tuple[slice, slice]:
        """Rows and columns of this grid that ``other`` (same resolution, inside it) occupies."""
        if abs(other.res - self.res) > 1e-12:
            raise ValueError(f"grids of {other.res:g}° and {self.res:g}° do not share cells")
        i0 = int(round((self.north - other.north) / self.res))
        j0 = int(round((other.west - self.west) / self.res))
        if i0 < 0 or j0 < 0 or i0 + other.nlat > self.nlat or j0 + other.nlon > self.nlon:
            raise ValueError(f"{other} is not inside {self}")
        return slice(i0, i0 + other.nlat), slice(j0, j0 + other.nlon)

    @property
    def name(self) -> str:
        return f"{self.res:g}deg"

    @property
    def nlat(self) -> int:
        return int(round((self.north - self.south) * self.per_degree))

    @property
    def nlon(self) -> int:
        return int(round((self.east - self.west) * self.per_degree))

    def __reduce__(self):
        # the five numbers, not the cached coordinate arrays: a 1 km Grid carries 80 kB of lat/lon
        # once they are computed, which every task given the grid copied into the graph (62 MiB
        # for the 792 synthetic tiles of 21 years at 1 km)
        return (type(self), (self.res, self.west, self.south, self.east, self.north))

    @property
    def shape(self) -> tuple[int, int]:
        return (self.nlat, self.nlon)

    def window(self, rows: tuple[int, int], cols: tuple[int, int]) -> "Grid":
        """The grid of rows ``rows[0]:rows[1]`` and columns ``cols[0]:cols[1]`` of this one."""
        (i0, i1), (j0, j1) = rows, cols
        return Grid(self.res, self.west + j0 * self.res, self.north - i1 * self.res,
                    self.west + j1 * self.res, self.north - i0 * self.res)

    def tile_edges(self, chunks: dict) -> tuple[np.ndarray, np.ndarray]:
        """Row and column edges of the tiles of ``chunks`` ({"lat": n, "lon": m}); the last tile
        of each axis may be smaller."""
        return (np.r_[0:self.nlat:chunks["lat"], self.nlat],
                np.r_[0:self.nlon:chunks["lon"], self.nlon])

    @cached_property
    def lat(self) -> np.ndarray:
        """Cell-centre latitudes, north → south."""
        n = self.per_degree
        return np.round((round(self.north * n) - (np.arange(self.nlat) + 0.5)) / n, 10)

    @cached_property
    def lon(self) -> np.ndarray:
        """Cell-centre longitudes, west → east."""
        n = self.per_degree
        return np.round((round(self.west * n) + (np.arange(self.nlon) + 0.5)) / n, 10)

    @cached_property
    def row_area(self) -> np.ndarray:
        """Cell area (m²) of each row; every cell of a row has the same area."""
        return cell_area(self.lat + self.res / 2, self.lat - self.res / 2, self.res)

    def cell_area(self) -> np.ndarray:
        """Cell areas (m²), shape (nlat, nlon)."""
        return np.broadcast_to(self.row_area[:, None], self.shape).copy()

    @property
    def transform(self) -> tuple[float, float, float, float, float, float]:
        """The affine (a, b, c, d, e, f) of rasterio/``affine.Affine`` (north-up): cell edges,
        x = a·col + b·row + c, y = d·col + e·row + f."""
        return (self.res, 0.0, self.west, 0.0, -self.res, self.north)

    @property
    def geotransform(self) -> tuple[float, float, float, float, float, float]:
        """The same affine in GDAL's GeoTransform order (c, a, b, f, d, e)."""
        a, b, c, d, e, f = self.transform
        return (c, a, b, f, d, e)

    def coords(self) -> dict[str, tuple]:
        """xarray coords with CF attributes."""
        return {
            "lat": ("lat", self.lat, {"units": "degrees_north", "standard_name": "latitude",
                                      "long_name": "latitude of cell centre",
                                      "axis": "Y", "order": "descending (north to south)"}),
            "lon": ("lon", self.lon, {"units": "degrees_east", "standard_name": "longitude",
                                      "long_name": "longitude of cell centre", "axis": "X"}),
        }

    def attrs(self) -> dict:
        return {"grid": self.name, "grid_resolution_deg": self.res,
                "grid_bbox": list(self.bounds), "crs": "EPSG:4326"}

    def chunks(self, ntime: int, itemsize: int = 4, target_mb: float = 32.0) -> dict[str, int]:
        """Chunk policy: the full time axis in every chunk, square spatial tiles sized so a chunk of
        ``ntime`` steps of ``itemsize`` bytes is about ``target_mb`` MB (ARCHITECTURE.md, Chunks).

        One policy per dataset: call it with the longest time axis (the monthly climate) so every
        variable of the dataset shares the same spatial tiles and kernels need no rechunking.
        Tiles are multiples of 16 cells, at least 64, and never larger than the grid.
        """
        ntime = max(int(ntime), 1)
        pixels = target_mb * 1e6 / (ntime * itemsize)
        side = max(64, int(math.sqrt(pixels)) // 16 * 16)
        return {"lat": min(side, self.nlat), "lon": min(side, self.nlon)}

    @property
    def is_china_box(self) -> bool:
        return self.bounds == CHINA_BBOX

    def __repr__(self) -> str:
        box = "" if self.is_china_box else " {:g}–{:g}°E {:g}–{:g}°N".format(
            self.west, self.east, self.south, self.north)
        return f"Grid({self.name}{box}, {self.nlat}×{self.nlon})"


def snap_resolution(res) -> float:
    """``res`` (degrees) as exactly 1/n for the whole number n it stands for; ValueError unless it
    divides 1° (0.005, 0.01, 1/120 ≈ 0.0083333, 0.05, 0.25, 1 do; 0.3 or 0.007 do not)."""
    try:
        res = float(res)
    except (TypeError, ValueError):
        raise ValueError(f"grid resolution {res!r} is not a number of degrees") from None
    if not (res > 0) or not math.isfinite(res):
        raise ValueError(f"grid resolution must be positive, got {res}")
    if res > 1.0:
        raise ValueError(f"grid resolution {res:g}° is coarser than 1°; it must divide 1°")
    n = 1.0 / res
    if abs(n - round(n)) > 1e-5 * n:
        raise ValueError(f"grid resolution {res:g}° does not divide 1° (1/{res:g} = {n:.4f} is not "
                         "a whole number); use e.g. 0.005, 0.01, 1/120, 0.05, 0.1, 0.25, 0.5 or 1")
    return 1.0 / int(round(n))


def parse_resolution(spec: str | float) -> float:
    """A resolution in degrees from a preset name ('1km', '500m', '0.1deg'), a number or a
    fraction ('1/120'); it must divide 1°."""
    key = str(spec).strip().removesuffix("deg").removesuffix("°")
    if key in PRESETS:
        return PRESETS[key]
    if "/" in key:
        num, _, den = key.partition("/")
        try:
            return snap_resolution(float(num) / float(den))
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"grid resolution {spec!r} is not a fraction of degrees") from None
    try:
        value = float(key)
    except ValueError:
        raise ValueError(f"unknown grid resolution {spec!r}; give degrees dividing 1° (e.g. 0.005, "
                         f"0.01, 1/120) or a preset: {sorted(set(PRESETS))}") from None
    return snap_resolution(value)


def get_grid(preset: str | float | Grid, bounds=None) -> Grid:
    """A grid by resolution (preset name, degrees or fraction, see :func:`parse_resolution`) over
    the China box, or over the smallest box on multiples of the resolution covering ``bounds``."""
    if isinstance(preset, Grid):
        return preset if bounds is None else Grid.covering(preset.res, bounds)
    res = parse_resolution(preset)
    return Grid(res) if bounds is None else Grid.covering(res, bounds)


def grid_of(obj) -> Grid:
    """The grid a Dataset/DataArray lies on (any resolution dividing 1°, any box on multiples of
    it), checked coordinate by coordinate: regular cell centres, latitude descending."""
    lat = np.asarray(obj["lat"].values, dtype="f8")
    lon = np.asarray(obj["lon"].values, dtype="f8")
    if lat.size < 1 or lon.size < 1:
        raise ValueError("empty lat/lon coordinates")
    if lon.size > 1:
        step = lon[1] - lon[0]
    elif lat.size > 1:
        step = lat[0] - lat[1]
    else:
        raise ValueError("a single cell does not define a grid resolution")
    if lat.size > 1 and lat[0] < lat[-1]:
        raise ValueError(f"lat/lon coordinates ({lat.size}×{lon.size}) are not a carbonsink grid: "
                         "latitude must be descending (north to south), it ascends")
    try:
        res = snap_resolution(abs(step))
        g = Grid(res, lon[0] - res / 2, lat[-1] - res / 2, lon[-1] + res / 2, lat[0] + res / 2)
    except ValueError as e:
        raise ValueError(f"lat/lon coordinates ({lat.size}×{lon.size}, step {step:g}°) are not a "
                         f"carbonsink grid: {e}") from None
    if not (lat.shape == g.lat.shape and lon.shape == g.lon.shape
            and np.allclose(lat, g.lat, atol=res * 1e-3)
            and np.allclose(lon, g.lon, atol=res * 1e-3)):
        raise ValueError(
            f"lat/lon coordinates ({lat.size}×{lon.size}, step {step:g}°) are not a carbonsink "
            "grid: cell centres must be regular, on multiples of the resolution plus half a cell, "
            "with descending latitude")
    return g


# --- georeferencing (CF grid mapping that GDAL, rioxarray and CF readers understand) -------------
GRID_MAPPING = "spatial_ref"

# EPSG:4326 as WKT2 (pyproj 3.7 / PROJ 9: ``pyproj.CRS.from_epsg(4326).to_wkt()``), kept as a
# constant so the core package needs no pyproj; tests/unit/test_georef.py checks it is EPSG:4326.
EPSG_4326_WKT = (
    'GEOGCRS["WGS 84",ENSEMBLE["World Geodetic System 1984 ensemble",'
    'MEMBER["World Geodetic System 1984 (Transit)"],MEMBER["World Geodetic System 1984 (G730)"],'
    'MEMBER["World Geodetic System 1984 (G873)"],MEMBER["World Geodetic System 1984 (G1150)"],'
    'MEMBER["World Geodetic System 1984 (G1674)"],MEMBER["World Geodetic System 1984 (G1762)"],'
    'MEMBER["World Geodetic System 1984 (G2139)"],MEMBER["World Geodetic System 1984 (G2296)"],'
    'ELLIPSOID["WGS 84",6378137,298.257223563,LENGTHUNIT["metre",1]],ENSEMBLEACCURACY[2.0]],'
    'PRIMEM["Greenwich",0,ANGLEUNIT["degree",0.0174532925199433]],CS[ellipsoidal,2],'
    'AXIS["geodetic latitude (Lat)",north,ORDER[1],ANGLEUNIT["degree",0.0174532925199433]],'
    'AXIS["geodetic longitude (Lon)",east,ORDER[2],ANGLEUNIT["degree",0.0174532925199433]],'
    'USAGE[SCOPE["Horizontal component of 3D system."],AREA["World."],BBOX[-90,-180,90,180]],'
    'ID["EPSG",4326]]')

# CF-1.10 §5.6 latitude_longitude grid mapping of WGS 84 (as ``pyproj.CRS.to_cf()`` writes it)
_CF_WGS84 = {
    "grid_mapping_name": "latitude_longitude",
    "semi_major_axis": 6378137.0,
    "semi_minor_axis": 6356752.314245179,
    "inverse_flattening": 298.257223563,
    "reference_ellipsoid_name": "WGS 84",
    "longitude_of_prime_meridian": 0.0,
    "prime_meridian_name": "Greenwich",
    "geographic_crs_name": "WGS 84",
    "horizontal_datum_name": "World Geodetic System 1984 ensemble",
}


def grid_mapping_attrs(grid: Grid) -> dict:
    """Attributes of the scalar ``spatial_ref`` grid-mapping variable of ``grid``: CF
    (``grid_mapping_name``, ellipsoid, ``crs_wkt``) plus the GDAL/rioxarray keys ``spatial_ref``
    (WKT) and ``GeoTransform`` (GDAL order, cell edges, north-up)."""
    return {**_CF_WGS84, "crs_wkt": EPSG_4326_WKT, "spatial_ref": EPSG_4326_WKT,
            "GeoTransform": " ".join(repr(float(v)) for v in grid.geotransform)}


def georeference(obj):
    """``obj`` (Dataset or DataArray on a carbonsink grid) with a CF grid mapping GDAL understands.

    Adds the scalar coordinate ``spatial_ref`` (:func:`grid_mapping_attrs`) and sets
    ``grid_mapping = "spatial_ref"`` on every data variable with both ``lat`` and ``lon`` dims, so
    GDAL (netCDF/Zarr drivers), rioxarray (``.rio.crs``, ``.rio.transform()``) and CF tools read
    EPSG:4326 and the cell-edge transform. Idempotent; returns a new object (``obj`` is unchanged).
    Raises ValueError if ``obj`` is not on a grid preset (:func:`grid_of`).
    """
    import xarray as xr

    grid = grid_of(obj)
    spatial_ref = xr.Variable((), np.int64(0), grid_mapping_attrs(grid))
    out = obj.assign_coords({GRID_MAPPING: spatial_ref})
    if isinstance(out, xr.DataArray):
        out.attrs = {**out.attrs, "grid_mapping": GRID_MAPPING}
        return out
    for name, var in out.data_vars.items():
        if "lat" in var.dims and "lon" in var.dims:
            out[name].attrs = {**var.attrs, "grid_mapping": GRID_MAPPING}
    return out
