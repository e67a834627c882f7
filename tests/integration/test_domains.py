"""Study areas: named, box and polygon-file domains, their grids, masks, region sets and totals, and
the demo end to end on a polygon-file domain (issue 10, items 1–2)."""
import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from click.testing import CliRunner
from shapely.geometry import Polygon, box

from carbonsink.config import load_config
from carbonsink.domains import (TRH_SEED_AREA_KM2, clip_area_km2, describe, get_domain)
from carbonsink.grid import EARTH_RADIUS_M, cell_area, get_grid
from carbonsink.regions import china_mask, names, region_masks, region_set_names
from carbonsink.synthetic import make_inputs
from carbonsink.zonal import totals

pytestmark = pytest.mark.integration

# a basin-like polygon over Sichuan–Chongqing–Hubei (two "reaches" split at 108°E)
UPPER = Polygon([(101.0, 27.0), (108.0, 27.5), (108.0, 32.5), (103.0, 33.0), (100.5, 30.0)])
LOWER = Polygon([(108.0, 27.5), (113.5, 28.5), (114.0, 31.5), (108.0, 32.5)])


@pytest.fixture(scope="module")
def basin_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("poly") / "toy_basin.gpkg"
    gdf = gpd.GeoDataFrame({"NAME": ["Toy", "Toy"], "REACH": ["upper", "lower"]},
                           geometry=[UPPER, LOWER], crs="EPSG:4326")
    # stored projected (Albers), as basin files often are: read back in EPSG:4326
    gdf.to_crs("+proj=aea +lat_1=25 +lat_2=47 +lon_0=105 +datum=WGS84").to_file(path)
    return path


def test_named_domains_and_spellings():
    assert get_domain(None).key == "china" and get_domain("China").label == "China"
    for spelling in ("sichuan", "Sichuan", "四川省", "四川"):
        assert get_domain(spelling).key == "sichuan"
    assert get_domain("inner mongolia").key == "inner-mongolia"
    assert get_domain("Three-River Headwaters").key == "three-river-headwaters"
    assert get_domain("bbox:97,24,123,36.0").key == "bbox:97,24,123,36"
    with pytest.raises(ValueError, match="unknown domain 'atlantis'.*bbox:W,S,E,N"):
        get_domain("atlantis")
    with pytest.raises(ValueError, match="bbox:W,S,E,N"):
        get_domain("bbox:1,2,3")
    with pytest.raises(ValueError, match="does not overlap China"):
        get_domain("bbox:-10,40,0,50")


def test_three_river_headwaters_clip():
    d = get_domain("three-river-headwaters")
    # seed 004's box, 89°45′–102°23′E, 31°39′–36°12′N, bounds the clip
    w, s, e, n = d.bounds
    assert 89.74 <= w and e <= 102.39 and 31.64 <= s and n <= 36.21
    # what the clip measures (README): Yushu, Golog, Hainan, Huangnan + Tanggula inside the box
    area = clip_area_km2(d)
    assert area == pytest.approx(372_491, rel=2e-3)
    assert area > TRH_SEED_AREA_KM2   # the seed's 30.25e4 km² is no union of these units
    g = d.grid("0.05")
    assert g.bounds == (89.75, 31.65, 102.4, 36.2)
    # centre-in-polygon cells at 0.05° reproduce the polygon's area within 0.5 %
    assert describe(d, g)["area_km2_cells"] == pytest.approx(area, rel=5e-3)
    mask = d.mask(g)
    china = china_mask(g).values
    assert mask.sum() > 0 and np.all(china[mask > 0] == 1)


def test_polygon_file_domain_and_filter(basin_file):
    whole = get_domain(str(basin_file))
    assert whole.kind == "file" and whole.label == "toy_basin"
    upper = get_domain(f"{basin_file}?REACH=upper")
    assert upper.label == "upper" and upper.bounds[2] == pytest.approx(108.0, abs=1e-6)
    assert whole.fingerprint != upper.fingerprint
    with pytest.raises(ValueError, match="no attribute 'BASIN'.*NAME"):
        get_domain(f"{basin_file}?BASIN=x")
    with pytest.raises(ValueError, match="no feature has REACH in"):
        get_domain(f"{basin_file}?REACH=delta")
    g = whole.grid("0.1")
    assert g.bounds == (100.5, 27.0, 114.0, 33.0)
    # the mask is exactly the centre-in-polygon cells (all on China's land here)
    lon, lat = np.meshgrid(g.lon, g.lat)
    from shapely import contains_xy
    want = contains_xy(UPPER.union(LOWER), lon, lat)
    assert (whole.mask(g) > 0).sum() == pytest.approx(want.sum(), abs=3)


def test_region_sets_restricted_to_domain_and_from_files(basin_file):
    d = get_domain(str(basin_file))
    g = d.grid("0.1")
    sets = ["province", "division", "karst_region", "yangtze_reach",
            {"name": "reach", "path": str(basin_file), "field": "REACH"}]
    r = region_masks(g, d, sets)
    assert region_set_names(r) == ["province", "division", "karst_region", "yangtze_reach",
                                   "reach"]
    # only regions with a cell in the domain, nothing outside the domain
    provinces = set(names(r.province).values())
    assert {"Sichuan", "Chongqing", "Hubei"} <= provinces and "Xinjiang" not in provinces
    assert "SK" in set(names(r.karst_region).values())
    assert set(names(r.reach).values()) == {"lower", "upper"}
    for v in region_set_names(r):
        assert np.all(r[v].values[r.domain_mask.values == 0] == 0)
    # a domain without carbonate-region overlap drops the whole set
    tibet = get_domain("xizang")
    rt = region_masks(tibet.grid("0.5"), tibet, ["division", "yangtze_reach"])
    assert set(names(rt.division).values()) == {"Qinghai-Tibet"}
    assert set(names(rt.yangtze_reach).values()) == {"upper"}
    xj = get_domain("xinjiang")
    assert "yangtze_reach" not in region_masks(xj.grid("0.5"), xj, ["yangtze_reach"])


def test_totals_on_a_domain_equal_hand_sums(basin_file):
    d = get_domain(str(basin_file))
    g = d.grid("0.25")
    mask = d.mask(g)
    flux = np.where(mask > 0, 100.0 + g.lat[:, None] + 0 * g.lon, np.nan)
    da = xr.DataArray(flux[None], dims=("year", "lat", "lon"),
                      coords={"year": [2001], "lat": g.lat, "lon": g.lon},
                      attrs={"units": "g m-2 yr-1", "domain_name": d.label})
    r = region_masks(g, d, [{"name": "reach", "path": str(basin_file), "field": "REACH"}])
    t = totals(da, r[region_set_names(r)])
    dom = t[t.region_set == "domain"].iloc[0]
    assert dom.region == "toy_basin"
    # hand sum with spherical areas, row by row
    areas = cell_area(g.lat + g.res / 2, g.lat - g.res / 2, g.res)
    hand = sum(np.nansum(flux[i]) * areas[i] for i in range(g.nlat)) * 1e-12
    assert dom.total_tg == pytest.approx(hand, rel=1e-12)
    assert EARTH_RADIUS_M == 6_371_007.2
    reach = t[t.region_set == "reach"].set_index("region")
    assert reach.total_tg.sum() == pytest.approx(hand, rel=1e-9)


def test_synthetic_domain_inputs_are_the_china_cells(basin_file):
    d = get_domain(str(basin_file))
    g = d.grid("0.25")
    china = make_inputs("0.25", (2000, 2001))
    local = make_inputs(g, (2000, 2001), land=d.mask(g))
    rows, cols = get_grid("0.25").window_of(g)
    cut = china.isel(lat=rows, lon=cols).npp.values
    inside = d.mask(g) > 0
    np.testing.assert_array_equal(local.npp.values[:, inside], cut[:, inside])
    assert np.isnan(local.npp.values[:, ~inside]).all()


def test_config_carries_domain_and_region_files(basin_file, tmp_path):
    cfg = load_config(domain=str(basin_file), grid="0.1",
                      region_sets=["province", {"name": "reach", "path": str(basin_file),
                                                "field": "REACH"}])
    assert cfg.domain == f"file:{basin_file}" and cfg.grid_obj().bounds == (100.5, 27, 114, 33)
    h = cfg.config_hash()
    # the same polygons in another file: same content, same hash; edited polygons: another hash
    other = tmp_path / "moved.gpkg"
    other.write_bytes(basin_file.read_bytes())
    assert load_config(domain=str(other), grid="0.1").domain_obj().fingerprint == \
        cfg.domain_obj().fingerprint
    other.unlink()
    gpd.GeoDataFrame({"NAME": ["Toy"]}, geometry=[box(101, 27, 108, 32)],
                     crs="EPSG:4326").to_file(other)
    assert load_config(domain=str(other), grid="0.1").domain_obj().fingerprint != \
        cfg.domain_obj().fingerprint
    assert h == cfg.config_hash()
    # a second layer: the file is ambiguous until one is named
    gpd.GeoDataFrame({"NAME": ["Box"]}, geometry=[box(100, 25, 110, 30)],
                     crs="EPSG:4326").to_file(other, layer="boxes")
    with pytest.raises(ValueError, match=r"has 2 layers.*#LAYER"):
        get_domain(str(other))
    assert get_domain(f"{other}#boxes").bounds == (100.0, 25.0, 110.0, 30.0)


def test_demo_on_a_polygon_domain_end_to_end(basin_file, tmp_path):
    """`carbonsink demo --domain <file> --resolution 0.25`: products hold exactly the domain's cells,
    their totals equal hand sums with spherical areas, the summary names the domain."""
    store = tmp_path / "store"
    r = CliRunner().invoke(main_cli(), ["demo", "--store", str(store), "--domain",
                                        f"{basin_file}", "--resolution", "0.25",
                                        "--years", "2000-2006", "--workers", "1",
                                        "--no-progress"])
    assert r.exit_code == 0, r.output + str(r.exception)
    assert "domain toy_basin, grid 0.25deg (24×54)" in r.output
    assert "nep: NEP: toy_basin mean " in r.output
    from carbonsink.io.store import Store
    st = Store(str(store))
    nep = st.open("products", "nep")
    d = get_domain(str(basin_file))
    g = d.grid("0.25")
    assert nep.sizes["lat"] == g.nlat and nep.sizes["lon"] == g.nlon
    assert float(nep.lat[0]) == g.lat[0] and float(nep.lon[0]) == g.lon[0]
    inside = d.mask(g) > 0
    valid = nep.nep.notnull().values
    assert np.all(valid == inside[None])
    assert nep.attrs["domain"] == d.key and nep.attrs["domain_name"] == "toy_basin"
    rec = st.record("products", "nep", st.latest("products", "nep"))
    table = pd.read_csv(st.uri(rec["attachments"]["totals.csv"]).removeprefix("file://"))
    dom = table[table.region_set == "domain"]
    assert set(dom.region) == {"toy_basin"}
    areas = g.row_area[:, None]
    for year in (2000, 2006):
        hand = float(np.nansum(nep.nep.sel(year=year).values.astype("f8") * areas)) * 1e-12
        assert dom[dom.year == year].total_tg.iloc[0] == pytest.approx(hand, abs=1e-3)  # CSV: 3 dp
    assert "Xinjiang" not in set(table.region)
    assert "Southern karst (SK)" in set(table.region)
    # the catalog says which study area each dataset covers
    import yaml
    meta = yaml.safe_load((store / "catalog.yaml").read_text())["sources"]["nep"]["metadata"]
    assert meta["domain_name"] == "toy_basin" and meta["grid_bbox"] == list(g.bounds)


def main_cli():
    from carbonsink.cli import main
    return main


def test_regional_ingest_needs_no_land_mask_and_runs(basin_file, tmp_path):
    """An ingest manifest with ``domain:`` (a polygon file relative to the manifest) reads only the
    domain's box, takes the clip as the land mask, and `run` computes on it."""
    import shutil

    import _ingest_files as F
    from carbonsink.io.ingest import ingest, open_inputs
    from carbonsink.pipeline import run_products

    src = tmp_path / "src"
    F.write_all(str(src))
    shutil.copy(basin_file, src / "basin.gpkg")
    m = F.manifest(grid="0.25")
    m["domain"] = "basin.gpkg?REACH=upper"
    # the test SOC file's sprinkled nodata pixels are whole cells at 0.25°
    m["variables"]["soc"]["fill_on_land"] = "nearest"
    root = str(tmp_path / "store")
    result = ingest(F.write_manifest(str(src), m), root)
    assert result.action == "created"
    ds = open_inputs(root).load()
    d = get_domain(f"{src / 'basin.gpkg'}?REACH=upper")
    g = d.grid("0.25")
    assert (ds.sizes["lat"], ds.sizes["lon"]) == g.shape and float(ds.lon[0]) == g.lon[0]
    np.testing.assert_array_equal(ds.land_mask.values, d.mask(g))
    inside = d.mask(g) > 0
    # MODIS sinusoidal NPP: the year's constant on every domain cell, NaN outside
    want = np.array([[F.NPP_RAW[y] * 0.1] for y in F.YEARS])
    np.testing.assert_allclose(ds.npp.values[:, inside], np.broadcast_to(want, (2, inside.sum())),
                               rtol=1e-6)
    assert np.isnan(ds.npp.values[:, ~inside]).all()
    assert ds.attrs["domain_name"] == "upper" and ds.attrs["domain_area_km2"] > 0

    cfg = load_config(store=root, domain=str(src / "basin.gpkg") + "?REACH=upper", grid="0.25",
                      years=f"{F.YEARS[0]}-{F.YEARS[1]}")
    out = run_products(cfg, "observed", rh_models=("soil_tps",))
    nep = out.tables["nep"]
    dom = nep[nep.region_set == "domain"].iloc[0]
    assert dom.region == "upper"
    area = float((inside * g.row_area[:, None]).sum()) / 1e6
    assert dom.area_km2 == pytest.approx(area, rel=1e-6)
    # a config for another domain refuses these inputs
    with pytest.raises(Exception, match="covers the domain 'upper'"):
        run_products(load_config(store=root, domain="sichuan", grid="0.25",
                                 years=f"{F.YEARS[0]}-{F.YEARS[1]}"), "observed")


@pytest.mark.slow
def test_three_river_headwaters_at_500m(tmp_path):
    """Seed 004's study area at MODIS 500 m (0.005°) on 2 workers: only the domain's box is computed
    and the summary names it (the full 2000–2020 run's figures are in the README)."""
    store = tmp_path / "store"
    r = CliRunner().invoke(main_cli(), ["demo", "--store", str(store), "--domain",
                                        "three-river-headwaters", "--resolution", "0.005",
                                        "--years", "2000-2006", "--workers", "2", "--no-progress"])
    assert r.exit_code == 0, r.output + str(r.exception)
    assert "domain Three-River Headwaters, grid 0.005deg (910×2527)" in r.output
    assert "nep: NEP: Three-River Headwaters mean " in r.output
    from carbonsink.io.store import Store
    nep = Store(str(store)).open("products", "nep")
    d = get_domain("three-river-headwaters")
    inside = d.mask(d.grid("0.005")) > 0
    assert nep.sizes == {"year": 7, "lat": 910, "lon": 2527}
    assert np.array_equal(nep.nep.isel(year=0).notnull().values, inside)


def test_region_set_order_does_not_depend_on_variable_order():
    """A store may list a dataset's variables in any order (directory listing): the tables'
    region-set order comes from the configuration, recorded in the regions' attrs."""
    r = region_masks("1", "china", ["karst_region", "province", "division"])
    assert region_set_names(r) == ["karst_region", "province", "division"]
    shuffled = r[["division", "province", "karst_region", "domain_mask"]]
    shuffled.attrs = dict(r.attrs)
    assert region_set_names(shuffled) == ["karst_region", "province", "division"]
