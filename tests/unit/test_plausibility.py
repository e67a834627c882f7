"""The land-mean plausibility check's pieces (carbonsink.io.plausibility): the fixes it proposes
for unit and temporal slips, the statistics it computes per chunk, and the manifest options."""
from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from carbonsink.grid import get_grid
from carbonsink.io import plausibility as pl
from carbonsink.io.manifest import ManifestError, load_manifest

pytestmark = pytest.mark.unit

MONTHS = [(y, m) for y in (2000, 2001) for m in range(1, 13)]
YEARS = [(2000, None), (2001, None)]


def test_soilgrids_t_per_ha_declared_as_kg_m2():
    fixes = pl.suggestions("soc", "kg m-2", "static", [(None, None)], 62.1, pl.BANDS["soc"])
    assert fixes == ["6.21 — plausible — if the source were in 't C ha-1' (declared 'kg m-2')"]


def test_era5_tp_daily_mean_declared_as_monthly_accumulation():
    # 600 mm a-1 of rain stored as the mean daily amount in m: taken as a monthly amount
    wrong = 600.0 / 30.4375
    fixes = pl.suggestions("pr", "m", "monthly_accumulation", MONTHS, wrong, pl.BANDS["pr"])
    assert len(fixes) == 1, fixes
    assert fixes[0].endswith("if temporal were 'daily_mean_flux' rather than "
                             "'monthly_accumulation'")
    assert float(fixes[0].split(" ")[0]) == pytest.approx(600.0, rel=0.01)


def test_era5_ssrd_daily_mean_declared_as_monthly_accumulation():
    fixes = pl.suggestions("rsds", "J m-2", "monthly_accumulation", MONTHS, 150.0,
                           pl.BANDS["rsds"])
    assert any("temporal were 'daily_mean_flux'" in f for f in fixes), fixes


def test_modis_npp_in_kg_declared_as_g():
    fixes = pl.suggestions("npp", "g C m-2 yr-1", "annual_total", YEARS, 0.45, pl.BANDS["npp"])
    assert fixes and fixes[0].startswith("450 — plausible — if the source were in "
                                         "'kg m-2 yr-1'"), fixes


def test_kelvin_declared_as_celsius_and_no_fix_at_all():
    fixes = pl.suggestions("tas", "degC", "monthly_mean", MONTHS, 280.0, pl.BANDS["tas"])
    assert fixes == ["6.85 — plausible — if the source were in 'K' (declared 'degC')"]
    assert pl.suggestions("soc", "kg m-2", "static", [(None, None)], 1e7,
                          pl.BANDS["soc"]) == []


def test_pretty_units():
    assert pl.pretty_units("t c ha-1") == "t C ha-1"
    assert pl.pretty_units("mg c ha-1 yr-1") == "Mg C ha-1 yr-1"
    assert pl.pretty_units("mj m-2 yr-1") == "MJ m-2 yr-1"
    assert pl.pretty_units("k") == "K"


def test_land_stats_area_weighted_mean_and_where_the_holes_are():
    g = get_grid("1")
    values = np.full(g.shape, 2.0)
    values[:10] = 1.0                                     # the 10 northern rows: smaller cells
    values[20:23, 30:35] = np.nan                         # a hole of 15 cells
    land = np.ones(g.shape, dtype="u1")
    ds = xr.Dataset({"soc": (("lat", "lon"), da.from_array(values, chunks=16)),
                     "land_mask": (("lat", "lon"), da.from_array(land, chunks=16))},
                    coords={"lat": g.lat, "lon": g.lon})
    (stats,) = da.compute(pl.land_stats(ds, ["soc", "land_mask"]))
    assert set(stats) == {"soc"}
    s = stats["soc"]
    area = g.cell_area()
    ok = np.isfinite(values)
    expect = (values[ok] * area[ok]).sum() / area[ok].sum()
    assert s[0, 0] / s[0, 1] == pytest.approx(expect, rel=1e-12)
    assert s[0, 2] == 15
    assert pl.where_holes(stats, "soc", 0) == (
        f"; their cell centres lie within {g.lat[22]:.2f}–{g.lat[20]:.2f}°N, "
        f"{g.lon[30]:.2f}–{g.lon[34]:.2f}°E")


def _manifest(**soc):
    return {"grid": "1", "years": "2000-2001", "variables": {
        "npp": {"source": "npp_{year}.tif", "units": "kg C m-2 yr-1"},
        "tas": {"source": "t_{year}.nc", "variable": "t"},
        "pr": {"source": "p_{year}.nc", "variable": "p"},
        "rsds": {"source": "r_{year}.nc", "variable": "r"},
        "aet": {"source": "e_{year}.tif"},
        "soc": {"source": "soc.tif", **soc},
        "carbonate_fraction": {"source": "c.tif"}}}


def test_manifest_options_and_hashes():
    plain = load_manifest(_manifest())
    # the defaults do not change the hash of a manifest written before the options existed
    assert load_manifest(_manifest(plausibility="check")).variable_hash("soc") == \
        plain.variable_hash("soc")
    assert load_manifest(_manifest(plausibility="skip")).variable_hash("soc") != \
        plain.variable_hash("soc")
    ranged = load_manifest(_manifest(plausible_range=[1, 80]))
    assert ranged.variables["soc"].plausible_range == (1.0, 80.0)
    assert pl.variable_attrs("soc", ranged.variables["soc"])["plausibility_check"].endswith(
        "the manifest's plausible_range 1..80 kg m-2")
    assert pl.variable_attrs("carbonate_fraction", ranged.variables["carbonate_fraction"]) == {}
    with pytest.raises(ManifestError, match="plausible_range .* runs backwards"):
        load_manifest(_manifest(plausible_range=[80, 1]))
    bad = _manifest()
    bad["variables"]["carbonate_fraction"]["plausible_range"] = [0, 1]
    with pytest.raises(ManifestError, match="plausible_range is only for"):
        load_manifest(bad)
