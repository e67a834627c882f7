"""The measure catalogue (seed 002 table 1) and scenario files: contents against the seed, every
check naming the file, the measure and the field."""
import pickle
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from carbonsink.io import measures as ms
from carbonsink.io.measures import MeasureError
from carbonsink.kernels import scenarios as sc

pytestmark = pytest.mark.unit

# Seed 002 table 1, transcribed: ecosystem, row, Chinese name, the seven star columns in table
# order (sink, maturity, environment, social, scale, assessment difficulty, overall), IPCC.
TABLE1 = """
forest 1 造林再造林 3 3 2 2 3 1 3 是
forest 2 退耕还林 3 2 3 2 2 1 3 是
forest 3 天然林保护 2 3 3 2 2 1 3 否
forest 4 森林抚育 2 2 2 3 2 2 2 否
forest 5 森林间伐 2 2 2 2 1 3 2 否
forest 6 人工林天然化 2 2 2 1 1 3 1 否
forest 7 速生丰产林建植 1 2 2 2 1 2 1 否
forest 8 林分优化/改造措施 1 1 1 1 1 3 1 否
grassland 1 天然草地封育 3 3 3 2 3 2 3 否
grassland 2 退耕还草 3 3 3 2 2 1 3 是
grassland 3 退化草地恢复措施 2 2 2 2 1 3 2 否
grassland 4 多年生混播草地建植 1 2 1 3 1 2 2 否
grassland 5 高产人工草地建植 1 2 1 2 1 2 1 否
grassland 6 合理控制放牧强度 1 1 2 2 1 3 1 否
grassland 7 划区轮牧/延迟放牧 1 2 1 2 1 3 1 否
cropland 1 秸秆还田 3 3 3 2 1 1 3 是
cropland 2 施用有机肥 3 3 3 2 1 1 3 是
cropland 3 少耕 2 3 2 2 3 2 2 是
cropland 4 免耕 2 2 2 2 1 2 2 是
cropland 5 轮作 1 3 2 3 2 3 1 是
cropland 6 灌溉管理 1 2 1 2 1 3 1 是
wetland 1 湿地保育 3 3 3 2 3 2 3 否
wetland 2 退田还湖 3 2 3 1 1 1 2 是
wetland 3 退化湿地恢复 2 2 2 1 1 2 2 否
wetland 4 湿地管理 1 1 1 1 1 3 1 否
wetland 5 湿地间类型转变 1 1 1 2 1 3 1 否
wetland 6 人工湿地 1 2 1 2 2 2 1 否
coastal 1 湿地植被恢复 3 3 2 3 1 1 3 否
coastal 2 贝类养殖 3 3 2 3 3 2 3 是
coastal 3 海藻养殖 3 3 2 2 3 3 2 否
coastal 4 珊瑚礁重建 2 2 1 1 1 3 1 否
"""
ROWS = [line.split() for line in TABLE1.strip().splitlines()]
SEED = Path(__file__).resolve().parents[3] / "shared" / "seeds" / "002_caf94f2c3aa7142c.txt"


@pytest.fixture(scope="module")
def catalogue():
    return ms.measures_by_id(ms.load_measures(include_pathways=True))


@pytest.fixture(scope="module")
def table1():
    return ms.load_measures()


# ---- the default catalogue against the seed ----
def test_default_catalogue_has_the_31_measures_of_table_1(table1):
    assert len(table1) == 31
    counts = {}
    for m in table1:
        counts[m.ecosystem] = counts.get(m.ecosystem, 0) + 1
        assert m.in_table1 and not m.is_pathway
    assert counts == {"forest": 8, "grassland": 7, "cropland": 6, "wetland": 6, "coastal": 4}
    assert counts == ms.TABLE1_COUNTS
    assert len({m.id for m in table1}) == 31


def test_every_star_and_ipcc_column_as_in_the_table(table1):
    by_row = {(m.ecosystem, m.table_row): m for m in table1}
    assert len(by_row) == 31
    for eco, row, zh, *rest in ROWS:
        m = by_row[(eco, int(row))]
        assert m.name_zh == zh
        assert [getattr(m, f) for f in ms.STAR_FIELDS] == [int(x) for x in rest[:7]], m.id
        assert m.ipcc is (rest[7] == "是"), m.id


@pytest.mark.skipif(not SEED.exists(), reason="the seed text is not next to the repository")
def test_transcription_matches_the_seed_text():
    lines = SEED.read_text(encoding="utf-8").splitlines()
    rows = [ln.split("\t") for ln in lines if re.match(r"^[^\t]*\t\d\t", ln)]
    parsed = [(r[2], [len(s) for s in r[3:10]], r[10].strip()) for r in rows]
    assert [(zh, [int(x) for x in rest[:7]], rest[7]) for _, _, zh, *rest in ROWS] == parsed


def test_seed_potentials_where_the_seed_gives_them(catalogue):
    groups = {
        "cropland_soc_management": ((0.14, 0.155, 0.17),                 # line 120, 1.4亿—1.7亿
                                    {"straw_return", "organic_fertiliser", "reduced_tillage",
                                     "no_tillage"}),
        "grassland_fencing_sowing": ((0.06, 0.07, 0.08),                  # line 120, 0.6—0.8亿
                                     {"natural_grassland_enclosure", "perennial_mixed_sward",
                                      "high_yield_sown_grassland"}),
        "new_afforestation_urban_green": ((0.03, 0.055, 0.08),            # line 128, 0.3亿—0.8亿
                                          {"afforestation_reforestation", "cropland_to_forest"}),
    }
    for g, (pot, members) in groups.items():
        got = {m.id for m in catalogue.values() if m.potential_group == g}
        assert got == members
        for mid in members:
            assert catalogue[mid].potential_gt_co2 == ms.Range(*pot)
    singles = {"eco_ccus_forest_biomass": (0.27, 0.285, 0.30),            # line 142–144
               "eco_ccus_straw": (0.32, 0.32, 0.32),                      # line 144, ≤ 3.2亿
               "urban_green_space_sink": (0.029, 0.029, 0.029),           # line 162, 0.29亿
               "coastal_blue_carbon_sink": (0.07, 0.08, 0.09),            # line 162
               "offshore_marine_sink": (0.22, 0.23, 0.24),                # line 162
               "inorganic_sink": (0.16, 0.175, 0.19)}                     # line 162
    for mid, pot in singles.items():
        assert catalogue[mid].potential_gt_co2 == ms.Range(*pot)
        assert catalogue[mid].is_pathway
    assert catalogue["inorganic_sink"].components_gt_co2 == {"carbonate_weathering": 0.178}
    # the seed's 3.46亿 t of sinks not yet counted lies inside the three items' bounding sum
    items = [catalogue[i].potential_gt_co2 for i in
             ("urban_green_space_sink", "coastal_blue_carbon_sink", "offshore_marine_sink")]
    assert sum(r.low for r in items) <= 0.346 <= sum(r.high for r in items)
    # straw Eco-CCUS is 30 % of the 1.07 Gt CO2 of straw
    assert 0.30 * 1.07 == pytest.approx(catalogue["eco_ccus_straw"].potential_gt_co2.high, abs=0.002)
    # 49.4 t CO2 ha-1 a-1 on polluted land (line 140) in t C
    assert catalogue["eco_ccus_degraded_land_biomass"].rate_t_c_ha.central == \
        pytest.approx(49.4 * 12.011 / 44.01, abs=0.005)


def test_qualitative_measures_carry_no_numbers(table1):
    quantified = {m.id for m in table1 if m.quantified}
    assert quantified == {"afforestation_reforestation", "cropland_to_forest",
                          "natural_grassland_enclosure", "cropland_to_grassland",
                          "perennial_mixed_sward", "high_yield_sown_grassland", "straw_return",
                          "organic_fertiliser", "reduced_tillage", "no_tillage"}
    for m in table1:
        if m.id not in quantified:
            assert m.potential_gt_co2 is None and m.rate_t_c_ha is None


def test_ipcc_derived_cropland_rates(catalogue):
    soc, d = 37.4, 20                                   # Qin et al. 2013; IPCC D = 20 years
    for mid, (dry, wet) in {"no_tillage": (1.10, 1.16), "reduced_tillage": (1.03, 1.09),
                            "straw_return": (1.07, 1.11), "organic_fertiliser": (1.34, 1.38)}.items():
        r = catalogue[mid].rate_t_c_ha
        assert r.low == round(soc * (dry - 1) / d, 3)
        assert r.high == round(soc * (wet - 1) / d, 3)
        assert r.central == pytest.approx((r.low + r.high) / 2, abs=6e-4)
        assert catalogue[mid].saturation_years == 20
    r = catalogue["cropland_to_grassland"].rate_t_c_ha
    assert r.low == round(soc * (0.93 / 0.82 - 1) / d, 3)
    assert r.high == round(soc * (0.82 / 0.71 - 1) / d, 3)
    r = catalogue["natural_grassland_enclosure"].rate_t_c_ha    # Deng et al. 2017
    assert (r.low, r.central, r.high) == (0.27, round(0.27 + 0.23 + 0.18, 2),
                                          round(0.68 + 0.1064 + 0.3214, 2))
    assert catalogue["natural_grassland_enclosure"].saturation_years == 15   # Hu et al. 2016


def test_the_seeds_warnings_hold(catalogue):
    arid_or_wet = {41, 42, 43, 44, 45, 46, 61, 62, 63, 64}
    for m in catalogue.values():
        if m.converts_to is not None and m.converts_to // 10 == 2:        # becomes forest
            assert not arid_or_wet & set(m.applies_to), m.id
            assert m.eligibility.get("min_precipitation_mm", 0) >= 400, m.id
        if m.ecosystem == "wetland" and m.converts_to is not None:
            assert m.converts_to // 10 != 2
    assert catalogue["cropland_to_forest"].eligibility["min_slope_deg"] == 25
    assert catalogue["natural_grassland_enclosure"].applies_to == (32, 33)


def test_every_entry_cites_its_source(catalogue):
    for m in catalogue.values():
        assert m.source, m.id
        if m.in_table1:
            assert "table 1" in m.source["table"]
        if m.potential_gt_co2 is not None:
            assert "line" in m.source["potential"], m.id
        if m.rate_t_c_ha is not None:
            assert m.source.get("rate"), m.id


def test_document_header():
    doc = yaml.safe_load(Path(ms.__file__).parent.parent.joinpath("data", "measures.yaml")
                         .read_text(encoding="utf-8"))
    assert doc["version"]
    assert "10.16418/j.issn.1000-3045.20220121002" in doc["source"]
    assert {"potential_gt_co2", "rate_t_c_ha", "saturation_years", "eligibility"} <= set(doc["units"])


# ---- user catalogues ----
def _write(tmp_path, text, name="mine.yaml"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


NEW = """
  - id: biochar
    name: Biochar
    ecosystem: cropland
    rate_t_c_ha: {low: 0.5, central: 1.0, high: 1.5}
    applies_to: [1]
    ramp_years: 3
    saturation_years: null
"""


def test_extends_default_overrides_and_adds(tmp_path):
    p = _write(tmp_path, "extends: default\nmeasures:\n  - id: no_tillage\n"
                         "    rate_t_c_ha: [0.2, 0.3]\n" + NEW)
    got = ms.measures_by_id(ms.load_measures(p))
    assert len(got) == 32
    assert got["no_tillage"].rate_t_c_ha == ms.Range(0.2, 0.25, 0.3)
    assert got["no_tillage"].stars_sink == 2 and got["no_tillage"].potential_group
    assert got["biochar"].applies_to == (1,) and got["biochar"].saturation_years is None
    assert got["biochar"].stars_sink is None and not got["biochar"].in_table1


def test_standalone_yaml_list_and_csv(tmp_path):
    p = _write(tmp_path, NEW.replace("\n  ", "\n"))
    [m] = ms.load_measures(p)
    assert m.id == "biochar"
    c = tmp_path / "mine.csv"
    c.write_text("id,name,ecosystem,rate_low,rate_central,rate_high,applies_to,eligibility,"
                 "ramp_years,saturation_years,stars_sink\n"
                 "biochar,Biochar,cropland,0.5,,1.5,11;12,min_slope_deg=0;max_slope_deg=15,3,,2\n",
                 encoding="utf-8")
    [m] = ms.load_measures(c)
    assert m.rate_t_c_ha == ms.Range(0.5, 1.0, 1.5)
    assert m.applies_to == (11, 12) and m.eligibility == {"min_slope_deg": 0, "max_slope_deg": 15}
    assert m.stars_sink == 2 and m.saturation_years is None
    assert len(ms.load_measures(c, extends="default")) == 32


BAD = [
    ("ecosystem: desert", "ecosystem", "unknown ecosystem"),
    ("stars_sink: 4", "stars_sink", "1–3"),
    ("stars_overall: 0", "stars_overall", "1–3"),
    ("ipcc: maybe", "ipcc", "true or false"),
    ("rate_t_c_ha: {low: -0.1, central: 0.2, high: 0.3}", "rate_t_c_ha", "negative"),
    ("potential_gt_co2: [0.2, 0.1, 0.3]", "potential_gt_co2", "low ≤ central ≤ high"),
    ("rate_t_c_ha: {low: 0.1, central: 0.4, high: 0.3}", "rate_t_c_ha", "low ≤ central ≤ high"),
    ("ramp_years: -1", "ramp_years", "≥ 0"),
    ("saturation_years: -5", "saturation_years", "≥ 0"),
    ("decline_years: -5", "decline_years", "≥ 0"),
    ("saturation_years: 2", "saturation_years", "before the end of the ramp"),
    ("applies_to: [12, 99]", "applies_to", "99 is not a land-use"),
    ("converts_to: 7", "converts_to", "7 is not a land-use code"),
    ("eligibility: {min_slope: 15}", "eligibility", "unknown rule"),
    ("eligibility: {min_elevation_m: 3000, max_elevation_m: 1000}", "eligibility", "min_elevation_m"),
    ("rate_t_c_ha_: 0.3", "rate_t_c_ha_", "did you mean 'rate_t_c_ha'"),
    ("potential_gt_co2: [0.1, 0.2]", "potential_gt_co2", "shares one potential"),
    ("table_row: 3", "table_row", "also 'reduced_tillage'"),
]


@pytest.mark.parametrize("line, field, words", BAD)
def test_bad_entries_name_file_measure_and_field(tmp_path, line, field, words):
    p = _write(tmp_path, f"extends: default\nmeasures:\n  - id: no_tillage\n    {line}\n")
    with pytest.raises(MeasureError) as ei:
        ms.load_measures(p)
    e = ei.value
    assert isinstance(e, ValueError)
    assert e.measure == "no_tillage" and e.field == field
    msg = str(e)
    assert str(p) in msg and "'no_tillage'" in msg and repr(field) in msg and words in msg, msg


def test_duplicated_ids(tmp_path):
    p = _write(tmp_path, "measures:" + NEW + NEW)
    with pytest.raises(MeasureError, match=r"mine.yaml.*'biochar'.*'id'.*duplicated"):
        ms.load_measures(p)
    as_pathway = NEW.replace("ecosystem: cropland", "ecosystem: cropland\n    kind: eco_ccus")
    p = _write(tmp_path, "measures:" + NEW + "pathways:" + as_pathway)
    with pytest.raises(MeasureError, match="duplicated"):
        ms.load_measures(p)


def test_missing_name_and_bad_id(tmp_path):
    with pytest.raises(MeasureError, match=r"'x'.*'name'.*missing"):
        ms.load_measures(_write(tmp_path, "measures:\n  - {id: x, ecosystem: forest}\n"))
    with pytest.raises(MeasureError, match=r"'No-Till'.*'id'.*snake_case"):
        ms.load_measures(_write(tmp_path,
                                "measures:\n  - {id: No-Till, name: n, ecosystem: forest}\n"))
    with pytest.raises(MeasureError, match=r"'t'.*'stars_sink'.*missing"):
        ms.load_measures(_write(tmp_path, "measures:\n  - {id: t, name: n, name_zh: 树, "
                                          "ecosystem: forest, table_row: 1}\n"))
    with pytest.raises(MeasureError, match=r"'p'.*'kind'"):
        ms.load_measures(_write(tmp_path, "pathways:\n  - {id: p, name: n, ecosystem: urban}\n"))


def test_codes_checked_against_the_class_table_given(tmp_path):
    classes = pd.DataFrame({"code": [1, 2, 3], "name": ["crop", "forest", "grass"],
                            "primary": [1, 2, 3]})
    p = _write(tmp_path, "measures:\n  - {id: a, name: A, ecosystem: forest, applies_to: [1, 3],"
                         " converts_to: 2}\n")
    [m] = ms.load_measures(p, classes=classes)
    assert m.applies_to == (1, 3)
    with pytest.raises(MeasureError, match=r"'a'.*'applies_to'.*12 is not"):
        ms.load_measures(_write(tmp_path, "measures:\n  - {id: a, name: A, ecosystem: forest, "
                                          "applies_to: [12]}\n"), classes=classes)
    with pytest.raises(MeasureError, match=r"default measure catalogue.*'applies_to'"):
        ms.load_measures(classes=classes)


def test_csv_errors_name_the_column(tmp_path):
    c = tmp_path / "m.csv"
    c.write_text("id,name,ecosystem,stars_sink\nx,X,forest,5\n", encoding="utf-8")
    with pytest.raises(MeasureError, match=r"m.csv.*'x'.*'stars_sink'.*1–3"):
        ms.load_measures(c)
    c.write_text("id,name,ecosystem,colour\nx,X,forest,red\n", encoding="utf-8")
    with pytest.raises(MeasureError, match=r"'colour'.*unknown column"):
        ms.load_measures(c)


def test_error_pickles():
    e = MeasureError("f.yaml", "m", "rate_t_c_ha", "negative")
    e2 = pickle.loads(pickle.dumps(e))
    assert str(e2) == str(e) == "f.yaml, measure 'm', field 'rate_t_c_ha': negative"


# ---- eligibility and area checks ----
def test_eligibility_mask(catalogue):
    lulc = np.array([12, 12, 12, 11, 21, 12])
    slope = np.array([30.0, 10.0, 40.0, 30.0, 30.0, np.nan])
    precip = np.array([800.0, 800.0, 300.0, 800.0, 800.0, 800.0])
    m = catalogue["cropland_to_forest"]
    np.testing.assert_array_equal(
        ms.eligibility_mask(m, lulc, slope_deg=slope, precipitation_mm=precip),
        [True, False, False, False, False, False])
    with pytest.raises(MeasureError, match=r"'cropland_to_forest'.*'eligibility'.*slope_deg"):
        ms.eligibility_mask(m, lulc, precipitation_mm=precip)
    user = ms.Measure(id="u", name="U", name_zh="", ecosystem="cropland", applies_to=(1,))
    np.testing.assert_array_equal(ms.eligibility_mask(user, lulc), [1, 1, 1, 1, 0, 1])
    assert not ms.eligibility_mask(catalogue["seaweed_culture"], lulc).any()


def test_check_area():
    assert ms.check_area("no_tillage", 1e6, 1e6) == 1e6
    assert ms.check_area("no_tillage", 1e6 * (1 + 1e-7), 1e6) > 1e6     # within the tolerance
    with pytest.raises(MeasureError, match=r"'no_tillage'.*'area_ha'.*larger than the eligible"):
        ms.check_area("no_tillage", 2e6, 1e6)
    with pytest.raises(MeasureError, match="'eligible_ha'"):
        ms.check_area("no_tillage", 1.0, float("nan"))


# ---- scenarios ----
def _scenario(**over):
    doc = {"name": "double", "years": "2020-2060", "target_gt_co2": [2.0, 2.5],
           "target_years": [2050, 2060], "baseline": {"gt_co2": [1.0, 1.15, 1.3]},
           "measures": [{"id": "no_tillage", "share_of_eligible": 0.5, "start_year": 2025},
                        {"id": "afforestation_reforestation", "area_ha": 2.0e7,
                         "start_year": 2025, "ramp_years": 15},
                        {"id": "natural_grassland_enclosure", "potential_share": 1.0,
                         "saturation_years": None}]}
    doc.update(over)
    return doc


def test_scenario_loads_with_defaults_and_overrides(catalogue, tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(_scenario(), allow_unicode=True), encoding="utf-8")
    for src in (_scenario(), p):
        s = ms.load_scenario(src, catalogue)
        assert (s.start_year, s.end_year, s.target_gt_co2, s.target_years) == \
            (2020, 2060, (2.0, 2.5), (2050, 2060))
        assert s.baseline.gt_co2 == ms.Range(1.0, 1.15, 1.3) and s.baseline.resolved
        nt, af, gr = s.measures
        assert nt.mode == "share_of_eligible" and nt.ramp_years == 5 and nt.saturation_years == 20
        assert af.ramp_years == 15 and af.saturation_years == 40
        assert gr.start_year == 2020 and gr.saturation_years is None and gr.uses_potential
        assert s.years()[[0, -1]].tolist() == [2020, 2060]
    s = ms.load_scenario({"name": "x", "years": [2020, 2060], "baseline": {
        "store": "s3://bucket/store", "product": "sink", "variable": "ecosystem_sink"}})
    assert not s.baseline.resolved and s.target_gt_co2 == (2.0, 2.5)


SCENARIO_BAD = [
    ({"measures": [{"id": "no_tilage", "area_ha": 1}]}, "no_tilage", "id", "did you mean"),
    ({"measures": [{"id": "no_tillage", "share_of_eligible": 1.2}]}, "no_tillage",
     "share_of_eligible", "0–1"),
    ({"measures": [{"id": "no_tillage", "potential_share": -0.1}]}, "no_tillage",
     "potential_share", "≥ 0"),
    ({"measures": [{"id": "no_tillage", "area_ha": 1e6, "share_of_eligible": 0.2}]},
     "no_tillage", "area_ha", "exactly one"),
    ({"measures": [{"id": "no_tillage"}]}, "no_tillage", "area_ha", "exactly one"),
    ({"measures": [{"id": "forest_tending", "area_ha": 1e6}]}, "forest_tending", "area_ha",
     "needs a rate"),
    ({"measures": [{"id": "cropland_to_grassland", "potential_share": 0.5}]},
     "cropland_to_grassland", "potential_share", "no national potential"),
    ({"measures": [{"id": "eco_ccus_degraded_land_biomass", "share_of_eligible": 0.5},
                    {"id": "seaweed_culture", "area_ha": 1}]}, "seaweed_culture", "area_ha",
     "needs a rate"),
    ({"measures": [{"id": "no_tillage", "area_ha": 1e6, "start_year": 2070}]}, "no_tillage",
     "start_year", "after the scenario's end"),
    ({"measures": [{"id": "no_tillage", "area_ha": 1e6, "start_year": 1990}]}, "no_tillage",
     "start_year", "outside 2000–2100"),
    ({"measures": [{"id": "no_tillage", "area_ha": 1e6, "ramp_years": -1}]}, "no_tillage",
     "ramp_years", "≥ 0"),
    ({"measures": [{"id": "no_tillage", "area_ha": 1e6, "ramp_years": 30}]}, "no_tillage",
     "saturation_years", "before the end of the ramp"),
    ({"measures": [{"id": "no_tillage", "area_ha": 1e6, "colour": "red"}]}, "no_tillage",
     "colour", "unknown field"),
    ({"measures": [{"id": "no_tillage", "potential_share": 0.6},
                    {"id": "straw_return", "potential_share": 0.6}]}, "straw_return",
     "potential_share", "cropland_soc_management"),
    ({"measures": [{"id": "no_tillage", "share_of_eligible": 0.6},
                    {"id": "no_tillage", "share_of_eligible": 0.6, "start_year": 2030}]},
     "no_tillage", "share_of_eligible", "sums to 1.2"),
    ({"baseline": {"store": "s3://x", "variable": "ecosystem_sink"},
          "measures": [{"id": "inorganic_sink", "potential_share": 1.0}]}, "inorganic_sink", "id",
     "already holds this sink"),
    ({"years": "1990-2060"}, None, "years", "outside 2000–2100"),
    ({"years": "2060-2020"}, None, "years", "starts after it ends"),
    ({"years": "2020-2045"}, None, "target_years", "not within"),
    ({"target_gt_co2": [2.5, 2.0]}, None, "target_gt_co2", "lower 2.5 > upper 2"),
    ({"baseline": {"gt_co2": 1.1, "store": "s3://x"}}, None, "baseline", "either"),
    ({"baseline": {"gt_co2": [1.3, 1.1, 1.0]}}, None, "baseline", "low ≤ central ≤ high"),
]


@pytest.mark.parametrize("over, mid, field, words", SCENARIO_BAD)
def test_bad_scenarios_name_measure_and_field(catalogue, over, mid, field, words):
    with pytest.raises(MeasureError) as ei:
        ms.load_scenario(_scenario(**over), catalogue)
    e = ei.value
    assert e.measure == mid and e.field == field, str(e)
    assert words in str(e) and "scenario" in str(e), str(e)


def test_double_count_can_be_allowed(catalogue):
    s = ms.load_scenario(_scenario(baseline={"gt_co2": 1.1, "variable": "ecosystem_sink"}, measures=[
        {"id": "inorganic_sink", "potential_share": 1.0, "allow_double_count": True}]), catalogue)
    assert s.measures[0].allow_double_count
    ms.load_scenario(_scenario(baseline={"gt_co2": 1.1}, measures=[
        {"id": "inorganic_sink", "potential_share": 1.0}]), catalogue)        # no variable: no check


def test_unknown_pathway_without_pathways(table1):
    with pytest.raises(MeasureError, match="unknown measure id"):
        ms.load_scenario(_scenario(measures=[{"id": "eco_ccus_straw", "potential_share": 1}]), table1)


def test_projection_inputs_and_area_check(catalogue):
    s = ms.load_scenario(_scenario(), catalogue)
    with pytest.raises(MeasureError, match=r"'no_tillage'.*'share_of_eligible'.*eligible_ha"):
        ms.projection_inputs(s)
    with pytest.raises(MeasureError, match=r"'afforestation_reforestation'.*'area_ha'.*larger"):
        ms.projection_inputs(s, {"no_tillage": 1e8, "afforestation_reforestation": 1.5e7})
    inp = ms.projection_inputs(s, {"no_tillage": 1e8, "afforestation_reforestation": 3e7})
    assert inp["ids"] == ["no_tillage", "afforestation_reforestation", "natural_grassland_enclosure"]
    np.testing.assert_array_equal(inp["amounts"], [5e7, 2e7, 1.0])
    assert inp["kind"].tolist() == ["rate", "rate", "potential"]
    np.testing.assert_array_equal(inp["saturations"], [20, 40, np.inf])
    np.testing.assert_array_equal(inp["values"][2], [0.06, 0.07, 0.08])
    # end to end through the kernels
    years = s.years()
    added = sc.project(years, inp["values"], inp["amounts"], inp["starts"], inp["ramps"],
                       inp["saturations"], inp["declines"], kind=inp["kind"])
    tot = sc.combine(s.baseline.gt_co2.as_array(), added)
    i = int(np.flatnonzero(years == 2040)[0])
    nt = 0.243 * 5e7 * 44.01 / 12.011 * 1e-9                  # no-till at full effect in 2040
    af = 0.73 * 2e7 * 44.01 / 12.011 * 1e-9                   # 15-year ramp from 2025: full
    assert tot[i, 1] == pytest.approx(1.15 + nt + af + 0.07)
    res = sc.target_met(years, tot, *s.target_gt_co2)
    assert res["central_reaches_lower"] is None                # far from doubling
