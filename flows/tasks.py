"""The tasks — publish the demo inputs, compute one product, publish the catalog — each one call
into ``carbonsink.pipeline`` that takes and returns ``Published`` references (kind, name, version,
Zarr URI, record), never datasets. A task whose content-addressed version was already complete
reused it instead of recomputing and finishes in a Completed state named "Reused"."""
from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed

from carbonsink import pipeline
from carbonsink.io.store import Published
from flows._common import (DEFAULT_RETRIES, DEFAULT_RETRY_DELAY_SECONDS, on_cluster, open_store,
                           retry_transient, ship_by_value)

REUSED = "Reused"   # state name of a task that recomputed nothing

# Results stay in memory (no result storage to configure, nothing of a run written outside the
# store) and Prefect's own input caching is off: the store's content addressing decides what is
# recomputed, and it survives process restarts and works across flows.
TASK_DEFAULTS = dict(retries=DEFAULT_RETRIES, retry_delay_seconds=DEFAULT_RETRY_DELAY_SECONDS,
                     retry_condition_fn=retry_transient, cache_policy=NO_CACHE,
                     persist_result=False)


def _finished(value, refs: list[Published]):
    """The task's return: the value, in a Completed state named "Reused" if nothing was recomputed."""
    log = get_run_logger()
    for p in refs:
        log.info("%s %s: %s", p.key, p.version, "reused" if p.reused else "computed and published")
    if refs and all(p.reused for p in refs):
        return Completed(name=REUSED, data=value, message="content-addressed version(s) already "
                         "complete: " + ", ".join(f"{p.key}@{p.version}" for p in refs))
    return value


@task(name="demo-inputs", **TASK_DEFAULTS)
def demo_inputs(cfg, rebuild: str = "") -> dict[str, Published]:
    """Synthetic China (validated) and its region masks: {"inputs": ..., "regions": ...}."""
    with on_cluster():
        p_in, p_reg = pipeline.demo_inputs_step(open_store(cfg), cfg, rebuild=rebuild)
    return _finished({"inputs": p_in, "regions": p_reg}, [p_in, p_reg])


@task(name="published-inputs", **TASK_DEFAULTS)
def published_inputs(cfg, inputs: str = "synthetic",
                     version: str = "latest") -> dict[str, Published]:
    """Inputs already in the store ({"inputs": ..., "regions": ...}), checked against the
    configured grid and years; their region masks are published if not complete yet."""
    with on_cluster():
        p_in, p_reg = pipeline.published_inputs_step(open_store(cfg), cfg, inputs, version)
    return _finished({"inputs": p_in, "regions": p_reg}, [p_in, p_reg])


@task(name="product", **TASK_DEFAULTS)
def product(cfg, name: str, inputs: dict[str, Published],
            upstream: dict[str, Published], prefix: str = "") -> Published:
    """One product of :func:`carbonsink.pipeline.product_steps` (published as ``name``), from the
    given input and upstream product versions."""
    step = pipeline.product_steps(cfg, prefix=prefix, inputs=inputs["inputs"])[name]
    refs = {**inputs, **upstream}
    with on_cluster():
        p = step.run(open_store(cfg), cfg, *(refs[d] for d in step.deps))
    return _finished(p, [p])


@task(name="publish-catalog", **TASK_DEFAULTS)
def publish_catalog(cfg, inputs: dict[str, Published], products: dict[str, Published]) -> str:
    """Point ``latest`` at this run's versions and regenerate the Intake catalog; its URL."""
    url = pipeline.publish_catalog(open_store(cfg), [*inputs.values(), *products.values()])
    get_run_logger().info("catalog: %s", url)
    return url


def write_atlas(cfg, out: str | None, prefix: str = "") -> str | None:
    """The run's atlas (``carbonsink.report``) from what was just released, in the flow's own
    process (the maps are drawn from coarsened fields; nothing full-resolution is gathered);
    None when ``out`` is not set."""
    if not out:
        return None
    from carbonsink.report import build_report

    html = build_report(open_store(cfg), out, prefix=prefix)
    get_run_logger().info("atlas: %s", html.resolve().as_uri())
    return str(html)


def submit_products(cfg, inputs, *, prefix: str = "", retries: int = DEFAULT_RETRIES,
                    retry_delay_seconds: float = DEFAULT_RETRY_DELAY_SECONDS) -> dict:
    """Submit one task per product, each as soon as what it is computed from is ready; ``inputs``:
    {"inputs": ..., "regions": ...} or a future of it. Returns {published name: future}."""
    futures: dict = {}
    # which registered families apply depends on the inputs' record (services variables...);
    # a future of the demo's inputs is the synthetic set, which has everything
    known = inputs.get("inputs") if isinstance(inputs, dict) else None
    for name, step in pipeline.product_steps(cfg, prefix=prefix, inputs=known).items():
        t = product.with_options(name=step.product, task_run_name=name, retries=retries,
                                 retry_delay_seconds=retry_delay_seconds)
        futures[name] = t.submit(cfg, name, inputs,
                                 {d: futures[d] for d in step.deps if d in futures}, prefix)
    return futures


def with_retries(t, retries: int, retry_delay_seconds: float):
    return t.with_options(retries=retries, retry_delay_seconds=retry_delay_seconds)


def outcome(published: dict[str, Published]) -> dict[str, dict]:
    """What a flow returns: for each dataset its key, version, Zarr URI and whether it was reused."""
    return {name: {"key": p.key, "version": p.version, "uri": p.uri, "reused": p.reused}
            for name, p in published.items()}


ship_by_value(__name__)
