"""Every product from the inputs already published in a store (the monthly incremental update):
each product whose content-addressed version is complete is reused, the others are computed — so
only what new or changed inputs (or configuration, or code) affect is recomputed."""
from __future__ import annotations

from prefect import flow, get_run_logger

from carbonsink import pipeline
from carbonsink.io.names import validate_name, validate_prefix, validate_version
from flows._common import (DEFAULT_RETRIES, DEFAULT_RETRY_DELAY_SECONDS, dask_task_runner,
                           run_config, ship_by_value)
from flows.tasks import (outcome, publish_catalog, published_inputs, submit_products,
                         with_retries, write_atlas)


@flow(name="carbonsink-compute")
def compute(store: str | None = None, grid: str | None = None, domain: str | None = None,
            years: str | None = None,
            rh_model: str | None = None, seed: int | None = None, chunk_mb: float | None = None,
            scheduler: str | None = None, n_workers: int | None = None, config: str | None = None,
            inputs: str = "synthetic", inputs_version: str = "latest", prefix: str | None = None,
            atlas: str | None = None, retries: int = DEFAULT_RETRIES,
            retry_delay_seconds: float = DEFAULT_RETRY_DELAY_SECONDS) -> dict:
    """Compute (or reuse) every product from the published ``inputs`` (name, version) and their
    region masks, then publish the catalog. Settings as for the demo flow; products are published
    as ``prefix + product`` (default: plain names for synthetic inputs, ``<inputs>_`` otherwise)."""
    settings = dict(config=config, store=store, grid=grid, domain=domain, years=years,
                    rh_model=rh_model,
                    seed=seed, chunk_mb=chunk_mb, scheduler=scheduler, n_workers=n_workers)
    cfg = run_config(**settings)
    # names become store paths: refuse '../x' and the like before anything runs
    validate_name(inputs, "inputs name")
    validate_version(inputs_version)
    validate_prefix(prefix or "")
    get_run_logger().info("carbonsink products from inputs/%s@%s in %s, dask %s", inputs,
                          inputs_version, cfg.store, cfg.cluster.scheduler or
                          f"local cluster of {cfg.cluster.n_workers} workers")
    run = compute_on_dask.with_options(task_runner=dask_task_runner(cfg))
    out = run(settings, inputs=inputs, inputs_version=inputs_version, prefix=prefix,
              retries=retries, retry_delay_seconds=retry_delay_seconds)
    # ``atlas``: a folder for the run's atlas (from the released products), or none
    out["atlas"] = write_atlas(cfg, atlas, pipeline.default_prefix(inputs) if prefix is None
                               else prefix)
    return out


@flow(name="carbonsink-compute-on-dask")
def compute_on_dask(settings: dict, inputs: str = "synthetic", inputs_version: str = "latest",
                    prefix: str | None = None, retries: int = DEFAULT_RETRIES,
                    retry_delay_seconds: float = DEFAULT_RETRY_DELAY_SECONDS) -> dict:
    """The compute flow's tasks; a subflow of :func:`compute`, which picks its Dask task runner."""
    cfg = run_config(**settings)
    refs = with_retries(published_inputs, retries, retry_delay_seconds).submit(
        cfg, inputs, inputs_version).result()
    prefix = pipeline.default_prefix(inputs) if prefix is None else prefix
    products = submit_products(cfg, refs, prefix=prefix, retries=retries,
                               retry_delay_seconds=retry_delay_seconds)
    catalog = with_retries(publish_catalog, retries, retry_delay_seconds).submit(
        cfg, refs, products)
    catalog_url = catalog.result()   # raises if any task failed for good (after its retries)
    published = {p.name: p for p in [*refs.values(), *(f.result() for f in products.values())]}
    return {"catalog": catalog_url, "datasets": outcome(published)}


# the flow runs in its own process, but Prefect sends it (in the run context) along with every task
# to the dask workers, which cannot import this file: send it by value
ship_by_value(__name__)
