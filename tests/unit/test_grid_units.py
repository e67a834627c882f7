import numpy as np
import pytest

from carbonsink import units as u
from carbonsink.grid import EARTH_RADIUS_M, PRESETS, Grid, cell_area, get_grid, grid_of

pytestmark = pytest.mark.unit


def test_cell_area_reference():
    # SCIENCE.md §0: a 1°×1° cell between 30° and 31°N is 1.0653e10 m²
    assert cell_area(31.0, 30.0, 1.0) == pytest.approx(1.0653e10, rel=5e-5)


def test_grid_area_sums_to_sphere_band():
    g = get_grid("0.25")
    band = EARTH_RADIUS_M**2 * np.deg2rad(63.0) * (np.sin(np.deg2rad(54)) - np.sin(np.deg2rad(17)))
    assert g.cell_area().sum() == pytest.approx(band, rel=1e-12)
    # never equal areas: cells shrink towards the pole
    assert g.row_area[0] < g.row_area[-1]


@pytest.mark.parametrize("name, res, shape", [
    ("1km", 0.01, (3700, 6300)), ("0.05", 0.05, (740, 1260)), ("0.1", 0.1, (370, 630)),
    ("0.25", 0.25, (148, 252)), ("0.5", 0.5, (74, 126)), ("1", 1.0, (37, 63))])
def test_presets(name, res, shape):
    g = get_grid(name)
    assert g.res == res and g.shape == shape
    assert g.lat[0] == pytest.approx(54 - res / 2) and np.all(np.diff(g.lat) < 0)
    assert g.lon[0] == pytest.approx(73 + res / 2) and np.all(np.diff(g.lon) > 0)


def test_grid_lookup_and_errors():
    assert get_grid(0.1) == get_grid("0.1") == get_grid("0.1deg")
    with pytest.raises(ValueError, match="does not divide 1°"):
        get_grid("0.3")
    with pytest.raises(ValueError, match="does not divide 1°"):
        Grid(0.3)
    with pytest.raises(ValueError, match="unknown grid resolution"):
        get_grid("fine")
    assert set(PRESETS) >= {"1km", "0.05", "0.1", "0.25", "0.5", "1"}


def test_grid_of_recognises_presets():
    import xarray as xr
    g = get_grid("0.5")
    ds = xr.Dataset(coords={"lat": g.lat, "lon": g.lon})
    assert grid_of(ds) == g
    with pytest.raises(ValueError, match="not a carbonsink grid"):
        grid_of(ds.assign_coords(lon=ds.lon + 0.1))
    with pytest.raises(ValueError, match="regular"):
        grid_of(ds.assign_coords(lon=np.r_[ds.lon.values[:-1], 200.25]))
    with pytest.raises(ValueError):
        grid_of(ds.isel(lat=slice(None, None, -1)))  # ascending latitude


def test_chunk_policy_bounded_and_aligned():
    g = get_grid("1km")
    for ntime, mb in ((252, 32), (21, 32), (252, 64)):
        c = g.chunks(ntime, itemsize=4, target_mb=mb)
        size_mb = ntime * c["lat"] * c["lon"] * 4 / 1e6
        assert size_mb <= mb * 1.01
        assert c["lat"] % 16 == 0 and c["lat"] == c["lon"]
    # the monthly cube of 21 years at 1 km: chunks of ~16-64 MB
    c = g.chunks(252, target_mb=32)
    assert 16 <= 252 * c["lat"] * c["lon"] * 4 / 1e6 <= 64
    # never bigger than the grid
    assert get_grid("1").chunks(12) == {"lat": 37, "lon": 63}


@pytest.mark.parametrize("value, frm, to, want", [
    (300.0, "K", "degC", 26.85), (10.0, "cm month-1", "mm month-1", 100.0),
    (0.5, "kg C m-2 a-1", "g m-2 yr-1", 500.0), (1.0, "t C km-2 a-1", "g C m-2 a-1", 1.0),
    (5000.0, "g m-2", "kg m-2", 5.0), (2e9, "J m-2 yr-1", "MJ m-2 yr-1", 2000.0),
    (50.0, "%", "1", 0.5), (26.85, "degC", "K", 300.0)])
def test_unit_table(value, frm, to, want):
    assert u.convert(value, frm, to) == pytest.approx(want)


def test_unit_errors():
    with pytest.raises(u.UnitError, match="unknown units"):
        u.lookup("furlongs")
    with pytest.raises(u.UnitError, match="cannot convert"):
        u.conversion("K", "mm month-1")
    with pytest.raises(u.UnitError):
        u.lookup(None)
    assert u.canonical("g C m⁻² a⁻¹") == "g m-2 yr-1"


def test_constants():
    assert u.C_TO_CO2 == pytest.approx(44.01 / 12.011)
    assert u.G_TO_TG == 1e-12 and u.G_TO_PG == 1e-15


@pytest.mark.parametrize("spec, res", [("500m", 0.005), ("0.005", 0.005), ("1/120", 1 / 120),
                                       ("0.00833333deg", 1 / 120), ("0.02", 0.02), (0.2, 0.2)])
def test_any_resolution_dividing_one_degree(spec, res):
    g = get_grid(spec)
    assert g.res == pytest.approx(res, rel=1e-12) and g.per_degree == round(1 / res)
    assert g.bounds == (73.0, 17.0, 136.0, 54.0) and g.is_china_box
    assert g.shape == (37 * g.per_degree, 63 * g.per_degree)
    # the name spells back to the same grid (it is what configs and records carry)
    assert get_grid(g.name) == g


def test_box_grids_nest_and_round_trip():
    import xarray as xr
    # seed 004's Three-River Headwaters box, snapped outward to the MODIS-like 0.005° cells
    g = Grid.covering(0.005, (89.63, 31.65, 102.383, 36.2))
    assert g.bounds == (89.63, 31.65, 102.385, 36.2) and g.shape == (910, 2551)
    assert grid_of(xr.Dataset(coords={"lat": g.lat, "lon": g.lon})) == g
    # its cells are the China grid's cells: the window holds exactly the same centres
    china = get_grid("0.005")
    rows, cols = china.window_of(g)
    np.testing.assert_array_equal(china.lat[rows], g.lat)
    np.testing.assert_array_equal(china.lon[cols], g.lon)
    # areas are the same formula on any box: the box's total is the spherical band slice
    band = EARTH_RADIUS_M**2 * np.deg2rad(g.east - g.west) * (
        np.sin(np.deg2rad(g.north)) - np.sin(np.deg2rad(g.south)))
    assert g.cell_area().sum() == pytest.approx(band, rel=1e-10)
    with pytest.raises(ValueError, match="not a multiple"):
        Grid(0.1, 73.05, 17.0, 136.0, 54.0)
    with pytest.raises(ValueError, match="not inside"):
        g.window_of(Grid.covering(0.005, (130, 50, 137, 54)))


def test_grid_pickles_as_its_box_not_its_cached_coordinates():
    """Every task given a grid carries its pickle: a 1 km grid whose lat/lon were computed used to
    add 80 kB per task (62 MiB of graph for the 792 synthetic tiles of 21 years)."""
    import pickle

    from carbonsink.grid import Grid, get_grid

    g = get_grid("0.01")
    g.lat, g.lon, g.row_area       # noqa: B018 — fill the caches
    b = pickle.dumps(g)
    assert len(b) < 300
    h = pickle.loads(b)
    assert h == g and h.name == g.name and np.array_equal(h.lat, g.lat)
    t = Grid(0.05, 100.0, 20.0, 101.5, 21.0)
    assert pickle.loads(pickle.dumps(t)) == t
