"""Traps of real MODIS, SoilGrids and ERA5 layouts that ingest used to fall into silently or with a
traceback — each a clear one-line error naming the variable, the file and the fix, or correct data:

* unit slips that stay inside the physical range (SOC in t C ha-1 declared as kg m-2, ERA5 ``tp``
  declared as a monthly accumulation) — caught by the land-mean plausibility check, with the fix
  computed from the unit table; manifest overrides recorded in the attrs;
* a land-mask raster that exactly covers a study box (it grew a row north and a column west);
* legacy ERA5 NetCDF packed as int16 (raw maximum 32767 by construction);
* a GeoTIFF with a corrupted tile (an 81-line traceback);
* river chemistry naming basins the basin layer does not have (failed 22 s into ``run``);
* sinusoidal CRSs printed as "unknown", holes on land without a place;
* a random forest of ionic strength that explains nothing (CV R² < 0.3) used silently.

Sources are the small real-format files of ``_ingest_files`` (1° grid, 2000–2001).
"""
from __future__ import annotations

import logging
import os
import shutil

import numpy as np
import pytest
from affine import Affine
from click.testing import CliRunner

import _ingest_files as F
from carbonsink.cli import main as cli_main
from carbonsink.grid import get_grid
from carbonsink.io.ingest import ingest, open_inputs
from carbonsink.io.store import Store
from carbonsink.io.validate import InputError

pytestmark = pytest.mark.integration

GRID = get_grid("1")
LON, LAT = np.meshgrid(GRID.lon, GRID.lat)


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    d = tmp_path_factory.mktemp("sources")
    F.write_all(str(d))
    return str(d)


@pytest.fixture
def d(src, tmp_path):
    """A private copy of the good sources for one test to break."""
    out = str(tmp_path / "src")
    shutil.copytree(src, out)
    return out


def _refused(d, m, tmp_path) -> InputError:
    """Ingest ``m`` into an empty store: it must raise an InputError with a one-line message and
    leave the store as it was (nothing written, nothing staged)."""
    root = tmp_path / "store"
    root.mkdir(exist_ok=True)
    before = F.snapshot(root)
    with pytest.raises(InputError) as e:
        ingest(F.write_manifest(d, m), str(root))
    assert "\n" not in str(e.value), str(e.value)
    assert F.snapshot(root) == before, "the store changed"
    return e.value


# --- 4. unit slips inside the physical range ----------------------------------------------------
def test_soc_in_t_per_ha_declared_as_kg_m2_is_refused_with_the_fix(d, tmp_path):
    m = F.manifest()
    m["variables"]["soc"]["units"] = "kg m-2"          # the file holds t C ha-1 (SoilGrids ocs)
    e = _refused(d, m, tmp_path)
    msg = str(e)
    assert e.variable == "soc" and e.source.endswith("soc_0_30cm_tha.tif"), msg
    mean = float(msg.split("land mean ")[1].split(" ")[0])
    assert 40 < mean < 80, msg                          # ~57.6 kg m-2: inside (0, 200), wrong
    assert "is implausible for topsoil (0-30 cm) organic carbon density (0.5–40 kg m-2)" in msg
    assert (f"it would be {mean / 10:.3g} — plausible — if the source were in 't C ha-1' "
            "(declared 'kg m-2'); fix the units of soc in the manifest") in msg, msg
    assert "plausible_range" in msg and "plausibility: skip" in msg


def test_era5_tp_declared_as_a_monthly_accumulation_is_refused_with_the_fix(d, tmp_path):
    m = F.manifest()
    m["variables"]["pr"]["temporal"] = "monthly_accumulation"   # ERA5 tp: mean daily amount
    e = _refused(d, m, tmp_path)
    msg = str(e)
    assert e.variable == "pr" and e.source.endswith("era5land_tp_monthly.nc"), msg
    assert "mm yr-1 is implausible for mean annual precipitation (100–3000 mm yr-1)" in msg
    assert ("— plausible — if temporal were 'daily_mean_flux' rather than "
            "'monthly_accumulation'; fix `temporal` of pr in the manifest") in msg, msg
    found = float(msg.split("land mean ")[1].split(" ")[0])
    fixed = float(msg.split("it would be ")[1].split(" ")[0])
    assert 25 < fixed / found < 35                      # the days of the months, ~30×


def test_plausibility_overrides_are_honoured_and_recorded(d, tmp_path):
    m = F.manifest()
    m["variables"]["soc"].update(units="kg m-2", plausibility="skip")
    root = str(tmp_path / "skip")
    res = ingest(F.write_manifest(d, m), root)
    ds = open_inputs(root)
    assert ds.soc.attrs["plausibility_check"] == "skipped by manifest"
    assert res.published.record["ingest"]["plausibility"]["soc"] == {
        "status": "skipped by manifest"}
    assert "carbonsink.io.plausibility's band 100..3000 mm yr-1" in \
        ds.pr.attrs["plausibility_check"]
    m["variables"]["soc"].pop("plausibility")
    m["variables"]["soc"]["plausible_range"] = [1, 100]
    root = str(tmp_path / "range")
    res = ingest(F.write_manifest(d, m, name="range.yaml"), root)
    rec = res.published.record["ingest"]["plausibility"]["soc"]
    assert rec["band"] == [1, 100] and rec["band_from"] == "manifest" and \
        rec["status"] == "plausible" and 40 < rec["land_mean"] < 80
    assert "manifest's plausible_range 1..100 kg m-2" in \
        open_inputs(root).soc.attrs["plausibility_check"]


# --- 5a. a land mask that exactly covers a study box --------------------------------------------
def test_land_mask_covering_a_study_box_keeps_its_edges(d, tmp_path):
    box = (100.0, 30.0, 110.0, 40.0)                     # west, south, east, north
    ones = np.ones((20, 20), dtype="u1")                 # 0.5° pixels, exactly the box
    F.write_tif(os.path.join(d, "box_land.tif"), ones, Affine(0.5, 0, box[0], 0, -0.5, box[3]),
                "EPSG:4326", "uint8")
    m = F.manifest()
    m["variables"]["land_mask"] = {"source": "box_land.tif"}
    root = str(tmp_path / "store")
    ingest(F.write_manifest(d, m), root)
    land = open_inputs(root).land_mask.values > 0
    inside = (LON > box[0]) & (LON < box[2]) & (LAT > box[1]) & (LAT < box[3])
    assert land.sum() == 100, (GRID.lat[land.any(axis=1)], GRID.lon[land.any(axis=0)])
    np.testing.assert_array_equal(land, inside)


# --- 5b. legacy ERA5 packed int16 ---------------------------------------------------------------
def test_packed_era5_int16_maximum_is_data_not_a_fill_value(d, tmp_path):
    packing = F.write_era5_packed_t2m(d)
    m = F.manifest()
    m["variables"]["tas"] = {"source": "era5_t2m_{year}.nc", "variable": "t2m",
                             "temporal": "monthly_mean"}
    root = str(tmp_path / "store")
    ingest(F.write_manifest(d, m), root)
    ds = open_inputs(root).load()
    land = ds.land_mask.values > 0
    exp = np.stack([F.tas_k(LON, LAT, y, mo) - 273.15 for y in (2000, 2001)
                    for mo in range(1, 13)])
    step = max(s for s, _ in packing.values())
    np.testing.assert_allclose(ds.tas.values[:, land], exp[:, land], rtol=0, atol=step)
    # the warmest pixel (raw 32767) is on land somewhere and kept
    assert np.isfinite(ds.tas.values[:, land]).all()


def test_packed_extreme_without_declared_fills_is_not_turned_into_nodata():
    from carbonsink.io import readers as rd
    packed = rd.Decoding(scale=0.001, offset=280.0, packed=True)
    assert rd.suspicious_fill(-32766, 32767, "int16", packed) == 32767
    msg = rd.fill_message(32767, -32766, 32767, "int16", packed)
    assert "valid_range: [-32767, 32767]" in msg and "by construction" in msg
    assert not msg.split("if it is data")[0].count("nodata"), msg
    declared = rd.Decoding(nodata=(-32767.0,), scale=0.001, offset=280.0, packed=True,
                           file_nodata=(-32767.0,))
    assert rd.suspicious_fill(-32766, 32767, "int16", declared) is None
    # not packed: 32767 is still the classic undeclared fill value
    assert rd.suspicious_fill(0, 32767, "int16", rd.Decoding(file_nodata=(-1.0,))) == 32767
    # scaled without an offset, values in the upper half (SoilGrids-like): 32767 is a fill value
    scaled = rd.Decoding(scale=0.01, packed=True, file_nodata=(-32768.0,))
    assert rd.suspicious_fill(2000, 32767, "int16", scaled) == 32767
    assert "an undeclared fill value: declare it under `nodata`" in \
        rd.fill_message(32767, 2000, 32767, "int16", scaled)
    # MODIS: packed by the file, its fill codes below the top are still caught
    modis = rd.Decoding(nodata=(32767.0,), scale=1e-4, packed=True, file_nodata=(32767.0,))
    assert rd.suspicious_fill(5000, 32766, "int16", modis) == 32766


# --- 5c. a corrupted GeoTIFF tile -----------------------------------------------------------------
def test_corrupted_geotiff_tile_is_an_input_error_naming_file_and_band(d, tmp_path):
    lon, lat = F._centres(0.5)
    v = F.aet_kg_m2(*np.meshgrid(lon, lat), 2001).astype("f4")
    path = os.path.join(d, "et_2001.tif")
    F.write_tif(path, v, Affine(0.5, 0, F.BOX[0], 0, -0.5, F.BOX[3]), "EPSG:4326", "float32",
                nodata=-9999.0, tiled=True, blockxsize=16, blockysize=16, compress="deflate")
    F.corrupt_tile(path, row=2, col=3)               # 31–39°N, 94–102°E: Qinghai, land
    e = _refused(d, F.manifest(), tmp_path)
    msg = str(e)
    assert e.variable == "aet" and e.source == path, msg
    assert "cannot read band 1, rows " in msg and "columns " in msg, msg
    assert "corrupted or truncated" in msg, msg
    out = CliRunner().invoke(cli_main, ["ingest", os.path.join(d, "manifest.yaml"), "--store",
                                        str(tmp_path / "cli")])
    assert out.exit_code == 2 and len(out.output.strip().splitlines()) == 1, out.output
    assert "error: input variable 'aet'" in out.output and "et_2001.tif" in out.output


# --- 5d. river chemistry naming basins the basin layer does not have ------------------------------
def test_river_table_with_basins_absent_from_the_basin_layer_is_refused_at_ingest(d, tmp_path):
    import geopandas as gpd
    from shapely.geometry import box
    edges = (70.0, 90.0, 105.0, 120.0, 140.0)           # 4 basins; the table has basins 1–6
    gdf = gpd.GeoDataFrame({"BASIN_ID": [1, 2, 3, 4]},
                           geometry=[box(edges[k], F.BOX[1], edges[k + 1], F.BOX[3])
                                     for k in range(4)], crs="EPSG:4326")
    gdf.to_file(os.path.join(d, "basins4.geojson"), driver="GeoJSON")
    m = F.manifest()
    m["variables"]["basin"] = {"source": "basins4.geojson", "attribute": "BASIN_ID"}
    e = _refused(d, m, tmp_path)
    msg = str(e)
    assert e.variable == "river_chemistry" and e.source.endswith("river_ions_mg.csv"), msg
    assert "basin ids absent from the basin mask 'basin'" in msg and ": 5, 6" in msg, msg
    assert "basins4.geojson" in msg and "fix basin_id in the table" in msg, msg


# --- 5e, 5f. where: the CRS of a sinusoidal file, the holes on land -----------------------------
def test_sinusoidal_crs_is_printed_as_its_proj_string(d, tmp_path):
    transform, (h, w) = F.sinusoidal_grid()
    for y in (2000, 2001):                              # only the western half of the mosaic
        F.write_tif(os.path.join(d, f"MOD17A3HGF_NPP_{y}.tif"),
                    np.full((h, w // 2), F.NPP_RAW[y], "i2"), transform, F.SINU, "int16",
                    nodata=32767, scale=1e-4, units="kg C m-2 yr-1")
    msg = str(_refused(d, F.manifest(), tmp_path))
    assert "does not cover China" in msg and "in +proj=sinu +lon_0=0" in msg, msg
    assert "unknown" not in msg, msg


def test_holes_on_land_say_where(d, tmp_path):
    raw = F.soc_raw()
    raw[80:100, 120:140] = -32768                         # 30–35°N, 100–105°E: all land
    F.write_tif(os.path.join(d, "soc_0_30cm_tha.tif"), raw, Affine(0.25, 0, 70, 0, -0.25, 55),
                "EPSG:4326", "int16", nodata=-32768, scale=0.01)
    msg = str(_refused(d, F.manifest(), tmp_path))
    assert "has 25 missing (NaN) values on land pixels (holes" in msg, msg
    assert "their cell centres lie within 30.50–34.50°N, 100.50–104.50°E" in msg, msg


# --- 6. a random forest that explains nothing ---------------------------------------------------
@pytest.fixture(scope="module")
def karst_setup(inputs_1deg):
    from carbonsink.regions import region_masks
    from carbonsink.synthetic import make_basins, make_ion_table
    from carbonsink.zonal import cell_area_da

    inputs = inputs_1deg.chunk({"lat": 16, "lon": 16})
    basins = make_basins(GRID, n_basins=40, seed=0)
    table = make_ion_table(inputs, basins, seed=0)
    rng = np.random.default_rng(3)
    for ion in ("ca", "mg", "na", "k", "hco3", "so4", "cl"):   # pure noise: nothing to learn
        table[ion] = rng.lognormal(0.0, 0.8, len(table))
    regions = region_masks(GRID)
    regions["cell_area"] = cell_area_da(regions)
    regions["basin"] = basins
    return inputs, regions, table


@pytest.mark.parametrize("fallback", ["warn", "iterate"])
def test_weak_forest_warns_is_recorded_and_can_fall_back(karst_setup, fallback, tmp_path,
                                                          caplog):
    from carbonsink.config import load_config
    from carbonsink.pipeline import run_karst
    from carbonsink.products.karst import compute_karst

    inputs, regions, table = karst_setup
    store = Store(str(tmp_path / "store"))
    cfg = load_config(store=str(tmp_path / "store"), grid="1", years="2000-2004", env={},
                      ionic_strength_fallback=fallback)
    assert cfg.ionic_strength_min_r2 == 0.3
    with caplog.at_level(logging.WARNING, logger="carbonsink"):
        p, model = run_karst(store, cfg, inputs, regions, table)
    assert model.cv_r2 < 0.3
    warned = [r for r in caplog.records if r.name == "carbonsink" and
              r.levelno == logging.WARNING and "explains little" in r.getMessage()]
    assert len(warned) == 1, caplog.text
    karst = store.open("products", "karst").load()
    note = karst.attrs["ionic_strength_model_warning"]
    assert f"CV R² {model.cv_r2:.3f} < ionic_strength_min_r2 0.3" in note
    assert p.record["ionic_strength_model_warning"] == note
    assert karst.attrs["ionic_strength_cv_r2"] == pytest.approx(model.cv_r2)
    iterated = compute_karst(inputs, None, validate=False).ionic_strength.load()
    land = inputs.land_mask.values > 0
    same = np.allclose(karst.ionic_strength.values[:, land], iterated.values[:, land],
                       rtol=1e-6)
    if fallback == "iterate":
        assert karst.attrs["ionic_strength_method"] == "iterated" and same
        assert "not used" in note and "iterated as I = 3[Ca2+]eq (the random forest's CV R²" \
            in p.record["description"]
    else:
        assert karst.attrs["ionic_strength_method"] == "random_forest" and not same
        assert "used anyway" in note and "random-forest ionic strength" in p.record["description"]
