"""GIS interoperability: the published Zarr v2 opens in GDAL (gdalinfo, rasterio) georeferenced,
and carbonsink.io.export writes COGs and a CF NetCDF file that GIS tools read back exactly.

GDAL's Zarr driver names an array ``ZARR:"<path>.zarr":/<array>`` and, for arrays with a
dimension besides lat/lon, needs the index along it: ``ZARR:"<path>.zarr":/nep:1`` is ``nep`` at
year index 1 (GDAL 3.6 refuses the 3-D array without it; GDAL 3.10 opens it as a band per year).

The gdalinfo/gdallocationinfo checks skip only where gdal-bin is missing (.ci/run installs it).
"""
import json
import logging
import math
import re
import shutil
import subprocess

import numpy as np
import pytest
import xarray as xr

import carbonsink.io.store as store_mod
from carbonsink.grid import get_grid
from carbonsink.io.export import ExportError, export
from carbonsink.io.store import Store
from carbonsink.products.nep import compute_nep
from carbonsink.synthetic import make_inputs

rasterio = pytest.importorskip("rasterio")
pytest.importorskip("rioxarray")
from affine import Affine  # noqa: E402 - after the rasterio check

pytestmark = pytest.mark.integration

GDALINFO = shutil.which("gdalinfo")
needs_gdal = pytest.mark.skipif(
    GDALINFO is None, reason="gdalinfo not found: install gdal-bin (apt-get install gdal-bin; "
                             ".ci/run installs it) to check the files with the GDAL command line")

GRID = get_grid("1")
YEAR, LAT, LON = 2001, 25.5, 105.5      # a land cell in Guizhou: not symmetric in the grid
I, J = int(np.flatnonzero(GRID.lat == LAT)[0]), int(np.flatnonzero(GRID.lon == LON)[0])


def _run(*args) -> str:
    r = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"{' '.join(args)} failed: {r.stderr.strip()}"
    return r.stdout


def _gdal_version() -> tuple[int, int]:
    m = re.search(r"GDAL (\d+)\.(\d+)", _run(GDALINFO, "--version"))
    return int(m.group(1)), int(m.group(2))


def _geo(info: str) -> dict:
    """Size, origin and pixel size from gdalinfo's text."""
    size = re.search(r"Size is (\d+), (\d+)", info)
    origin = re.search(r"Origin = \(([-\d.e+]+),([-\d.e+]+)\)", info)
    pixel = re.search(r"Pixel Size = \(([-\d.e+]+),([-\d.e+]+)\)", info)
    assert size and origin and pixel, info
    return {"size": (int(size[1]), int(size[2])),
            "origin": (float(origin[1]), float(origin[2])),
            "pixel": (float(pixel[1]), float(pixel[2]))}


def _value_at(spec: str, lon: float, lat: float) -> float:
    return float(_run("gdallocationinfo", "-valonly", "-geoloc", spec, str(lon), str(lat)))


def _local(uri: str) -> str:
    assert uri.startswith("file://")
    return uri[len("file://"):]


@pytest.fixture(scope="module")
def nep_store(tmp_path_factory):
    """NEP on the 1° grid for 2000–2002, published as Zarr v2 (the format GDAL reads)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(store_mod, "ZARR_FORMAT", 2)
        ds = compute_nep(make_inputs("1", (2000, 2002))).load()
        store = Store(str(tmp_path_factory.mktemp("store")))
        pub = store.publish(ds, "products", "nep")
    zarr_dir = _local(pub.uri)
    with open(f"{zarr_dir}/.zgroup") as f:
        assert json.load(f)["zarr_format"] == 2
    return store, ds, pub, zarr_dir


def _expected(ds):
    value = ds.nep.sel(year=YEAR, lat=LAT, lon=LON).item()
    assert np.isfinite(value)
    return np.float32(value)


# --- (a), (b): the published Zarr v2 in GDAL ---------------------------------------------------
@needs_gdal
def test_gdalinfo_reads_the_published_zarr_v2(nep_store):
    _, ds, _, zarr_dir = nep_store
    spec = f'ZARR:"{zarr_dir}":/nep:{YEAR - 2000}'          # index along the year dimension
    info = _run(GDALINFO, spec)
    geo = _geo(info)
    west, res, _, north, _, neg_res = GRID.geotransform
    assert geo == {"size": (GRID.nlon, GRID.nlat), "origin": (west, north),
                   "pixel": (res, neg_res)}, info              # lat descending: north-up
    assert "NoData Value=nan" in info and "Unit Type: g m-2 yr-1" in info
    assert "long_name=net ecosystem productivity" in info
    if "Coordinate System is" in info:
        assert 'ID["EPSG",4326]' in info, info
    else:
        # GDAL < 3.9 (Debian 12 has 3.6.2) reads the transform from the lat/lon arrays but not
        # the CRS from the CF grid_mapping of a Zarr array; rasterio's GDAL 3.10 reads both
        # (test below). A newer GDAL without the CRS would be a regression: fail.
        assert _gdal_version() < (3, 10), info
    assert np.float32(_value_at(spec, LON, LAT)) == _expected(ds)
    # the cell to the south and to the east are other pixels (no half-pixel shift)
    assert np.float32(_value_at(spec, LON, LAT - 1)) == np.float32(
        ds.nep.sel(year=YEAR, lat=LAT - 1, lon=LON).item())
    assert np.float32(_value_at(spec, LON + 1, LAT)) == np.float32(
        ds.nep.sel(year=YEAR, lat=LAT, lon=LON + 1).item())


def test_rasterio_reads_the_published_zarr_v2(nep_store):
    _, ds, _, zarr_dir = nep_store
    with rasterio.open(f'ZARR:"{zarr_dir}":/nep:{YEAR - 2000}') as r:
        assert r.crs.to_epsg() == 4326
        assert r.transform.almost_equals(Affine(*GRID.transform), precision=1e-9)
        assert (r.width, r.height, r.count) == (GRID.nlon, GRID.nlat, 1)
        assert math.isnan(r.nodata)
        band = r.read(1)
        assert band[I, J] == _expected(ds)
        np.testing.assert_array_equal(band, ds.nep.sel(year=YEAR).values)
        assert r.tags()["long_name"].startswith("net ecosystem productivity")
    # rasterio's GDAL (3.10) also opens the 3-D array: one band per year, named in band tags
    with rasterio.open(f'ZARR:"{zarr_dir}":/nep') as r:
        assert r.count == 3
        assert r.tags(YEAR - 2000 + 1)["DIM_year_VALUE"] == str(YEAR)
        assert r.read(YEAR - 2000 + 1)[I, J] == _expected(ds)


def test_zarr_v3_is_not_readable_by_rasterios_gdal(tmp_path, monkeypatch):
    """Why the store writes Zarr v2: GDAL before 3.13 cannot decode Zarr v3 as zarr-python 3
    writes it (its 'bytes' codec)."""
    gdal = tuple(int(x) for x in rasterio.__gdal_version__.split(".")[:2])
    if gdal >= (3, 13):
        pytest.skip(f"rasterio's GDAL {rasterio.__gdal_version__} may read Zarr v3")
    monkeypatch.setattr(store_mod, "ZARR_FORMAT", 3)
    ds = make_inputs("1", (2000, 2000))[["soc"]].load()
    store = Store(str(tmp_path / "store"))
    zarr_dir = _local(store.publish(ds, "inputs", "v3").uri)
    with open(f"{zarr_dir}/zarr.json") as f:
        assert json.load(f)["zarr_format"] == 3
    with pytest.raises(rasterio.errors.RasterioIOError, match="Unsupported codec"):
        rasterio.open(f'ZARR:"{zarr_dir}":/soc')
    # the export reads through xarray, so it works whatever the store's Zarr format
    (path,) = export(store, "inputs", "v3", out_dir=tmp_path / "out")
    with rasterio.open(path) as r:
        np.testing.assert_array_equal(r.read(1), ds.soc.values)


# --- (c): COG export ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cogs(nep_store, tmp_path_factory):
    store, _, _, _ = nep_store
    out = tmp_path_factory.mktemp("cog")
    return out, export(store, "products", "nep", out_dir=out)


def test_cog_export_one_file_per_variable_and_year(nep_store, cogs):
    _, ds, pub, _ = nep_store
    out, paths = cogs
    # variables in the dataset's order (as listed by the store), years in order
    assert sorted(p.name for p in paths) == sorted(f"nep_{v}_{y}.tif" for v in ("npp", "rh", "nep")
                                                   for y in (2000, 2001, 2002))
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in paths)  # no leftovers
    with rasterio.open(out / f"nep_nep_{YEAR}.tif") as r:
        assert r.driver == "GTiff" and r.count == 1 and r.dtypes == ("float32",)
        assert r.crs.to_epsg() == 4326
        assert r.transform == Affine(*GRID.transform)         # exact cell edges, north-up
        assert math.isnan(r.nodata)
        band = r.read(1)
        assert band[I, J] == _expected(ds)
        np.testing.assert_array_equal(band, ds.nep.sel(year=YEAR).values)   # NaN where NaN
        assert np.isnan(band).any() and r.read_masks(1)[np.isnan(band)].max() == 0
        tags = r.tags()
        assert tags["units"] == "g m-2 yr-1" and tags["long_name"] == ds.nep.attrs["long_name"]
        assert tags["year"] == str(YEAR) and tags["variable"] == "nep"
        assert tags["dataset"] == "products/nep" and tags["version"] == pub.version
        assert r.tags(1)["units"] == "g m-2 yr-1"
        assert r.descriptions == (ds.nep.attrs["long_name"],)
        assert r.profile["tiled"] and r.compression.name == "deflate"


@needs_gdal
def test_gdal_sees_a_cog_layout_and_the_same_georeferencing(nep_store, cogs):
    _, ds, _, _ = nep_store
    out, _ = cogs
    path = str(out / f"nep_nep_{YEAR}.tif")
    info = _run(GDALINFO, path)
    assert "LAYOUT=COG" in info, info
    assert 'ID["EPSG",4326]' in info
    west, res, _, north, _, neg_res = GRID.geotransform
    assert _geo(info) == {"size": (GRID.nlon, GRID.nlat), "origin": (west, north),
                          "pixel": (res, neg_res)}
    assert "NoData Value=nan" in info
    assert np.float32(_value_at(path, LON, LAT)) == _expected(ds)


def test_cog_of_a_larger_grid_has_tiles_and_overviews_and_a_mask(tmp_path):
    """0.1° (630 × 370 cells, wider than one 512 block): tiled, with overviews; an integer mask
    keeps its dtype and has no nodata."""
    grid = get_grid("0.1")
    rng = np.random.default_rng(0)
    soc = rng.gamma(2.0, 5.0, grid.shape).astype("f4")
    soc[:50, :80] = np.nan
    ds = xr.Dataset({"soc": (("lat", "lon"), soc, {"units": "kg m-2", "long_name": "soil C"}),
                     "mask": (("lat", "lon"), (soc > 10).astype("u1"),
                              {"flag_values": [0, 1], "flag_meanings": "no yes"})},
                    coords={k: xr.Variable(*v) for k, v in grid.coords().items()})
    store = Store(str(tmp_path / "store"))
    store.publish(ds, "inputs", "soils")
    paths = export(store, "inputs", "soils", out_dir=tmp_path / "out")
    assert sorted(p.name for p in paths) == ["soils_mask.tif", "soils_soc.tif"]
    with rasterio.open(tmp_path / "out" / "soils_soc.tif") as r:
        assert r.block_shapes == [(512, 512)] and r.overviews(1) == [2]
        assert r.transform == Affine(*grid.transform) and r.crs.to_epsg() == 4326
        np.testing.assert_array_equal(r.read(1), soc)
    with rasterio.open(tmp_path / "out" / "soils_mask.tif") as r:
        assert r.dtypes == ("uint8",) and r.nodata is None
        np.testing.assert_array_equal(r.read(1), (soc > 10).astype("u1"))


def test_cog_of_ascending_latitudes_is_north_up(tmp_path):
    """Latitudes stored south → north (not a carbonsink preset, so no grid mapping): the GeoTIFF
    is still north-up, EPSG:4326, with each value at its own place."""
    lat = np.arange(20.25, 22, 0.5)                           # 4 rows, ascending
    lon = np.arange(100.25, 103, 0.5)                         # 6 columns
    values = np.arange(lat.size * lon.size, dtype="f4").reshape(lat.size, lon.size)
    ds = xr.Dataset({"v": (("lat", "lon"), values, {"units": "1"})},
                    coords={"lat": lat, "lon": lon})
    store = Store(str(tmp_path / "store"))
    store.publish(ds, "inputs", "south-up")
    (path,) = export(store, "inputs", "south-up", out_dir=tmp_path / "out")
    with rasterio.open(path) as r:
        assert r.crs.to_epsg() == 4326
        assert r.transform.almost_equals(Affine(0.5, 0, 100.0, 0, -0.5, 22.0), precision=1e-9)
        band = r.read(1)
        np.testing.assert_array_equal(band, values[::-1])
        row, col = r.index(101.25, 20.75)                     # lat[1], lon[2]
        assert band[row, col] == values[1, 2]


def test_years_and_variables_select_files(nep_store, tmp_path):
    store, ds, _, _ = nep_store
    paths = export(store, "products", "nep", out_dir=tmp_path, variables="rh", years=[2002, 2000])
    assert [p.name for p in paths] == ["nep_rh_2000.tif", "nep_rh_2002.tif"]
    with rasterio.open(paths[1]) as r:
        np.testing.assert_array_equal(r.read(1), ds.rh.sel(year=2002).values)


# --- (d): NetCDF export ---------------------------------------------------------------------------
def test_netcdf_export_reopens_equal_to_the_source(nep_store, tmp_path):
    store, ds, pub, _ = nep_store
    (path,) = export(store, "products", "nep", fmt="netcdf", out_dir=tmp_path)
    assert path.name == "nep.nc"
    source = store.open("products", "nep")
    with xr.open_dataset(path) as back:
        xr.testing.assert_equal(back.drop_vars("spatial_ref"), source.drop_vars("spatial_ref"))
        xr.testing.assert_equal(back, ds.assign_coords(spatial_ref=back.spatial_ref))
        for v in ("npp", "rh", "nep"):
            assert back[v].attrs["units"] == source[v].attrs["units"]
            assert back[v].attrs["long_name"] == source[v].attrs["long_name"]
            assert back[v].attrs["grid_mapping"] == "spatial_ref"
        assert back.spatial_ref.attrs["crs_wkt"] == source.spatial_ref.attrs["crs_wkt"]
        assert pub.version in back.attrs["carbonsink_export"]
    import netCDF4
    with netCDF4.Dataset(path) as nc:
        assert nc.data_model == "NETCDF4"
        var = nc["nep"]
        assert var.chunking() == [1, GRID.nlat, GRID.nlon]    # one year per chunk
        assert var.filters()["zlib"] and var.filters()["shuffle"]


@needs_gdal
def test_gdalinfo_reads_the_netcdf_crs(nep_store, tmp_path):
    store, ds, _, _ = nep_store
    (path,) = export(store, "products", "nep", fmt="netcdf", out_dir=tmp_path,
                     variables=["nep"], years=[YEAR])
    spec = f'NETCDF:"{path}":nep'
    info = _run(GDALINFO, spec)
    assert 'ID["EPSG",4326]' in info, info
    west, res, _, north, _, neg_res = GRID.geotransform
    assert _geo(info) == {"size": (GRID.nlon, GRID.nlat), "origin": (west, north),
                          "pixel": (res, neg_res)}
    assert np.float32(_value_at(spec, LON, LAT)) == _expected(ds)
    with xr.open_dataset(path) as back:
        assert list(back.data_vars) == ["nep"] and back.year.values.tolist() == [YEAR]


def test_netcdf_export_of_monthly_inputs_chunks_one_month(tmp_path):
    ds = make_inputs("1", (2000, 2001))[["tas", "npp", "soc"]].load()
    store = Store(str(tmp_path / "store"))
    store.publish(ds, "inputs", "climate")
    (path,) = export(store, "inputs", "climate", fmt="netcdf", out_dir=tmp_path / "out",
                     years=2001)
    import netCDF4
    with netCDF4.Dataset(path) as nc:
        assert nc["tas"].chunking() == [1, GRID.nlat, GRID.nlon]
        assert nc["soc"].chunking() == [GRID.nlat, GRID.nlon]
    with xr.open_dataset(path) as back:
        xr.testing.assert_equal(back.tas, ds.tas.sel(time="2001").assign_coords(
            spatial_ref=back.spatial_ref))
        assert back.year.values.tolist() == [2001]
    # COGs of monthly data: one per month, named by month
    paths = export(store, "inputs", "climate", out_dir=tmp_path / "cog", variables="tas",
                   years=[2000])
    assert [p.name for p in paths] == [f"climate_tas_2000-{m:02d}.tif" for m in range(1, 13)]


# --- reading from an object store ----------------------------------------------------------------
def test_export_from_an_s3_store(tmp_path, monkeypatch):
    pytest.importorskip("moto")
    from moto.server import ThreadedMotoServer
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    monkeypatch.setattr(store_mod, "ZARR_FORMAT", 2)
    srv = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    srv.start()
    try:
        host, port = srv.get_host_and_port()
        opts = {"key": "EXPORTTESTKEY", "secret": "export-test-secret",
                "client_kwargs": {"endpoint_url": f"http://{host}:{port}"}}
        import s3fs
        s3fs.S3FileSystem(**opts).mkdir("exports")
        store = Store("s3://exports/root", opts)
        ds = compute_nep(make_inputs("1", (2000, 2001))).load()
        store.publish(ds, "products", "nep")
        (tif,) = export(store, "products", "nep", out_dir=tmp_path, variables="nep", years=2001)
        (nc,) = export(store, "products", "nep", fmt="netcdf", out_dir=tmp_path)
    finally:
        srv.stop()
    with rasterio.open(tif) as r:
        assert r.crs.to_epsg() == 4326 and r.tags()["source"].startswith("s3://exports/root/")
        assert "EXPORTTEST" not in str(r.tags()) and "export-test-secret" not in str(r.tags())
        np.testing.assert_array_equal(r.read(1), ds.nep.sel(year=2001).values)
    with xr.open_dataset(nc) as back:
        np.testing.assert_array_equal(back.nep.values, ds.nep.values)
        assert "EXPORTTEST" not in str(back.attrs) and "export-test-secret" not in str(back.attrs)


# --- (e): bad requests ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mixed_store(tmp_path_factory):
    """A product with a gridded variable and a national series (year only)."""
    ds = compute_nep(make_inputs("1", (2000, 2001))).load()[["nep"]]
    ds["national"] = ("year", np.array([1.5, 2.5], "f4"), {"units": "Tg C yr-1"})
    store = Store(str(tmp_path_factory.mktemp("mixed")))
    store.publish(ds, "products", "mixed")
    return store


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg and "products/" in msg
    return msg


def test_bad_format_and_variable(mixed_store, tmp_path):
    with pytest.raises(ExportError, match=r"products/mixed: unknown export format 'shp'") as e:
        export(mixed_store, "products", "mixed", fmt="shp", out_dir=tmp_path)
    _one_line(e)
    with pytest.raises(ValueError, match=r"products/mixed v\S+ has no variable 'gpp'; it has "
                                         r"national, nep") as e:
        export(mixed_store, "products", "mixed", variables=["nep", "gpp"], out_dir=tmp_path)
    _one_line(e)
    with pytest.raises(ExportError, match=r"variable 'nep': years \[1999\] are not in its year"):
        export(mixed_store, "products", "mixed", years=[1999, 2000], out_dir=tmp_path)
    with pytest.raises(ExportError, match=r"products/mixed v\S+: years \[1999\] are not in"):
        export(mixed_store, "products", "mixed", fmt="netcdf", years=1999, out_dir=tmp_path)
    with pytest.raises(ExportError, match="local directory"):
        export(mixed_store, "products", "mixed", out_dir="s3://bucket/out")
    assert not any(tmp_path.iterdir())                     # nothing written by a bad request


def test_variable_without_lat_lon(mixed_store, tmp_path, caplog):
    with pytest.raises(ExportError, match=r"products/mixed v\S+ variable 'national' has dims "
                                          r"\('year',\), not lat/lon") as e:
        export(mixed_store, "products", "mixed", variables="national", out_dir=tmp_path)
    _one_line(e)
    with caplog.at_level(logging.WARNING, logger="carbonsink"):
        paths = export(mixed_store, "products", "mixed", out_dir=tmp_path)
    assert [p.name for p in paths] == ["mixed_nep_2000.tif", "mixed_nep_2001.tif"]
    assert "'national'" in caplog.text and "skipped" in caplog.text
    # NetCDF holds any variable: the series is kept
    (nc,) = export(mixed_store, "products", "mixed", fmt="netcdf", out_dir=tmp_path)
    with xr.open_dataset(nc) as back:
        assert back.national.values.tolist() == [1.5, 2.5]


def test_existing_outputs_are_refused_unless_overwrite(mixed_store, tmp_path):
    first = export(mixed_store, "products", "mixed", variables="nep", out_dir=tmp_path)
    stamp = [p.stat().st_mtime_ns for p in first]
    with pytest.raises(ExportError, match=r"variable 'nep': .*mixed_nep_2000.tif already exists; "
                                          "pass overwrite=True") as e:
        export(mixed_store, "products", "mixed", variables="nep", out_dir=tmp_path)
    _one_line(e)
    assert [p.stat().st_mtime_ns for p in first] == stamp
    (tmp_path / "mixed.nc").write_text("not mine")
    with pytest.raises(ExportError, match="mixed.nc already exists"):
        export(mixed_store, "products", "mixed", fmt="netcdf", out_dir=tmp_path)
    again = export(mixed_store, "products", "mixed", variables="nep", out_dir=tmp_path,
                   overwrite=True)
    assert again == first
    (nc,) = export(mixed_store, "products", "mixed", fmt="netcdf", out_dir=tmp_path,
                   overwrite=True)
    with xr.open_dataset(nc) as back:
        assert "nep" in back


def test_a_failed_write_leaves_no_file(mixed_store, tmp_path, monkeypatch):
    import carbonsink.io.export as export_mod

    def broken(da, index, path, meta):
        with open(path, "wb") as f:
            f.write(b"half a tiff")
        raise OSError("disk full")

    monkeypatch.setattr(export_mod, "_write_cog", broken)
    with pytest.raises(OSError, match="disk full"):
        export(mixed_store, "products", "mixed", variables="nep", out_dir=tmp_path)
    assert not any(tmp_path.iterdir())
