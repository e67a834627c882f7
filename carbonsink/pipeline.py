"""Library-level runs that the CLI and the Prefect flows call: validate → publish inputs → compute →
publish products (+ totals tables) → regenerate the catalog.

Nothing here starts or picks a cluster: dask work runs on the active distributed client if there is
one (the CLI and flows make it), else on the local threaded scheduler.
"""
from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field

import pandas as pd
import xarray as xr

from .catalog import write_catalog
from .config import RunConfig
from .io.store import Published, Store
from .io.validate import REQUIRED, validate_inputs
from .kernels.respiration import RH_MODELS
from .products.nep import compute_nep
from .regions import region_masks
from .synthetic import make_inputs
from .zonal import cell_area_da, period_summary, totals

log = logging.getLogger("carbonsink")

DEMO_RH_MODELS = ("soil_tps", "pei")


@dataclass
class RunResult:
    store: str
    catalog: str
    published: dict[str, Published] = field(default_factory=dict)
    summaries: dict[str, "object"] = field(default_factory=dict)  # product → period summary table


def make_compute(progress: bool):
    """A compute callback for the store layer: the active client, with a progress bar if asked."""
    def compute(delayed):
        try:
            from distributed import default_client, progress as dprogress
            client = default_client()
        except (ImportError, ValueError):
            client = None
        if client is None:
            if progress:
                from dask.diagnostics import ProgressBar
                with ProgressBar():
                    delayed.compute()
            else:
                delayed.compute()
            return
        future = client.compute(delayed)
        if progress:
            dprogress(future, notebook=False)
            print(flush=True)
        future.result()
    return compute


def _record(ds: xr.Dataset, cfg: RunConfig, description: str) -> dict:
    rec = {"description": description,
           "units": {k: v.attrs.get("units") for k, v in ds.data_vars.items()},
           "grid": cfg.grid_obj().name, "config_hash": cfg.config_hash(),
           "config": {k: v for k, v in cfg.public_dict().items()
                      if k not in ("storage_options", "cluster")}}
    if "year" in ds.coords:
        rec["years"] = [int(ds["year"].values.min()), int(ds["year"].values.max())]
    return rec


def _totals_attachment(var: str, regions: xr.Dataset):
    def attach(staged: xr.Dataset) -> dict[str, bytes]:
        table = totals(staged[var], regions[["province", "division", "karst_region"]])
        buf = io.StringIO()
        table.to_csv(buf, index=False, float_format="%.6g")
        return {"totals.csv": buf.getvalue().encode()}
    return attach


def publish_inputs(store: Store, cfg: RunConfig, inputs: xr.Dataset, *, name: str = "synthetic",
                   progress: bool = False) -> tuple[Published, Published]:
    """Validate the canonical inputs (all checks, before anything is written), then publish them and
    the region masks of their grid."""
    validate_inputs(inputs, REQUIRED["all"], source=inputs.attrs.get("source"))
    compute = make_compute(progress)
    inputs = inputs.assign_attrs(run_config_hash=cfg.config_hash())
    p_inputs = store.publish(inputs, "inputs", name, compute=compute,
                             record=_record(inputs, cfg, "canonical carbonsink inputs "
                                            f"({inputs.attrs.get('title', name)})"))
    regions = region_masks(cfg.grid_obj())
    regions["cell_area"] = cell_area_da(regions)
    p_regions = store.publish(regions, "inputs", "regions", compute=compute,
                              record=_record(regions, cfg, "region masks (province, division, "
                                             "karst_region) and true cell areas (m2)"))
    return p_inputs, p_regions


def run_nep(store: Store, cfg: RunConfig, inputs: xr.Dataset, regions: xr.Dataset, *,
            rh_model: str, name: str = "nep", progress: bool = False) -> Published:
    """Compute NEP with one Rh model and publish it with its totals table."""
    if rh_model not in RH_MODELS:
        raise ValueError(f"unknown Rh model {rh_model!r}")
    # inputs come from the store, validated when they were published
    nep = compute_nep(inputs, rh_model=rh_model, validate=False)
    chunks = cfg.grid_obj().chunks(inputs.sizes["time"], target_mb=cfg.chunk_mb)
    nep = nep.chunk({"year": -1, **chunks})
    return store.publish(
        nep, "products", name, compute=make_compute(progress),
        attachments=_totals_attachment("nep", regions),
        record=_record(nep, cfg, f"ecosystem organic sink NEP = NPP - Rh, Rh model {rh_model} "
                                 "(positive = sink), g C m-2 a-1 = t C km-2 a-1"))


def run_demo(cfg: RunConfig, *, progress: bool = False,
             rh_models=DEMO_RH_MODELS) -> RunResult:
    """The demo end to end on synthetic China: inputs, NEP for each Rh model, totals, catalog."""
    store = Store(cfg.store, cfg.resolved_storage_options())
    grid = cfg.grid_obj()
    log.info("synthetic China on %s for %s–%s", grid, *cfg.years)
    inputs = make_inputs(grid, cfg.years, seed=cfg.seed, target_mb=cfg.chunk_mb)
    p_inputs, p_regions = publish_inputs(store, cfg, inputs, progress=progress)
    result = RunResult(store=store.url, catalog="")
    result.published.update(inputs=p_inputs, regions=p_regions)

    # products read the published inputs back from the store, as any later run would
    stored = store.open("inputs", "synthetic")
    regions = store.open("inputs", "regions").load()
    models = [cfg.rh_model] + [m for m in rh_models if m != cfg.rh_model]
    for model in models:
        name = "nep" if model == cfg.rh_model else f"nep_{model}"
        log.info("computing %s (Rh model %s)", name, model)
        p = run_nep(store, cfg, stored, regions, rh_model=model, name=name, progress=progress)
        result.published[name] = p
        with store.fs.open(store.path(p.record["attachments"]["totals.csv"])) as f:
            table = pd.read_csv(f)
        result.summaries[name] = period_summary(table)
    result.catalog = write_catalog(store)
    return result
