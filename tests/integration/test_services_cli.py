"""`carbonsink services` end to end on the synthetic China: the five products published and
catalogued with their tables, plausible against seed 003, both capacities; bad tables and inputs
stop the run before anything of it is visible."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from carbonsink.catalog import open_catalog
from carbonsink.cli import main
from carbonsink.io.store import Store
from carbonsink.zonal import cell_area_da

pytestmark = pytest.mark.integration

PRODUCTS = ("services_storage", "services_emission", "services_balance", "services_flow",
            "services_drivers")


def _run(*args):
    return CliRunner().invoke(main, ["services", *args, "--workers", "2", "--no-progress",
                                     "--atlas", ""])


@pytest.fixture(scope="module")
def services_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("services") / "store"
    r = _run("--store", str(root), "--resolution", "0.5", "--years", "2000-2002")
    assert r.exit_code == 0, r.output + str(r.exception)
    return root, r.output


def _table(st, name, attachment):
    rec = st.record("products", name, st.resolve("products", name, "latest"))
    return pd.read_csv(io.BytesIO(st.read_bytes(rec["attachments"][attachment])))


def test_services_command_publishes_and_summarises(services_store):
    root, out = services_store
    for text in ("carbon storage", "Pg C", "emission", "Tg C a-1", "(sequestration capacity)",
                 "routed surplus", "absorbed downwind", "Geodetector q", "balance.csv",
                 "flow_matrix.csv", "inventory.csv", "geodetector.csv"):
        assert text in out, text
    st = Store(str(root))
    for p in PRODUCTS:
        assert st.resolve("products", p, "latest")
    # only what the services need: the sink (capacity) and its inputs, no trends or attribution
    assert "trends_nep" not in out and "attribution_sink" not in out
    cat = open_catalog(str(root))
    assert {"services_storage", "services_balance", "services_flow", "services_drivers"} <= set(cat)
    bal = cat["services_balance"].to_dask()
    assert bal.attrs["capacity"] == "sequestration"


def test_values_are_plausible_against_seed_003(services_store):
    root, _ = services_store
    st = Store(str(root))
    inputs = st.open("inputs", "synthetic")
    storage = st.open("products", "services_storage")
    emission = st.open("products", "services_emission")
    prim = (inputs.lulc.isel(year=-1) // 10).values
    c = storage.c_total.isel(year=-1).values
    vegetated = np.isin(prim, (1, 2, 3))
    assert 200 <= np.nanmean(c[vegetated]) <= 270            # seed: 200-270 t C ha-1
    e = emission.e_total.isel(year=-1).values / 100.0           # t C ha-1 a-1
    per_class = {k: np.nanmean(e[prim == k]) for k in range(1, 7) if (prim == k).any()}
    assert max(per_class, key=per_class.get) == 5, per_class    # built-up emits the most per ha
    # province pixel sums equal the statistics (energy), through the published store
    inv = _table(st, "services_emission", "inventory.csv")
    regions = st.open("inputs", "regions")
    area = (cell_area_da(emission) * 1e-6).values
    y = int(emission.year.values[-1])
    prov = regions.province.values
    names = dict(zip(regions.province.attrs["region_names"], regions.province.attrs["flag_values"]))
    for name in ("Sichuan", "Jiangsu", "Xinjiang"):
        row = inv[(inv.year == y) & (inv.province == name)].iloc[0]
        got = np.nansum(emission.e_energy.sel(year=y).values * area * (prov == names[name]))
        assert got == pytest.approx(row.e_energy_t, rel=1e-5)
    routing = _table(st, "services_flow", "routing.csv")
    parts = routing.absorbed_t + routing[[f"exported_{e}_t" for e in "NESW"]].sum(axis=1) \
        + routing.unabsorbed_t
    np.testing.assert_allclose(parts, routing.surplus_t, rtol=1e-9)
    matrix = _table(st, "services_flow", "flow_matrix.csv")
    for year, m in matrix.groupby("year"):
        assert m.mass_t.sum() == pytest.approx(
            routing.set_index("year").surplus_t[year], rel=1e-6)
    q = _table(st, "services_drivers", "geodetector.csv")
    assert set(q.factor) == {"population", "gdp", "lulc", "elevation", "tas", "pr"}
    assert ((q.q >= 0) & (q.q <= 1)).all()


def test_storage_capacity_reproduces_seed_magnitudes(services_store, tmp_path):
    root, _ = services_store
    cfg = tmp_path / "run.yaml"
    cfg.write_text("services: {capacity: storage}\nregion_sets: [province, yangtze_reach]\n")
    r = _run("--store", str(root), "--resolution", "0.5", "--years", "2000-2002",
             "--config", str(cfg))
    assert r.exit_code == 0, r.output + str(r.exception)
    assert "(storage capacity)" in r.output
    st = Store(str(root))
    bal = _table(st, "services_balance", "balance.csv")
    reach = bal[(bal.region_set == "yangtze_reach") & (bal.year == 2002)]
    # seed table 6: upper / middle / lower reaches 0.090 / 0.089 / 0.136 (an annual emission
    # dominated by soil respiration against a standing stock)
    assert len(reach) == 3 and ((reach.ratio > 0.03) & (reach.ratio < 0.4)).all(), reach
    prov = bal[(bal.region_set == "province") & (bal.year == 2002)].set_index("region")
    assert prov.ratio["Shanghai"] > prov.ratio["Gansu"] if "Shanghai" in prov.index else True


def _versions(root):
    st = Store(str(root))
    return {p: st.resolve("products", p, "latest") for p in PRODUCTS}


@pytest.mark.parametrize("table, text, match", [
    ("carbon_pools", "lucode,c_above,c_below,c_dead\n1,1,1,1\n", "c_soil"),
    ("carbon_pools", "lucode,c_above,c_below,c_soil,c_dead\n2,1,1,1,1\n3,1,1,1,1\n",
     "land-use codes"),
    ("emission_factors", "fuel,factor,units\ncoal,-0.7,t C tce-1\noil,0.5,t C tce-1\n"
     "natural_gas,0.4,t C tce-1\nother,0,t C tce-1\n", "negative"),
])
def test_bad_tables_stop_the_run_before_publishing(services_store, tmp_path, table, text, match):
    root, _ = services_store
    before = _versions(root)
    path = tmp_path / f"{table}.csv"
    path.write_text(text)
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"services: {{{table}: {path}}}\n")
    r = _run("--store", str(root), "--resolution", "0.5", "--years", "2000-2002",
             "--config", str(cfg))
    assert r.exit_code != 0
    assert match in r.output, r.output
    assert _versions(root) == before
