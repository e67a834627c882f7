"""What every flow needs: the run configuration, the Dask task runner, the retry policy."""
from __future__ import annotations

import contextlib
import sys

import cloudpickle

from carbonsink.config import RunConfig, load_config
from carbonsink.io.store import Store, is_transient

DEFAULT_RETRIES = 3
DEFAULT_RETRY_DELAY_SECONDS = 5.0


def run_config(*, config: str | None = None, store: str | None = None, grid: str | None = None,
               domain: str | None = None, years: str | None = None, rh_model: str | None = None,
               seed: int | None = None, chunk_mb: float | None = None, scheduler: str | None = None,
               n_workers: int | None = None) -> RunConfig:
    """The run configuration: defaults ← YAML ``config`` ← CARBONSINK_* environment ← these flow
    parameters (None = not given). Object-store keys come from the flow process's environment
    (AWS_*), never from parameters, which the Prefect API stores."""
    return load_config(config, store=store, grid=grid, domain=domain, years=years,
                       rh_model=rh_model, seed=seed, chunk_mb=chunk_mb,
                       **{"cluster.scheduler": scheduler, "cluster.n_workers": n_workers})


def open_store(cfg: RunConfig) -> Store:
    # a run's datasets become visible together, in the flow's final publish-catalog task
    return Store(cfg.store, cfg.resolved_storage_options(), auto_release=False)


def dask_task_runner(cfg: RunConfig):
    """prefect-dask's DaskTaskRunner on the configured scheduler, or on a LocalCluster of
    ``cluster.n_workers`` processes on 127.0.0.1 (started and stopped with the flow run)."""
    from prefect_dask import DaskTaskRunner

    c = cfg.cluster
    if c.scheduler:
        return DaskTaskRunner(address=c.scheduler)
    return DaskTaskRunner(cluster_class="distributed.LocalCluster", cluster_kwargs={
        "n_workers": c.n_workers, "threads_per_worker": c.threads_per_worker,
        "memory_limit": c.memory_limit, "processes": True, "host": "127.0.0.1",
        "dashboard_address": "127.0.0.1:0"})


def retry_transient(task, task_run, state) -> bool:
    """Retry condition of every task: retry transient storage/network failures (an unreachable or
    restarting object store, a dropped connection, a lost worker), never bad input or configuration
    (InputError, ConfigError, UnitError, IonTableError — ValueErrors) or missing data."""
    try:
        state.result()
    except Exception as exc:  # noqa: BLE001 - classify whatever the task raised
        return is_transient(exc)
    return False


@contextlib.contextmanager
def on_cluster():
    """Inside a task: make the dask cluster the task runs on the default for the library's
    computations. On a dask worker this is the worker's client, and the task's thread secedes from
    the worker's thread pool while it waits for the graphs it submits (with one thread per worker,
    a task blocking its thread would leave no thread to run them). Elsewhere: no change."""
    try:
        from distributed import get_worker

        get_worker()
    except (ImportError, ValueError):
        yield None
        return
    from distributed import worker_client

    with worker_client() as client, client.as_current():
        yield client


def ship_by_value(module_name: str) -> None:
    """Tasks run on dask workers, which import carbonsink but not this folder (it is not installed,
    and Prefect loads an entrypoint file under a module name of its own): send the flows' own code
    to the workers by value, not by module reference."""
    cloudpickle.register_pickle_by_value(sys.modules[module_name])


ship_by_value(__name__)
