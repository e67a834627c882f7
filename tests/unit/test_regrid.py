"""Regridding onto a carbonsink grid: exact area averages, any CRS, 0–360 longitudes, polygons →
fraction, coverage and the choice of resampling (carbonsink.io.regrid)."""
from __future__ import annotations

import warnings

import dask.array as da
import numpy as np
import pytest
from affine import Affine

from carbonsink.grid import get_grid
from carbonsink.io import regrid as rg

pytestmark = pytest.mark.unit

GRID = get_grid("1")
TILE = {"lat": 16, "lon": 16}          # several tiles, and several super-tiles when asked
SINU = "+proj=sinu +lon_0=0 +x_0=0 +y_0=0 +R=6371007.181 +units=m +no_defs"


def _run(values, transform, crs, resampling="average", max_cells=rg.SUPER_TILE_CELLS):
    arr = da.from_array(values, chunks=(values.shape[0], 37, 41))
    out = rg.regrid(arr, transform, crs, GRID, TILE, resampling, max_cells=max_cells)
    assert out.chunks[1][0] == 16 and out.chunks[2][0] == 16
    return out.compute()


@pytest.mark.parametrize("max_cells", [rg.SUPER_TILE_CELLS, 16 * 16 * 2])
def test_area_average_of_a_finer_aligned_grid_is_the_block_mean(max_cells):
    rng = np.random.default_rng(1)
    src = rng.normal(10.0, 3.0, (2, 4 * 40, 4 * 70))          # 0.25° over 70–140°E, 15–55°N
    src[src < 4] = np.nan                                     # holes skipped by the average
    src[:, 4 + 40:4 + 44, 12 + 80:12 + 84] = np.nan           # cell (10, 20) has no data at all
    out = _run(src, Affine(0.25, 0, 70, 0, -0.25, 55), "EPSG:4326", max_cells=max_cells)
    blocks = src[:, 4:4 + 4 * 37, 12:12 + 4 * 63].reshape(2, 37, 4, 63, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)      # all-NaN blocks stay NaN
        expected = np.nanmean(blocks, axis=(2, 4))
    assert np.isnan(expected).any() and np.isfinite(expected).sum() > 1000
    np.testing.assert_allclose(out, expected, rtol=1e-6, equal_nan=True)


def test_longitudes_0_360_and_bilinear_of_a_linear_field():
    # a 2° global grid in 0–360 (coarser than the grid): bilinear reproduces a linear field
    lon = np.arange(0.0, 360.0, 2.0) + 1.0
    lat = 90.0 - 2.0 * (np.arange(90) + 0.5)
    LON, LAT = np.meshgrid(lon, lat)
    src = (3.0 + 0.01 * LON - 0.02 * LAT)[None]
    out = _run(src, Affine(2.0, 0, 0.0, 0, -2.0, 90.0), "EPSG:4326", "bilinear")
    glon, glat = np.meshgrid(GRID.lon, GRID.lat)
    np.testing.assert_allclose(out[0], 3.0 + 0.01 * glon - 0.02 * glat, rtol=1e-6)
    # the same field in −180…180 gives the same result
    lon2 = np.where(lon > 180, lon - 360, lon)
    order = np.argsort(lon2)
    out2 = _run(src[:, :, order], Affine(2.0, 0, -180.0, 0, -2.0, 90.0), "EPSG:4326", "bilinear")
    np.testing.assert_allclose(out2, out, rtol=1e-6)


def test_sinusoidal_source():
    from pyproj import Transformer
    pixel = 10000.0
    t = Transformer.from_crs(SINU, "EPSG:4326", always_xy=True)
    x0, y1 = 4.5e6, 6.2e6                       # covers 73–136°E × 17–54°N in sinusoidal
    shape = (450, 1050)
    xs = x0 + pixel * (np.arange(shape[1]) + 0.5)
    ys = y1 - pixel * (np.arange(shape[0]) + 0.5)
    X, Y = np.meshgrid(xs, ys)
    lon, lat = t.transform(X, Y)
    const = np.full((1,) + shape, 7.5)
    const[0, ::7, ::5] = np.nan
    tr = Affine(pixel, 0, x0, 0, -pixel, y1)
    frac, first = rg.coverage(tr, SINU, shape, GRID, np.ones(GRID.shape, bool))
    assert frac == 1.0 and first is None
    out = _run(const, tr, SINU)
    np.testing.assert_allclose(out, 7.5, rtol=1e-6)                # constant field: exact
    out = _run((20.0 + 0.5 * lat)[None], tr, SINU)                   # smooth: within 0.5 %
    glat = np.broadcast_to(GRID.lat[:, None], GRID.shape)
    np.testing.assert_allclose(out[0], 20.0 + 0.5 * glat, rtol=5e-3)


def test_coverage_reports_the_uncovered_land():
    land = np.zeros(GRID.shape, bool)
    land[5, 40] = land[30, 2] = True                  # 48.5°N 113.5°E and 23.5°N 75.5°E
    frac, first = rg.coverage(Affine(0.5, 0, 100, 0, -0.5, 55), "EPSG:4326", (80, 80), GRID, land)
    assert frac == 0.5 and first == (23.5, 75.5)


def test_pick_resampling():
    fine = (Affine(0.25, 0, 70, 0, -0.25, 55), "EPSG:4326", (160, 280))
    coarse = (Affine(2.0, 0, 0, 0, -2.0, 90), "EPSG:4326", (90, 180))
    assert rg.pick_resampling("auto", "continuous", *fine, GRID) == "average"
    assert rg.pick_resampling("auto", "continuous", *coarse, GRID) == "bilinear"
    assert rg.pick_resampling("auto", "mask", *coarse, GRID) == "mode"
    assert rg.pick_resampling("auto", "fraction", *coarse, GRID) == "average"
    assert rg.pick_resampling("nearest", "continuous", *fine, GRID) == "nearest"


def test_polygons_to_fraction_on_subcells():
    import geopandas as gpd
    from shapely.geometry import box
    gdf = gpd.GeoDataFrame({"lith": ["ss", "sc", "sc"]},
                           geometry=[box(73, 17, 136, 54), box(100.0, 30.0, 100.3, 31.0),
                                     box(110, 40, 112, 42)], crs="EPSG:4326")
    frac = rg.polygon_fraction(gdf, "lith", ["sc"], GRID, TILE, supersample=10).compute()
    i, j = int(np.argmin(np.abs(GRID.lat - 30.5))), int(np.argmin(np.abs(GRID.lon - 100.5)))
    assert frac[i, j] == pytest.approx(0.3)
    i, j = int(np.argmin(np.abs(GRID.lat - 40.5))), int(np.argmin(np.abs(GRID.lon - 110.5)))
    assert frac[i, j] == 1.0 and frac[i, j + 1] == 1.0 and frac[i, j + 2] == 0.0
    assert np.nansum(frac) == pytest.approx(4.3)
    # no polygon at all over a cell: missing, not zero
    only = gdf.iloc[[1]]
    frac = rg.polygon_fraction(only, "lith", ["sc"], GRID, TILE).compute()
    assert np.isnan(frac[0, 0]) and np.nansum(frac) == pytest.approx(1.0)
