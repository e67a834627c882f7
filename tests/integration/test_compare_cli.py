"""`carbonsink compare` end to end: the synthetic demo published and catalogued with its headline
numbers (seed 001's table), and bad manifests refused in one line with nothing published."""
import os

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from carbonsink.cli import main
from carbonsink.io.store import Store

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cmp")
    store, files = root / "store", root / "files"
    r = CliRunner().invoke(main, ["compare", "--demo", "--demo-dir", str(files),
                                  "--store", str(store)])
    assert r.exit_code == 0, r.output + str(r.exception)
    return store, files, r.output


def test_demo_publishes_products_tables_and_catalog(demo_run):
    store, _, out = demo_run
    # the seed's table (Pg C a-1, 2015-2019): BEPS 0.38, VEGAS 0.22, OCO-2 MIP 0.54
    assert "BEPS [bottom-up]: China 0.384 ± 0.040 Pg C a-1" in out
    assert "VEGAS [bottom-up]: China 0.217 ± 0.030 Pg C a-1" in out
    assert "OCO2_MIP [top-down]: China 0.541 ± 0.050 Pg C a-1 (ensemble mean of 14 members" in out
    assert "North 0.093, South 0.241, Northwest 0.011, Qinghai-Tibet 0.039" in out
    assert "forest 0.206 (47% of classes" in out and "scores vs OCO2_MIP" in out
    cat = yaml.safe_load((store / "catalog.yaml").read_text())["sources"]
    assert {"compare_BEPS", "compare_VEGAS", "compare_OCO2_MIP", "compare_summary"} <= set(cat)
    st = Store(str(store))
    summary = st.record("products", "compare_summary", st.latest("products", "compare_summary"))
    assert set(summary["attachments"]) >= {"totals.csv", "period_totals.csv", "metrics.csv",
                                           "seasonal_cycle.csv", "zonal_means.csv", "ensemble.csv"}
    beps = st.open("products", "compare_BEPS")
    assert beps.sink.attrs["units"] == "g m-2 month-1" or "month" in beps.sink.attrs["units"]
    seasonal = pd.read_csv(os.path.join(str(store), summary["attachments"]["seasonal_cycle.csv"]))
    bepsc = seasonal[(seasonal["product"] == "BEPS") & (seasonal.region_set == "domain")]
    assert int(bepsc.loc[bepsc.total_pg.idxmax(), "month"]) in (6, 7, 8)   # uptake peaks in summer


def test_bad_manifests_are_refused_in_one_line(demo_run, tmp_path):
    _, files, _ = demo_run
    m = yaml.safe_load((files / "manifest.yaml").read_text())
    del m["products"][0]["sign"]
    bad = files / "no_sign.yaml"
    bad.write_text(yaml.safe_dump(m))
    store = tmp_path / "store"
    r = CliRunner().invoke(main, ["compare", str(bad), "--store", str(store)])
    assert r.exit_code == 2, r.output
    assert "error: " in r.output and "BEPS" in r.output and "sign" in r.output
    assert "Traceback" not in r.output
    assert not (store / "products").exists()          # nothing published
    r = CliRunner().invoke(main, ["compare", "--store", str(store)])
    assert r.exit_code == 2 and "give a flux MANIFEST or --demo" in r.output


def test_carbonsink_nep_as_one_more_bottom_up_product(demo_run, tmp_path):
    """carbonsink's own annual NEP, named in the manifest by store and product: its annual totals
    are the product's own totals; it is left out of the monthly analyses."""
    from carbonsink.config import load_config
    from carbonsink.pipeline import run_demo
    from carbonsink.products.compare import load_products, metrics, seasonal_cycle, totals

    _, files, _ = demo_run
    cs = tmp_path / "cs"
    run_demo(load_config(store=str(cs), grid="1", years="2015-2019"), rh_models=("soil_tps",))
    m = yaml.safe_load((files / "manifest.yaml").read_text())
    m["root"] = str(files)
    m["products"].append({"name": "carbonsink_nep", "kind": "bottom_up", "store": str(cs),
                          "product": "nep", "variable": "nep"})
    products = load_products(m)
    da = products["carbonsink_nep"]
    assert da.attrs["temporal_resolution"] == "annual" and da.sizes["time"] == 60
    t = totals(products)
    mine = t[(t["product"] == "carbonsink_nep") & (t.region_set == "domain")].set_index("year")
    st = Store(str(cs))
    rec = st.record("products", "nep", st.latest("products", "nep"))
    own = pd.read_csv(os.path.join(str(cs), rec["attachments"]["totals.csv"]))
    own = own[own.region_set == "domain"].set_index("year")
    for year in range(2015, 2020):        # Tg (6 significant digits in the CSV) → Pg
        assert mine.total_pg[year] == pytest.approx(own.total_tg[year] / 1e3, rel=5e-6)
    assert "carbonsink_nep" not in set(seasonal_cycle(products)["product"])
    assert "carbonsink_nep" not in set(metrics(products)["product"])
    # a store product that does not cover the years is refused by name
    m["products"][-1]["product"] = "nep"
    m["years"] = "2014-2019"
    from carbonsink.io.fluxes import FluxInputError
    with pytest.raises(FluxInputError, match="carbonsink_nep|missing"):
        load_products(m)
