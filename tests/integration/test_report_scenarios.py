"""The enhancement-scenarios section of the atlas: a synthetic scenarios run (1°, 2000–2003, the
demo set of three scenarios) gets, per scenario, the projection against the target band, the maps
of the added sink, of the storage change (or a sentence where there is none) and of the treated
shares, and the added sink by province — checked against the product and its tables — drawn from
lazily coarsened maps; a store without the product gets no such section; the page opens."""
import io
import json
import shutil
import xml.etree.ElementTree as ET
from html import unescape

import numpy as np
import pandas as pd
import pytest

import _atlas_browser as B

from carbonsink.config import RunConfig
from carbonsink.io.store import Store
from carbonsink.pipeline import run_demo
from carbonsink.report import build_report, scenarios
from carbonsink.report.contents import discover, role_of
from carbonsink.report.fields import compute_fields
from carbonsink.zonal import cell_area_da

pytestmark = pytest.mark.integration

KINDS = ("projection", "added_map", "treated_maps", "regions")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenarios_atlas")
    store = root / "store"
    run_demo(RunConfig(grid="1", years=(2000, 2003), store=str(store)), families=["scenarios"])
    out = root / "atlas"
    build_report(str(store), out)
    return Store(str(store)), out, json.loads((out / "figures.json").read_text()), store


def _table(st: Store, suffix: str) -> pd.DataFrame:
    rel = st.record("products", "scenarios")["attachments"][suffix]
    return pd.read_csv(io.BytesIO(st.read_bytes(rel)))


def _fig(manifest, fig_id):
    return next(f for f in manifest["figures"] if f["id"] == fig_id)


def _last_year(row) -> int:
    return int(str(row.target_years).split("-")[1])


def test_section_has_every_figure_of_every_scenario_and_its_files(built):
    st, out, manifest, _ = built
    ds = st.open("products", "scenarios")
    names = [str(s) for s in ds.scenario.values]
    assert len(names) == 3 and role_of("scenarios") == "scenarios"
    stock = {s: bool((ds["stock_change"].sel(scenario=s).fillna(0).values != 0).any())
             for s in names}
    expected = {f"scenarios_{s}_{k}" for s in names for k in KINDS} | \
        {f"scenarios_{s}_stock_map" for s in names if stock[s]}
    ours = [f for f in manifest["figures"] if f["section"] == "scenarios"]
    assert {f["id"] for f in ours} == expected
    html = (out / "index.html").read_text()
    assert '<section id="scenarios"><h2>Enhancement scenarios</h2>' in html
    assert '<a href="#scenarios">' in html
    assert html.index('id="scenarios"') > html.index('id="sink"')     # after the sink (services)
    for f in ours:
        png, svg = out / f["png"], out / f["svg"]
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000, f["id"]
        assert svg.stat().st_size > 5000 and ET.parse(svg).getroot().tag.endswith("svg"), f["id"]
        assert f'id="{f["id"]}"' in html and "Source products/scenarios@" in f["caption"]
    for s in names:          # a scenario without land-use change on the map: a sentence
        if not stock[s]:
            assert f"<p>{s}: no storage change anywhere on the map:" in html
    assert (out / "tables" / "scenarios_summary.csv").exists()
    assert (out / "tables" / "scenarios_measures.csv").exists()
    assert "products/scenarios" in manifest["datasets"]


def test_projection_captions_and_lines_come_from_the_tables(built):
    st, _, manifest, _ = built
    target, proj = _table(st, "target.csv"), _table(st, "projection.csv")
    for r in target.itertuples():
        f = _fig(manifest, f"scenarios_{r.scenario}_projection")
        cap = unescape(f["caption"])
        assert f"Target band {r.target_low:g}–{r.target_high:g} Gt CO₂ a⁻¹ in " \
               f"{r.target_years.replace('-', '–')}" in cap
        assert f"reaches the lower bound {r.target_low:g} Gt CO₂ a⁻¹ in " \
               f"{int(r.central_reaches_lower)}" in cap
        assert f"low bound reaches it in {int(r.low_reaches_lower)}, its high bound in " \
               f"{int(r.high_reaches_lower)}" in cap
        assert f["target_band"] == [r.target_low, r.target_high]
        assert f["central_reaches_lower"] == int(r.central_reaches_lower)
        p = proj[proj.scenario == r.scenario]
        tot = p[p.component == "total"].sort_values("year")
        assert f["years"] == tot.year.tolist()
        for b in ("low", "central", "high"):
            assert f["total"][b] == pytest.approx(tot[b].to_numpy())
        stacked = np.array(f["baseline_central"]) + np.sum(list(f["stacks_central"].values()),
                                                           axis=0)
        assert stacked == pytest.approx(tot.central.to_numpy(), abs=1e-6)
        y1 = _last_year(r)
        assert f["total"]["central"][f["years"].index(y1)] == pytest.approx(
            getattr(r, f"total_{y1}_central"))
    seed = target.set_index("scenario").loc["seed_pathways"]      # a baseline below the band
    assert seed.baseline_central < seed.target_low <= seed.total_2060_central


def test_maps_draw_the_product_in_the_last_target_year(built):
    st, _, manifest, _ = built
    ds = st.open("products", "scenarios")
    target = _table(st, "target.csv").set_index("scenario")
    for s in ds.scenario.values:
        y = _last_year(target.loc[s])
        f = _fig(manifest, f"scenarios_{s}_added_map")
        a = ds["added_sink"].sel(scenario=s, year=y).values
        a = a[np.isfinite(a) & (a != 0)]
        assert f["year"] == y and f["coarsen_factor"] == 1 and f["cells_with_data"] == a.size
        assert f["limits_from"]["values"] == pytest.approx(list(np.percentile(a, [2, 98])),
                                                           rel=1e-5)
        assert f["colorbar_label"] == "added sink (t C km⁻² a⁻¹)"
        frac = ds["treated_fraction"].sel(scenario=s)
        nonzero = [str(m) for m in frac.measure.values
                   if (frac.sel(measure=m).fillna(0).values > 0).any()]
        t = _fig(manifest, f"scenarios_{s}_treated_maps")
        assert t["measures"] == nonzero and list(t["panels"]) == nonzero
        assert t["vmin"] == 0.0 and t["vmax"] == 100.0
        for m in nonzero:
            x = frac.sel(measure=m).values
            assert t["panels"][m]["cells_with_data"] == int((x > 0).sum())


def test_region_bars_are_the_top_provinces_of_region_totals(built):
    st, _, manifest, _ = built
    rt, target = _table(st, "region_totals.csv"), _table(st, "target.csv")
    for r in target.itertuples():
        y = _last_year(r)
        f = _fig(manifest, f"scenarios_{r.scenario}_regions")
        t = rt[(rt.scenario == r.scenario) & (rt.quantity == "added sink")
               & (rt.region_set == "province") & (pd.to_numeric(rt.year) == y)]
        top = t.nlargest(15, "total_tg_c")
        assert f["region_set"] == "province" and f["year"] == y
        assert f["bars"] == pytest.approx(top.set_index("region").total_tg_c.to_dict())
        dom = rt[(rt.scenario == r.scenario) & (rt.quantity == "added sink")
                 & (rt.region_set == "domain") & (pd.to_numeric(rt.year) == y)]
        assert f["domain_total_tg_c"] == pytest.approx(dom.total_tg_c.iloc[0])


def test_lazy_maps_are_block_means_never_the_full_cube(built):
    """With at most 20 blocks a side the 1° grid (37 × 63) is drawn from 4 × 4-cell blocks, and
    every part handed to the one dask pass is still lazy."""
    st, _, _, _ = built
    c = discover(st)
    opened = {"scenarios": st.open("products", "scenarios")}
    regions = st.open(c.regions.kind, c.regions.name, c.regions.version)
    lazy = scenarios.lazy_fields(c, opened, regions, 20)
    assert all(hasattr(p.data, "dask") for m in lazy.values() for p in m.parts.values())
    fields = compute_fields(lazy)
    ds = opened["scenarios"]
    s, y = "seed_pathways", int(ds.year.values[-1])
    f = fields[f"scenarios:{s}:added:{y}"]
    assert f.factor == 4 and f.shape == (10, 16)
    x = ds["added_sink"].sel(scenario=s, year=y).values.astype("f8")
    a = cell_area_da(ds["added_sink"]).values
    pad = ((0, 3), (0, 1))                       # 37 × 63 → 40 × 64
    x, a = np.pad(x, pad, constant_values=np.nan), np.pad(a, pad)
    ok = np.isfinite(x)
    num = np.where(ok, x * a, 0).reshape(10, 4, 16, 4).sum(axis=(1, 3))
    den = np.where(ok, a, 0).reshape(10, 4, 16, 4).sum(axis=(1, 3))
    assert np.nan_to_num(f.values) == pytest.approx(
        np.where(den > 0, num / np.where(den > 0, den, 1), 0), rel=1e-5)
    assert fields["scenarios:nonzero"][("treated", s, "offshore_marine_sink")] == 0


def test_store_without_scenarios_has_no_scenarios_section(built, tmp_path):
    _, _, full, path = built
    copy = tmp_path / "store"
    shutil.copytree(path, copy)
    other = Store(str(copy))
    keep = [p for p in other.published() if p.name != "scenarios"]
    other.release(keep, replace=True, note="without the scenarios product")
    build_report(other, tmp_path / "atlas")
    manifest = json.loads((tmp_path / "atlas" / "figures.json").read_text())
    assert {f["id"] for f in manifest["figures"]} == {
        f["id"] for f in full["figures"] if f["section"] != "scenarios"}
    assert "products/scenarios" not in manifest["datasets"]
    html = (tmp_path / "atlas" / "index.html").read_text()
    assert 'id="scenarios"' not in html and "Enhancement scenarios" not in html
    assert not (tmp_path / "atlas" / "tables" / "scenarios_summary.csv").exists()


def test_atlas_opens_in_a_headless_browser(built, tmp_path):
    _, out, manifest, _ = built
    r = B.dump_dom(out / "index.html", tmp_path)
    status = B.status(r.stdout)
    assert status.get("data-loaded") == "1", status
    images = json.loads(status["data-images"])
    assert json.loads(status["data-errors"]) == []
    assert len(images) == len(manifest["figures"])
    ours = {i["figure"]: i for i in images if i["figure"].startswith("scenarios_")}
    assert set(ours) == {f["id"] for f in manifest["figures"] if f["section"] == "scenarios"}
    assert all(i["complete"] and i["width"] > 0 and i["height"] > 0 for i in ours.values())
