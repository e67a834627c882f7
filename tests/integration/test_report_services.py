"""The carbon-sequestration services section of the atlas: a synthetic services run (1°, 2000–2002)
gets maps of storage, emission, E/C and flow paths, the flow matrix, the emission terms and the
drivers — checked against the products and tables they draw — and a store without services
products gets no such section."""
import io
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from carbonsink.config import RunConfig
from carbonsink.io.store import Store
from carbonsink.pipeline import run_demo
from carbonsink.report import build_report
from carbonsink.report.contents import role_of
from carbonsink.zonal import cell_area_da

pytestmark = pytest.mark.integration

FIGURES = {"services_storage_map", "services_emission_map", "services_ratio_map",
           "services_flow_map", "services_flow_matrix", "services_emission_terms",
           "services_drivers_q", "services_drivers_interaction"}


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    root = tmp_path_factory.mktemp("services_atlas")
    store = root / "store"
    run_demo(RunConfig(grid="1", years=(2000, 2002), store=str(store)), families=["services"])
    out = root / "atlas"
    build_report(str(store), out)
    return Store(str(store)), out, json.loads((out / "figures.json").read_text()), store


def _fig(manifest, fig_id):
    return next(f for f in manifest["figures"] if f["id"] == fig_id)


def _table(st: Store, name: str, suffix: str) -> pd.DataFrame:
    rel = st.record("products", name)["attachments"][suffix]
    return pd.read_csv(io.BytesIO(st.read_bytes(rel)))


def test_services_atlas_has_every_figure_its_files_and_its_text(services):
    _, out, manifest, _ = services
    ours = [f for f in manifest["figures"] if f["section"] == "services"]
    assert {f["id"] for f in ours} == FIGURES
    html = (out / "index.html").read_text()
    assert '<section id="services"><h2>Carbon-sequestration services</h2>' in html
    assert '<a href="#services">' in html and 'class="summary"' in html
    for f in ours:
        assert (out / f["png"]).stat().st_size > 5000 and (out / f["svg"]).exists(), f["id"]
        assert f'id="{f["id"]}"' in html and f["caption"] and "Source products/services_" in \
            f["caption"]
        assert f["year"] == 2002, f["id"]
    assert (out / "tables" / "services_summary.csv").exists()
    for name in ("services_storage", "services_emission", "services_balance", "services_flow",
                 "services_drivers"):
        assert f"products/{name}" in manifest["datasets"]
        assert role_of(name) == "services"


def test_maps_draw_the_last_year_of_the_products(services):
    st, _, manifest, _ = services
    c = st.open("products", "services_storage")["c_total"].isel(year=-1).values
    f = _fig(manifest, "services_storage_map")
    assert [f["vmin"], f["vmax"]] == pytest.approx(
        list(np.percentile(c[np.isfinite(c)], [2, 98])), rel=1e-6)
    assert f["colorbar_label"] == "carbon storage (t C ha⁻¹)" and f["coarsen_factor"] == 1
    e = st.open("products", "services_emission")["e_total"].isel(year=-1).values
    e = e[np.isfinite(e) & (e > 0)]
    f = _fig(manifest, "services_emission_map")
    assert f["norm"] == "LogNorm" and [f["vmin"], f["vmax"]] == pytest.approx(
        list(np.percentile(e, [2, 98])), rel=1e-6)
    assert f["colorbar_label"] == "carbon emission (t C km⁻² a⁻¹, log scale)"
    r = st.open("products", "services_balance")["ratio"].isel(year=-1).values
    r = r[np.isfinite(r) & (r > 0)]
    f = _fig(manifest, "services_ratio_map")
    lo, hi = np.percentile(np.log10(r), [2, 98])
    assert f["vcenter"] == 1.0 and f["cmap"] == "RdBu_r"
    assert f["limits_from"]["values"] == pytest.approx([10 ** lo, 10 ** hi], rel=1e-4)
    assert f["vmin"] < 1 < f["vmax"] and f["cells_with_data"] == r.size
    flow = st.open("products", "services_flow")
    f = _fig(manifest, "services_flow_map")
    thr = (flow["throughput"].isel(year=-1) / (cell_area_da(flow) * 1e-6)).values
    thr = thr[np.isfinite(thr) & (thr > 0)]
    assert [f["vmin"], f["vmax"]] == pytest.approx(list(np.percentile(thr, [2, 98])), rel=1e-4)
    sec = flow["sector"].isel(year=-1).values
    arrows = f["arrows"]
    assert 0 < arrows["n"] <= 30 * 30 and sum(arrows["sector_counts"].values()) == arrows["n"]
    assert arrows["sector_counts"] and all(
        arrows["sector_counts"][s] == 0 or (sec == k).any()
        for k, s in enumerate(("N", "NE", "E", "SE", "S", "SW", "W", "NW")))


def test_charts_draw_the_tables(services):
    st, _, manifest, _ = services
    m = _table(st, "services_flow", "flow_matrix.csv")
    m = m[m.year == 2002]
    f = _fig(manifest, "services_flow_matrix")
    assert f["total_mass_t"] == pytest.approx(m.mass_t.sum(), rel=1e-9)
    assert len(f["origins"]) <= 15 and len(f["destinations"]) <= 15
    assert f["origins"][0] == m.groupby("origin").mass_t.sum().idxmax()
    grid = np.array([[np.nan if v is None else v for v in row] for row in f["mass_t"]])
    assert np.nansum(grid) == pytest.approx(f["shown_mass_t"]) and \
        f["shown_mass_t"] <= f["total_mass_t"] * (1 + 1e-12)
    et = _table(st, "services_emission", "emission_totals.csv")
    prov = et[(et.region_set == "province") & (et.year == 2002) & (et.term != "e_total")]
    bars = _fig(manifest, "services_emission_terms")["bars"]
    for (region, term), v in prov.set_index(["region", "term"]).total_tg.items():
        assert bars[region][term] == pytest.approx(v, rel=1e-9, abs=1e-12)
    geo = _table(st, "services_drivers", "geodetector.csv")
    geo = geo[geo.year == geo.year.max()]
    q = _fig(manifest, "services_drivers_q")
    assert q["q"] == pytest.approx(geo.set_index("factor").q.to_dict())
    pear = _table(st, "services_drivers", "pearson.csv").set_index(["year", "factor"])
    for fac, r in q["r"].items():
        assert (r is None) == (fac == "lulc")
        if r is not None:
            assert r == pytest.approx(pear.loc[(2002, fac), "r"])
    inter = _fig(manifest, "services_drivers_interaction")
    facs = inter["factors"]
    i12 = _table(st, "services_drivers", "interaction.csv")
    row = i12[i12.year == 2002].iloc[0]
    i, j = facs.index(row.factor1), facs.index(row.factor2)
    assert inter["q"][i][j] == inter["q"][j][i] == pytest.approx(row.q12)
    assert inter["types"][i][j] == row.type


def test_coarsened_ratio_is_emission_over_capacity_of_the_blocks(services, tmp_path):
    st, _, _, _ = services
    build_report(st, tmp_path / "atlas", max_cells=20)
    manifest = json.loads((tmp_path / "atlas" / "figures.json").read_text())
    f = _fig(manifest, "services_ratio_map")
    assert f["coarsen_factor"] == 4 and "4×4-cell" in f["caption"]
    bal = st.open("products", "services_balance").isel(year=-1)
    ok = np.isfinite(bal["ratio"].values)
    a = cell_area_da(bal).values
    pad = ((0, 3), (0, 1))                       # 37 × 63 → 40 × 64
    e = np.pad(np.where(ok, bal["emission"].values * a, 0), pad).reshape(10, 4, 16, 4)
    c = np.pad(np.where(ok, bal["capacity"].values * a, 0), pad).reshape(10, 4, 16, 4)
    e, c = e.sum(axis=(1, 3)), c.sum(axis=(1, 3))
    ratio = e[c > 0] / c[c > 0]
    assert f["cells_with_data"] == (ratio > 0).sum()
    assert f["field_max"] == pytest.approx(ratio.max(), rel=1e-5)


def test_store_without_services_has_no_services_section(services, tmp_path):
    _, _, full, path = services
    copy = tmp_path / "store"
    shutil.copytree(path, copy)
    other = Store(str(copy))
    keep = [p for p in other.published() if not p.name.startswith("services_")]
    other.release(keep, replace=True, note="without the services products")
    build_report(other, tmp_path / "atlas")
    manifest = json.loads((tmp_path / "atlas" / "figures.json").read_text())
    assert {f["id"] for f in manifest["figures"]} == {
        f["id"] for f in full["figures"] if f["section"] != "services"}
    assert not any(k.startswith("products/services_") for k in manifest["datasets"])
    html = (tmp_path / "atlas" / "index.html").read_text()
    assert 'id="services"' not in html and "Carbon-sequestration" not in html
    assert not (tmp_path / "atlas" / "tables" / "services_summary.csv").exists()
