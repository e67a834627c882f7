"""Real data end to end: a river-basin layer ingested with the other inputs (polygons or an id
raster), then ``carbonsink run --inputs NAME`` computing every product from the ingested inputs —
the karst sink with the random forest trained on the ingested river chemistry and basins.

Sources are the small real-format files of ``_ingest_files`` (1° grid) plus basins in six
longitude strips, one strip edge inside a grid cell so the majority rule is exercised by hand.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import yaml
from affine import Affine
from click.testing import CliRunner

import _ingest_files as F
from carbonsink.cli import main as cli_main
from carbonsink.grid import get_grid
from carbonsink.io.ingest import ingest, open_inputs
from carbonsink.io.manifest import ManifestError, load_manifest
from carbonsink.io.store import Store
from carbonsink.io.validate import InputError

pytestmark = pytest.mark.integration

GRID = get_grid("1")
YEARS = (2000, 2003)
# basin k (1..6) spans EDGES[k-1]..EDGES[k] degrees east over the whole box
POLY_EDGES = (70.0, 84.0, 96.3, 106.0, 114.0, 124.0, 140.0)   # 96.3: 3 of 10 sub-cells → basin 2
RASTER_EDGES = (70.0, 84.0, 96.25, 106.0, 114.0, 124.0, 140.0)  # 96.25: 4 of 16 pixels → basin 2


def expected_basins(edges, sub: float) -> np.ndarray:
    """Each 1° cell's majority strip from its ``sub``-degree sub-cells (ties: the smaller id)."""
    out = np.zeros(GRID.shape)
    for j, lon in enumerate(GRID.lon):
        centres = lon - 0.5 + sub * (np.arange(round(1 / sub)) + 0.5)
        strip = np.searchsorted(edges, centres, side="right")
        counts = np.bincount(strip, minlength=8)
        out[:, j] = np.argmax(counts)
    return out


def write_basin_polygons(d, name="basins.geojson", ids=None):
    import geopandas as gpd
    from shapely.geometry import box
    ids = list(range(1, 7)) if ids is None else ids
    gdf = gpd.GeoDataFrame({"BASIN_ID": ids, "name": [f"river {i}" for i in range(1, 7)]},
                           geometry=[box(POLY_EDGES[k], F.BOX[1], POLY_EDGES[k + 1], F.BOX[3])
                                     for k in range(6)], crs="EPSG:4326")
    gdf.to_file(os.path.join(d, name), driver="GeoJSON")
    return name


def write_basin_raster(d, name="basins.tif"):
    lon, lat = F._centres(0.25)
    ids = np.searchsorted(RASTER_EDGES, lon, side="right").astype("i2")
    raw = np.broadcast_to(ids, (lat.size, lon.size)).copy()
    raw[:4, :4] = 0                                   # nodata at sea (north-west corner)
    F.write_tif(os.path.join(d, name), raw, Affine(0.25, 0, F.BOX[0], 0, -0.25, F.BOX[3]),
                "EPSG:4326", "int16", nodata=0)
    return name


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("sources"))
    F.write_all(d, YEARS)
    write_basin_polygons(d)
    write_basin_raster(d)
    return d


def _manifest(d, basin: dict | None, name="observed", file="manifest.yaml") -> str:
    m = F.manifest(YEARS, name=name)
    if basin is not None:
        m["variables"]["basin"] = basin
    return F.write_manifest(d, m, name=file)


def _land(ds):
    return ds.land_mask.values > 0


def test_basin_polygons_take_the_majority_id_on_land(sources, tmp_path):
    root = str(tmp_path / "store")
    res = ingest(_manifest(sources, {"source": "basins.geojson", "attribute": "BASIN_ID"}), root)
    ds = open_inputs(root).load()
    land = _land(ds)
    exp = expected_basins(POLY_EDGES, 0.1)
    np.testing.assert_array_equal(ds.basin.values[land], exp[land])
    assert np.isnan(ds.basin.values[~land]).all()
    assert ds.basin.sel(lon=96.5, method="nearest").values[land[:, 23]].tolist() == \
        [3.0] * int(land[:, 23].sum())             # 7 of 10 sub-cells east of 96.3 °E
    assert set(np.unique(ds.basin.values[land])) == {1, 2, 3, 4, 5, 6}
    assert ds.basin.attrs["source_attribute"] == "BASIN_ID"
    assert "basin" in res.published.record["variables"]
    assert "majority" in ds.basin.attrs["method"] or "most" in ds.basin.attrs["method"]


def test_basin_raster_is_resampled_by_mode(sources, tmp_path):
    root = str(tmp_path / "store")
    ingest(_manifest(sources, {"source": "basins.tif"}), root)
    ds = open_inputs(root).load()
    land = _land(ds)
    exp = expected_basins(RASTER_EDGES, 0.25)
    np.testing.assert_array_equal(ds.basin.values[land], exp[land])
    assert ds.basin.attrs["resampling"] == "mode"


def test_basin_is_optional_and_inputs_without_it_have_none(tmp_path, sources):
    root = str(tmp_path / "store")
    res = ingest(_manifest(sources, None), root)
    assert "basin" not in open_inputs(root).data_vars
    assert "basin" not in res.published.record["variables"]


@pytest.mark.parametrize("basin, match", [
    ({"source": "basins.geojson"}, "polygons need `attribute`"),
    ({"source": "basins.tif", "resampling": "average"}, "must be mode or nearest"),
    ({"source": "basins.tif", "temporal": "annual_total"}, "temporal 'annual_total' is not"),
])
def test_bad_basin_manifests_are_rejected_before_reading(sources, basin, match):
    with pytest.raises(ManifestError, match=match) as e:
        load_manifest(_manifest(sources, basin, file="bad.yaml"))
    assert e.value.variable == "basin"


def test_basin_ids_that_are_not_whole_numbers_are_an_error_and_the_store_is_untouched(
        sources, tmp_path):
    name = write_basin_polygons(sources, "bad_basins.geojson", ids=[1, 2, 2.5, -4, 5, 6])
    root = tmp_path / "store"
    root.mkdir()
    with pytest.raises(InputError, match=r"whole basin ids.*2 polygons hold \['2.5', '-4"
                       r"(.0)?'\]") as e:
        ingest(_manifest(sources, {"source": name, "attribute": "BASIN_ID"}, file="bad.yaml"),
               str(root))
    assert e.value.variable == "basin" and e.value.source.endswith("bad_basins.geojson")
    assert list(root.iterdir()) == []


@pytest.fixture(scope="module")
def ingested(sources, tmp_path_factory):
    root = str(tmp_path_factory.mktemp("run") / "store")
    ingest(_manifest(sources, {"source": "basins.geojson", "attribute": "BASIN_ID"}), root)
    return root


PRODUCTS = ("nep", "nep_pei", "karst", "sink", "trends_nep", "attribution_nep", "trends_sink",
            "attribution_sink")


def test_run_computes_every_product_from_ingested_inputs(ingested):
    out = CliRunner().invoke(cli_main, ["run", "--inputs", "observed", "--store", ingested,
                                        "--workers", "1", "--no-progress"])
    assert out.exit_code == 0, out.output
    assert "grid 1deg (37×63), years 2000–2003" in out.output
    assert "ionic-strength random forest: 10-fold CV R²" in out.output
    store = Store(ingested)
    for p in PRODUCTS:
        assert store.latest("products", f"observed_{p}") is not None, p
    assert store.latest("inputs", "regions_observed") is not None
    # regions carry the ingested basins as integers (0 where none) — the forest's training basins
    inputs = open_inputs(ingested).load()
    regions = store.open("inputs", "regions_observed").load()
    land = _land(inputs)
    assert regions.basin.dtype.kind == "i"
    np.testing.assert_array_equal(regions.basin.values[land], inputs.basin.values[land])
    assert (regions.basin.values[~land] == 0).all()
    rec = store.record("products", "observed_karst")
    assert rec["ionic_strength_model"]["ionic_strength_cv_r2"] is not None
    assert "ionic_strength_model.joblib" in rec["attachments"]
    # products equal what the library computes from the same ingested inputs
    from carbonsink.products.nep import compute_nep
    nep = store.open("products", "observed_nep").load()
    ref = compute_nep(open_inputs(ingested), rh_model="soil_tps").nep.load()
    np.testing.assert_allclose(nep.nep.values, ref.values, rtol=1e-6, equal_nan=True)
    karst = store.open("products", "observed_karst").load()
    carb = (inputs.carbonate_fraction.values > 0) & land
    assert (karst.ccs.values[:, carb] > 0).any() and (karst.ccs.values[:, ~carb & land] == 0).all()
    cat = yaml.safe_load(open(os.path.join(ingested, "catalog.yaml")))
    assert {f"observed_{p}" for p in PRODUCTS} <= set(cat["sources"])

    # again: every product reused, nothing recomputed
    again = CliRunner().invoke(cli_main, ["run", "--inputs", "observed", "--store", ingested,
                                          "--workers", "1", "--no-progress"])
    assert again.exit_code == 0, again.output
    assert f"reused {len(PRODUCTS) + 2} of {len(PRODUCTS) + 2} datasets" in again.output


def test_run_without_basins_iterates_the_ionic_strength(sources, tmp_path):
    root = str(tmp_path / "store")
    ingest(_manifest(sources, None, name="nobasins", file="nobasins.yaml"), root)
    out = CliRunner().invoke(cli_main, ["run", "--inputs", "nobasins", "--store", root,
                                        "--prefix", "", "--workers", "1", "--no-progress"])
    assert out.exit_code == 0, out.output
    assert "ionic strength iterated as I = 3[Ca2+]eq" in out.output
    store = Store(root)
    rec = store.record("products", "karst")
    assert "iterated" in rec["description"] and "ionic_strength_model" not in rec
    assert "basin" not in store.open("inputs", "regions_nobasins").data_vars


def test_run_refuses_a_configuration_on_another_grid_or_missing_inputs(ingested, tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("grid: '0.5'\n")
    out = CliRunner().invoke(cli_main, ["run", "--inputs", "observed", "--store", ingested,
                                        "--config", str(cfg), "--no-progress"])
    assert out.exit_code == 2 and "is on grid 1deg, the configuration asks for 0.5deg" in out.output
    out = CliRunner().invoke(cli_main, ["run", "--inputs", "nothing", "--store", ingested])
    assert out.exit_code == 2 and "nothing published under inputs/nothing" in out.output
