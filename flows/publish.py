"""Publishing as a flow of its own: point ``latest`` of datasets at given complete versions (e.g. to
roll back to an earlier version, or to promote versions computed elsewhere) and regenerate the Intake
catalog. Versions are never rewritten or deleted: earlier ones stay readable by their id."""
from __future__ import annotations

from prefect import flow, get_run_logger, task

from carbonsink import pipeline
from flows._common import open_store, run_config, ship_by_value
from flows.tasks import TASK_DEFAULTS


@task(name="publish", **TASK_DEFAULTS)
def promote_and_catalog(cfg, versions: dict[str, str]) -> str:
    st = open_store(cfg)
    refs = []
    for key, version in versions.items():
        kind, name = key.split("/", 1)
        p = st.complete(kind, name, st.resolve(kind, name, version))
        refs.append(p)
        get_run_logger().info("%s: latest → %s", key, p.version)
    return pipeline.publish_catalog(st, refs)


@flow(name="carbonsink-publish")
def publish(store: str | None = None, config: str | None = None,
            versions: dict[str, str] | None = None) -> str:
    """``versions``: {"products/nep": "c-…", "inputs/synthetic": "latest", ...}; each must be a
    complete version. Without versions, only the catalog is regenerated. Returns its URL."""
    cfg = run_config(config=config, store=store)
    url = promote_and_catalog.submit(cfg, versions or {}).result()
    get_run_logger().info("catalog: %s", url)
    return url


# the flow runs in its own process, but Prefect sends it (in the run context) along with every task
# to the dask workers, which cannot import this file: send it by value
ship_by_value(__name__)
