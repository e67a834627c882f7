"""The atlas (issue 13): `carbonsink report` on a demo store with a comparison, a regional store
and a store with only some products — figures checked against the products and tables they draw,
and the page opened in a real headless browser (Debian's chromium) from a file:// URL, offline."""
import json
import shutil
import socket
import xml.etree.ElementTree as ET
from html import unescape

import numpy as np
import pandas as pd
import pytest

import _atlas_browser as B
from click.testing import CliRunner
from PIL import Image

import carbonsink.cli_report  # noqa: F401  (registers `report` until cli.py imports it)
from carbonsink import __version__
from carbonsink.cli import main
from carbonsink.cli_compare import run_compare_cli
from carbonsink.config import load_config
from carbonsink.io.store import Store
from carbonsink.pipeline import run_demo
from carbonsink.report import build_report
from carbonsink.synthetic_fluxes import make_flux_products
from carbonsink.zonal import cell_area_da

pytestmark = pytest.mark.integration

YEARS = (2000, 2007)


@pytest.fixture(scope="module", autouse=True)
def no_network():
    """Nothing the atlas does may reach beyond this machine (no Natural Earth, no web fonts)."""
    real = socket.socket.connect
    monkeypatch = pytest.MonkeyPatch()

    def connect(self, address):   # TCP (any download); a UDP connect sends nothing
        host = address[0] if isinstance(address, tuple) else address
        if self.type == socket.SOCK_STREAM and isinstance(host, str) and \
                host not in ("127.0.0.1", "localhost", "::1") and not host.startswith("/"):
            raise AssertionError(f"the atlas tried to reach {address}")
        return real(self, address)
    monkeypatch.setattr(socket.socket, "connect", connect)
    yield
    monkeypatch.undo()


@pytest.fixture(scope="module")
def china(tmp_path_factory):
    """Synthetic China at 1° (2000–2007) with every product, plus a bottom-up vs top-down
    comparison (three ensemble members), and its atlas written by the CLI."""
    root = tmp_path_factory.mktemp("atlas")
    store = root / "store"
    run_demo(load_config(store=str(store), grid="1", years=YEARS), rh_models=("soil_tps",))
    made = make_flux_products(root / "fluxes", years=(2015, 2017),
                              members=("Ames", "Baker", "CAMS"))
    run_compare_cli(str(store), made.manifest, "compare_")
    out = root / "atlas"
    r = CliRunner().invoke(main, ["report", "--store", str(store), "--out", str(out)])
    assert r.exit_code == 0, r.output + str(r.exception)
    return store, out, r.output, json.loads((out / "figures.json").read_text())


def _fig(manifest, fig_id):
    return next(f for f in manifest["figures"] if f["id"] == fig_id)


def test_cli_writes_html_png_and_svg_of_every_figure(china):
    _, out, output, manifest = china
    assert f"atlas: {out.resolve() / 'index.html'}" in output and "file://" in output
    ids = {f["id"] for f in manifest["figures"]}
    assert {"nep_mean_map", "nep_totals_timeseries", "nep_regional_totals", "karst_mean_map",
            "karst_random_forest", "sink_mean_map", "trends_nep_slope_map",
            "trends_nep_change_classes", "trends_sink_change_areas", "attribution_nep_dominant_map",
            "attribution_nep_shares_maps", "attribution_sink_dominant_areas",
            "compare_summary_maps", "compare_summary_totals", "compare_summary_seasonal_cycle",
            "compare_summary_zonal_means", "compare_summary_metrics"} <= ids
    for f in manifest["figures"]:
        png, svg = out / f["png"], out / f["svg"]
        with Image.open(png) as im:
            assert im.size == (f["width_px"], f["height_px"]) and im.getextrema()[0] != (255, 255)
        root = ET.parse(svg).getroot()
        assert root.tag.endswith("svg") and svg.stat().st_size < 3_000_000, f["id"]
    html = (out / "index.html").read_text()
    assert html.count("data:image/png;base64,") == len(manifest["figures"])
    assert 'src="http' not in html and 'href="http' not in html and "@import" not in html
    # provenance: versions of every dataset shown, the code, the configuration, the sources
    for key, version in manifest["datasets"].items():
        assert key in html and version in html, key
    assert f"carbonsink {__version__}" in html and "config_hash" not in html
    text = unescape(html)
    assert "carbonsink.synthetic seed=0" in text and '"rh_model": "soil_tps"' in text
    assert "beps/BEPS_NEP_{year}.nc" in text          # where the compared products came from
    assert 'class="warning" role="alert"><strong>Synthetic data.' in html
    assert manifest["synthetic"] is True
    assert {p.name for p in (out / "tables").iterdir()} >= {"nep_period_summary.csv",
                                                             "datasets.csv"}


def test_nep_and_ccs_maps_colour_bars_span_the_products_percentiles(china):
    store, _, _, manifest = china
    st = Store(str(store))
    nep = st.open("products", "nep")["nep"].mean("year").values
    f = _fig(manifest, "nep_mean_map")
    lo, hi = np.percentile(nep[np.isfinite(nep)], [2, 98])
    assert lo < 0 < hi and f["norm"] == "TwoSlopeNorm" and f["vcenter"] == 0.0
    assert f["vmin"] == pytest.approx(lo, rel=1e-9) and f["vmax"] == pytest.approx(hi, rel=1e-9)
    assert f["coarsen_factor"] == 1 and f["cmap"] == "BrBG"
    assert f["colorbar_label"] == "mean NEP (t C km⁻² a⁻¹)"
    karst = st.open("products", "karst")
    ccs = karst["ccs"].mean("year").where(karst["carbonate_fraction"] > 0).values
    f = _fig(manifest, "karst_mean_map")
    assert [f["vmin"], f["vmax"]] == pytest.approx(
        list(np.percentile(ccs[np.isfinite(ccs)], [2, 98])), rel=1e-9)
    assert f["cmap"] == "viridis" and f["cells_with_data"] == np.isfinite(ccs).sum()
    # China: provinces, the national outline, the maritime boundary and the South China Sea inset
    assert f["south_china_sea_inset"] and f["boundaries"] == ["maritime", "outline", "provinces"]


def test_trend_map_stipples_the_significant_area(china):
    store, _, _, manifest = china
    tr = Store(str(store)).open("products", "trends_nep")
    p, area = tr["p_value"].values, cell_area_da(tr).values
    ok = np.isfinite(p)
    share = 100 * area[ok & (p < 0.05)].sum() / area[ok].sum()
    f = _fig(manifest, "trends_nep_slope_map")
    assert f["stipple"]["significant_area_pct"] == pytest.approx(share, rel=1e-9)
    assert f["stipple"]["dots"] > 0 and f["cmap"] == "RdBu" and f["vmin"] < 0 < f["vmax"]


def test_class_maps_and_pies_equal_the_area_tables(china):
    store, _, _, manifest = china
    st = Store(str(store))

    def domain_shares(name, suffix):
        t = pd.read_csv(store / st.record("products", name)["attachments"][suffix])
        return t[t.region_set == "domain"].set_index("category")["share_pct"].to_dict()
    dominant = domain_shares("attribution_nep", "dominant_areas.csv")
    # the tables hold 6 significant digits
    assert _fig(manifest, "attribution_nep_dominant_areas")["pie_share_pct"] == \
        pytest.approx(dominant, rel=1e-5)
    assert _fig(manifest, "attribution_nep_dominant_map")["area_share_pct"] == \
        pytest.approx(dominant, rel=1e-5)
    change = domain_shares("trends_sink", "change_areas.csv")
    drawn = _fig(manifest, "trends_sink_change_classes")["area_share_pct"]
    assert drawn == pytest.approx(change, rel=1e-5, abs=1e-9)
    shares = _fig(manifest, "attribution_nep_shares_maps")
    assert (shares["vmin"], shares["vmax"]) == (0.0, 100.0)
    assert set(shares["panels"]) == {"precipitation", "temperature", "solar radiation",
                                     "human activity"}


def test_time_series_plot_the_totals_tables(china):
    store, _, _, manifest = china
    st = Store(str(store))
    for name in ("nep", "sink", "karst"):
        t = pd.read_csv(store / st.record("products", name)["attachments"]["totals.csv"])
        series = _fig(manifest, f"{name}_totals_timeseries")["series"]
        dom = t[t.region_set == "domain"]
        s = series[f"domain/{dom.region.iloc[0]}"]
        assert s["x"] == list(map(float, dom.year)) and s["y"] == pytest.approx(
            dom.total_tg.tolist(), rel=1e-12)
        assert s["trend"]["slope"] == pytest.approx(np.polyfit(dom.year, dom.total_tg, 1)[0])
        for region, r in t[t.region_set == "division"].groupby("region"):
            assert series[f"division/{region}"]["y"] == pytest.approx(r.total_tg.tolist())
        bars = _fig(manifest, f"{name}_regional_totals")["bars"]["province"]
        means = t[t.region_set == "province"].groupby("region").total_tg.mean()
        assert bars == pytest.approx(means.to_dict())


def test_random_forest_and_comparison_figures_show_the_published_scores(china):
    store, _, _, manifest = china
    st = Store(str(store))
    model = st.record("products", "karst")["ionic_strength_model"]
    rf = _fig(manifest, "karst_random_forest")
    assert rf["importances"] == pytest.approx(
        {k: model[f"ionic_strength_importance_{k}"] for k in ("pr", "tas", "aet", "npp")})
    # the karst product publishes the out-of-fold predictions: observed vs predicted is drawn,
    # every basin-year the forest was scored on
    assert rf["mode"] == "observed_vs_predicted"
    oof = pd.read_csv(store / st.record("products", "karst")["attachments"][
        "ionic_strength_cv_predictions.csv"])
    assert rf["n_points"] == len(oof) == model["ionic_strength_n_training_rows"]
    rec = st.record("products", "compare_summary")
    metrics = pd.read_csv(store / rec["attachments"]["metrics.csv"])
    m = metrics[(metrics.region_set == "domain") & (metrics["product"] == "BEPS")].iloc[0]
    point = _fig(manifest, "compare_summary_metrics")["points"]["BEPS"]
    assert point["correlation"] == pytest.approx(m.correlation)
    assert point["sd_ratio"] == pytest.approx(m.sd_ratio)
    cycle = pd.read_csv(store / rec["attachments"]["seasonal_cycle.csv"])
    beps = cycle[(cycle.region_set == "domain") & (cycle["product"] == "BEPS")]
    drawn = _fig(manifest, "compare_summary_seasonal_cycle")["series"]["BEPS"]
    assert drawn["y"] == pytest.approx((beps.total_pg * 1000).tolist())


def test_random_forest_figure_draws_out_of_fold_predictions_or_fold_scores():
    from carbonsink.report import random_forest

    model = {"ionic_strength_cv_r2": 0.8, "ionic_strength_cv_rmse": 0.006,
             "ionic_strength_importance_pr": 0.6, "ionic_strength_importance_tas": 0.4}
    rng = np.random.default_rng(0)
    obs = rng.uniform(0.002, 0.08, 50)
    _, meta = random_forest(pd.DataFrame({"observed": obs, "predicted": obs * 1.1}), model,
                            title="t")
    assert meta["mode"] == "observed_vs_predicted" and meta["n_points"] == 50
    _, meta = random_forest(pd.DataFrame({"fold": range(1, 11), "r2": np.linspace(0.5, 0.9, 10)}),
                            model, title="t")
    assert meta["mode"] == "fold_scores" and meta["fold_r2"] == pytest.approx(
        np.linspace(0.5, 0.9, 10))
    assert meta["importances"] == {"tas": 0.4, "pr": 0.6}


def test_atlas_opens_in_a_headless_browser(china, tmp_path):
    _, out, _, manifest = china
    r = B.dump_dom(out / "index.html", tmp_path, "--enable-logging=stderr", "--v=1")
    console = [ln for ln in r.stderr.splitlines() if ":CONSOLE" in ln]
    assert not console, console
    status = B.status(r.stdout)
    assert status.get("data-loaded") == "1", status
    images, errors = json.loads(status["data-images"]), json.loads(status["data-errors"])
    assert errors == []
    assert len(images) == len(manifest["figures"])
    assert all(i["complete"] and i["width"] > 0 and i["height"] > 0 for i in images), images
    shot = tmp_path / "atlas.png"
    r = B.run(out / "index.html", tmp_path, f"--screenshot={shot}", "--window-size=1280,2400",
              "--hide-scrollbars")
    assert r.returncode == 0 and shot.exists(), r.stderr[-2000:]
    with Image.open(shot) as im:
        assert im.size == (1280, 2400)
        colours = im.convert("RGB").resize((64, 120)).getcolors(64 * 120)
        assert colours is None or len(colours) > 50     # the page, not a blank or error page
    shutil.copy(shot, out / "screenshot.png")


def test_regional_atlas_frames_the_study_area_without_the_inset(tmp_path):
    store = tmp_path / "store"
    run_demo(load_config(store=str(store), grid="0.5", years=YEARS,
                         domain="three-river-headwaters"), rh_models=("soil_tps",))
    html = build_report(str(store), tmp_path / "atlas")
    manifest = json.loads((tmp_path / "atlas" / "figures.json").read_text())
    maps = [f for f in manifest["figures"] if f["type"] in ("map", "class_map", "panel_maps")]
    assert len(maps) >= 7 and manifest["domain"] == "three-river-headwaters"
    for f in maps:
        assert not f["south_china_sea_inset"], f["id"]
        assert f["outline"] == "Three-River Headwaters" and "maritime" not in f["boundaries"]
    assert "Three-River Headwaters" in html.read_text()
    nep = Store(str(store)).open("products", "nep")["nep"].mean("year").values
    f = _fig(manifest, "nep_mean_map")
    assert f["limits_from"]["values"] == pytest.approx(
        list(np.percentile(nep[np.isfinite(nep)], [2, 98])), rel=1e-9)


@pytest.fixture(scope="module")
def partial(china, tmp_path_factory):
    """A copy of the China store whose release holds only the inputs, NEP and its trends."""
    store = tmp_path_factory.mktemp("partial") / "store"
    shutil.copytree(china[0], store)
    st = Store(str(store))
    keep = [p for p in st.published() if p.name in ("synthetic", "regions", "nep", "trends_nep")]
    st.release(keep, replace=True, note="only some products")
    return st


def test_atlas_of_a_store_with_only_some_products(partial, tmp_path):
    build_report(partial, tmp_path / "atlas")
    manifest = json.loads((tmp_path / "atlas" / "figures.json").read_text())
    assert {f["id"] for f in manifest["figures"]} == {
        "nep_mean_map", "nep_totals_timeseries", "nep_regional_totals", "trends_nep_slope_map",
        "trends_nep_change_classes", "trends_nep_change_areas"}
    html = (tmp_path / "atlas" / "index.html").read_text()
    assert "Karst carbon sink" not in html and "Bottom-up vs top-down" not in html
    r = CliRunner().invoke(main, ["report", "--store", partial.url, "--run", "observed_",
                                  "--out", str(tmp_path / "none")])
    assert r.exit_code == 2
    assert "no published products of run prefix 'observed_'" in r.output
    assert "runs in this store: ''" in r.output


def test_maps_of_large_grids_are_area_weighted_block_means_computed_on_the_cluster(
        partial, tmp_path):
    """With at most 20 blocks a side the 1° grid (37 × 63) is drawn from 4 × 4-cell blocks:
    Σ x·A / Σ A over each block's valid cells, computed by the client's workers."""
    from distributed import Client, get_task_stream

    with Client(processes=False, n_workers=1, threads_per_worker=2,
                dashboard_address=None) as client, get_task_stream(client) as ts:
        build_report(partial, tmp_path / "atlas", client=client, max_cells=20)
    assert len(ts.data) > 0
    manifest = json.loads((tmp_path / "atlas" / "figures.json").read_text())
    f = _fig(manifest, "nep_mean_map")
    assert f["coarsen_factor"] == 4 and f["shape"] == [10, 16]
    nep = partial.open("products", "nep")["nep"]
    x, a = nep.mean("year").values, cell_area_da(nep).values
    pad = ((0, 3), (0, 1))                       # 37 × 63 → 40 × 64
    x, a = np.pad(x, pad, constant_values=np.nan), np.pad(a, pad)
    ok = np.isfinite(x)
    num = np.where(ok, x * a, 0).reshape(10, 4, 16, 4).sum(axis=(1, 3))
    den = np.where(ok, a, 0).reshape(10, 4, 16, 4).sum(axis=(1, 3))
    blocks = num[den > 0] / den[den > 0]
    assert f["cells_with_data"] == blocks.size
    assert [f["vmin"], f["vmax"]] == pytest.approx(list(np.percentile(blocks, [2, 98])),
                                                   rel=1e-9)
    assert "from 4×4-cell area-weighted block means" in _fig(manifest, "nep_mean_map")["caption"]


def test_demo_ends_with_the_atlas(china, tmp_path):
    """`carbonsink demo --atlas DIR` writes the run's atlas on the run's cluster at the end (on a
    copy of the module's store: the demo reuses what is there, computes nep_pei, then draws)."""
    store, out = tmp_path / "store", tmp_path / "atlas"
    shutil.copytree(china[0], store)
    r = CliRunner().invoke(main, ["demo", "--store", str(store), "--resolution", "1",
                                  "--years", f"{YEARS[0]}-{YEARS[1]}", "--workers", "1",
                                  "--no-progress", "--atlas", str(out)])
    assert r.exit_code == 0, r.output + str(r.exception)
    assert f"atlas: {(out / 'index.html').resolve().as_uri()}" in r.output
    assert (out / "index.html").exists() and list((out / "figures").glob("*.svg"))
