"""The ingest manifest: validation, defaults, hashes, and the unit/time conversions it plans."""
from __future__ import annotations

import copy
import os

import numpy as np
import pytest

from carbonsink import units as u
from carbonsink.io.manifest import (ManifestError, Manifest, duration, load_manifest, split_rate,
                                    unit_plan)

pytestmark = pytest.mark.unit

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "catalogs",
                       "ingest-china-example.yaml")

BASE = {
    "grid": "1", "years": "2000-2001",
    "variables": {
        "npp": {"source": "npp_{year}.tif", "units": "kg C m-2 yr-1", "scale_factor": 1e-4,
                "nodata": 32767},
        "tas": {"source": "t_{year}.nc", "variable": "t2m", "units": "K"},
        "pr": {"source": "tp_{year}.nc", "variable": "tp", "units": "m",
               "temporal": "daily_mean_flux"},
        "rsds": {"source": "ssrd_{year}.nc", "variable": "ssrd", "units": "J m-2",
                 "temporal": "daily_mean_flux"},
        "aet": {"source": "et_{year}.tif", "units": "kg m-2"},
        "soc": {"source": "soc.tif", "units": "t C ha-1"},
        "carbonate_fraction": {"source": "glim.gpkg", "attribute": "xx",
                               "carbonate_classes": ["sc"]},
    },
}


def _m(**changes):
    d = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        keys = dotted.split("__")
        node = d
        for k in keys[:-1]:
            node = node[k]
        if value is None:
            node.pop(keys[-1], None)
        else:
            node[keys[-1]] = value
    return d


def test_example_manifest_in_catalogs_validates():
    m = load_manifest(EXAMPLE)
    assert m.name == "observed" and m.grid == "0.05" and m.years == (2001, 2020)
    assert set(m.variables) == {"npp", "tas", "pr", "rsds", "aet", "soc", "carbonate_fraction",
                               "basin"}
    assert m.variables["basin"].format == "vector" and m.variables["basin"].attribute
    assert m.variables["npp"].nodata[-1] == 32767 and m.variables["npp"].scale_factor == 1e-4
    assert m.variables["carbonate_fraction"].format == "vector"
    assert m.variables["pr"].temporal == "daily_mean_flux"
    assert m.tables["river_chemistry"].units == "mg L-1"
    # relative paths resolve against the manifest; absolute ones stay
    assert m.resolve("x.tif") == os.path.join(os.path.dirname(os.path.abspath(EXAMPLE)), "x.tif")
    assert m.resolve("/data/x.tif") == "/data/x.tif"
    assert m.resolve("s3://b/x.tif") == "s3://b/x.tif"


def test_defaults_and_inference():
    m = load_manifest(_m())
    assert m.name == "observed" and m.checksum == "sha256" and m.chunk_mb == 32
    v = m.variables
    assert v["npp"].format == "geotiff" and v["npp"].temporal == "annual_total"
    assert v["npp"].nodata == [32767.0]                     # a scalar becomes a list
    assert v["tas"].format == "netcdf" and v["tas"].temporal == "monthly_mean"
    assert v["soc"].temporal == "static" and v["soc"].resampling == "auto"
    assert "land_mask" not in v                              # optional: cnmaps by default
    assert m.year_list == [2000, 2001]
    assert load_manifest(_m(years=2005)).years == (2005, 2005)
    assert load_manifest(_m(variables__tas__fill_on_land="nearest")).variables[
        "tas"].fill_on_land == "nearest"
    assert load_manifest(_m(variables__npp__fill_on_land=0)).variables["npp"].fill_on_land == 0


def test_hashes_ignore_paths_and_years_but_not_settings():
    a = load_manifest(_m())
    moved = load_manifest(_m(variables__npp__source="/elsewhere/npp_{year}.tif"))
    longer = load_manifest(_m(years="2000-2003"))
    changed = load_manifest(_m(variables__npp__scale_factor=1e-3))
    assert a.variable_hash("npp") == moved.variable_hash("npp") == longer.variable_hash("npp")
    assert a.variable_hash("npp") != changed.variable_hash("npp")
    assert len({a.sha256(), moved.sha256(), longer.sha256(), changed.sha256()}) == 4


@pytest.mark.parametrize("changes, var, phrase", [
    ({"variables__foo": {"source": "f.tif", "units": "1"}}, None, r"unknown canonical variables \['foo'\]"),
    ({"variables__soc": None}, None, r"no source for canonical variables \['soc'\]"),
    ({"variables__pr__temporal": "annual_total"}, "pr", r"temporal 'annual_total' is not possible for pr"),
    ({"variables__tas__temporal": "daily_mean_flux"}, "tas", "not possible for tas"),
    ({"variables__soc__temporal": "annual_total"}, "soc", "not possible for soc"),
    ({"variables__pr__units": "degC"}, "pr", r"'degC' is a quantity in 'degC'"),
    ({"variables__npp__units": "furlongs"}, "npp", "unknown units"),
    ({"variables__tas__units": "W m-2"}, "tas", "is a rate per s, but tas is a state"),
    ({"variables__pr__units": "mm day-1", "variables__pr__temporal": "monthly_accumulation"},
     "pr", "contradicts 'monthly_accumulation'.*daily_mean_flux"),
    ({"variables__pr__units": "mm", "variables__pr__temporal": "monthly_mean"}, "pr",
     "ambiguous"),
    ({"variables__npp__source": "npp_{day}.tif"}, "npp", r"unknown placeholders \['day'\]"),
    ({"variables__soc__source": "soc_{year}.tif"}, "soc", "a static source cannot have"),
    ({"variables__npp__source": "npp.tif"}, "npp", r"GeoTIFF time series needs \{year\}"),
    ({"variables__npp__source": "npp_{month}.tif"}, "npp", r"\{month\} in the path needs a monthly"),
    ({"variables__tas__variable": None}, "tas", "NetCDF source needs `variable`"),
    ({"variables__carbonate_fraction__attribute": None}, "carbonate_fraction",
     "polygons need `attribute`"),
    ({"variables__npp__source": "npp_{year}.dat"}, "npp", "cannot tell the format"),
    ({"variables__npp__crs": "EPSG:99999999"}, "npp", "unknown CRS"),
    ({"variables__npp__valid_range": [10, 1]}, "npp", "runs backwards"),
    ({"variables__npp__nodta": 1}, "npp", "Extra inputs are not permitted"),
    ({"variables__tas__fill_on_land": "mean"}, "tas", "fill_on_land"),
    ({"years": "2005-2001"}, None, "run backwards"),
    ({"grid": "0.3"}, None, "does not divide 1°"),
    ({"domain": "atlantis"}, None, "domain: unknown domain 'atlantis'"),
    ({"domain": "basins/yangtze.gpkg"}, None, "domain: domain polygon file .*yangtze.gpkg' does "
     "not exist"),
    ({"storage_options": {"key": "AKIA"}}, None, "must not hold secrets"),
    ({"tables": {"river_chemistry": {"source": "i.csv", "units": "K"}}}, None,
     "ion concentrations must be"),
])
def test_bad_manifests_are_rejected_with_a_clear_message(changes, var, phrase):
    with pytest.raises(ManifestError, match=phrase) as e:
        load_manifest(_m(**changes))
    assert e.value.variable == var
    assert "invalid manifest" in str(e.value)


def test_bad_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "m.yaml"
    bad.write_text("variables: [unclosed\n")
    with pytest.raises(ManifestError, match="not valid YAML"):
        load_manifest(str(bad))
    with pytest.raises(ManifestError, match="cannot read the manifest"):
        load_manifest(str(tmp_path / "nope.yaml"))
    bad.write_text("- a list\n")
    with pytest.raises(ManifestError, match="must be a YAML mapping"):
        load_manifest(str(bad))


def test_secrets_never_echoed():
    with pytest.raises(ManifestError) as e:
        load_manifest(_m(storage_options={"secret": "s3cr3t-value"}))
    assert "s3cr3t-value" not in str(e.value)


# --- units and time -----------------------------------------------------------------------------
@pytest.mark.parametrize("units, expected", [
    ("kg m-2 s-1", ("kg m-2", "s")), ("kg m**-2 s**-1", ("kg m-2", "s")),
    ("kg/m2/s", ("kg m-2", "s")), ("W m-2", ("J m-2", "s")), ("W m**-2", ("J m-2", "s")),
    ("mm/day", ("mm", "day")), ("mm hr-1", ("mm", "hour")), ("mm month-1", ("mm", "month")),
    ("kg C m-2 yr-1", ("kg c m-2", "yr")), ("m", ("m", None)), ("K", ("k", None)),
    ("J m**-2", ("j m-2", None)),
])
def test_split_rate(units, expected):
    assert split_rate(units) == expected


def test_durations_count_leap_years():
    assert duration(2000, 2, "day") == 29 and duration(2001, 2, "day") == 28
    assert duration(2000, 1, "s") == 31 * 86400 and duration(2000, None, "day") == 366
    assert duration(2001, 3, "yr") == pytest.approx(31 / 365)
    assert duration(2000, 6, None) == 1.0


# (variable, declared units, temporal, step (year, month), value) → canonical value, by hand
@pytest.mark.parametrize("var, units, temporal, step, value, expected", [
    ("tas", "K", "monthly_mean", (2000, 7), 300.0, 26.85),
    ("tas", "degC", "monthly_mean", (2000, 7), 12.5, 12.5),
    ("pr", "m", "daily_mean_flux", (2000, 2), 0.002, 0.002 * 1000 * 29),       # ERA5-Land tp
    ("pr", "kg m-2 s-1", "monthly_mean", (2001, 4), 3e-5, 3e-5 * 30 * 86400),  # CMFD / CMIP
    ("pr", "mm hr-1", "monthly_mean", (2001, 2), 0.1, 0.1 * 28 * 24),          # CMFD
    ("pr", "mm", "monthly_accumulation", (2000, 1), 85.0, 85.0),               # CHIRPS
    ("pr", "cm", "monthly_accumulation", (2000, 1), 8.5, 85.0),
    ("npp", "kg C m-2 yr-1", "annual_total", (2000, None), 0.5, 500.0),        # MOD17A3HGF
    ("npp", "kg C m-2", "annual_total", (2000, None), 0.5, 500.0),
    ("aet", "kg m-2", "annual_total", (2000, None), 420.0, 420.0),             # MOD16A3: 1 kg = 1 mm
    ("aet", "m", "annual_total", (2000, None), 0.42, 420.0),
    ("soc", "t C ha-1", "static", (None, None), 50.0, 5.0),
    ("soc", "g m-2", "static", (None, None), 5000.0, 5.0),
    ("carbonate_fraction", "%", "static", (None, None), 40.0, 0.4),
])
def test_unit_plan_by_hand(var, units, temporal, step, value, expected):
    p = unit_plan(var, units, temporal)
    got = value * p.step_factors([step])[0] * p.factor + p.offset
    assert got == pytest.approx(expected, rel=1e-12)
    assert not p.aggregate_months


@pytest.mark.parametrize("units, temporal, per_month, to_mj", [
    ("J m-2", "daily_mean_flux", lambda v, d: v * d, 1e-6),          # ERA5-Land ssrd
    ("W m-2", "monthly_mean", lambda v, d: v * d * 86400, 1e-6),     # CMFD srad
    ("MJ m-2 month-1", "monthly_accumulation", lambda v, d: v, 1.0),
])
def test_monthly_sources_of_annual_radiation_are_summed(units, temporal, per_month, to_mj):
    p = unit_plan("rsds", units, temporal)
    assert p.aggregate_months
    steps = [(2000, m) for m in range(1, 13)]
    values = np.linspace(100.0, 210.0, 12)
    days = np.array([31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
    got = (values * p.step_factors(steps)).sum() * p.factor
    assert got == pytest.approx(sum(per_month(v, d) for v, d in zip(values, days)) * to_mj,
                                rel=1e-12)


def test_unit_table_additions():
    assert u.conversion("umol L-1", "mmol L-1") == (1e-3, 0.0)
    assert u.canonical("mg/L") == "mg L-1" and u.canonical("meq/L") == "meq L-1"
    assert u.conversion("kgC m-2 yr-1", "g m-2 yr-1") == (1e3, 0.0)
    assert u.conversion("degK", "degC") == (1.0, -273.15)
    assert u.ION_MOLAR_MASS["ca"] == pytest.approx(40.078)
    # existing entries unchanged
    assert u.conversion("K", "degC") == (1.0, -273.15)
    assert u.conversion("kg m-2 yr-1", "g m-2 yr-1") == (1e3, 0.0)


def test_manifest_object_passes_through():
    m = load_manifest(_m())
    assert load_manifest(m) is m
    assert isinstance(m, Manifest)
