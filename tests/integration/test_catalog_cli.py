"""The demo from the CLI on a local store, and reading everything back through the Intake catalog."""
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from click.testing import CliRunner

from carbonsink.catalog import open_catalog
from carbonsink.cli import main
from carbonsink.io.store import Store
from carbonsink.products.nep import compute_nep

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo") / "store"
    r = CliRunner().invoke(main, ["demo", "--store", str(root), "--resolution", "1",
                                  "--years", "2000-2005", "--workers", "2", "--no-progress"])
    assert r.exit_code == 0, r.output + str(r.exception)
    return root, r.output


def test_demo_output_names_everything(demo_store):
    root, out = demo_store
    for text in ("dashboard: http://127.0.0.1", "catalog:", "products/nep:", "products/nep_pei:",
                 "totals.csv", "China mean", "Southern karst (SK)", "(NK)", "(QK)", "products/karst:",
                 "10-fold CV R²", "CCS over carbonate rock", "ecosystem sink NEP + CCS",
                 "trends_nep: area increasing", "attribution_sink: dominant factor by area",
                 "ionic_strength_model.joblib", "ionic_strength_cv_predictions.csv"):
        assert text in out, text


def test_catalog_reopens_identical_values(demo_store):
    root, _ = demo_store
    cat = open_catalog(str(root))
    store = Store(str(root))
    assert {"nep", "nep_pei", "synthetic", "regions", "nep_totals", "nep_pei_totals", "karst",
            "karst_totals", "sink", "sink_totals", "trends_nep", "trends_sink",
            "trends_nep_change_areas", "attribution_nep", "attribution_sink",
            "attribution_sink_dominant_areas"} <= set(cat)
    for name, kind in (("nep", "products"), ("nep_pei", "products"), ("synthetic", "inputs"),
                       ("regions", "inputs"), ("karst", "products"), ("sink", "products"),
                       ("trends_sink", "products"), ("attribution_nep", "products")):
        via_catalog = cat[name].to_dask()
        direct = store.open(kind, name)
        for v in direct.data_vars:
            np.testing.assert_array_equal(via_catalog[v].values, direct[v].values)
        assert via_catalog.attrs.get("Conventions", "CF-1.10") == "CF-1.10"
    # the published product is what compute_nep gives on the published inputs
    again = compute_nep(store.open("inputs", "synthetic"), "soil_tps").load()
    np.testing.assert_array_equal(cat["nep"].to_dask().nep.values, again.nep.values)
    table = cat["nep_totals"].read()
    assert isinstance(table, pd.DataFrame)
    nat = table[table.region == "China"]
    assert len(nat) == 6 and (50 < nat.mean_flux_t_km2).all() and (nat.mean_flux_t_km2 < 400).all()


def test_catalog_entries_carry_metadata(demo_store):
    import yaml
    root, _ = demo_store
    text = (root / "catalog.yaml").read_text()
    entry = yaml.safe_load(text)["sources"]["nep"]
    meta = entry["metadata"]
    assert meta["units"]["nep"] == "g m-2 yr-1" and meta["grid"] == "1deg"
    assert meta["years"] == [2000, 2005] and meta["version"].startswith("c-")   # content address
    assert entry["args"]["urlpath"].startswith("{{ CATALOG_DIR }}/products/nep/")


def test_rerun_of_an_unchanged_config_reuses_every_dataset(demo_store):
    """Versions are content-addressed: the same configuration, inputs and code give the same
    version ids, so an identical rerun reuses every complete version and recomputes nothing."""
    root, _ = demo_store
    store = Store(str(root))
    before = {p.key: p.version for p in store.published()}
    data = sorted(str(p) for p in root.rglob("*") if ".zarr" in str(p))
    r = CliRunner().invoke(main, ["demo", "--store", str(root), "--resolution", "1",
                                  "--years", "2000-2005", "--workers", "1", "--no-progress"])
    assert r.exit_code == 0, r.output
    # inputs, regions, 8 core products, 5 services products
    assert "reused 16 of 16 datasets" in r.output
    assert r.output.count("(reused)") == 16
    assert {p.key: p.version for p in store.published()} == before
    assert all(len(store.versions(*k.split("/"))) == 1 for k in before)
    assert sorted(str(p) for p in root.rglob("*") if ".zarr" in str(p)) == data  # nothing written
    r = CliRunner().invoke(main, ["catalog", str(root)])
    assert r.exit_code == 0 and "products nep" in r.output


def test_config_change_creates_new_versions_and_keeps_earlier_ones(demo_store, tmp_path):
    """A changed configuration (here the chunk size, which changes no value) gives every dataset a
    new version: published next to the earlier one, which stays readable; ``latest`` is the new
    one. Going back to the earlier configuration reuses the earlier versions."""
    root, _ = demo_store
    store = Store(str(root))
    before = store.latest("products", "nep")
    args = ["demo", "--store", str(root), "--resolution", "1", "--years", "2000-2005",
            "--workers", "1", "--no-progress"]
    r = CliRunner().invoke(main, [*args, "--chunk-mb", "8"])
    assert r.exit_code == 0, r.output
    assert "(reused)" not in r.output
    after = store.latest("products", "nep")
    assert after != before and after.startswith("c-")
    assert store.versions("products", "nep") == [before, after]   # oldest first
    xr.testing.assert_equal(store.open("products", "nep", before).nep,
                            store.open("products", "nep").nep)   # deterministic
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0 and r.output.count("(reused)") == 16, r.output
    assert store.latest("products", "nep") == before            # latest is the pointer
    assert store.versions("products", "nep") == [before, after]


def test_cli_help_lists_commands():
    r = CliRunner().invoke(main, ["--help"])
    assert "demo" in r.output and "catalog" in r.output
    r = CliRunner().invoke(main, ["demo", "--help"])
    assert "--scheduler" in r.output and "--store" in r.output


def test_unreachable_scheduler_is_a_clear_error(tmp_path):
    r = CliRunner().invoke(main, ["demo", "--store", str(tmp_path / "s"), "--resolution", "1",
                                  "--years", "2000-2000", "--scheduler", "tcp://127.0.0.1:1"])
    assert r.exit_code == 2 and "cannot connect to dask scheduler" in r.output
    assert not (tmp_path / "s").exists()


def test_demo_products_are_consistent(demo_store):
    """The sink is NEP + CCS of the published products; trends/attribution are of the sink."""
    from carbonsink.ml import load_model
    root, _ = demo_store
    store = Store(str(root))
    nep, karst, sink = (store.open("products", n) for n in ("nep", "karst", "sink"))
    np.testing.assert_allclose(sink.ecosystem_sink, nep.nep + karst.ccs, rtol=1e-6)
    rec = store.record("products", "karst")
    assert 0.5 < rec["ionic_strength_model"]["ionic_strength_cv_r2"] < 1
    model = load_model(store, rec["attachments"]["ionic_strength_model.joblib"])
    assert model.cv_r2 == rec["ionic_strength_model"]["ionic_strength_cv_r2"]
    assert karst.attrs["ionic_strength_cv_r2"] == model.cv_r2
    karst_totals = pd.read_csv(root / rec["attachments"]["totals.csv"])
    nat = karst_totals[karst_totals.region == "China"].mean_flux_t_km2
    assert ((1 < nat) & (nat < 20)).all()        # CCS over carbonate pixels, t C km-2 a-1
    tr = store.open("products", "trends_sink")
    assert tr.slope.attrs["units"] == "g m-2 yr-2" and tr.attrs["trend_period"] == "2000-2005"
    att = store.open("products", "attribution_sink")
    land = store.open("inputs", "synthetic").land_mask.values > 0
    assert set(np.unique(att.dominant_factor.values[land])) <= {1, 2, 3, 4}   # 6 years: all land
    assert (att.dominant_factor.values[~land] == 0).all()


def test_cv_predictions_give_the_recorded_score(demo_store):
    """The karst product carries the forest's out-of-fold predictions (for the atlas's observed vs
    predicted plot); their pooled R² is the recorded CV R²."""
    root, _ = demo_store
    store = Store(str(root))
    rec = store.record("products", "karst", store.latest("products", "karst"))
    oof = pd.read_csv(root / rec["attachments"]["ionic_strength_cv_predictions.csv"])
    assert list(oof.columns) == ["basin_id", "year", "observed", "predicted"]
    r2 = 1 - ((oof.observed - oof.predicted) ** 2).sum() / (
        (oof.observed - oof.observed.mean()) ** 2).sum()
    assert r2 == pytest.approx(rec["ionic_strength_model"]["ionic_strength_cv_r2"], abs=1e-6)
