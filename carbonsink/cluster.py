"""Connecting to a dask cluster: an external scheduler from the config, or a local multi-process one."""
from __future__ import annotations

import contextlib
import logging

from .config import ClusterConfig


class ClusterError(RuntimeError):
    pass


@contextlib.contextmanager
def connect(cluster: ClusterConfig, *, quiet: bool = True):
    """Yield a distributed Client: to ``cluster.scheduler`` if set, else to a LocalCluster of
    ``n_workers`` processes on 127.0.0.1 (closed on exit)."""
    from distributed import Client, LocalCluster

    if quiet:
        for name in ("distributed", "distributed.worker", "distributed.scheduler",
                     "distributed.nanny", "distributed.core", "bokeh"):
            logging.getLogger(name).setLevel(logging.ERROR)
    if cluster.scheduler:
        try:
            client = Client(cluster.scheduler, set_as_default=True, timeout="20s")
        except (OSError, TimeoutError) as e:
            raise ClusterError(f"cannot connect to dask scheduler {cluster.scheduler}: {e}") \
                from None
        with client:
            yield client
        return
    with LocalCluster(n_workers=cluster.n_workers, threads_per_worker=cluster.threads_per_worker,
                      memory_limit=cluster.memory_limit, processes=True,
                      host="127.0.0.1", dashboard_address="127.0.0.1:0") as lc, \
            Client(lc, set_as_default=True) as client:
        yield client
