"""Ingest of the carbon-sequestration services inputs: the six variables (land use, population,
GDP, elevation, 10 m wind) and the four tables (province statistics, emission factors, land-use
classes, carbon pools) next to the core inputs, on a small study area (2°×2° of Hubei/Henan, 0.25°,
2001–2002); values by hand after regridding, tables in canonical units, and bad input — each a
clear error with nothing published.

Sources are built by ``_ingest_files`` (``write_services``): CNLUCC-like class codes on 0.05° with
nodata 0 for 2000 and 2002 only (``years_available``: 2001 takes the 2000 map), a WorldPop-like
density in persons ha-1 on 30″, a 0.5° GDP field in 10^4 CNY km-2, a DEM, ERA5-Land-like monthly
wind in km h-1, and yearbook-style tables (Chinese names, 10^4 units).
"""
from __future__ import annotations

import copy
import io
import os

import _ingest_files as F
import numpy as np
import pandas as pd
import pytest
from affine import Affine

from carbonsink.grid import cell_area
from carbonsink.io.ingest import ingest, open_inputs
from carbonsink.io.manifest import ManifestError, load_manifest
from carbonsink.io.store import Store
from carbonsink.io.validate import SERVICES, InputError

pytestmark = pytest.mark.integration

YEARS = (2001, 2002)
LULC_AVAILABLE = [2000, 2002, 2005]       # 2005 lies after the years: never looked for
RES = 0.25


def _manifest() -> dict:
    m = F.manifest(years=YEARS, grid=str(RES))
    m["domain"] = F.SERVICES_DOMAIN
    # the core test SOC file's sprinkled nodata pixels are whole cells at 0.25°
    m["variables"]["soc"]["fill_on_land"] = "nearest"
    s = F.services_manifest(LULC_AVAILABLE)
    m["variables"].update(s["variables"])
    m["tables"].update(s["tables"])
    return m


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("services-src"))
    F.write_all(d, YEARS)
    F.write_services(d, list(range(YEARS[0], YEARS[1] + 1)), lulc_years=[2000, 2002])
    m = _manifest()
    return d, m, F.write_manifest(d, m)


@pytest.fixture(scope="module")
def good(tmp_path_factory, src):
    root = str(tmp_path_factory.mktemp("services-good") / "store")
    result = ingest(src[2], root)
    return root, result, open_inputs(root).load()


def _lonlat(ds):
    return np.meshgrid(ds.lon.values, ds.lat.values)


# --- values after regridding ---------------------------------------------------------------------
def test_services_variables_on_the_grid(good):
    _, result, ds = good
    assert result.action == "created"
    land = ds.land_mask.values > 0
    assert land.all() and ds.sizes["lat"] == ds.sizes["lon"] == 8
    lon, lat = _lonlat(ds)
    for var in SERVICES:
        assert ds[var].dtype == np.float32
    assert ds.lulc.dims == ("year", "lat", "lon") and ds.uas.dims == ("time", "lat", "lon")

    # land use: the majority code of each cell's 5×5 pixels (nodata 0 skipped: the every-7th cells
    # hold 11 pixels of their code and 14 nodata), codes kept exactly; 2001 takes the 2000 map
    assert ds.lulc.attrs["resampling"] == "mode"
    np.testing.assert_array_equal(ds.lulc.values[0], F.lulc_expected(2000, lon, lat))
    np.testing.assert_array_equal(ds.lulc.values[1], F.lulc_expected(2002, lon, lat))
    assert set(np.unique(ds.lulc.values)) <= set(map(float, F.LULC_CODES))
    nodata_cells = F.lulc_nodata_cell(np.floor((F.SERVICES_BOX[3] - lat) / 0.25).astype(int),
                                      np.floor((lon - F.SERVICES_BOX[0]) / 0.25).astype(int))
    assert nodata_cells.any()
    assert ds.lulc.attrs["source_year"] == [2000, 2002]
    assert ds.lulc.attrs["years_available"] == LULC_AVAILABLE
    sources = result.published.record["ingest"]["sources"]["lulc"]
    steps = {os.path.basename(s["path"]): s["steps"] for s in sources}
    assert steps == {"CNLUCC_2000.tif": ["2001"], "CNLUCC_2002.tif": ["2002"]}

    # population: persons ha-1 × 100 → km-2, area average of the 30″ pixels; the total (density ×
    # true area) over the domain is the total of the pixels
    assert ds.population.attrs["resampling"] == "average"
    k = round(RES / F.POP_RES)
    _, plat = F._centres(F.POP_RES, F.SERVICES_BOX)
    r0 = round((F.SERVICES_BOX[3] - (ds.lat.values[0] + RES / 2)) / F.POP_RES)
    c0 = round((ds.lon.values[0] - RES / 2 - F.SERVICES_BOX[0]) / F.POP_RES)
    ny, nx = ds.sizes["lat"], ds.sizes["lon"]
    carea = cell_area(ds.lat.values + RES / 2, ds.lat.values - RES / 2, RES)[:, None]
    for i, y in enumerate(YEARS):
        pix = F.population_raw(y).astype("f8")[r0:r0 + k * ny, c0:c0 + k * nx] * 100.0
        la = plat[r0:r0 + k * ny]
        parea = cell_area(la + F.POP_RES / 2, la - F.POP_RES / 2, F.POP_RES)[:, None]
        total_pixels = (pix * parea).sum()
        total_cells = (ds.population.values[i].astype("f8") * carea).sum()
        assert total_cells == pytest.approx(total_pixels, rel=1e-5)
        np.testing.assert_allclose(ds.population.values[i],
                                   pix.reshape(ny, k, nx, k).mean(axis=(1, 3)), rtol=1e-5)
    assert ds.population.attrs["conversion"] == "'persons ha-1' (annual) × 100 → 'km-2'"

    # GDP: 10^4 CNY km-2 on 0.5° (coarser: bilinear, exact for a linear field) × 1e4
    assert ds.gdp.attrs["resampling"] == "bilinear"
    np.testing.assert_allclose(ds.gdp.values,
                               np.stack([F.gdp_1e4_cny_km2(lon, lat, y) * 1e4 for y in YEARS]),
                               rtol=1e-6)
    # elevation: static, area average of a linear field = its centre value
    np.testing.assert_allclose(ds.elevation.values, F.elevation_m(lon, lat), rtol=1e-6)
    # wind: monthly means in km h-1 ÷ 3.6 → m s-1, never multiplied by the month's length
    for var, comp in (("uas", "u"), ("vas", "v")):
        exp = np.stack([F.wind_km_h(comp, lon, lat, y, mo) / 3.6 for y in YEARS
                        for mo in range(1, 13)])
        np.testing.assert_allclose(ds[var].values, exp, rtol=1e-5, atol=1e-5)
        assert ds[var].attrs["units"] == "m s-1" and ds[var].attrs["source_units"] == "km h-1"
    # no plausibility band exists (or is needed) for the services variables
    checked = result.published.record["ingest"].get("plausibility", {})
    assert not set(checked) & set(SERVICES)


def test_services_tables_attached_in_canonical_units(src, good):
    root, _, _ = good
    store = Store(root)
    rec = store.record("inputs", "observed")
    att = rec["attachments"]
    assert {"province_statistics.csv", "emission_factors.csv", "lulc_classes.csv",
            "carbon_pools.csv", "river_chemistry.csv"} <= set(att)

    def table(name):
        return pd.read_csv(io.BytesIO(store.read_bytes(att[name])))

    stats = table("province_statistics.csv")
    assert list(stats.columns) == ["year", "province", "population", "pigs", "large_livestock",
                                   "wood", "cement", "energy_coal", "energy_oil", "energy_gas"]
    raw = F.province_statistics_yearbook(range(YEARS[0], YEARS[1] + 1))
    raw["province"] = raw["地区"].map(dict(zip(F.PROVINCES_ZH, F.PROVINCES_EN)))
    merged = stats.merge(raw, left_on=["year", "province"], right_on=["年份", "province"])
    assert len(merged) == len(stats) == 6
    assert set(stats.province) == set(F.PROVINCES_EN)            # Chinese names → English
    for canon, col in F.STAT_COLUMN_MAP.items():
        if canon in ("year", "province"):
            continue
        # every yearbook column here is in 10^4 units
        np.testing.assert_allclose(merged[canon], merged[col] * 1e4, rtol=1e-12)

    factors = table("emission_factors.csv")
    assert factors.fuel.tolist() == list(F.FUELS)
    np.testing.assert_allclose(factors.factor, [F.FUEL_FACTORS[f] for f in F.FUELS])
    classes = table("lulc_classes.csv")
    assert classes.code.tolist() == list(F.LULC_CODES)
    assert classes.primary.tolist() == [c // 10 for c in F.LULC_CODES]
    pools = table("carbon_pools.csv")
    kg = F.carbon_pool_table_kg_m2()
    assert pools.LULC_name.tolist() == kg.LULC_name.tolist()     # extra columns kept
    for c in ("c_above", "c_below", "c_soil", "c_dead"):
        np.testing.assert_allclose(pools[c], kg[c] * 10.0, rtol=1e-12)   # kg C m-2 → t C ha-1
    # the tables are part of the content hash: the same manifest again changes nothing
    assert ingest(src[2], root).action == "unchanged"


def test_years_available_rule_and_missing_years(src, tmp_path):
    d, m, _ = src
    mm = copy.deepcopy(m)
    mm["years"] = "1998-2007"
    held = load_manifest(mm, path=os.path.join(d, "x.yaml")).source_years("lulc")
    assert held == {1998: 2000, 1999: 2000, 2000: 2000, 2001: 2000, 2002: 2002, 2003: 2002,
                    2004: 2002, 2005: 2005, 2006: 2005, 2007: 2005}
    # without years_available a year without its map is an error, as for any variable
    mm = copy.deepcopy(m)
    mm["variables"]["lulc"].pop("years_available")
    with pytest.raises(InputError, match=r"lulc.*missing year 2001: no file matches"):
        ingest(F.write_manifest(d, mm, "no_hold.yaml"), str(tmp_path / "store"))
    # an available year whose map is absent
    mm = copy.deepcopy(m)
    mm["variables"]["lulc"]["years_available"] = [2001, 2002]
    with pytest.raises(InputError, match=r"lulc.*missing year 2001"):
        ingest(F.write_manifest(d, mm, "hold_missing.yaml"), str(tmp_path / "store"))
    assert not os.path.exists(tmp_path / "store" / "inputs")
    # years_available is for maps of a state per year only
    mm = copy.deepcopy(m)
    mm["variables"]["npp"]["years_available"] = [2001]
    with pytest.raises(ManifestError, match="years_available is for maps"):
        load_manifest(mm)


# --- the manifest: units and tables, checked before anything is read ---------------------------
def test_manifest_services_units_and_tables(src):
    from carbonsink.io.manifest import unit_plan

    # a monthly mean state whose canonical unit is itself a rate (m s-1): converted directly
    for units, factor in (("km h-1", 1 / 3.6), ("m s**-1", 1.0), ("knots", 0.514444)):
        p = unit_plan("uas", units, "monthly_mean")
        assert p.multiply_by is None and not p.aggregate_months
        assert p.factor == pytest.approx(factor) and p.canonical == "m s-1"
    # a density per year is never multiplied by a duration
    p = unit_plan("population", "persons ha-1", "annual")
    assert (p.multiply_by, p.factor) == (None, 100.0)
    # rates for states that are not rates stay refused
    from carbonsink.units import UnitError
    with pytest.raises(UnitError, match="rate per s, but elevation is a state"):
        unit_plan("elevation", "m s-1", "static")
    with pytest.raises(UnitError, match="rate per s, but tas is a state"):
        unit_plan("tas", "K s-1", "monthly_mean")

    d, m, _ = src
    ok = load_manifest(m, path=os.path.join(d, "x.yaml"))
    assert ok.variables["lulc"].temporal == "annual" and ok.variables["elevation"].temporal == \
        "static" and ok.variables["uas"].temporal == "monthly_mean"
    assert ok.tables["province_statistics"].multiplier("energy_gas") == 1e4
    assert ok.tables["carbon_pools"].units == "kg C m-2"
    # the variable hash leaves years_available out (each year's source file is in the content)
    other = copy.deepcopy(m)
    other["variables"]["lulc"]["years_available"] = [2000, 2002]
    assert load_manifest(other).variable_hash("lulc") == ok.variable_hash("lulc")

    def refused(edit, pattern):
        mm = copy.deepcopy(m)
        edit(mm)
        with pytest.raises(ManifestError, match=pattern):
            load_manifest(mm)
    refused(lambda mm: mm["tables"]["province_statistics"]["units"].update(pigs="10^4 t"),
            r"province_statistics\.units: units '10\^4 t' of 'pigs': use 'head'")
    refused(lambda mm: mm["tables"]["carbon_pools"].update(columns={"c_wood": "wood"}),
            r"carbon_pools\.columns: unknown canonical columns \['c_wood'\]")
    refused(lambda mm: mm["tables"].update(census={"source": "x.csv"}),
            r"unknown table 'census'")
    refused(lambda mm: mm["variables"]["lulc"].update(resampling="average"),
            r"land-use codes are classes; resampling must be mode or nearest")
    refused(lambda mm: mm["variables"]["population"].update(temporal="annual_total"),
            r"temporal 'annual_total' is not possible for population")
    refused(lambda mm: mm["variables"]["uas"].update(units="m d-1"),
            r"variables\.uas: units 'm d-1' cannot become 'm s-1'")


# --- bad input: a clear error, nothing published ----------------------------------------------
def _stats_file(d, name, edit):
    df = F.province_statistics_yearbook(range(YEARS[0], YEARS[1] + 1))
    df = edit(df)
    df.to_csv(os.path.join(d, name), index=False)
    return name


def _unknown_province(d, m):
    def edit(df):
        df.loc[4, "地区"] = "Atlantis"
        return df
    m["tables"]["province_statistics"]["source"] = _stats_file(d, "stats_atlantis.csv", edit)


def _negative_statistic(d, m):
    def edit(df):
        df.loc[1, "生猪存栏"] = -3.0
        return df
    m["tables"]["province_statistics"]["source"] = _stats_file(d, "stats_negative.csv", edit)


def _missing_statistics_year(d, m):
    def edit(df):
        return df[df["年份"] != 2002]
    m["tables"]["province_statistics"]["source"] = _stats_file(d, "stats_2001.csv", edit)


def _pool_table_without_c_soil(d, m):
    F.carbon_pool_table_kg_m2().drop(columns="c_soil").to_csv(
        os.path.join(d, "pools_no_soil.csv"), index=False)
    m["tables"]["carbon_pools"]["source"] = "pools_no_soil.csv"


def _wind_hole_on_land(d, m):
    names = ("u10_hole.nc", "v10_hole.nc")
    F.write_wind(d, YEARS, hole=(111.125, 31.125, 2001, 3), names=names)
    m["variables"]["uas"]["source"], m["variables"]["vas"]["source"] = names


def _lulc_cell_without_class(d, m):
    raw = F.lulc_raw(2002)
    raw[20:25, 30:35] = 0         # the cell centred 110.625°E 31.875°N: every pixel nodata
    F.write_tif(os.path.join(d, "lulc_hole_2002.tif"), raw,
                Affine(F.LULC_RES, 0, F.SERVICES_BOX[0], 0, -F.LULC_RES, F.SERVICES_BOX[3]),
                "EPSG:4326", "uint8")
    F.write_lulc(d, [2000], name="lulc_hole_{year}.tif")
    m["variables"]["lulc"]["source"] = "lulc_hole_{year}.tif"


def _some_services_only(d, m):
    del m["variables"]["gdp"], m["variables"]["vas"]


BAD = {
    "unknown_province": (_unknown_province, InputError,
                         r"province.*province_statistics.*unknown provinces \['Atlantis'\]"),
    "negative_statistic": (_negative_statistic, InputError,
                           r"'pigs'.*tables\.province_statistics\).*negative in rows"),
    "statistics_year_missing": (_missing_statistics_year, InputError,
                                r"province_statistics.*no rows for the years \[2002\]"),
    "pools_without_c_soil": (_pool_table_without_c_soil, InputError,
                             (r"'c_soil' of the carbon_pools table .*pools_no_soil\.csv "
                              r"\(manifest tables\.carbon_pools\): missing")),
    "wind_hole_on_land": (_wind_hole_on_land, InputError,
                          (r"'uas' in .*u10_hole\.nc: has 1 missing \(NaN\) values on land "
                           r"pixels in 2001-03.*fill_on_land")),
    "lulc_cell_without_class": (_lulc_cell_without_class, InputError,
                                (r"'lulc' in .*lulc_hole_2002\.tif: has 1 missing \(NaN\) "
                                 r"values on land pixels in 2002.*fill_on_land")),
    "some_services_only": (_some_services_only, ManifestError,
                           r"services need all of .*not \['gdp', 'vas'\]"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_services_input_is_a_clear_error_and_nothing_is_published(case, src, good):
    d, m, _ = src
    edit, error, pattern = BAD[case]
    mm = copy.deepcopy(m)
    edit(d, mm)
    root = good[0]
    before = F.snapshot(root)
    with pytest.raises(error, match=pattern):
        ingest(F.write_manifest(d, mm, f"bad_{case}.yaml"), root)
    assert F.snapshot(root) == before, "the store changed"
