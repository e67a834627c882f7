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
        """GDAL geotransform-order affine (a, b, c, d, e, f) for rasterio: north-up."""
        return (self.res, 0.0, self.west, 0.0, -self.res, self.north)

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
