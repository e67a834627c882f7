"""The China grid: presets, coordinates, true cell areas on the sphere and the chunk policy.

Geographic grid (EPSG:4326) over the China box 73–136°E, 17–54°N (SCIENCE.md §0). Latitude runs
north → south (descending, like most rasters); coordinates are cell centres. Cell edges sit on exact
multiples of the resolution, so every preset nests in the coarser ones.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

# SCIENCE.md §0: authalic Earth radius
EARTH_RADIUS_M = 6_371_007.2

CHINA_BBOX = (73.0, 17.0, 136.0, 54.0)  # west, south, east, north

# name → resolution in degrees; "1km" is the headline 0.01° product
PRESETS: dict[str, float] = {
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
        if not (self.res > 0):
            raise ValueError(f"grid resolution must be positive, got {self.res}")
        for span, name in ((self.east - self.west, "lon"), (self.north - self.south, "lat")):
            n = span / self.res
            if abs(n - round(n)) > 1e-6 or round(n) < 1:
                raise ValueError(f"{name} extent {span}° is not a whole number of {self.res}° cells")

    @property
    def name(self) -> str:
        return f"{self.res:g}deg"

    @property
    def nlat(self) -> int:
        return int(round((self.north - self.south) / self.res))

    @property
    def nlon(self) -> int:
        return int(round((self.east - self.west) / self.res))

    @property
    def shape(self) -> tuple[int, int]:
        return (self.nlat, self.nlon)

    @cached_property
    def lat(self) -> np.ndarray:
        """Cell-centre latitudes, north → south."""
        return np.round(self.north - self.res * (np.arange(self.nlat) + 0.5), 10)

    @cached_property
    def lon(self) -> np.ndarray:
        """Cell-centre longitudes, west → east."""
        return np.round(self.west + self.res * (np.arange(self.nlon) + 0.5), 10)

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
                "grid_bbox": [self.west, self.south, self.east, self.north], "crs": "EPSG:4326"}

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

    def __repr__(self) -> str:
        return f"Grid({self.name}, {self.nlat}×{self.nlon})"


def get_grid(preset: str | float | Grid) -> Grid:
    """A preset grid by name ('1km', '0.05', '0.1', ...) or resolution in degrees."""
    if isinstance(preset, Grid):
        return preset
    key = str(preset).strip().removesuffix("deg").removesuffix("°")
    if key in PRESETS:
        return Grid(PRESETS[key])
    try:
        res = float(key)
    except ValueError:
        res = None
    for name, value in PRESETS.items():
        if res is not None and abs(value - res) < 1e-12:
            return Grid(PRESETS[name])
    raise ValueError(f"unknown grid preset {preset!r}; choose one of {sorted(set(PRESETS))}")


def grid_of(obj) -> Grid:
    """The preset grid a Dataset/DataArray lies on, checked coordinate by coordinate."""
    lat = np.asarray(obj["lat"].values)
    lon = np.asarray(obj["lon"].values)
    if lat.size < 1 or lon.size < 1:
        raise ValueError("empty lat/lon coordinates")
    res = float(np.round(abs(lon[1] - lon[0]) if lon.size > 1 else abs(lat[1] - lat[0]), 10))
    for value in sorted(set(PRESETS.values())):
        if abs(value - res) < 1e-9:
            g = Grid(value)
            if (lat.shape == g.lat.shape and lon.shape == g.lon.shape
                    and np.allclose(lat, g.lat, atol=res * 1e-3)
                    and np.allclose(lon, g.lon, atol=res * 1e-3)):
                return g
    raise ValueError(
        f"lat/lon coordinates ({lat.size}×{lon.size}, step {res}°) are not a carbonsink grid preset "
        f"over {CHINA_BBOX} with descending latitude")


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
