"""Small real-format source files for the ingest tests, built from analytic fields so every value
that lands on the grid can be computed by hand.

Layouts mimic the real products on a reduced scale (1° target grid, years 2000–2001):

* ``npp``   MODIS MOD17A3HGF-like: one GeoTIFF per year, **MODIS sinusoidal**, int16, scale 1e-4,
            kg C m-2 yr-1, nodata 32767 tagged in the file, MODIS fill codes 32761–32766 declared
            in the manifest; a constant per year plus sprinkled fill pixels.
* ``tas``   CMFD-like: one NetCDF per year, 12 months, float32 **K**, 0.5°, **ascending latitude**,
            a linear field in lon/lat (area averages onto 1° cells are exact).
* ``pr``    ERA5-Land-like: one NetCDF for all months, **m per day** (monthly means of an
            accumulation), 2° global grid with **0–360 longitudes** and ascending latitude (coarser
            than the grid: bilinear, exact for a linear field).
* ``rsds``  ERA5-Land-like ssrd: one NetCDF per year, 12 months, **J m-2** daily means, 1° aligned.
* ``aet``   one float32 GeoTIFF per year, kg m-2 (= mm) per year, 0.5°, nodata -9999 in the file.
* ``soc``   a static int16 GeoTIFF, **EPSG:4326** 0.25°, scale 0.01, t C ha-1, nodata -32768 in the
            file, a linear field with sprinkled nodata.
* ``carbonate_fraction``  GeoJSON lithology polygons: background siliciclastic, a carbonate block
            and a carbonate half cell.
* river chemistry: a CSV in mg L-1 with the field's own column names.

Traps of real layouts (``tests/integration/test_ingest_traps.py``): a legacy ERA5 NetCDF ``t2m``
packed as int16 with scale_factor/add_offset (raw maximum 32767 by construction, _FillValue and
missing_value −32767) and a tiled, deflate-compressed GeoTIFF with one corrupted tile.
"""
from __future__ import annotations

import hashlib
import os

import numpy as np
import pandas as pd
import xarray as xr
from affine import Affine

YEARS = (2000, 2001)
BOX = (70.0, 15.0, 140.0, 55.0)           # west, south, east, north: covers China with margin
SINU = "+proj=sinu +lon_0=0 +x_0=0 +y_0=0 +R=6371007.181 +units=m +no_defs"
NPP_RAW = {2000: 5000, 2001: 6000, 2002: 6500, 2003: 7000}  # × 1e-4 kg C m-2 → g × 0.1
MODIS_FILLS = [32761, 32762, 32763, 32764, 32765, 32766]

# Carbonate block and half cell of the lithology polygons (degrees)
CARB_BLOCK = (100.0, 22.0, 110.0, 30.0)
CARB_HALF = (112.0, 36.0, 112.5, 37.0)     # half of the 1° cell centred 112.5°E 36.5°N


def tas_k(lon, lat, year, month):
    return 280.0 + 0.1 * (lon - 100.0) - 0.5 * (lat - 35.0) + 3.0 * np.sin(month) + 0.2 * (year - 2000)


def pr_m_per_day(lon, lat, year, month):
    return 1e-3 * (1.0 + 0.05 * (lon - 70.0) + 0.02 * (lat - 15.0) + 0.1 * month) * (
        1 + 0.05 * (year - 2000))


def ssrd_j_per_day(lon, lat, year, month):
    return 1.0e7 + 5.0e4 * (lat - 15.0) + 1.0e5 * month + 2.0e4 * (lon - 70.0)


def soc_t_ha(lon, lat):
    return 20.0 + 0.5 * (lon - 70.0) + 1.0 * (lat - 15.0)


def aet_kg_m2(lon, lat, year):
    return 200.0 + 3.0 * (lon - 70.0) + 2.0 * (lat - 15.0) + 10.0 * (year - 2000)


def _centres(res, box=BOX):
    west, south, east, north = box
    lon = west + res * (np.arange(int(round((east - west) / res))) + 0.5)
    lat = north - res * (np.arange(int(round((north - south) / res))) + 0.5)
    return lon, lat


def write_tif(path, data, transform, crs, dtype, *, nodata=None, scale=None, offset=None,
              units=None, **creation):
    """``creation``: GDAL creation options, e.g. tiled=True, blockxsize=16, compress="deflate"."""
    import rasterio

    data = np.asarray(data)
    if data.ndim == 2:
        data = data[None]
    kw = dict(driver="GTiff", height=data.shape[1], width=data.shape[2], count=data.shape[0],
              dtype=dtype, transform=transform, **creation)
    if crs is not None:
        kw["crs"] = crs
    if nodata is not None:
        kw["nodata"] = nodata
    with rasterio.open(path, "w", **kw) as dst:
        dst.write(data.astype(dtype))
        if scale is not None or offset is not None:
            dst.scales = (scale or 1.0,) * data.shape[0]
            dst.offsets = (offset or 0.0,) * data.shape[0]
        if units:
            dst.update_tags(1, units=units)
    return path


def write_nc(path, name, values, lat, lon, times, units, *, ascending_lat=True, attrs=None,
             fill=None, dtype="f4"):
    """values (t, lat, lon) north→south as computed; written with ascending lat if asked."""
    v = np.asarray(values, dtype=dtype)
    if ascending_lat:
        lat, v = lat[::-1], v[:, ::-1, :]
    da = xr.DataArray(v, dims=("time", "latitude", "longitude"),
                      coords={"time": times, "latitude": lat, "longitude": lon},
                      attrs={"units": units, **(attrs or {})})
    ds = da.to_dataset(name=name)
    ds["latitude"].attrs = {"units": "degrees_north", "standard_name": "latitude"}
    ds["longitude"].attrs = {"units": "degrees_east", "standard_name": "longitude"}
    enc = {name: {"_FillValue": fill}} if fill is not None else {name: {"_FillValue": None}}
    ds.to_netcdf(path, engine="netcdf4", encoding=enc)
    return path


def months(year):
    return pd.date_range(f"{year}-01-01", periods=12, freq="MS")


# --- the layers ---------------------------------------------------------------------------------
def npp_raw(year, shape, seed=0):
    """Constant per year with MODIS fill codes sprinkled (never a whole 1° cell)."""
    raw = np.full(shape, NPP_RAW[year], dtype="i2")
    rng = np.random.default_rng(seed + year)
    idx = rng.random(shape) < 0.03
    raw[idx] = rng.choice(MODIS_FILLS + [32767], size=int(idx.sum()))
    return raw


def sinusoidal_grid(pixel=5000.0):
    """A sinusoidal raster (transform, shape) covering the China box like a mosaic of MODIS tiles."""
    from pyproj import Transformer
    t = Transformer.from_crs("EPSG:4326", SINU, always_xy=True)
    lon = np.linspace(BOX[0], BOX[2], 200)
    lat = np.linspace(BOX[1], BOX[3], 200)
    LON, LAT = np.meshgrid(lon, lat)
    x, y = t.transform(LON, LAT)
    x0, x1 = np.floor(x.min() / pixel) * pixel, np.ceil(x.max() / pixel) * pixel
    y0, y1 = np.floor(y.min() / pixel) * pixel, np.ceil(y.max() / pixel) * pixel
    shape = (int((y1 - y0) / pixel), int((x1 - x0) / pixel))
    return Affine(pixel, 0, x0, 0, -pixel, y1), shape


def write_npp(d, years=YEARS, *, crs=SINU, fills=True, name="MOD17A3HGF_NPP_{year}.tif"):
    transform, shape = sinusoidal_grid()
    for y in range(years[0], years[1] + 1):
        raw = npp_raw(y, shape) if fills else np.full(shape, NPP_RAW[y], "i2")
        write_tif(os.path.join(d, name.format(year=y)), raw, transform, crs, "int16",
                  nodata=32767, scale=1e-4, units="kg C m-2 yr-1")


def tas_grid():
    return _centres(0.5, (60.0, 10.0, 150.0, 60.0))


def write_tas(d, years=YEARS, *, units="K", name="cmfd_temp_{year}.nc", field=tas_k):
    lon, lat = tas_grid()
    LON, LAT = np.meshgrid(lon, lat)
    for y in range(years[0], years[1] + 1):
        v = np.stack([field(LON, LAT, y, m) for m in range(1, 13)])
        write_nc(os.path.join(d, name.format(year=y)), "temp", v, lat, lon, months(y), units,
                 dtype="f8")


def write_era5_packed_t2m(d, years=YEARS, *, name="era5_t2m_{year}.nc", field=tas_k,
                         box=(71.0, 15.0, 138.0, 56.0)):
    """Legacy ERA5 (CDS netCDF3-style) 2 m temperature of an area request (``box``, 0.5°, just
    around China so every pixel is read): int16 packed with scale_factor/add_offset chosen from the
    file's own extremes, so the warmest value is stored as exactly 32767 and the coldest as
    −32766; _FillValue and missing_value −32767 (a few pixels at sea); latitude descending, 'K'.
    Returns the packing (scale, offset) of each year."""
    import netCDF4

    lon, lat = _centres(0.5, box)            # north → south, as ERA5 stores it
    LON, LAT = np.meshgrid(lon, lat)
    packing = {}
    for y in range(years[0], years[1] + 1):
        v = np.stack([field(LON, LAT, y, m) for m in range(1, 13)])
        vmin, vmax = float(v.min()), float(v.max())
        scale = (vmax - vmin) / (32767 + 32766)
        offset = vmax - 32767 * scale
        raw = np.round((v - offset) / scale).astype("i2")
        assert raw.max() == 32767
        raw[:, :3, :3] = -32767                  # missing at sea (north-west corner, 60°E 59°N)
        with netCDF4.Dataset(os.path.join(d, name.format(year=y)), "w",
                             format="NETCDF3_64BIT_OFFSET") as nc:
            nc.createDimension("longitude", lon.size)
            nc.createDimension("latitude", lat.size)
            nc.createDimension("time", None)
            for n, vals, units in (("longitude", lon, "degrees_east"),
                                   ("latitude", lat, "degrees_north")):
                c = nc.createVariable(n, "f4", (n,))
                c.units, c.long_name = units, n
                c[:] = vals
            t = nc.createVariable("time", "i4", ("time",))
            t.units, t.calendar = "hours since 1900-01-01 00:00:00.0", "gregorian"
            t[:] = netCDF4.date2num([pd.Timestamp(y, m, 1).to_pydatetime() for m in range(1, 13)],
                                    t.units, t.calendar)
            var = nc.createVariable("t2m", "i2", ("time", "latitude", "longitude"),
                                    fill_value=np.int16(-32767))
            var.set_auto_maskandscale(False)
            var.scale_factor, var.add_offset = scale, offset
            var.missing_value = np.int16(-32767)
            var.units, var.long_name = "K", "2 metre temperature"
            var[:] = raw
        packing[y] = (scale, offset)
    return packing


def corrupt_tile(path, row, col, band=1):
    """Overwrite the bytes of one (compressed) tile of a tiled GeoTIFF with garbage."""
    import rasterio

    with rasterio.open(path) as src:
        offset = int(src.get_tag_item(f"BLOCK_OFFSET_{col}_{row}", "TIFF", bidx=band))
        size = int(src.get_tag_item(f"BLOCK_SIZE_{col}_{row}", "TIFF", bidx=band))
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(b"\xff" * size)


def pr_grid():
    lon = np.arange(0.0, 360.0, 2.0) + 1.0     # 1, 3, ..., 359: 0–360 convention
    lat = 90.0 - 2.0 * (np.arange(90) + 0.5)
    return lon, lat


def write_pr(d, years=YEARS, *, name="era5land_tp_monthly.nc", units="m"):
    """One file for all months, or one per year if ``name`` has {year}."""
    lon, lat = pr_grid()
    LON, LAT = np.meshgrid(lon, lat)
    times, vals = [], []
    for y in range(years[0], years[1] + 1):
        for m in range(1, 13):
            times.append(pd.Timestamp(y, m, 1))
            vals.append(pr_m_per_day(LON, LAT, y, m))
        if "{year}" in name:
            write_nc(os.path.join(d, name.format(year=y)), "tp", np.stack(vals), lat, lon,
                     pd.DatetimeIndex(times), units)
            times, vals = [], []
    if "{year}" not in name:
        write_nc(os.path.join(d, name), "tp", np.stack(vals), lat, lon,
                 pd.DatetimeIndex(times), units)


def write_rsds(d, years=YEARS, *, name="era5land_ssrd_{year}.nc"):
    lon, lat = _centres(1.0)
    LON, LAT = np.meshgrid(lon, lat)
    for y in range(years[0], years[1] + 1):
        v = np.stack([ssrd_j_per_day(LON, LAT, y, m) for m in range(1, 13)])
        write_nc(os.path.join(d, name.format(year=y)), "ssrd", v, lat, lon, months(y), "J m**-2",
                 ascending_lat=False)


def write_aet(d, years=YEARS, *, name="et_{year}.tif"):
    lon, lat = _centres(0.5)
    LON, LAT = np.meshgrid(lon, lat)
    t = Affine(0.5, 0, BOX[0], 0, -0.5, BOX[3])
    for y in range(years[0], years[1] + 1):
        v = aet_kg_m2(LON, LAT, y).astype("f4")
        v[5, 7] = -9999.0      # declared nodata (file tag), somewhere at sea
        write_tif(os.path.join(d, name.format(year=y)), v, t, "EPSG:4326", "float32",
                  nodata=-9999.0)


def soc_raw():
    lon, lat = _centres(0.25)
    LON, LAT = np.meshgrid(lon, lat)
    raw = np.round(soc_t_ha(LON, LAT) / 0.01).astype("i2")
    rng = np.random.default_rng(7)
    # nodata in a chequer of single pixels: every 1° cell keeps at least 15 of its 16 pixels
    raw[(np.arange(raw.shape[0])[:, None] % 4 == 1) & (np.arange(raw.shape[1])[None] % 4 == 2)
        & (rng.random(raw.shape) < 0.5)] = -32768
    return raw


def write_soc(d, name="soc_0_30cm_tha.tif", *, crs="EPSG:4326"):
    t = Affine(0.25, 0, BOX[0], 0, -0.25, BOX[3])
    write_tif(os.path.join(d, name), soc_raw(), t, crs, "int16", nodata=-32768, scale=0.01)


def write_lithology(d, name="glim_china.geojson"):
    import geopandas as gpd
    from shapely.geometry import box
    gdf = gpd.GeoDataFrame({"xx": ["ss", "sc", "sc"]},
                           geometry=[box(*BOX), box(*CARB_BLOCK), box(*CARB_HALF)],
                           crs="EPSG:4326")
    gdf.to_file(os.path.join(d, name), driver="GeoJSON")


ION_MOLAR = {"ca": 40.078, "mg": 24.305, "na": 22.990, "k": 39.098, "hco3": 61.017, "so4": 96.06,
             "cl": 35.45}
ION_NAMES = {"ca": "Ca2+", "mg": "Mg2+", "na": "Na+", "k": "K+", "hco3": "HCO3-", "so4": "SO42-",
             "cl": "Cl-"}


def ion_table_mg(n_basins=6, years=YEARS):
    rows = []
    for b in range(1, n_basins + 1):
        for y in range(years[0], years[1] + 1):
            rows.append({"station": b, "yr": y, **{ION_NAMES[i]: 10.0 * (k + 1) + b + 0.1 * y % 7
                                                   for k, i in enumerate(ION_MOLAR)}})
    return pd.DataFrame(rows)


def write_ions(d, name="river_ions_mg.csv"):
    ion_table_mg().to_csv(os.path.join(d, name), index=False)


def write_all(d, years=YEARS):
    os.makedirs(d, exist_ok=True)
    write_npp(d, years)
    write_tas(d, years)
    write_pr(d, years)
    write_rsds(d, years)
    write_aet(d, years)
    write_soc(d)
    write_lithology(d)
    write_ions(d)


def manifest(years=YEARS, grid="1", name="observed") -> dict:
    """The manifest for :func:`write_all` (sources relative to the manifest's directory)."""
    return {
        "name": name, "grid": grid, "years": f"{years[0]}-{years[1]}",
        "variables": {
            "npp": {"source": "MOD17A3HGF_NPP_{year}.tif", "units": "kg C m-2 yr-1",
                    "nodata": MODIS_FILLS, "temporal": "annual_total"},
            "tas": {"source": "cmfd_temp_{year}.nc", "variable": "temp",
                    "temporal": "monthly_mean"},
            "pr": {"source": "era5land_tp_monthly.nc", "variable": "tp",
                   "temporal": "daily_mean_flux"},
            "rsds": {"source": "era5land_ssrd_{year}.nc", "variable": "ssrd",
                     "temporal": "daily_mean_flux"},
            "aet": {"source": "et_{year}.tif", "units": "kg m-2", "temporal": "annual_total"},
            "soc": {"source": "soc_0_30cm_tha.tif", "units": "t C ha-1"},
            "carbonate_fraction": {"source": "glim_china.geojson", "attribute": "xx",
                                   "carbonate_classes": ["sc"]},
        },
        "tables": {"river_chemistry": {
            "source": "river_ions_mg.csv", "units": "mg L-1",
            "columns": {"basin_id": "station", "year": "yr",
                        **{i: ION_NAMES[i] for i in ION_MOLAR}}}},
    }


def write_manifest(d, m: dict, name="manifest.yaml") -> str:
    import yaml
    path = os.path.join(d, name)
    with open(path, "w") as f:
        yaml.safe_dump(m, f, sort_keys=False)
    return path


def snapshot(root) -> dict:
    """Every directory and file under a store root: size, mtime and content hash."""
    out = {}
    for dirpath, _, filenames in os.walk(root):
        out[os.path.relpath(dirpath, root) + "/"] = "dir"
        for name in filenames:
            path = os.path.join(dirpath, name)
            st = os.stat(path)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = (st.st_size, st.st_mtime_ns,
                                                    hashlib.sha256(f.read()).hexdigest())
    return out


# --- carbon-sequestration services (tests/integration/test_ingest_services.py) ------------------
# Sources for a small study area (SERVICES_DOMAIN, 2°×2° of Hubei/Henan on the 0.25° grid) drawn
# over SERVICES_BOX (the domain with a 1° margin), like the real products on a reduced scale:
#
# * ``lulc``        CNLUCC-like uint8 class codes on 0.05° (EPSG:4326), nodata 0, one map per
#                   available year; each 0.25° cell: 16 of its 25 pixels in the cell's own code and
#                   9 in two others, or (every 7th cell) 11 in its code and 14 nodata.
# * ``population``  WorldPop-like density on 30″ (1/120°), persons ha-1, a lognormal field.
# * ``gdp``         a 0.5° linear field in 10^4 CNY km-2 (coarser than the grid: bilinear).
# * ``elevation``   an SRTM/GMTED-like int16 DEM on 0.05°, m, a linear field.
# * ``uas``/``vas`` ERA5-Land-like monthly means on 0.125°, **km h-1**, ascending latitude, one
#                   NetCDF per component holding every month.
# * tables: province statistics as a yearbook gives them (Chinese names and columns, 10^4 units),
#   an emission-factor table with its own fuels, a class table and InVEST's pool table in kg C m-2.
SERVICES_DOMAIN = "bbox:110,30,112,32"
SERVICES_BOX = (109.0, 29.0, 113.0, 33.0)
LULC_CODES = (11, 12, 21, 22, 23, 31, 32, 33, 41, 42, 46, 51, 52, 53, 61, 64, 65)
LULC_RES = 0.05
POP_RES = 1.0 / 120.0
FUELS = ("coal", "oil", "gas")
FUEL_FACTORS = {"coal": 0.7476, "oil": 0.5825, "gas": 0.4435}
PROVINCES_ZH = ("湖北省", "河南", "陕西省")
PROVINCES_EN = ("Hubei", "Henan", "Shaanxi")


def lulc_cell_code(year, i, j):
    """The code of the 0.25° cell (row i, column j of SERVICES_BOX) in the map of ``year``."""
    return LULC_CODES[(3 * i + 5 * j + (year - 2000) // 2) % len(LULC_CODES)]


def lulc_nodata_cell(i, j):
    return (i + 2 * j) % 7 == 0


def lulc_raw(year):
    """(rows, cols) uint8 codes on 0.05° over SERVICES_BOX; per 0.25° cell (5×5 pixels) the cell's
    code holds the majority, the rest are two other codes or nodata (0)."""
    west, south, east, north = SERVICES_BOX
    n_i, n_j = round((north - south) / 0.25), round((east - west) / 0.25)
    rng = np.random.default_rng(year)
    raw = np.zeros((5 * n_i, 5 * n_j), dtype="u1")
    n = len(LULC_CODES)
    for i in range(n_i):
        for j in range(n_j):
            main = lulc_cell_code(year, i, j)
            k = LULC_CODES.index(main)
            if lulc_nodata_cell(i, j):
                block = np.array([main] * 11 + [0] * 14)
            else:
                block = np.array([main] * 16 + [LULC_CODES[(k + 4) % n]] * 5
                                 + [LULC_CODES[(k + 9) % n]] * 4)
            raw[5 * i:5 * i + 5, 5 * j:5 * j + 5] = rng.permutation(block).reshape(5, 5)
    return raw


def lulc_expected(year, lon, lat):
    """The code each grid cell centred at (lon, lat) must get (mode of its pixels, nodata
    skipped)."""
    west, north = SERVICES_BOX[0], SERVICES_BOX[3]
    i = np.floor((north - np.asarray(lat)) / 0.25).astype(int)
    j = np.floor((np.asarray(lon) - west) / 0.25).astype(int)
    return np.vectorize(lambda a, b: lulc_cell_code(year, a, b))(i, j).astype("f8")


def write_lulc(d, years, name="CNLUCC_{year}.tif"):
    t = Affine(LULC_RES, 0, SERVICES_BOX[0], 0, -LULC_RES, SERVICES_BOX[3])
    for y in years:
        write_tif(os.path.join(d, name.format(year=y)), lulc_raw(y), t, "EPSG:4326", "uint8")


def population_raw(year):
    """Persons ha-1 on 30″ pixels over SERVICES_BOX (a lognormal field, growing 2 % a year)."""
    lon, lat = _centres(POP_RES, SERVICES_BOX)
    rng = np.random.default_rng(11)
    base = rng.lognormal(mean=0.0, sigma=1.0, size=(lat.size, lon.size))
    return (base * (1.0 + 0.02 * (year - 2000))).astype("f4")


def write_population(d, years, name="worldpop_density_{year}.tif"):
    t = Affine(POP_RES, 0, SERVICES_BOX[0], 0, -POP_RES, SERVICES_BOX[3])
    for y in years:
        write_tif(os.path.join(d, name.format(year=y)), population_raw(y), t, "EPSG:4326",
                  "float32", nodata=-1.0)


def gdp_1e4_cny_km2(lon, lat, year):
    return 100.0 + 20.0 * (lon - 109.0) + 10.0 * (lat - 29.0) + 5.0 * (year - 2000)


def write_gdp(d, years, name="gdp_{year}.tif"):
    lon, lat = _centres(0.5, SERVICES_BOX)
    LON, LAT = np.meshgrid(lon, lat)
    t = Affine(0.5, 0, SERVICES_BOX[0], 0, -0.5, SERVICES_BOX[3])
    for y in years:
        write_tif(os.path.join(d, name.format(year=y)), gdp_1e4_cny_km2(LON, LAT, y), t,
                  "EPSG:4326", "float32")


def elevation_m(lon, lat):
    return 200.0 + 100.0 * (lon - 109.0) + 60.0 * (lat - 29.0)


def write_elevation(d, name="dem.tif"):
    lon, lat = _centres(0.05, SERVICES_BOX)
    LON, LAT = np.meshgrid(lon, lat)
    t = Affine(0.05, 0, SERVICES_BOX[0], 0, -0.05, SERVICES_BOX[3])
    write_tif(os.path.join(d, name), elevation_m(LON, LAT).astype("f4"), t, "EPSG:4326",
              "float32", nodata=-32768.0)


def wind_km_h(component, lon, lat, year, month):
    if component == "u":
        return 10.0 + 2.0 * (lon - 110.0) - (lat - 31.0) + month + 0.5 * (year - 2000)
    return -5.0 + (lat - 31.0) + 0.5 * month - 0.2 * (lon - 110.0)


def write_wind(d, years, *, hole=None, names=("era5land_u10_monthly.nc", "era5land_v10_monthly.nc")):
    """One NetCDF per component with every month of ``years`` in km h-1 (0.125°, ascending lat).
    ``hole``: (lon, lat, year, month) — the u pixels of the 0.25° cell around (lon, lat) are NaN
    in that month."""
    lon, lat = _centres(0.125, SERVICES_BOX)
    LON, LAT = np.meshgrid(lon, lat)
    times = pd.DatetimeIndex([t for y in years for t in months(y)])
    for comp, name, var in (("u", names[0], "u10"), ("v", names[1], "v10")):
        v = np.stack([wind_km_h(comp, LON, LAT, y, m) for y in years for m in range(1, 13)])
        if hole is not None and comp == "u":
            hx, hy, hyear, hmonth = hole
            k = 12 * list(years).index(hyear) + hmonth - 1
            v[k][(np.abs(LON - hx) < 0.125) & (np.abs(LAT - hy) < 0.125)] = np.nan
        write_nc(os.path.join(d, name), var, v, lat, lon, times, "km h-1", dtype="f4",
                 fill=np.float32(-9999.0))


def province_statistics_yearbook(years, *, fuels=FUELS):
    """Province statistics as a yearbook prints them: Chinese province names and column names,
    population and livestock in 10^4, wood and cement in 10^4 t, energy in 10^4 tce."""
    rows = []
    for y in years:
        for p, zh in enumerate(PROVINCES_ZH):
            row = {"年份": y, "地区": zh, "年末常住人口": 5000.0 + 1000 * p + 10 * (y - 2000),
                   "生猪存栏": 2000.0 + 300 * p, "大牲畜存栏": 150.5 + 10 * p,
                   "木材产量": 12.25 + p, "水泥产量": 4000.0 + 500 * p}
            for k, f in enumerate(fuels):
                row[f"{f}消费量"] = 1000.0 * (k + 1) + 100 * p + (y - 2000)
            rows.append(row)
    return pd.DataFrame(rows)


STAT_COLUMN_MAP = {"year": "年份", "province": "地区", "population": "年末常住人口",
                   "pigs": "生猪存栏", "large_livestock": "大牲畜存栏", "wood": "木材产量",
                   "cement": "水泥产量", **{f"energy_{f}": f"{f}消费量" for f in FUELS}}
STAT_UNITS_YEARBOOK = {"population": "10^4 persons", "pigs": "10^4 head",
                       "large_livestock": "1e4 head", "wood": "10^4 t", "cement": "10^4 t",
                       "energy": "10^4 tce"}


def emission_factor_table():
    return pd.DataFrame({"燃料": list(FUELS), "碳排放系数": [FUEL_FACTORS[f] for f in FUELS],
                         "units": ["t C tce-1"] * len(FUELS), "source": ["test"] * len(FUELS)})


def lulc_class_table():
    return pd.DataFrame({"代码": list(LULC_CODES), "类型": [f"class {c}" for c in LULC_CODES],
                         "一级类": [c // 10 for c in LULC_CODES]})


def carbon_pool_table_kg_m2():
    """InVEST's pool table for the six primary classes in kg C m-2 (÷ 10 of t C ha-1)."""
    return pd.DataFrame({"lucode": [1, 2, 3, 4, 5, 6],
                         "LULC_name": ["cropland", "forest", "grassland", "water", "built_up",
                                       "unused"],
                         "c_above": [0.57, 4.26, 0.35, 0.0, 0.25, 0.13],
                         "c_below": [0.81, 1.08, 0.86, 0.0, 0.0, 0.0],
                         "c_soil": [10.8, 15.86, 9.94, 0.0, 0.0, 2.17],
                         "c_dead": [0.0, 0.4, 0.0, 0.0, 0.0, 0.0]})


def write_services(d, years, *, lulc_years=None):
    """The services sources and tables of ``years`` (lulc maps for ``lulc_years``)."""
    write_lulc(d, lulc_years or years)
    write_population(d, years)
    write_gdp(d, years)
    write_elevation(d)
    write_wind(d, years)
    province_statistics_yearbook(years).to_csv(os.path.join(d, "province_statistics.csv"),
                                               index=False)
    emission_factor_table().to_csv(os.path.join(d, "emission_factors.csv"), index=False)
    lulc_class_table().to_csv(os.path.join(d, "cnlucc_classes.csv"), index=False)
    carbon_pool_table_kg_m2().to_csv(os.path.join(d, "carbon_pools.csv"), index=False)


def services_manifest(lulc_years_available=None) -> dict:
    """The ``variables`` and ``tables`` entries for :func:`write_services`."""
    lulc = {"source": "CNLUCC_{year}.tif", "nodata": 0}
    if lulc_years_available:
        lulc["years_available"] = list(lulc_years_available)
    return {
        "variables": {
            "lulc": lulc,
            "population": {"source": "worldpop_density_{year}.tif", "units": "persons ha-1"},
            "gdp": {"source": "gdp_{year}.tif", "units": "1e4 CNY km-2"},
            "elevation": {"source": "dem.tif", "units": "m"},
            "uas": {"source": "era5land_u10_monthly.nc", "variable": "u10"},
            "vas": {"source": "era5land_v10_monthly.nc", "variable": "v10"},
        },
        "tables": {
            "province_statistics": {"source": "province_statistics.csv",
                                    "columns": dict(STAT_COLUMN_MAP),
                                    "units": dict(STAT_UNITS_YEARBOOK)},
            "emission_factors": {"source": "emission_factors.csv",
                                 "columns": {"fuel": "燃料", "factor": "碳排放系数"}},
            "lulc_classes": {"source": "cnlucc_classes.csv",
                             "columns": {"code": "代码", "name": "类型", "primary": "一级类"}},
            "carbon_pools": {"source": "carbon_pools.csv", "units": "kg C m-2"},
        },
    }
