"""The demo as a Prefect flow: synthetic China → validated inputs → every product → catalog, on a
Dask cluster (the configured scheduler, or a local one). Products whose content-addressed version is
already complete are reused: a rerun of an unchanged configuration recomputes nothing, a failed
run resumes, and ``full_rebuild`` recomputes everything under new versions."""
from __future__ import annotations

from prefect import flow, get_run_logger

from flows._common import (DEFAULT_RETRIES, DEFAULT_RETRY_DELAY_SECONDS, dask_task_runner,
                           run_config, ship_by_value)
from flows.tasks import (demo_inputs, outcome, publish_catalog, submit_products, with_retries,
                         write_atlas)


def _rebuild_tag() -> str:
    """A full rebuild's tag: the flow run's scheduled start, so a retry of the same run resumes it
    and the next scheduled (or manual) run rebuilds again."""
    from prefect.runtime import flow_run

    return f"rebuild-{flow_run.scheduled_start_time:%Y%m%dT%H%M%S}"


@flow(name="carbonsink-demo")
def demo(store: str | None = None, grid: str | None = None, domain: str | None = None,
         years: str | None = None,
         rh_model: str | None = None, seed: int | None = None, chunk_mb: float | None = None,
         scheduler: str | None = None, n_workers: int | None = None, config: str | None = None,
         full_rebuild: bool = False, atlas: str | None = None, retries: int = DEFAULT_RETRIES,
         retry_delay_seconds: float = DEFAULT_RETRY_DELAY_SECONDS) -> dict:
    """Run the demo. Settings left empty come from ``config`` (a YAML run configuration), then the
    CARBONSINK_* environment, then the defaults; S3 keys come from AWS_* in the environment only.
    ``scheduler``: a dask scheduler address; none starts a local cluster of ``n_workers``."""
    settings = dict(config=config, store=store, grid=grid, domain=domain, years=years,
                    rh_model=rh_model,
                    seed=seed, chunk_mb=chunk_mb, scheduler=scheduler, n_workers=n_workers)
    cfg = run_config(**settings)
    rebuild = _rebuild_tag() if full_rebuild else ""
    get_run_logger().info("carbonsink demo: domain %s, grid %s, years %s–%s, store %s, dask %s%s",
                          cfg.domain_obj().label, cfg.grid, *cfg.years, cfg.store, cfg.cluster.scheduler or
                          f"local cluster of {cfg.cluster.n_workers} workers",
                          f", full rebuild ({rebuild})" if rebuild else "")
    run = demo_on_dask.with_options(task_runner=dask_task_runner(cfg))
    out = run(settings, rebuild=rebuild, retries=retries, retry_delay_seconds=retry_delay_seconds)
    out["atlas"] = write_atlas(cfg, atlas)      # ``atlas``: a folder for the run's atlas, or none
    return out


@flow(name="carbonsink-demo-on-dask")
def demo_on_dask(settings: dict, rebuild: str = "", retries: int = DEFAULT_RETRIES,
                 retry_delay_seconds: float = DEFAULT_RETRY_DELAY_SECONDS) -> dict:
    """The demo's tasks; runs as a subflow of :func:`demo`, which picks its Dask task runner."""
    cfg = run_config(**settings)
    inputs = with_retries(demo_inputs, retries, retry_delay_seconds).submit(cfg, rebuild)
    products = submit_products(cfg, inputs, retries=retries,
                               retry_delay_seconds=retry_delay_seconds)
    catalog = with_retries(publish_catalog, retries, retry_delay_seconds).submit(
        cfg, inputs, products)
    catalog_url = catalog.result()   # raises if any task failed for good (after its retries)
    published = {p.name: p for p in [*inputs.result().values(),
                                      *(f.result() for f in products.values())]}
    return {"catalog": catalog_url, "datasets": outcome(published)}


# the flow runs in its own process, but Prefect sends it (in the run context) along with every task
# to the dask workers, which cannot import this file: send it by value
ship_by_value(__name__)
