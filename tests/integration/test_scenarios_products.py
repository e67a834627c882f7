"""`carbonsink scenarios` end to end on the synthetic China (1°, 2000-2005): the demo set and a
hand-written pair of scenarios with a user catalogue and pool table, checked against hand
arithmetic — the projection (rate × area × 44.01/12.011 × 1e-9 × the trapezoid mean), the exact and
ranked allocation, the added-sink map against the projection, the InVEST stock change of the
land-use changes, the seed's numbers; bad input stops the run before anything is published; a
study area keeps only the scenarios that can be placed on it.

One store for the whole module: the demo run publishes the synthetic inputs and the sink once, every
later run on the same grid and years reuses them and computes only the scenarios."""
from __future__ import annotations

import io
import math
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from carbonsink.cli import main
from carbonsink.io.measures import MeasureError, eligibility_mask, load_measures, measures_by_id
from carbonsink.io.store import Store
from carbonsink.products import scenarios as sc
from carbonsink.zonal import cell_area_da

pytestmark = pytest.mark.integration

C2CO2 = 44.01 / 12.011
GRID = ("--resolution", "1", "--years", "2000-2005")
DEMO = ("seed_measures", "seed_pathways", "spatial_measures")

HAND = """\
name: hand_two
years: 2020-2060
baseline: {gt_co2: [1.0, 1.1, 1.3], variable: hand_baseline}
measures:
  - {id: afforestation_reforestation, area_ha: 2.2e7, start_year: 2025, ramp_years: 4,
     saturation_years: 30, decline_years: 10}
  - {id: no_tillage, share_of_eligible: 0.4, start_year: 2022, ramp_years: 0,
     saturation_years: null, decline_years: 0}
"""
# farmland to forest by slope: at 1° the synthetic farmland is gentle, so the user catalogue
# lowers the seed's 25° to 0.1° (and drops its precipitation rule) to place it steepest first
SLOPE = """\
name: hand_slope
years: 2020-2060
baseline: {gt_co2: 1.1}
measures:
  - {id: cropland_to_forest, share_of_eligible: 0.5, start_year: 2025}
  - {id: organic_fertiliser, share_of_eligible: 0.25, start_year: 2025}
"""
# tranches: one measure in two parts with different starts; the shares add up to all of it
TRANCHES = """\
name: hand_tranches
years: 2020-2060
baseline: {gt_co2: 1.1}
measures:
  - {id: no_tillage, share_of_eligible: 0.5, start_year: 2025, label: no_till_early}
  - {id: no_tillage, share_of_eligible: 0.5, start_year: 2030, label: no_till_late}
  - {id: cropland_to_grassland, share_of_eligible: 0.5, start_year: 2025, label: to_grass_early}
  - {id: cropland_to_grassland, share_of_eligible: 0.5, start_year: 2030, label: to_grass_late}
"""
CATALOGUE = """\
extends: default
measures:
  - {id: cropland_to_forest, eligibility: {min_slope_deg: 0.1}}
"""
# InVEST pools (t C ha-1): the primary classes, plus forest (21) and other woodland (24) with
# totals of their own (345 and 175 against the forest class's 331.21)
POOLS = """\
lucode,c_above,c_below,c_soil,c_dead
1,17,80.7,108.4,9.82
2,42.4,115.9,158.8,14.11
21,50,120,160,15
24,20,60,90,5
3,35.3,86.5,99.9,7.28
4,0.3,0,0,0
5,2.5,27.5,0,0
6,1.3,0,21.6,0
"""


def _cli(*args):
    return CliRunner().invoke(main, ["scenarios", *args, "--workers", "2", "--no-progress",
                                     "--atlas", ""])


def _ok(r):
    assert r.exit_code == 0, r.output + repr(r.exception)
    return r.output


class Run:
    """One published version of the scenarios product, its tables and the inputs it used."""

    def __init__(self, root, output, catalogue=None, pools=None):
        st = Store(str(root))
        self.st, self.output = st, output
        self.version = st.resolve("products", "scenarios", "latest")
        self.record = st.record("products", "scenarios", self.version)
        self.inputs_version = st.resolve("inputs", "synthetic", "latest")
        self.catalogue = measures_by_id(load_measures(catalogue, include_pathways=True))
        self.pools = pools

    def table(self, name):
        return pd.read_csv(io.BytesIO(self.st.read_bytes(self.record["attachments"][name])))

    def dataset(self):
        return self.st.open("products", "scenarios", self.version).load()

    def inputs(self):
        return self.st.open("inputs", "synthetic", self.inputs_version).load()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("scenario_files")
    for name, text in (("hand.yaml", HAND), ("slope.yaml", SLOPE), ("tranches.yaml", TRANCHES),
                       ("catalogue.yaml", CATALOGUE), ("pools.csv", POOLS)):
        (d / name).write_text(text)
    (d / "run.yaml").write_text(f"services: {{carbon_pools: {d / 'pools.csv'}}}\n"
                                f"scenarios: {{measures: {d / 'catalogue.yaml'}}}\n")
    return d


@pytest.fixture(scope="module")
def runs(tmp_path_factory, files):
    """The demo set, then the hand scenarios (user catalogue and pools) in the same store."""
    root = tmp_path_factory.mktemp("scenarios") / "store"
    demo = Run(root, _ok(_cli("--store", str(root), *GRID)))
    hand = Run(root, _ok(_cli(str(files / "hand.yaml"), str(files / "slope.yaml"),
                              str(files / "tranches.yaml"), "--config", str(files / "run.yaml"),
                              "--store", str(root), *GRID)),
               catalogue=str(files / "catalogue.yaml"), pools=files / "pools.csv")
    assert hand.inputs_version == demo.inputs_version            # the inputs were reused
    return {"root": root, "demo": demo, "hand": hand}


# ---- hand arithmetic ----------------------------------------------------------------------------
def _profile(tau, r, s, d):
    """The documented trapezoid at τ years after the start."""
    if tau < 0:
        return 0.0
    up = 1.0 if r == 0 else min(tau / r, 1.0)
    if tau < s:
        return up
    return 0.0 if d == 0 else max(0.0, 1.0 - (tau - s) / d)


def _ramp(year, start, r, s, d, steps=2000):
    """Its mean over [year, year + 1) (midpoint rule: exact for integer break points)."""
    return sum(_profile(year + (k + 0.5) / steps - start, r, s, d) for k in range(steps)) / steps


def _area_ha(ds):
    return (cell_area_da(ds) * 1e-4).values


def _priority(measure, cov):
    return cov["slope"] if any(k.endswith("slope_deg") for k in measure.eligibility) \
        else cov["precip"]


def _covariates(run):
    inp = run.inputs()
    return inp, {"slope": sc.slope_map(inp["elevation"]).values,
                 "elevation": inp["elevation"].values,
                 "precip": sc.annual_precipitation(inp["pr"]).values}


# ---- the demo set --------------------------------------------------------------------------------
def test_demo_set_published_with_its_tables(runs):
    demo = runs["demo"]
    assert set(demo.record["attachments"]) >= {"projection.csv", "target.csv", "measures.csv",
                                               "region_totals.csv"}
    ds = demo.dataset()
    assert list(ds.scenario.values) == list(DEMO)
    assert ds.attrs["scenarios_skipped"] == ""
    assert ds.treated_fraction.dims == ("scenario", "measure", "lat", "lon")
    assert ds.added_sink.dims == ("scenario", "year", "lat", "lon")
    assert list(ds.added_sink.year.values) == [2050, 2060]
    assert ds.added_sink.attrs["units"] == "g m-2 yr-1"
    assert ds.stock_change.attrs["units"] == "t km-2"
    # only what the scenarios need was computed: no trends, attribution or services
    out = demo.output
    assert "scenarios: seed_measures:" in out and "trends_nep" not in out
    assert "services_storage" not in out


def test_seed_measures_cropland_potential_in_2050_and_2060(runs):
    p = runs["demo"].table("projection.csv")
    p = p[p.scenario == "seed_measures"]
    for year in (2050, 2060):
        crop = p[(p.year == year) & p.component.isin(["no_tillage", "organic_fertiliser"])]
        assert len(crop) == 2
        assert crop.low.sum() == pytest.approx(0.14, abs=1e-9)
        assert crop.central.sum() == pytest.approx(0.155, abs=1e-9)
        assert crop.high.sum() == pytest.approx(0.17, abs=1e-9)


def test_seed_pathways_reach_the_lower_bound_and_the_cli_says_so(runs):
    demo = runs["demo"]
    t = demo.table("target.csv").set_index("scenario")
    row = t.loc["seed_pathways"]
    assert pd.notna(row.central_reaches_lower)
    year = int(row.central_reaches_lower)
    assert 2020 <= year <= 2060
    assert row.target_low == 2.0 and row.target_high == 2.5
    assert row.baseline_from == "given"
    assert row.total_2060_central >= 2.0 and bool(row.met_by_central)
    line = [x for x in demo.output.splitlines() if x.startswith("scenarios: seed_pathways:")]
    assert len(line) == 1, demo.output
    assert line[0].startswith("scenarios: seed_pathways: baseline 1.15 (1.00-1.30) Gt CO2 a-1, "
                              "2060 total ")
    assert line[0].endswith(f"vs target 2-2.5: central reaches 2 in {year}"), line[0]
    # the measured baseline of the other two: min / mean / max of the sink's last 5 years
    for name in ("seed_measures", "spatial_measures"):
        assert t.loc[name, "baseline_from"].startswith("ecosystem_sink 2001-2005")
        assert t.loc[name, "baseline_low"] <= t.loc[name, "baseline_central"] \
            <= t.loc[name, "baseline_high"]


@pytest.mark.parametrize("which", ["demo", "hand"])
def test_totals_are_the_baseline_plus_the_measures_column_by_column(runs, which):
    run = runs[which]
    p = run.table("projection.csv")
    ds = run.dataset()
    for (name, year), g in p.groupby(["scenario", "year"]):
        base = g[g.component == "baseline"][["low", "central", "high"]].to_numpy()[0]
        total = g[g.component == "total"][["low", "central", "high"]].to_numpy()[0]
        parts = g[~g.component.isin(["baseline", "total"])][["low", "central", "high"]]
        np.testing.assert_allclose(total, base + parts.to_numpy().sum(axis=0), rtol=1e-9)
        assert (parts.low <= parts.central + 1e-12).all() and \
            (parts.central <= parts.high + 1e-12).all()
        assert total[0] <= total[1] <= total[2]
        np.testing.assert_allclose(ds.total_sink.sel(scenario=name, projection_year=year).values,
                                   total, rtol=1e-9)
        np.testing.assert_allclose(ds.baseline_sink.sel(scenario=name).values, base, rtol=1e-9)


# ---- the hand scenarios: projection by hand ------------------------------------------------------
def test_two_measure_projection_by_hand(runs):
    hand = runs["hand"]
    inp, cov = _covariates(hand)
    year = int(hand.dataset().attrs["allocation_year"])
    assert year == 2005                                            # the run's last year
    lulc = inp["lulc"].sel(year=year).values
    area = _area_ha(inp)
    cat = hand.catalogue
    no_till = cat["no_tillage"]
    elig_nt = eligibility_mask(no_till, lulc, slope_deg=cov["slope"],
                               elevation_m=cov["elevation"], precipitation_mm=cov["precip"])
    eligible_nt = float((elig_nt * area).sum())
    m = hand.table("measures.csv")
    m = m[m.scenario == "hand_two"].set_index("component")
    assert m.loc["no_tillage", "eligible_ha"] == pytest.approx(eligible_nt, rel=1e-6)
    assert m.loc["no_tillage", "allocated_ha"] == pytest.approx(0.4 * eligible_nt, rel=1e-6)
    assert m.loc["afforestation_reforestation", "allocated_ha"] == pytest.approx(2.2e7, rel=1e-12)

    # (rate t C ha-1 a-1, area ha, start, ramp, saturation, decline) as written in the file
    spec = {"afforestation_reforestation": (cat["afforestation_reforestation"].rate_t_c_ha,
                                            2.2e7, 2025, 4, 30, 10),
            "no_tillage": (no_till.rate_t_c_ha, 0.4 * eligible_nt, 2022, 0, math.inf, 0)}
    p = hand.table("projection.csv")
    p = p[p.scenario == "hand_two"]
    assert sorted(p.year.unique()) == list(range(2020, 2061))
    for year_, g in p.groupby("year"):
        g = g.set_index("component")
        total = np.array([1.0, 1.1, 1.3])
        np.testing.assert_allclose(g.loc["baseline", ["low", "central", "high"]].to_numpy(
            dtype=float), total, rtol=1e-12)
        for comp, (rate, ha, start, r, s, d) in spec.items():
            f = _ramp(year_, start, r, s, d)
            want = np.array([rate.low, rate.central, rate.high]) * ha * C2CO2 * 1e-9 * f
            got = g.loc[comp, ["low", "central", "high"]].to_numpy(dtype=float)
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-12, err_msg=f"{comp} {year_}")
            total = total + want
        np.testing.assert_allclose(g.loc["total", ["low", "central", "high"]].to_numpy(
            dtype=float), total, rtol=1e-6)
    # the ramp by hand: 1/8, 3/8, 5/8, 7/8 of the effect in the first four years, gone after 40
    aff = p[p.component == "afforestation_reforestation"].set_index("year").central
    full = aff.loc[2030]
    np.testing.assert_allclose(aff.loc[2025:2028].to_numpy() / full, [1 / 8, 3 / 8, 5 / 8, 7 / 8],
                               rtol=1e-9)
    assert aff.loc[2024] == 0.0 and aff.loc[2054] == full
    assert aff.loc[2060] == pytest.approx(full * 0.45, rel=1e-9)   # 5.5 of 10 decline years gone
    nt = p[p.component == "no_tillage"].set_index("year").central
    assert nt.loc[2021] == 0.0 and nt.loc[2022] == nt.loc[2060] > 0   # ramp 0: full at once
    # measures.csv echoes the pace and the 2050 / 2060 values
    assert m.loc["no_tillage", "start_year"] == 2022
    assert pd.isna(m.loc["no_tillage", "saturation_years"])
    assert m.loc["afforestation_reforestation", "added_2060_central"] == pytest.approx(
        aff.loc[2060], rel=1e-9)
    # the map per cell: treated share × central rate (t C ha-1 a-1 → t C km-2 a-1) × the ramp
    ds = hand.dataset()
    for y in (2050, 2060):
        want = sum(np.nan_to_num(ds.treated_fraction.sel(scenario="hand_two", measure=c).values)
                   * rate.central * 100.0 * _ramp(y, start, r, s, d)
                   for c, (rate, _ha, start, r, s, d) in spec.items())
        want = np.where(np.isfinite(lulc), want, np.nan)
        got = ds.added_sink.sel(scenario="hand_two", year=y).values.astype("f8")
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4, equal_nan=True)


# ---- allocation: exact and ranked ----------------------------------------------------------------
@pytest.mark.parametrize("which", ["demo", "hand"])
def test_allocation_is_exact_and_ranked(runs, which):
    """Per mapped measure: Σ treated share × true cell area = allocated_ha = the request; the
    eligible area recomputed from the map (its classes, rules and the share earlier land-use
    changes left free) = eligible_ha; every cell taken whole ranks (precipitation, or slope for a
    slope rule) at or above every eligible cell left untreated, the one partial class between."""
    run = runs[which]
    inp, cov = _covariates(run)
    ds = run.dataset()
    lulc = inp["lulc"].sel(year=int(ds.attrs["allocation_year"])).values
    area = _area_ha(inp)
    land = np.isfinite(lulc) & (lulc > 0)
    meas = run.table("measures.csv")
    checked = 0
    for name in ds.scenario.values:
        free = land.astype("f8")
        used, first = {}, {}     # tranches: what earlier tranches of an id treated, its eligible
        rows = meas[meas.scenario == name]
        for r in rows.itertuples():
            m = run.catalogue[r.measure]
            if not r.mapped:
                assert m.applies_to == () and r.mode == "potential_share"
                continue
            tf = ds.treated_fraction.sel(scenario=name, measure=r.component).values.astype("f8")
            assert np.all(np.isnan(tf) == ~np.isfinite(lulc))
            tf = np.nan_to_num(tf)
            mask = eligibility_mask(m, lulc, slope_deg=cov["slope"], elevation_m=cov["elevation"],
                                    precipitation_mm=cov["precip"])
            elig = mask * free
            if r.measure in used and r.mode != "potential_share":
                elig = np.clip(elig - used[r.measure], 0.0, None)
            first.setdefault(r.measure, (elig * area).sum())
            assert r.available_ha == pytest.approx((elig * area).sum(), rel=1e-5, abs=1e-3)
            assert r.eligible_ha == pytest.approx(first[r.measure], rel=1e-5, abs=1e-3)
            if r.mode == "share_of_eligible":
                assert r.allocated_ha == pytest.approx(r.amount * r.eligible_ha, rel=1e-9)
            elif r.mode == "area_ha":
                assert r.allocated_ha == pytest.approx(r.amount, rel=1e-12)
            else:                                          # a national potential, spread evenly
                assert r.allocated_ha == pytest.approx(r.available_ha, rel=1e-12)
            assert (tf * area).sum() == pytest.approx(r.allocated_ha, rel=1e-5, abs=1e-3)
            assert np.all(tf <= elig + 1e-6) and np.all(tf >= 0)
            assert np.all(tf[elig == 0] == 0)
            ok = elig > 0
            full = ok & (tf >= elig * (1 - 1e-5))
            none = ok & (tf == 0)
            part = ok & ~full & ~none
            if 0 < r.allocated_ha < r.available_ha * (1 - 1e-9):
                prio = _priority(m, cov)
                assert r.priority == ("steepest first" if prio is cov["slope"] else
                                      "wettest first")
                assert full.any() and none.any(), (name, r.component)
                assert prio[full].min() >= prio[none].max(), (name, r.component)
                if part.any():
                    assert prio[part].min() >= prio[none].max()
                    assert prio[part].max() <= prio[full].min()
                    # the partial cells are one priority class, taken for one share
                    share = tf[part] / elig[part]
                    np.testing.assert_allclose(share, share[0], rtol=1e-5)
                checked += 1
            if m.converts_to is not None and r.mode != "potential_share":
                free = np.clip(free - tf, 0.0, None)      # land-use changes take cells exclusively
            if r.mode != "potential_share":
                used[r.measure] = used.get(r.measure, 0.0) + (0.0 if m.converts_to is not None
                                                              else tf)
    # the hand set ranks afforestation and no-till (wettest) and farmland to forest (steepest) and
    # manure on what it left; the demo's spatial set afforestation, fencing, no-till, manure
    assert checked >= 4


def test_slope_rule_allocates_steepest_first(runs):
    m = runs["hand"].table("measures.csv").set_index(["scenario", "component"])
    row = m.loc[("hand_slope", "cropland_to_forest")]
    assert row.priority == "steepest first" and row.eligible_ha > 0
    assert m.loc[("hand_slope", "organic_fertiliser"), "priority"] == "wettest first"
    # the farmland converted to forest is no longer eligible for manure
    crop = m.loc[("hand_two", "no_tillage"), "eligible_ha"]      # all farmland, nothing converted
    assert m.loc[("hand_slope", "organic_fertiliser"), "eligible_ha"] == pytest.approx(
        crop - row.allocated_ha, rel=1e-5)


@pytest.mark.parametrize("a, b", [("no_till_early", "no_till_late"),
                                  ("to_grass_early", "to_grass_late")])
def test_tranches_of_one_measure_share_its_eligible_area(runs, a, b):
    """Two tranches of share 0.5 (allowed: the shares of one measure sum to at most 1) treat all
    of the measure's eligible area once: no cell beyond its eligible share, 100 % in total."""
    hand = runs["hand"]
    ds = hand.dataset()
    m = hand.table("measures.csv")
    m = m[m.scenario == "hand_tranches"].set_index("component")
    area = _area_ha(ds)
    eligible = m.loc[a, "eligible_ha"]
    tf = sum(np.nan_to_num(ds.treated_fraction.sel(scenario="hand_tranches", measure=c).values)
             for c in (a, b))
    assert tf.max() <= 1 + 1e-6, float(tf.max())
    assert m.loc[a, "allocated_ha"] + m.loc[b, "allocated_ha"] == pytest.approx(eligible,
                                                                                 rel=1e-9)
    assert (tf * area).sum() == pytest.approx(eligible, rel=1e-5)


# ---- the map against the projection --------------------------------------------------------------
@pytest.mark.parametrize("which", ["demo", "hand"])
def test_added_sink_map_total_equals_the_projection_of_the_mapped_measures(runs, which):
    run = runs[which]
    p = run.table("projection.csv")
    meas = run.table("measures.csv")
    reg = run.table("region_totals.csv")
    dom = reg[(reg.quantity == "added sink") & (reg.region_set == "domain")]
    ds = run.dataset()
    area_m2 = cell_area_da(ds).values
    for name in ds.scenario.values:
        mapped = meas[(meas.scenario == name) & meas.mapped.astype(bool)].component
        for year in (2050, 2060):
            gt = p[(p.scenario == name) & (p.year == year) & p.component.isin(mapped)].central.sum()
            want_tg = gt * 1e3 / C2CO2                                    # Gt CO2 → Tg C
            row = dom[(dom.scenario == name) & (dom.year.astype(float) == year)]
            assert len(row) == 1
            assert row.total_tg_c.iloc[0] == pytest.approx(want_tg, rel=1e-4, abs=1e-9), \
                (name, year)
            # and the map itself: g C m-2 a-1 × m² → Tg C a-1
            dens = ds.added_sink.sel(scenario=name, year=year).values.astype("f8")
            assert np.nansum(dens * area_m2) * 1e-12 == pytest.approx(want_tg, rel=1e-4,
                                                                       abs=1e-9)
    if which == "hand":                      # the hand scenarios add something in 2050
        assert dom[dom.scenario == "hand_two"].total_tg_c.min() > 0


# ---- stock change: InVEST pools ------------------------------------------------------------------
def test_stock_change_is_the_treated_share_times_the_pool_difference(runs):
    hand = runs["hand"]
    pools = pd.read_csv(hand.pools).set_index("lucode")
    total = pools[["c_above", "c_below", "c_soil", "c_dead"]].sum(axis=1).to_dict()
    assert total[24] != total[21] != total[2]
    ds = hand.dataset()
    lulc = hand.inputs()["lulc"].sel(year=int(ds.attrs["allocation_year"])).values
    codes = np.nan_to_num(lulc).astype(int)
    # a code without a row of its own uses its primary class's row
    c_cell = np.vectorize(lambda c: total.get(c, total.get(c // 10, np.nan)))(codes)
    c_cell = np.where(np.isfinite(lulc), c_cell, np.nan)
    meas = hand.table("measures.csv")
    seen = set()
    for name in ("hand_two", "hand_slope"):
        expected = np.zeros(lulc.shape)
        for r in meas[meas.scenario == name].itertuples():
            if pd.isna(r.converts_to):
                continue
            tf = np.nan_to_num(ds.treated_fraction.sel(scenario=name, measure=r.component).values)
            to = int(r.converts_to)
            assert to == 21
            expected += tf * (total[to] - c_cell) * 100.0                # t C ha-1 → t km-2
            seen |= set(np.unique(codes[tf > 0]).tolist())
        expected = np.where(np.isfinite(lulc), np.nan_to_num(expected), np.nan)
        got = ds.stock_change.sel(scenario=name).values.astype("f8")
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-2, equal_nan=True,
                                   err_msg=name)
        assert np.nanmax(np.abs(got)) > 0
    # other woodland (its own row), low-cover grassland and dry farmland (their classes' rows)
    assert {12, 24, 33} <= seen


# ---- bad input: a clear error, nothing published -------------------------------------------------
def _versions(root):
    return Store(str(root)).versions("products", "scenarios")


def test_cli_unknown_land_use_class_in_a_user_catalogue(runs, files, tmp_path):
    root = runs["root"]
    before = _versions(root)
    cat = tmp_path / "bad_classes.yaml"
    cat.write_text("extends: default\nmeasures:\n  - {id: no_tillage, applies_to: [99]}\n")
    r = _cli(str(files / "hand.yaml"), "--measures", str(cat), "--store", str(root), *GRID)
    assert r.exit_code == 2, r.output            # README: errors exit with status 2
    assert "error: " in r.output
    assert f"{cat}, measure 'no_tillage', field 'applies_to': 99 is not a land-use code" in \
        r.output, r.output
    assert _versions(root) == before


def test_cli_area_larger_than_eligible(runs, tmp_path):
    root = runs["root"]
    before = _versions(root)
    f = tmp_path / "too_big.yaml"
    f.write_text(textwrap.dedent("""\
        name: too_big
        years: 2020-2060
        baseline: {gt_co2: 1.1}
        measures:
          - {id: no_tillage, share_of_eligible: 0.5}
          - {id: afforestation_reforestation, area_ha: 1.0e12, start_year: 2025}
        """))
    r = _cli(str(f), "--store", str(root), *GRID)
    assert r.exit_code == 2, r.output
    assert f"{f}, measure 'afforestation_reforestation', field 'area_ha': asks for 1e+12 ha " \
           "but only" in r.output, r.output
    assert "ha are eligible on the map" in r.output
    assert _versions(root) == before


def _run_in_process(root, scenario_files, catalogue=None, domain=None):
    from carbonsink.config import load_config
    from carbonsink.pipeline import run_demo

    cfg = load_config(None, grid="1", years="2000-2005", domain=domain, store=str(root),
                      **{"scenarios.files": [str(f) for f in scenario_files],
                         "scenarios.measures": None if catalogue is None else str(catalogue)})
    return run_demo(cfg, families=["scenarios"])


BAD = {
    "negative_rate": (
        "extends: default\nmeasures:\n  - {id: no_tillage, rate_t_c_ha: [-0.1, 0.2, 0.3]}\n",
        "name: s\nyears: 2020-2060\nbaseline: {gt_co2: 1.1}\n"
        "measures:\n  - {id: no_tillage, share_of_eligible: 0.5}\n",
        "catalogue", "no_tillage", "rate_t_c_ha", "low is negative (-0.1)"),
    "years_outside": (
        None,
        "name: s\nyears: 2020-2160\nbaseline: {gt_co2: 1.1}\n"
        "measures:\n  - {id: no_tillage, share_of_eligible: 0.5}\n",
        "scenario", None, "years", "2160 is outside 2000–2100"),
    "start_before_2000": (
        None,
        "name: s\nyears: 2020-2060\nbaseline: {gt_co2: 1.1}\n"
        "measures:\n  - {id: no_tillage, share_of_eligible: 0.5, start_year: 1990}\n",
        "scenario", "no_tillage", "start_year", "1990 is outside 2000–2100"),
    "unknown_id": (
        None,
        "name: s\nyears: 2020-2060\nbaseline: {gt_co2: 1.1}\n"
        "measures:\n  - {id: no_tilage, share_of_eligible: 0.5}\n",
        "scenario", "no_tilage", "id", "unknown measure id; did you mean ['no_tillage']"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_in_process_names_file_measure_field(runs, tmp_path, case):
    cat_text, scen_text, where, measure, field, words = BAD[case]
    root = runs["root"]
    before = _versions(root)
    scen = tmp_path / f"{case}.yaml"
    scen.write_text(scen_text)
    cat = None
    if cat_text is not None:
        cat = tmp_path / f"{case}_catalogue.yaml"
        cat.write_text(cat_text)
    with pytest.raises(MeasureError) as err:
        _run_in_process(root, [scen], catalogue=cat)
    e = err.value
    assert e.source == str(cat if where == "catalogue" else scen)
    assert e.measure == measure and e.field == field
    assert words in str(e), str(e)
    assert str(e).startswith(str(cat if where == "catalogue" else scen))
    assert _versions(root) == before


# ---- a study area --------------------------------------------------------------------------------
def test_study_area_skips_national_potentials_and_keeps_spatial_measures(runs, tmp_path):
    """A province at 1° (Xinjiang: the synthetic demo's 40 river basins need more 1° cells than
    most provinces have): the demo set drops the two scenarios of national potentials (a warning
    each) and keeps spatial_measures; given explicitly, a national scenario is an error."""
    root = runs["root"]
    out = _ok(_cli("--store", str(root), "--domain", "xinjiang", *GRID))
    for name in ("seed_measures", "seed_pathways"):
        assert f"WARNING scenario {name} skipped on Xinjiang" in out, out
    assert "a national potential cannot be placed on a study area" in out
    assert "scenarios: spatial_measures:" in out
    assert "scenarios: seed_measures:" not in out
    st = Store(str(root))
    version = st.resolve("products", "scenarios", "latest")
    assert version not in (runs["demo"].version, runs["hand"].version)
    ds = st.open("products", "scenarios", version)
    assert list(ds.scenario.values) == ["spatial_measures"]
    assert ds.attrs["domain_name"] == "Xinjiang"
    assert ds.attrs["scenarios_skipped"] == "seed_measures, seed_pathways"
    rec = st.record("products", "scenarios", version)
    t = pd.read_csv(io.BytesIO(st.read_bytes(rec["attachments"]["target.csv"])))
    assert list(t.scenario) == ["spatial_measures"]
    m = pd.read_csv(io.BytesIO(st.read_bytes(rec["attachments"]["measures.csv"])))
    # the eligible areas are Xinjiang's, a fraction of China's
    china = runs["demo"].table("measures.csv")
    for comp in ("natural_grassland_enclosure", "no_tillage"):
        here = m[m.component == comp].eligible_ha.iloc[0]
        there = china[(china.scenario == "spatial_measures") & (china.component == comp)]
        assert 0 < here < there.eligible_ha.iloc[0]
    # a national-potential scenario given explicitly: refused, nothing published
    before = _versions(root)
    seed = Path(__file__).parents[2] / "carbonsink" / "data" / "scenarios" / "seed_measures.yaml"
    with pytest.raises(MeasureError, match="a national potential cannot be placed on a study "
                                           "area") as err:
        _run_in_process(root, [seed], domain="xinjiang")
    assert err.value.measure == "no_tillage" and err.value.field == "potential_share"
    assert _versions(root) == before
