"""Ingest of real-format files (issue 5): values by hand, provenance, incremental append, the pipeline
on ingested inputs, the CLI, and bad input — each a clear error, the store untouched.

The source files are built by ``_ingest_files`` (GeoTIFF in MODIS sinusoidal and EPSG:4326 with
scale/nodata, NetCDF in K and m with ascending latitudes and 0–360 longitudes, GeoJSON lithology, an
ion CSV in mg L-1) for the 1° grid and 2000–2001; one good ingest per module is reused by the checks.
"""
from __future__ import annotations

import glob
import hashlib
import io
import os
import re
import shutil

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from affine import Affine
from click.testing import CliRunner

import _ingest_files as F
from carbonsink.cli import main as cli_main
from carbonsink.grid import get_grid
from carbonsink.io.ingest import ingest, open_inputs
from carbonsink.io.manifest import ManifestError
from carbonsink.io.store import Store
from carbonsink.io.validate import InputError
from carbonsink.kernels.respiration import days_in_month

pytestmark = pytest.mark.integration

GRID = get_grid("1")
LON, LAT = np.meshgrid(GRID.lon, GRID.lat)
RTOL = 1e-6


# --- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def src(tmp_path_factory):
    """The good source files and their manifest (relative paths)."""
    d = tmp_path_factory.mktemp("sources")
    F.write_all(str(d))
    return str(d), F.write_manifest(str(d), F.manifest())


@pytest.fixture(scope="module")
def good(tmp_path_factory, src):
    """A store holding one good ingest of ``src``; the result and the opened dataset (loaded)."""
    root = str(tmp_path_factory.mktemp("good") / "store")
    result = ingest(src[1], root)
    return root, result, open_inputs(root).load()


def _land(ds):
    return ds["land_mask"].values > 0


def _close(actual, expected, land, rtol=RTOL):
    a = np.asarray(actual, dtype="f8")
    e = np.asarray(expected, dtype="f8")
    np.testing.assert_allclose(a[..., land], e[..., land], rtol=rtol, atol=0)
    assert np.isnan(a[..., ~land]).all(), "cells outside China's land must be NaN"


# --- values by hand ---------------------------------------------------------------------------
def test_values_land_in_canonical_units_as_computed_by_hand(good):
    _, result, ds = good
    land = _land(ds)
    assert result.action == "created"
    from carbonsink.regions import china_mask
    np.testing.assert_array_equal(ds.land_mask.values, china_mask(GRID).values)

    # npp: MODIS sinusoidal int16 × 1e-4 kg C m-2 → g; fill codes (file 32767 + manifest
    # 32761–32766) are skipped by the area average, so each cell is exactly the year's constant
    _close(ds.npp, np.stack([np.full(GRID.shape, F.NPP_RAW[y] * 1e-4 * 1e3) for y in (2000, 2001)]),
           land)
    # tas: K (float64) on 0.5° with ascending latitude; the area average of a linear field over a
    # 1° cell (2×2 pixels) is its centre value
    exp = np.stack([F.tas_k(LON, LAT, y, m) - 273.15 for y in (2000, 2001) for m in range(1, 13)])
    _close(ds.tas, exp, land)
    # pr: ERA5-Land-like m per day on a 2° 0–360 grid (coarser → bilinear, exact for a linear
    # field), × days of each month (leap February 2000) × 1000
    dim = days_in_month([2000, 2001])
    exp = np.stack([F.pr_m_per_day(LON, LAT, y, m) for y in (2000, 2001) for m in range(1, 13)])
    _close(ds.pr, exp * 1000.0 * dim[:, None, None], land)
    # rsds: J m-2 daily means × days, summed over the 12 months, × 1e-6 → MJ m-2 yr-1
    exp = np.stack([sum(F.ssrd_j_per_day(LON, LAT, y, m) * days_in_month([y])[m - 1]
                        for m in range(1, 13)) * 1e-6 for y in (2000, 2001)])
    _close(ds.rsds, exp, land)
    # aet: float32 kg m-2 (= mm) per year on 0.5°
    _close(ds.aet, np.stack([F.aet_kg_m2(LON, LAT, y) for y in (2000, 2001)]), land)
    # soc: EPSG:4326 int16 0.25°, scale 0.01 t C ha-1, nodata -32768 skipped; × 0.1 → kg m-2:
    # the mean of the valid decoded pixels of each 4×4 block
    raw = F.soc_raw().astype("f8")
    raw[raw == -32768] = np.nan
    r0, c0 = int((F.BOX[3] - GRID.north) / 0.25), int((GRID.west - F.BOX[0]) / 0.25)
    blocks = raw[r0:r0 + 4 * GRID.nlat, c0:c0 + 4 * GRID.nlon].reshape(GRID.nlat, 4, GRID.nlon, 4)
    _close(ds.soc, np.nanmean(blocks, axis=(1, 3)) * 0.01 * 0.1, land)
    # carbonate fraction: 1 inside the carbonate block, ½ in the half-covered cell, 0 elsewhere
    exp = np.zeros(GRID.shape)
    b = F.CARB_BLOCK
    exp[(LON > b[0]) & (LON < b[2]) & (LAT > b[1]) & (LAT < b[3])] = 1.0
    exp[np.isclose(LON, 112.5) & np.isclose(LAT, 36.5)] = 0.5
    _close(ds.carbonate_fraction, exp, land)


def test_ion_table_converted_to_mmol(good):
    root, result, _ = good
    store = Store(root)
    rec = store.record("inputs", "observed")
    table = pd.read_csv(io.BytesIO(store.read_bytes(rec["attachments"]["river_chemistry.csv"])))
    raw = F.ion_table_mg()
    assert list(table.columns) == ["basin_id", "year", "ca", "mg", "na", "k", "hco3", "so4", "cl"]
    for ion, col in F.ION_NAMES.items():
        np.testing.assert_allclose(table[ion], raw[col] / F.ION_MOLAR[ion], rtol=1e-5)
    assert table.basin_id.tolist() == raw.station.tolist()


def test_cf_attrs_provenance_and_catalog(good, src):
    root, result, ds = good
    assert ds.attrs["Conventions"] == "CF-1.10"
    assert ds.attrs["ingest_manifest"] == src[1]
    assert len(ds.attrs["ingest_manifest_sha256"]) == 64
    assert ds.tas.attrs["units"] == "degC" and ds.tas.attrs["source_units"] == "K"
    assert ds.tas.attrs["cell_methods"] == "time: mean"
    assert ds.pr.attrs["resampling"] == "bilinear" and ds.tas.attrs["resampling"] == "average"
    assert "× days in the month × 1000" in ds.pr.attrs["conversion"]
    assert ds.npp.attrs["source_crs"] != "EPSG:4326" and "32761" in ds.npp.attrs["decoding"]
    assert ds.npp.attrs["standard_name"].startswith("net_primary_productivity")
    rec = Store(root).record("inputs", "observed")
    ing = rec["ingest"]
    assert ing["manifest_sha256"] == ds.attrs["ingest_manifest_sha256"]
    npp_files = ing["sources"]["npp"]
    assert [os.path.basename(f["path"]) for f in npp_files] == [
        "MOD17A3HGF_NPP_2000.tif", "MOD17A3HGF_NPP_2001.tif"]
    for f in npp_files:
        assert f["size"] == os.path.getsize(f["path"])
        with open(f["path"], "rb") as fh:
            assert f["digest"] == "sha256:" + hashlib.sha256(fh.read()).hexdigest()
    assert ing["sources"]["pr"][0]["steps"][:2] == ["2000-01", "2000-02"]
    # stored one year per chunk along time, so years can be appended
    z = xr.open_zarr(Store(root).path(rec["path"]), consolidated=False)
    assert z.tas.encoding["chunks"][0] == 12 and z.npp.encoding["chunks"][0] == 1
    import yaml
    cat = yaml.safe_load(open(os.path.join(root, "catalog.yaml")))
    assert cat["sources"]["observed"]["metadata"]["version"] == result.version
    assert "observed_river_chemistry" in cat["sources"]


def test_rerun_does_nothing_and_says_so(good, src, tmp_path):
    root = str(tmp_path / "store")
    shutil.copytree(good[0], root)
    before = F.snapshot(root)
    r = ingest(src[1], root)
    assert r.action == "unchanged" and r.version == good[1].version
    assert "nothing to do" in r.message
    assert F.snapshot(root) == before
    out = CliRunner().invoke(cli_main, ["ingest", src[1], "--store", root])
    assert out.exit_code == 0 and "nothing to do" in out.output, out.output
    assert F.snapshot(root) == before


def test_append_a_year_relinks_earlier_chunks(tmp_path):
    d = str(tmp_path / "src")
    F.write_all(d)
    F.write_pr(d, name="tp_{year}.nc")           # one file per year: appendable
    m = F.manifest()
    m["variables"]["pr"]["source"] = "tp_{year}.nc"
    root = str(tmp_path / "store")
    first = ingest(F.write_manifest(d, m), root)
    v1 = first.version
    old_files = {f: os.stat(f) for f in glob.glob(f"{root}/inputs/observed/{v1}.zarr/**",
                                                   recursive=True) if os.path.isfile(f)}
    for write in (F.write_npp, F.write_tas, F.write_rsds, F.write_aet):
        write(d, (2002, 2002))
    F.write_pr(d, (2002, 2002), name="tp_{year}.nc")
    m["years"] = "2000-2002"
    path = F.write_manifest(d, m)
    assert ingest(path, root, dry_run=True).action == "would-append"
    second = ingest(path, root)
    assert second.action == "appended" and second.new_years == [2002], second.message
    assert "wrote 2002" in second.message
    v2 = second.version
    # the earlier version is untouched, and every data chunk of it is the same file in the new one
    # (Zarr v2 chunk keys: <var>/<i>.<j>[.<k>])
    data_chunks = [f for f in old_files if re.search(r"\.zarr/(npp|tas|pr|rsds|aet|soc|"
                                                     r"carbonate_fraction|land_mask)/\d+(\.\d+)*$",
                                                     f)]
    assert len(data_chunks) >= 8 and second.reused_chunks == len(data_chunks)
    for f, st in old_files.items():
        now = os.stat(f)
        assert (now.st_mtime_ns, now.st_size) == (st.st_mtime_ns, st.st_size), f
    for f in data_chunks:
        new = os.stat(f.replace(v1, v2))
        assert new.st_ino == old_files[f].st_ino and new.st_mtime_ns == old_files[f].st_mtime_ns
    # the new year was written as new chunks (time chunk index 2 / year chunk index 2)
    assert os.path.isfile(f"{root}/inputs/observed/{v2}.zarr/tas/2.0.0")
    assert os.path.isfile(f"{root}/inputs/observed/{v2}.zarr/npp/2.0.0")
    ds = open_inputs(root).load()
    assert ds.sizes["year"] == 3 and ds.sizes["time"] == 36
    land = _land(ds)
    _close(ds.npp.sel(year=2002), np.full(GRID.shape, F.NPP_RAW[2002] * 0.1), land)
    exp = np.stack([F.tas_k(LON, LAT, y, mo) - 273.15 for y in (2000, 2001, 2002)
                    for mo in range(1, 13)])
    _close(ds.tas, exp, land)
    assert Store(root).versions("inputs", "observed") == [v1, v2]
    # an appended version's record is written by the same commit step as any publish
    assert set(Store(root).record("inputs", "observed", v2)) >= set(
        Store(root).record("inputs", "observed", v1))
    # the appended version looks like a fresh one: same coordinates and variable attrs
    before = Store(root).open("inputs", "observed", v1)
    assert set(ds.coords) == set(before.coords)
    for var in ds.data_vars:
        assert set(ds[var].attrs) == set(before[var].attrs), var
        assert ds[var].attrs.get("grid_mapping") == before[var].attrs.get("grid_mapping")
    assert ds.npp.attrs["source_files"] == 3 and before.npp.attrs["source_files"] == 2
    # the same manifest again: nothing to do
    assert ingest(path, root).action == "unchanged"
    # an earlier year's file changes: everything is rewritten, and the reason says which
    F.write_aet(d, (2000, 2000))
    os.utime(os.path.join(d, "et_2000.tif"))
    with open(os.path.join(d, "et_2000.tif"), "ab") as f:
        f.write(b"\0")                           # a different checksum
    assert ingest(path, root, dry_run=True).action == "would-rewrite"
    third = ingest(path, root)
    assert third.action == "rewritten" and "aet: the source of 2000 changed" in third.reason


def test_bad_appended_year_leaves_store_unchanged(tmp_path):
    d = str(tmp_path / "src")
    F.write_all(d)
    F.write_pr(d, (2000, 2002), name="tp_{year}.nc")
    m = F.manifest()
    m["variables"]["pr"]["source"] = "tp_{year}.nc"
    root = str(tmp_path / "store")
    ingest(F.write_manifest(d, m), root)
    for write in (F.write_npp, F.write_tas, F.write_rsds):
        write(d, (2002, 2002))
    lon, lat = F._centres(0.5)
    v = F.aet_kg_m2(*np.meshgrid(lon, lat), 2002).astype("f4")
    v[40:45, 60:65] = -9999.0                    # over land, and the file declares no nodata
    F.write_tif(os.path.join(d, "et_2002.tif"), v, Affine(0.5, 0, 70, 0, -0.5, 55), "EPSG:4326",
                "float32")
    m["years"] = "2000-2002"
    before = F.snapshot(root)
    with pytest.raises(InputError, match=r"raw value -9999 .*undeclared fill value") as e:
        ingest(F.write_manifest(d, m), root)
    assert e.value.variable == "aet" and e.value.source.endswith("et_2002.tif")
    assert F.snapshot(root) == before


def test_sources_through_fsspec_urls(good, src, tmp_path):
    """The same files behind a URL (memory:// here; s3:// takes the same code path) give the same
    inputs: both read from a local copy keyed by URL and ETag (readers._local_path)."""
    import fsspec
    fs = fsspec.filesystem("memory")
    prefix = f"/ingest-test-{os.getpid()}-{tmp_path.name}"
    for name in os.listdir(src[0]):
        with open(os.path.join(src[0], name), "rb") as f:
            fs.pipe(f"{prefix}/{name}", f.read())
    m = F.manifest()
    for spec in list(m["variables"].values()) + list(m["tables"].values()):
        spec["source"] = f"memory://{prefix}/{spec['source']}"
    root = str(tmp_path / "store")
    try:
        result = ingest(F.write_manifest(str(tmp_path), m), root)
        ds = open_inputs(root).load()
        assert result.action == "created"
        assert result.published.record["ingest"]["sources"]["npp"][0]["path"].startswith(
            "memory://")
        for var in ("npp", "tas", "pr", "rsds", "aet", "soc", "carbonate_fraction"):
            np.testing.assert_allclose(ds[var].values, good[2][var].values, rtol=1e-6,
                                       equal_nan=True)
    finally:
        fs.rm(prefix, recursive=True)


def test_holes_on_land_filled_from_the_nearest_cell_when_asked(src, tmp_path):
    """A reanalysis that leaves a land cell empty (its land-sea mask): an error by default, filled
    from the nearest cell with data with ``fill_on_land: nearest`` (counted in the record)."""
    d = str(tmp_path / "src")
    shutil.copytree(src[0], d)

    def holed(lon, lat, year, month):
        v = F.tas_k(lon, lat, year, month)
        return np.where((lon > 104) & (lon < 105) & (lat > 34) & (lat < 35), np.nan, v)
    for y in (2000, 2001):
        _tas_file(d, y, field=holed)
    m = F.manifest()
    with pytest.raises(InputError, match=r"has 1 missing \(NaN\) values on land pixels in "
                                         r"2000-01 .*fill_on_land"):
        ingest(F.write_manifest(d, m), str(tmp_path / "store1"))
    m["variables"]["tas"]["fill_on_land"] = "nearest"
    root = str(tmp_path / "store2")
    result = ingest(F.write_manifest(d, m), root)
    assert result.published.record["ingest"]["filled_on_land"] == {"tas": 24}
    ds = open_inputs(root).load()
    i, j = int(np.argmin(np.abs(GRID.lat - 34.5))), int(np.argmin(np.abs(GRID.lon - 104.5)))
    neighbours = [ds.tas.values[:, i + di, j + dj] for di, dj in ((-1, 0), (1, 0), (0, -1),
                                                                   (0, 1))]
    assert any(np.array_equal(ds.tas.values[:, i, j], n) for n in neighbours)
    assert "nearest cell with data" in ds.tas.attrs["fill_on_land_note"]


def test_land_mask_from_a_raster(src, good, tmp_path):
    """land_mask: a 0/1 raster instead of cnmaps (mode resampling from a finer grid)."""
    from carbonsink.regions import china_mask
    d = str(tmp_path / "src")
    shutil.copytree(src[0], d)
    mask = np.repeat(np.repeat(china_mask(GRID).values, 2, axis=0), 2, axis=1)
    F.write_tif(os.path.join(d, "land.tif"), mask, Affine(0.5, 0, GRID.west, 0, -0.5, GRID.north),
                "EPSG:4326", "uint8")
    m = F.manifest()
    m["variables"]["land_mask"] = {"source": "land.tif"}
    ds = open_inputs(ingest(F.write_manifest(d, m), str(tmp_path / "store")).uri.rsplit(
        "/inputs/", 1)[0]).load()
    np.testing.assert_array_equal(ds.land_mask.values, china_mask(GRID).values)
    assert ds.land_mask.attrs["resampling"] == "mode"
    np.testing.assert_allclose(ds.tas.values, good[2].tas.values, equal_nan=True)


# --- the pipeline on ingested inputs ------------------------------------------------------------
def _write_synthetic(d, ds):
    """The synthetic canonical inputs written as real-format files in source units."""
    years = ds.year.values
    up = lambda a: np.repeat(np.repeat(np.asarray(a, "f8"), 2, axis=-2), 2, axis=-1)  # noqa: E731
    t05 = Affine(0.5, 0, GRID.west, 0, -0.5, GRID.north)
    t1 = Affine(1.0, 0, GRID.west, 0, -1.0, GRID.north)
    for i, y in enumerate(years):
        F.write_tif(os.path.join(d, f"npp_{y}.tif"), up(ds.npp.values[i]) / 1000.0, t05,
                    "EPSG:4326", "float64", nodata=float("nan"))
        F.write_tif(os.path.join(d, f"aet_{y}.tif"), ds.aet.values[i], t1, "EPSG:4326",
                    "float32", nodata=float("nan"))
        sl = slice(12 * i, 12 * i + 12)
        dim = days_in_month([y])
        times = F.months(y)
        F.write_nc(os.path.join(d, f"tas_{y}.nc"), "t2m", ds.tas.values[sl].astype("f8") + 273.15,
                   GRID.lat, GRID.lon, times, "K", dtype="f8")
        F.write_nc(os.path.join(d, f"pr_{y}.nc"), "pr",
                   ds.pr.values[sl].astype("f8") / (dim * 86400.0)[:, None, None],
                   GRID.lat, GRID.lon, times, "kg m-2 s-1", dtype="f8")
        secs = dim.sum() * 86400.0
        F.write_nc(os.path.join(d, f"rsds_{y}.nc"), "srad",
                   np.repeat(ds.rsds.values[i][None].astype("f8") * 1e6 / secs, 12, axis=0),
                   GRID.lat, GRID.lon, times, "W m-2", dtype="f8")
    F.write_tif(os.path.join(d, "soc.tif"), ds.soc.values.astype("f8") * 10.0, t1, "EPSG:4326",
                "float64", nodata=float("nan"), units="t C ha-1")
    F.write_tif(os.path.join(d, "carbonate.tif"), up(ds.carbonate_fraction.values) * 100.0, t05,
                "EPSG:4326", "float64", nodata=float("nan"))
    m = {"name": "observed", "grid": "1", "years": f"{years[0]}-{years[-1]}", "variables": {
        "npp": {"source": "npp_{year}.tif", "units": "kg C m-2 yr-1"},
        "tas": {"source": "tas_{year}.nc", "variable": "t2m"},
        "pr": {"source": "pr_{year}.nc", "variable": "pr", "temporal": "monthly_mean"},
        "rsds": {"source": "rsds_{year}.nc", "variable": "srad", "temporal": "monthly_mean"},
        "aet": {"source": "aet_{year}.tif", "units": "mm yr-1"},
        "soc": {"source": "soc.tif"},
        "carbonate_fraction": {"source": "carbonate.tif", "units": "%"}}}
    return F.write_manifest(d, m)


def test_nep_runs_on_ingested_inputs_exactly_as_on_synthetic(tmp_path, inputs_1deg):
    from carbonsink.config import load_config
    from carbonsink.pipeline import run_nep
    from carbonsink.products.nep import compute_nep
    from carbonsink.regions import region_masks
    from carbonsink.zonal import cell_area_da

    synthetic = inputs_1deg.sel(year=[2000, 2001]).isel(time=slice(0, 24))
    d = str(tmp_path / "src")
    os.makedirs(d)
    root = str(tmp_path / "store")
    result = ingest(_write_synthetic(d, synthetic), root)
    assert result.action == "created"
    ingested = open_inputs(root)
    land = _land(synthetic)
    for var in ("npp", "tas", "pr", "rsds", "aet", "soc", "carbonate_fraction"):
        _close(ingested[var].values, synthetic[var].values, land, rtol=1e-6)
    np.testing.assert_array_equal(ingested.land_mask.values, synthetic.land_mask.values)
    for model in ("soil_tps", "pei"):
        a = compute_nep(ingested, rh_model=model).compute()
        b = compute_nep(synthetic, rh_model=model).compute()
        np.testing.assert_allclose(a.nep.values, b.nep.values, rtol=2e-5, atol=1e-3,
                                   equal_nan=True)
    # the pipeline's own NEP step on the published inputs, with its totals table
    store = Store(root)
    cfg = load_config(store=root, grid="1", years="2000-2001", env={})
    regions = region_masks(GRID)
    regions["cell_area"] = cell_area_da(regions)
    p = run_nep(store, cfg, open_inputs(store), regions, rh_model="soil_tps")
    nep = store.open("products", "nep").nep.values
    np.testing.assert_allclose(nep, compute_nep(synthetic).nep.values, rtol=2e-5, atol=1e-3,
                               equal_nan=True)
    assert "totals.csv" in p.record["attachments"]


# --- the CLI ------------------------------------------------------------------------------------
def test_cli_ingest_and_user_errors(src, tmp_path):
    root = str(tmp_path / "store")
    out = CliRunner().invoke(cli_main, ["ingest", src[1], "--store", root, "--dry-run"])
    assert out.exit_code == 0 and "dry run: would create inputs/observed" in out.output
    assert not os.path.exists(os.path.join(root, "inputs"))
    out = CliRunner().invoke(cli_main, ["ingest", src[1], "--store", root, "--name", "obs2"])
    assert out.exit_code == 0, out.output
    assert "created inputs/obs2 version" in out.output and "MB/s" in out.output
    bad = os.path.join(str(tmp_path), "bad.yaml")
    with open(bad, "w") as f:
        f.write("grid: '1'\nyears: 2000-2001\nvariables: {}\n")
    out = CliRunner().invoke(cli_main, ["ingest", bad, "--store", root])
    assert out.exit_code == 2 and "error: " in out.output and "no source for canonical" in \
        out.output


# --- bad input ----------------------------------------------------------------------------------
def _tas_file(d, year=2001, *, times=None, lat=None, lon=None, units="K", field=F.tas_k):
    glon, glat = F.tas_grid()
    lon = glon if lon is None else lon
    lat = glat if lat is None else lat
    times = F.months(year) if times is None else times
    LON_, LAT_ = np.meshgrid(lon, lat)
    v = np.stack([field(LON_, LAT_, t.year, t.month) for t in times])
    F.write_nc(os.path.join(d, f"cmfd_temp_{year}.nc"), "temp", v, lat, lon,
               pd.DatetimeIndex(times), units, dtype="f8")


def _aet_file(d, year=2001, res=0.5, box=F.BOX, nodata=-9999.0, poke=None):
    lon, lat = F._centres(res, box)
    v = F.aet_kg_m2(*np.meshgrid(lon, lat), year).astype("f4")
    if poke is not None:
        poke(v)
    F.write_tif(os.path.join(d, f"et_{year}.tif"), v, Affine(res, 0, box[0], 0, -res, box[3]),
                "EPSG:4326", "float32", nodata=nodata)


def _soc_file(d, *, crs="EPSG:4326", nodata=-32768, poke=None):
    raw = F.soc_raw()
    if poke is not None:
        poke(raw)
    F.write_tif(os.path.join(d, "soc_0_30cm_tha.tif"), raw, Affine(0.25, 0, 70, 0, -0.25, 55), crs,
                "int16", nodata=nodata, scale=0.01)


def _set(m, var, **kv):
    for k, v in kv.items():
        if v is None:
            m["variables"][var].pop(k, None)
        else:
            m["variables"][var][k] = v


def _missing_year(d, m):
    os.remove(os.path.join(d, "et_2001.tif"))


def _duplicate_year(d, m):
    shutil.copy(os.path.join(d, "MOD17A3HGF_NPP_2000.tif"),
                os.path.join(d, "MOD17A3HGF_NPP_2000_reprocessed.tif"))
    _set(m, "npp", source="MOD17A3HGF_NPP_{year}*.tif")


def _duplicate_month(d, m):
    t = list(F.months(2001))
    t[3] = t[2]                                  # March twice, no April
    _tas_file(d, times=pd.DatetimeIndex(t))


def _missing_month(d, m):
    _tas_file(d, times=F.months(2001)[:11])


def _wrong_year_in_file(d, m):
    _tas_file(d, times=F.months(2002))


def _partial_cover(d, m):
    _aet_file(d, box=(100.0, 15.0, 140.0, 55.0))


def _undeclared_fill_float(d, m):
    def poke(v):
        v[40:43, 60:63] = -9999.0               # over land (≈104°E, 34°N)
    _aet_file(d, nodata=None, poke=poke)


def _undeclared_fill_int(d, m):
    def poke(raw):
        raw[raw == -32768] = 32767              # the file's fill, but tagged as nothing
    _soc_file(d, nodata=None, poke=poke)


def _negative_precipitation(d, m):
    lon, lat = F.pr_grid()
    LON_, LAT_ = np.meshgrid(lon, lat)
    vals, times = [], []
    for y in (2000, 2001):
        for mo in range(1, 13):
            v = F.pr_m_per_day(LON_, LAT_, y, mo)
            if (y, mo) == (2001, 7):
                v[(np.abs(LAT_ - 31) < 3) & (np.abs(LON_ - 105) < 3)] = -0.004
            vals.append(v)
            times.append(pd.Timestamp(y, mo, 1))
    F.write_nc(os.path.join(d, "era5land_tp_monthly.nc"), "tp", np.stack(vals), lat, lon,
               pd.DatetimeIndex(times), "m")


def _k_without_units_declared_degc(d, m):
    for y in (2000, 2001):
        _tas_file(d, y, units="")
    _set(m, "tas", units="degC")


def _k_file_degc_manifest(d, m):
    _set(m, "tas", units="degC")


def _not_monotonic(d, m):
    lon, lat = F.tas_grid()
    lat = lat.copy()
    lat[[10, 11]] = lat[[11, 10]]
    _tas_file(d, lat=lat)


def _irregular(d, m):
    lon, lat = F.tas_grid()
    lon = lon.copy()
    lon[50:] += 0.2
    _tas_file(d, lon=lon)


def _no_crs(d, m):
    _soc_file(d, crs=None)


def _crs_conflict(d, m):
    _set(m, "npp", crs="EPSG:4326")


def _wrong_variable(d, m):
    _set(m, "tas", variable="t2m")


def _wrong_band(d, m):
    _set(m, "npp", band=2)


def _scale_conflict(d, m):
    _set(m, "npp", scale_factor=1e-3)


def _hole_on_land(d, m):
    def poke(raw):
        raw[80:100, 120:140] = -32768           # 30–35°N, 100–105°E: all land
    _soc_file(d, poke=poke)


def _different_grid(d, m):
    _aet_file(d, res=0.25)


def _no_units(d, m):
    _set(m, "aet", units=None)


def _negative_ion(d, m):
    t = F.ion_table_mg()
    t.loc[3, "Ca2+"] = -1.0
    t.to_csv(os.path.join(d, "river_ions_mg.csv"), index=False)


def _ion_column_missing(d, m):
    F.ion_table_mg().drop(columns=["HCO3-"]).to_csv(os.path.join(d, "river_ions_mg.csv"),
                                                    index=False)


def _litho_attribute(d, m):
    _set(m, "carbonate_fraction", attribute="lith")


def _annual_precipitation(d, m):
    _set(m, "pr", temporal="annual_total")


def _precipitation_in_degc(d, m):
    _set(m, "pr", units="degC")


# (id, breaker, variable the error names, phrase, the file it names or None)
CASES = [
    ("missing-year", _missing_year, "aet", r"missing year 2001: no file matches", "et_2001.tif"),
    ("duplicate-year", _duplicate_year, "npp", r"duplicate year 2000: 2 files match",
     "NPP_2000*.tif"),
    ("duplicate-month", _duplicate_month, "tas", r"duplicate time step 2001-03",
     "cmfd_temp_2001.nc"),
    ("missing-month", _missing_month, "tas", r"missing months 2001-12 \(1 of 24\)", None),
    ("wrong-year-in-file", _wrong_year_in_file, "tas", r"is the file for 2001 but holds time step "
     r"2002-01", "cmfd_temp_2001.nc"),
    ("not-covering-china", _partial_cover, "aet", r"does not cover China: \d+\.\d% of China's "
     r"land cells fall outside the file", "et_2001.tif"),
    ("undeclared-fill-9999", _undeclared_fill_float, "aet", r"raw value -9999 .*undeclared fill "
     r"value: declare it under `nodata`", "et_2001.tif"),
    ("undeclared-fill-32767", _undeclared_fill_int, "soc", r"raw value 32767 \(the file's maximum"
     r", before scale/offset\), an undeclared fill value", "soc_0_30cm_tha.tif"),
    ("negative-precipitation", _negative_precipitation, "pr", r"values -\d+.* mm month-1 in "
     r"2001-07 fall outside the physical range", "era5land_tp_monthly.nc"),
    ("K-declared-as-degC", _k_without_units_declared_degc, "tas", r"values \d+.* degC in 2000-01 "
     r"fall outside the physical range .*would fit if the source were in 'k' rather than 'degC'",
     "cmfd_temp_2000.nc"),
    ("K-file-degC-manifest", _k_file_degc_manifest, "tas", r"the file declares units 'K' but the "
     r"manifest says 'degC' \(mismatched units\)", "cmfd_temp_2000.nc"),
    ("lat-not-monotonic", _not_monotonic, "tas", r"coordinate 'latitude' is not monotonic",
     "cmfd_temp_2001.nc"),
    ("lon-irregular", _irregular, "tas", r"coordinate 'longitude' is not regularly spaced",
     "cmfd_temp_2001.nc"),
    ("missing-crs", _no_crs, "soc", r"has no CRS .*declare `crs`", "soc_0_30cm_tha.tif"),
    ("crs-conflict", _crs_conflict, "npp", r"the file's CRS .* differs from the manifest's crs "
     r"\(EPSG:4326\)", "MOD17A3HGF_NPP_2000.tif"),
    ("variable-not-in-file", _wrong_variable, "tas", r"has no variable 't2m' \(it has \['temp'\]\)",
     "cmfd_temp_2000.nc"),
    ("band-not-in-file", _wrong_band, "npp", r"has no band 2 \(it has 1\)",
     "MOD17A3HGF_NPP_2000.tif"),
    ("scale-conflict", _scale_conflict, "npp", r"the file declares scale_factor 0.0001 but the "
     r"manifest says 0.001", "MOD17A3HGF_NPP_2000.tif"),
    ("hole-on-land", _hole_on_land, "soc", r"has \d+ missing \(NaN\) values on land pixels .*"
     r"fill_on_land", "soc_0_30cm_tha.tif"),
    ("different-grid-per-year", _different_grid, "aet", r"is on a different grid than .*et_2000",
     "et_2001.tif"),
    ("no-units", _no_units, "aet", r"has no units: declare `units`", "et_2000.tif"),
    ("negative-ion", _negative_ion, "river_chemistry", r"negative ca concentration in 1 rows",
     "river_ions_mg.csv"),
    ("ion-column-missing", _ion_column_missing, "river_chemistry",
     r"missing columns: hco3 \(column 'HCO3-'\); the file has", "river_ions_mg.csv"),
    ("lithology-attribute", _litho_attribute, "carbonate_fraction",
     r"has no attribute column 'lith' \(it has \['xx'\]\)", "glim_china.geojson"),
    ("annual-precipitation", _annual_precipitation, "pr",
     r"temporal 'annual_total' is not possible for pr", "manifest.yaml"),
    ("precipitation-in-degC", _precipitation_in_degc, "pr",
     r"units 'degC' .* cannot become 'mm month-1'", "manifest.yaml"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_a_clear_error_and_the_store_is_unchanged(case, src, good, tmp_path):
    _, breaker, var, phrase, names_file = case
    d = str(tmp_path / "src")
    shutil.copytree(src[0], d)
    root = str(tmp_path / "store")
    shutil.copytree(good[0], root)               # a store that holds one good version
    m = F.manifest()
    breaker(d, m)
    path = F.write_manifest(d, m)
    before = F.snapshot(root)
    with pytest.raises(InputError) as e:
        ingest(path, root)
    msg = str(e.value)
    assert e.value.variable == var, msg
    assert f"'{var}'" in msg, msg
    assert re.search(phrase, msg), f"no {phrase!r} in: {msg}"
    if names_file:
        assert names_file in (e.value.source or ""), msg
    if names_file == "manifest.yaml":
        assert isinstance(e.value, ManifestError)
    assert F.snapshot(root) == before, "the store changed"
    assert not os.path.exists(os.path.join(root, "_staging"))
