"""Bottom-up vs top-down comparison end to end (issue 12; SCIENCE.md §8).

- The synthetic demo (BEPS-like 0.0727°, VEGAS-like 0.5°, 14 inversions in the OCO-2 MIP layout,
  CarbonTracker-style files) gives back its planted national, division and land-cover totals and
  its national seasonal cycle to 1e-6 relative.
- Small files in the real layouts (MIP ``start_date``, CarbonTracker mol m-2 s-1, CF time with
  bounds, ``months since`` mid-month stamps) against a hand computation of units, sign and time.
- Bad input (undeclared sign, unknown units, members on different grids, missing months, a product
  outside the study area) → a clear FluxInputError and nothing published.
- ``run_compare`` on a local store publishes products and tables that read back.
"""
from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from carbonsink.io.fluxes import FluxInputError
from carbonsink.io.store import Store
from carbonsink.products import compare as cmp
from carbonsink.synthetic_fluxes import SEED_001, make_flux_products

pytestmark = pytest.mark.integration

LEAP = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]          # 2016


# --- the synthetic demo ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_flux_products(tmp_path_factory.mktemp("fluxes"))


@pytest.fixture(scope="module")
def products(demo):
    return cmp.load_products(demo.manifest)


@pytest.fixture(scope="module")
def table(products):
    return cmp.totals(products, "default")


def test_products_are_normalised_on_the_comparison_grid(products):
    assert list(products) == ["BEPS", "VEGAS", "OCO2_MIP", "OCO2_MIP_EnsMean", "OCO2_MIP_EnsStd",
                              "CarbonTracker"]
    for da in products.values():
        assert da.dims[-3:] == ("time", "lat", "lon") and da.sizes["time"] == 60
        assert da.sizes["lat"] == 37 and da.sizes["lon"] == 63 and da.lat[0] == 53.5
        assert da.attrs["units"] == "g m-2 month-1" and da.attrs["cells_without_data"] == 0
        assert "landcover" in da.coords
    assert products["OCO2_MIP"].sizes["member"] == 14                 # EnsMean/EnsStd excluded
    assert "EnsMean" not in products["OCO2_MIP"]["member"].values
    assert "× −1" in products["OCO2_MIP"].attrs["conversion"]
    assert "× −1" not in products["BEPS"].attrs["conversion"]


def test_recovers_planted_totals(demo, table):
    truth = pd.DataFrame(demo.truth["totals"])
    got = table.merge(truth, on=["product", "member", "region_set", "region", "year"],
                      suffixes=("", "_truth"), validate="one_to_one")
    assert len(got) == len(truth) == 5 * (1 + 4 + 5) * (2 + 1 + 14 + 1)
    rel = np.abs(got.total_pg / got.total_pg_truth - 1.0)
    assert rel.max() < 1e-6, got.loc[rel.idxmax()]
    # the planted design is the seed's table: period means and national s.d.
    period = cmp.period_totals(table)
    for product, member in (("BEPS", ""), ("VEGAS", ""), ("OCO2_MIP", "ensemble_mean")):
        seed = SEED_001[product]
        p = period[(period["product"] == product) & (period.member == member)].set_index("region")
        assert p.loc["China", "mean_pg"] == pytest.approx(sum(seed["divisions"]), rel=1e-6)
        assert p.loc["China", "sd_pg"] == pytest.approx(seed["sd"], rel=1e-6)
        for div, val in zip(("North", "South", "Northwest", "Qinghai-Tibet"), seed["divisions"]):
            assert p.loc[div, "mean_pg"] == pytest.approx(val, rel=1e-6)
        for cls, val in zip(("forest", "shrub", "grassland", "cropland"), seed["landcover"]):
            assert p.loc[cls, "mean_pg"] == pytest.approx(val, rel=1e-6)
        four = sum(seed["landcover"])
        assert p.loc["forest", "share_of_classes_pct"] == pytest.approx(
            100 * seed["landcover"][0] / four, rel=1e-6)
        assert p.loc["forest", "share_of_total_pct"] == pytest.approx(
            100 * seed["landcover"][0] / sum(seed["divisions"]), rel=1e-6)
    # the seed's shares: BEPS forest 47.2 % and VEGAS cropland 47.6 % of the four-class sum
    beps = period[(period["product"] == "BEPS") & (period.region == "forest")].iloc[0]
    assert round(beps.share_of_classes_pct, 1) == 47.2


def test_recovers_planted_seasonal_cycle(demo, products):
    truth = pd.DataFrame(demo.truth["seasonal_cycle"])
    sc = cmp.seasonal_cycle(products)
    got = sc.merge(truth, on=["product", "member", "region", "month"], suffixes=("", "_truth"),
                   validate="one_to_one")
    assert len(got) == len(truth)
    for (product, member), g in got.groupby(["product", "member"]):
        scale = g.total_pg_truth.abs().max()
        np.testing.assert_allclose(g.total_pg, g.total_pg_truth, rtol=1e-6, atol=1e-6 * scale,
                                   err_msg=f"{product} {member}")
    nat = sc[sc.member.isin(["", "ensemble_mean"])].pivot_table(
        index="month", columns="product", values="total_pg")
    assert nat.idxmax().isin([6, 7, 8]).all()                         # uptake peaks in summer
    assert nat.loc[1, "VEGAS"] < 0 < nat.loc[1, "BEPS"] < 0.01        # winter source / neutral
    assert -0.03 < nat.loc[1, "OCO2_MIP"] < 0                         # a weak source


def test_zonal_means_ensemble_and_metrics(products, table):
    zm = cmp.zonal_means(products)
    beps = zm[(zm["product"] == "BEPS") & (zm.lat == 30.5) & (zm.year == 2016)]
    row = products["BEPS"].sel(lat=30.5, time="2016-07").values.ravel()
    assert beps[beps.month == 7].mean_flux_g_m2.iloc[0] == pytest.approx(np.nanmean(row))
    # the MIP's own EnsMean/EnsStd files agree with the statistics of the 14 members
    fields = cmp.ensemble_fields(products["OCO2_MIP"])
    np.testing.assert_allclose(products["OCO2_MIP_EnsMean"], fields["ensemble_mean"], rtol=1e-5,
                               atol=1e-5)
    np.testing.assert_allclose(products["OCO2_MIP_EnsStd"], fields["ensemble_sd"], rtol=1e-4,
                               atol=1e-5)
    ens = cmp.ensemble_table(table)
    e = ens[(ens.region == "China") & (ens.year == 2017)].iloc[0]
    members = table[(table["product"] == "OCO2_MIP") & (table.region == "China")
                    & (table.year == 2017) & (table.member != "ensemble_mean")].total_pg
    assert e.n_members == 14 and e.sd_pg == pytest.approx(members.std())
    assert e.spread_pg == pytest.approx(members.max() - members.min())
    m = cmp.metrics(products, regions="default")
    assert set(m.region_set) == {"domain", "division", "landcover"}
    ens_mean = m[(m["product"] == "OCO2_MIP_EnsMean") & (m.region == "China")].iloc[0]
    assert ens_mean.overall_score == pytest.approx(1.0, abs=1e-6)
    beps = m[(m["product"] == "BEPS") & (m.region == "China")].iloc[0]
    assert beps.bias < 0 and 0 < beps.overall_score < 1              # BEPS smaller than OCO-2
    # CarbonTracker's own layout and the MIP's file of member CT hold the same fluxes
    np.testing.assert_allclose(products["CarbonTracker"],
                               products["OCO2_MIP"].sel(member="CT"), rtol=2e-6, atol=1e-7)


def test_totals_agree_with_zonal_totals(products, table):
    """The comparison's totals follow carbonsink.zonal's conventions (one area formula)."""
    from carbonsink.zonal import totals as zonal_totals

    da = products["VEGAS"]
    annual = da.groupby("time.year").sum("time", min_count=1).assign_attrs(
        units="g m-2 yr-1", domain_name="China")
    z = zonal_totals(annual)
    ours = table[(table["product"] == "VEGAS") & (table.region == "China")]
    np.testing.assert_allclose(ours.total_pg.values, z.total_tg.values * 1e-3, rtol=1e-12)


def test_run_compare_publishes_and_tables_read_back(demo, tmp_path):
    store = Store(str(tmp_path / "store"))
    pub = cmp.run_compare(store, demo.manifest)
    assert set(pub) == {"compare_BEPS", "compare_VEGAS", "compare_OCO2_MIP",
                        "compare_OCO2_MIP_EnsMean", "compare_OCO2_MIP_EnsStd",
                        "compare_CarbonTracker", "compare_summary"}
    summary = pub["compare_summary"]
    assert sorted(summary.record["attachments"]) == [
        "ensemble.csv", "metrics.csv", "period_totals.csv", "seasonal_cycle.csv", "totals.csv",
        "zonal_means.csv"]
    tot = cmp.read_table(store, summary, "totals.csv")
    china = tot[(tot["product"] == "BEPS") & (tot.region == "China")]
    assert china.total_pg.mean() == pytest.approx(0.384, rel=1e-6)
    met = cmp.read_table(store, summary, "metrics.csv")
    assert {"bias", "rmse", "crmse", "correlation", "taylor_score", "phase_score", "iav_score",
            "bias_score", "overall_score"} <= set(met.columns)
    ds = store.open("products", "compare_OCO2_MIP")
    assert ds["sink"].dims == ("member", "time", "lat", "lon")
    assert ds["sink"].attrs["units"] == "g m-2 month-1"
    assert {"ensemble_mean", "ensemble_sd", "ensemble_spread"} <= set(ds.data_vars)
    beps = store.open("products", "compare_BEPS")["sink"].sel(time="2016-07").values
    assert np.isfinite(beps).sum() == 965
    assert summary.record["reference"] == "OCO2_MIP"
    assert summary.record["ilamb_weights"]["rmse_score"] == 2.0


# --- files in the real layouts, by hand ---------------------------------------------------------------
BOX = "bbox:110,30,112,32"          # 2 × 2 one-degree cells of China's land (Hubei/Henan)


def _mip_file(path, lat, lon, values, year=2016):
    months = [(year, m) for m in range(1, 13)]
    xr.Dataset(
        {"land": (("time", "latitude", "longitude"), values, {"units": "gC/m^2/year"}),
         "ocean": (("time", "latitude", "longitude"), np.zeros_like(values)),
         "start_date": (("time", "date_component"),
                        np.array([[y, m, 1] for y, m in months], "i4"))},
        coords={"latitude": ("latitude", lat), "longitude": ("longitude", lon)},
    ).to_netcdf(path)


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    d = tmp_path_factory.mktemp("layouts")
    lat, lon = np.arange(28.5, 34.0), np.arange(108.5, 114.0)          # 1°, ascending (MIP)
    t = np.arange(12)[:, None, None]
    base = 100.0 + 10.0 * t + np.arange(6)[None, :, None] + 0.1 * np.arange(6)[None, None, :]
    (d / "mip").mkdir()
    _mip_file(d / "mip" / "ModelA_gridded_fluxes_LNLGIS.nc4", lat, lon, base)
    _mip_file(d / "mip" / "ModelB_gridded_fluxes_LNLGIS.nc4", lat, lon, 2 * base)
    _mip_file(d / "mip" / "EnsMean_gridded_fluxes_LNLGIS.nc4", lat, lon, 1.5 * base)
    # a member on a different (0.5°) grid, and a product far outside China
    (d / "odd").mkdir()
    _mip_file(d / "odd" / "ModelA_gridded_fluxes_LNLGIS.nc4", lat, lon, base)
    _mip_file(d / "odd" / "ModelC_gridded_fluxes_LNLGIS.nc4", np.arange(28.25, 34.0, 0.5),
              np.arange(108.25, 114.0, 0.5), np.ones((12, 12, 12)))
    _mip_file(d / "odd" / "Europe_gridded_fluxes_LNLGIS.nc4", lat, np.arange(0.5, 6.0),
              np.ones((12, 6, 6)))
    # CarbonTracker-style monthly files: mol m-2 s-1, source-positive, CF time at mid-month
    (d / "ct").mkdir()
    for m in range(1, 13):
        mid = (np.datetime64(f"2016-{m:02d}-01") - np.datetime64("2000-01-01")).astype(int) \
            + LEAP[m - 1] / 2
        xr.Dataset({"bio_flux_opt": (("time", "latitude", "longitude"),
                                     np.full((1, 6, 6), 1e-7 * (1 + 0.1 * m)),
                                     {"units": "mol m-2 s-1"})},
                   coords={"time": ("time", [mid], {"units": "days since 2000-01-01 00:00:00"}),
                           "latitude": ("latitude", lat), "longitude": ("longitude", lon)},
                   ).to_netcdf(d / "ct" / f"CT.flux1x1.2016{m:02d}.nc")
    # VEGAS-like: 0.5°, kg C m-2 s-1, uptake-positive, "months since" at mid-month
    flat, flon = np.arange(29.25, 33.0, 0.5), np.arange(109.25, 113.0, 0.5)
    veg = 1e-8 * (1 + np.arange(12)[:, None, None] + 0.3 * np.arange(8)[None, :, None]
                  + 0.01 * np.arange(8)[None, None, :])
    xr.Dataset({"nbp": (("time", "lat", "lon"), veg, {"units": "kg C m-2 s-1"})},
               coords={"time": ("time", np.arange(12) + 0.5,
                                {"units": "months since 2016-01-01", "calendar": "standard"}),
                       "lat": ("lat", flat), "lon": ("lon", flon)}).to_netcdf(d / "vegas.nc")
    # BEPS-like: g C m-2 d-1, CF time with bounds, latitude north → south
    starts = np.array([(np.datetime64(f"2016-{m:02d}-01") - np.datetime64("2016-01-01"))
                       .astype(int) for m in range(1, 13)], "f8")
    ends = starts + LEAP
    xr.Dataset({"nep": (("time", "lat", "lon"), np.broadcast_to(
                    (0.5 + 0.1 * np.arange(12))[:, None, None], (12, 4, 4)).copy(),
                        {"units": "g C m-2 d-1"}),
                "time_bnds": (("time", "nv"), np.stack([starts, ends], axis=1))},
               coords={"time": ("time", starts, {"units": "days since 2016-01-01",
                                                 "bounds": "time_bnds"}),
                       "lat": ("lat", [32.5, 31.5, 30.5, 29.5]),
                       "lon": ("lon", [109.5, 110.5, 111.5, 112.5])}).to_netcdf(d / "beps.nc")
    return d


def _manifest(d, *products, years="2016", reference="MIP"):
    return {"grid": 1, "domain": BOX, "years": years, "reference": reference, "root": str(d),
            "products": list(products)}


MIP = {"name": "MIP", "kind": "top_down", "files": "mip/{member}_gridded_fluxes_LNLGIS.nc4",
       "members": "*", "variable": "land", "units": "g C m-2 yr-1", "sign": "emission_positive",
       "time": "start_date"}
CT = {"name": "CT", "kind": "top_down", "files": "ct/CT.flux1x1.{year}{month:02d}.nc",
      "variable": "bio_flux_opt", "units": "mol m-2 s-1", "sign": "NEE", "time": "cf"}
VEGAS = {"name": "VEGAS", "kind": "bottom_up", "files": "vegas.nc", "variable": "nbp",
         "units": "kg C m-2 s-1", "sign": "NBP", "time": "mid_month"}
BEPS = {"name": "BEPS", "kind": "bottom_up", "files": "beps.nc", "variable": "nep",
        "units": "g C m-2 d-1", "sign": "uptake_positive", "time": "cf"}


def test_real_layouts_against_hand_computation(layouts):
    p = cmp.load_products(_manifest(layouts, MIP, CT, VEGAS, BEPS))
    mip = p["MIP"]
    assert list(mip["member"].values) == ["ModelA", "ModelB"]         # EnsMean left out
    assert mip.shape == (2, 12, 2, 2) and list(mip.lat.values) == [31.5, 30.5]
    for m in range(12):                     # cell 31–32°N 110–111°E ← source row 3, column 2
        raw = 100.0 + 10.0 * m + 3 + 0.1 * 2
        assert mip.sel(member="ModelA").values[m, 0, 0] == pytest.approx(
            -raw * LEAP[m] / 366.0, rel=1e-12)
        assert mip.sel(member="ModelB").values[m, 0, 0] == pytest.approx(
            -2 * raw * LEAP[m] / 366.0, rel=1e-12)
        ct = 1e-7 * (1 + 0.1 * (m + 1))
        assert p["CT"].values[m, 1, 1] == pytest.approx(-ct * 12.011 * 86400 * LEAP[m], rel=1e-12)
        assert p["BEPS"].values[m, 0, 1] == pytest.approx((0.5 + 0.1 * m) * LEAP[m], rel=1e-12)
    # VEGAS 0.5° → the 1° cell 31–32°N, 110–111°E: four cells weighted by their sin-lat spans
    s = [math.sin(math.radians(x)) for x in (32.0, 31.5, 31.0)]
    wn, ws = (s[0] - s[1]) / (s[0] - s[2]), (s[1] - s[2]) / (s[0] - s[2])
    rows, cols = (5, 4), (2, 3)              # 31.75 and 31.25°N; 110.25 and 110.75°E
    for m in (0, 6):
        v = [[1e-8 * (1 + m + 0.3 * r + 0.01 * c) for c in cols] for r in rows]
        mean = wn * (v[0][0] + v[0][1]) / 2 + ws * (v[1][0] + v[1][1]) / 2
        assert p["VEGAS"].values[m, 0, 0] == pytest.approx(mean * 1000 * 86400 * LEAP[m],
                                                           rel=1e-12)
    tot = cmp.totals(p)
    ct = tot[tot["product"] == "CT"].iloc[0]
    area = cmp.grid_of(p["CT"]).cell_area().sum()
    expect = sum(-1e-7 * (1 + 0.1 * m) * 12.011 * 86400 * LEAP[m - 1] for m in range(1, 13))
    assert ct.region == "box 110–112°E 30–32°N" and ct.year == 2016
    assert ct.total_pg == pytest.approx(expect * area * 1e-15, rel=1e-12)


@pytest.mark.parametrize("change,match", [
    (dict(MIP, sign=None), "sign convention is undeclared"),
    (dict(MIP, sign="downward"), "unknown sign convention"),
    (dict(MIP, units="furlongs fortnight-1"), "unknown units"),
    (dict(MIP, units="g C m-2 d-1"), "contradict the file"),
    (dict(MIP, files="odd/{member}_gridded_fluxes_LNLGIS.nc4", members=["ModelA", "ModelC"]),
     "members on different grids"),
    (dict(MIP, files="odd/{member}_gridded_fluxes_LNLGIS.nc4", members=["Europe"]),
     "does not cover the study area"),
    (dict(CT, files="ct/CT.flux1x1.{year}{month:02d}.nc"), "missing months: no file for 2015"),
    (VEGAS, "missing months 2015-01"),
    (dict(VEGAS, time="cf", files="ct/CT.flux1x1.2016*.nc", variable="bio_flux_opt",
          units="mol m-2 s-1", sign="NEE", name="CTglob"), "missing months 2015-01"),
])
def test_bad_input_is_refused_and_nothing_published(layouts, tmp_path, change, match):
    years = "2015-2016" if "missing" in match else "2016"
    manifest = _manifest(layouts, change, years=years, reference=change["name"])
    with pytest.raises(FluxInputError, match=match) as err:
        cmp.load_products(manifest)
    assert change["name"] in str(err.value) and isinstance(err.value, ValueError)
    store = Store(str(tmp_path / "store"))
    with pytest.raises(FluxInputError, match=match):
        cmp.run_compare(store, manifest)
    assert not store.fs.exists(store.path("products")) or not store.fs.ls(store.path("products"))


def test_manifest_errors_name_the_product(layouts):
    with pytest.raises(FluxInputError, match="'MIP'.*kind"):
        cmp.load_products(_manifest(layouts, dict(MIP, kind="sideways")))
    with pytest.raises(FluxInputError, match="reference 'nope'"):
        cmp.load_products(_manifest(layouts, MIP, reference="nope"))
    with pytest.raises(FluxInputError, match="mid-month|middle"):
        cmp.load_products(_manifest(layouts, dict(BEPS, time="mid_month"), reference="BEPS"))
    with pytest.raises(FluxInputError, match="no variable 'nbp'"):
        cmp.load_products(_manifest(layouts, dict(VEGAS, files="beps.nc"), reference="VEGAS"))
    assert os.path.exists(layouts / "vegas.nc")
