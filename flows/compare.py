"""The bottom-up vs top-down comparison as a flow (SCIENCE.md §8): read the products a flux manifest
names, publish them on the comparison grid with their tables, release them with the catalog. The
work is small (1° grids) and runs in the flow's own process; retries cover transient store errors."""
from __future__ import annotations

import shutil
import tempfile

from prefect import flow, get_run_logger, task

from carbonsink.cli_compare import run_compare_cli
from flows._common import run_config, ship_by_value
from flows.tasks import TASK_DEFAULTS


@task(name="compare", **TASK_DEFAULTS)
def compare_task(cfg, manifest, prefix: str) -> dict:
    published, _tables, catalog = run_compare_cli(cfg.store, manifest, prefix,
                                                  cfg.resolved_storage_options())
    return {"catalog": catalog, "datasets": {k: p.version for k, p in published.items()}}


@flow(name="carbonsink-compare")
def compare(manifest: str | None = None, demo: bool = False, store: str | None = None,
            prefix: str = "compare_", config: str | None = None) -> dict:
    """Compare the flux products of ``manifest`` (a YAML path the flow's machine can read) or, with
    ``demo``, the synthetic BEPS-, VEGAS- and OCO-2 MIP-like products. Returns the catalog URL and
    the published versions."""
    if bool(manifest) == bool(demo):
        raise ValueError("give a flux manifest or demo=True (not both)")
    cfg = run_config(config=config, store=store)
    tmp = None
    try:
        if demo:
            from carbonsink.synthetic_fluxes import make_flux_products
            tmp = tempfile.mkdtemp(prefix="carbonsink-fluxes-")
            manifest = make_flux_products(tmp).manifest
        out = compare_task.submit(cfg, manifest, prefix).result()
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    get_run_logger().info("comparison published: %s", out["catalog"])
    return out


ship_by_value(__name__)
