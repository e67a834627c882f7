"""The 1 km pipeline end to end on a small domain (issue 15): Guizhou at 0.01° (about 277 000
cells) on a real 2-process cluster, checked against the same province at 0.05°.

The synthetic China is a smooth field plus cell noise, so the same province at two resolutions
must total the same to within the resampling error: the difference of the two grids' valid areas
(edge cells of the outline fall in or out, at 0.05° a cell is 25 km²) plus the noise of
the cells. Everything else — the inputs written tile by tile, the random forest predicting
ionic strength chunk by chunk, the tables from block sums — must not change a total by more.
"""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.system]

YEARS = (2000, 2004)
PRODUCTS = ("nep", "nep_pei", "karst", "sink")
# beyond the area difference: measured 0.0–0.25 % for NEP and the sink, 0.0–0.7 % for karst (its
# forest is trained on 0.05° or 0.01° basin means, and explains little on one province)
TOL = {"nep": 0.01, "nep_pei": 0.01, "sink": 0.01, "karst": 0.02}


def _domain_totals(store, published) -> dict[str, pd.DataFrame]:
    out = {}
    for name in PRODUCTS:
        p = published[name]
        t = pd.read_csv(io.BytesIO(store.read_bytes(p.record["attachments"]["totals.csv"])))
        out[name] = t[t["region_set"] == "domain"].set_index("year")
    return out


def _run(tmp_path, grid: str):
    from carbonsink.config import load_config
    from carbonsink.io.store import Store
    from carbonsink.pipeline import run_demo

    cfg = load_config(None, store=str(tmp_path / grid), grid=grid, domain="guizhou",
                      years=f"{YEARS[0]}-{YEARS[1]}", env={})
    result = run_demo(cfg, families=["core"])
    store = Store(cfg.store)
    nep = store.open("products", "nep")
    return _domain_totals(store, result.published), nep


def test_guizhou_at_1km_totals_match_005(tmp_path):
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, memory_limit="2GB") as cluster, Client(cluster):
        coarse, nep_c = _run(tmp_path, "0.05")
        fine, nep_f = _run(tmp_path, "0.01")

    # the 1 km product covers the province at 1 km, not a resampled 0.05° field
    assert nep_f.sizes["lat"] > 4.5 * nep_c.sizes["lat"]
    assert nep_f.sizes["lon"] > 4.5 * nep_c.sizes["lon"]
    years = list(range(YEARS[0], YEARS[1] + 1))
    area_c = coarse["nep"].loc[years, "area_km2"].to_numpy()
    area_f = fine["nep"].loc[years, "area_km2"].to_numpy()
    # Guizhou is about 176 000 km²; the two grids' coverage of its outline differs by edge cells
    assert 1.6e5 < area_f.mean() < 1.9e5
    d_area = np.abs(area_f / area_c - 1.0)
    assert d_area.max() < 0.005                         # measured 0.07 %
    for name in PRODUCTS:
        c = coarse[name].loc[years, "total_tg"].to_numpy()
        f = fine[name].loc[years, "total_tg"].to_numpy()
        assert np.all(np.isfinite(f)) and np.all(np.abs(f) > 0), name
        rel = np.abs(f / c - 1.0)
        tol = d_area + TOL[name]
        assert np.all(rel <= tol), (name, rel, tol)
        # the mean flux (total over area)
        mc = coarse[name].loc[years, "mean_flux_t_km2"].to_numpy()
        mf = fine[name].loc[years, "mean_flux_t_km2"].to_numpy()
        assert np.all(np.abs(mf / mc - 1.0) <= TOL[name]), (name, mf, mc)
