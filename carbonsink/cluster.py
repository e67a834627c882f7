"""Connecting to a dask cluster: an external scheduler from the config, or a local multi-process one;
and a detached local cluster that outlives the command (`carbonsink cluster up|down|status`)."""
from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

from .config import ClusterConfig


class ClusterError(RuntimeError):
    pass


# A cluster whose workers all died would leave a computation waiting forever: after this many
# seconds without a single worker, the run stops with an error (CARBONSINK_NO_WORKERS_TIMEOUT).
NO_WORKERS_TIMEOUT_S = 60.0


@contextlib.contextmanager
def watch_workers(client, timeout: float | None = None, poll: float = 2.0):
    """Stop the calling (main) thread with a ClusterError when ``client``'s scheduler has had no
    worker for ``timeout`` seconds, instead of hanging silently."""
    import _thread
    import threading

    timeout = float(os.environ.get("CARBONSINK_NO_WORKERS_TIMEOUT", timeout or
                                   NO_WORKERS_TIMEOUT_S))
    if threading.current_thread() is not threading.main_thread() or timeout <= 0:
        yield
        return
    stop, fired = threading.Event(), []

    def watch():
        since = None
        while not stop.wait(poll):
            try:
                n = len(client.nthreads())
            except Exception:  # noqa: BLE001 - scheduler gone: the client raises in the main thread
                return
            if n:
                since = None
                continue
            since = since or time.monotonic()
            if time.monotonic() - since >= timeout:
                fired.append(f"the dask cluster at {client.scheduler.address} has had no worker "
                             f"for {timeout:.0f} s (all died or none connected): check the "
                             "workers' logs and memory limit, start workers, then rerun — "
                             "completed datasets are reused")
                _thread.interrupt_main()
                return
    t = threading.Thread(target=watch, name="carbonsink-worker-watch", daemon=True)
    t.start()
    try:
        yield
    except KeyboardInterrupt:
        if fired:
            raise ClusterError(fired[0]) from None
        raise
    finally:
        stop.set()


@contextlib.contextmanager
def connect(cluster: ClusterConfig, *, quiet: bool = True):
    """Yield a distributed Client: to ``cluster.scheduler`` if set, else to a LocalCluster of
    ``n_workers`` processes on 127.0.0.1 (closed on exit). In the main thread, a cluster left
    without workers for :data:`NO_WORKERS_TIMEOUT_S` raises a ClusterError (:func:`watch_workers`)."""
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
        with client, watch_workers(client):
            yield client
        return
    with LocalCluster(n_workers=cluster.n_workers, threads_per_worker=cluster.threads_per_worker,
                      memory_limit=cluster.memory_limit, processes=True,
                      host="127.0.0.1", dashboard_address="127.0.0.1:0") as lc, \
            Client(lc, set_as_default=True) as client, watch_workers(client):
        yield client


# --- a detached local cluster: `carbonsink cluster up|down|status` ------------------------------
#
# `up` starts `dask scheduler` and N `dask worker` processes on 127.0.0.1 as background processes
# that outlive the command (each in its own session, so a terminal's Ctrl-C or hang-up does not
# reach them), and records them in <state dir>/state.json. `down` stops exactly the processes
# recorded there (pid + start time, so a recycled pid is never signalled) and the children they
# spawned (a worker's nanny runs the worker in a child process).

STATE_FILE = "state.json"
SCHEDULER_FILE = "scheduler.json"
STATE_DIR_ENV = "CARBONSINK_CLUSTER_DIR"


def default_state_dir() -> Path:
    """``$CARBONSINK_CLUSTER_DIR``, else ``~/.carbonsink/cluster``."""
    env = os.environ.get(STATE_DIR_ENV)
    return Path(env).expanduser() if env else Path.home() / ".carbonsink" / "cluster"


def resolve_state_dir(state_dir=None) -> Path:
    """``state_dir`` as an absolute path, or the default (:func:`default_state_dir`)."""
    return (Path(state_dir) if state_dir else default_state_dir()).expanduser().resolve()


def read_state(state_dir=None) -> dict | None:
    """The recorded cluster of ``state_dir`` (None if there is none)."""
    path = resolve_state_dir(state_dir) / STATE_FILE
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise ClusterError(f"unreadable cluster state {path}: {e}; remove it by hand") from None


def _write_state(state_dir, state: dict):
    path = resolve_state_dir(state_dir) / STATE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, path)


def _proc(entry: dict):
    """The live psutil.Process of a recorded process, or None if it is gone (or the pid now belongs
    to another process)."""
    try:
        p = psutil.Process(entry["pid"])
        if abs(p.create_time() - entry["create_time"]) > 1.0 or \
                p.status() == psutil.STATUS_ZOMBIE:
            return None
        return p
    except psutil.Error:
        return None


def _family(state: dict) -> list:
    """Live recorded processes, their descendants, and any process left in their sessions
    (process groups) that was started after the cluster — e.g. a worker orphaned by its nanny."""
    found: dict[int, psutil.Process] = {}
    for entry in state.get("processes", []):
        p = _proc(entry)
        if p is None:
            continue
        found[p.pid] = p
        try:
            for c in p.children(recursive=True):
                found[c.pid] = c
        except psutil.Error:
            pass
    groups = {e["pid"] for e in state.get("processes", [])}
    started = float(state.get("started_at", 0)) - 1.0
    for p in psutil.process_iter():
        try:
            if p.pid not in found and p.pid != os.getpid() and os.getpgid(p.pid) in groups \
                    and p.create_time() >= started and p.status() != psutil.STATUS_ZOMBIE:
                found[p.pid] = p
        except (psutil.Error, OSError):
            continue
    return list(found.values())


def _terminate(procs: list, timeout: float) -> list:
    """SIGTERM, wait up to ``timeout`` s, then SIGKILL what is left. Returns the pids stopped."""
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(alive, timeout=5)
    return sorted(p.pid for p in procs)


def _log_tail(path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def cluster_up(n_workers: int = 2, *, threads_per_worker: int = 1, memory_limit: str = "2GB",
               state_dir=None, timeout: float = 60.0) -> dict:
    """Start ``dask scheduler`` + ``n_workers`` ``dask worker`` processes on 127.0.0.1, detached,
    wait until every worker has joined, and record them in ``<state_dir>/state.json``.

    Returns the state: ``scheduler`` (tcp://127.0.0.1:PORT), ``dashboard`` (link), ``processes``
    (name, pid, create_time, log), ``n_workers``, ... Raises :class:`ClusterError` if a cluster
    recorded in ``state_dir`` is still running or if the cluster does not come up (then nothing
    started here is left running and no state is written).
    """
    if n_workers < 1 or threads_per_worker < 1:
        raise ClusterError("--workers and --threads-per-worker must be at least 1")
    sd = resolve_state_dir(state_dir)
    sd.mkdir(parents=True, exist_ok=True)
    old = read_state(sd)
    if old is not None:
        if _family(old):
            raise ClusterError(f"a cluster is already running at {old.get('scheduler')} "
                               f"(state {sd / STATE_FILE}); stop it with `carbonsink cluster "
                               f"down --state-dir {sd}`")
        (sd / STATE_FILE).unlink(missing_ok=True)       # stale: its processes are gone
    sched_file = sd / SCHEDULER_FILE
    sched_file.unlink(missing_ok=True)
    dask = [sys.executable, "-m", "dask"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    started_at = time.time()
    procs: list[tuple[str, subprocess.Popen, str]] = []

    def start(name, args):
        log = sd / f"{name}.log"
        with open(log, "wb") as out:
            p = subprocess.Popen(dask + args, stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, env=env, cwd=sd,
                                 start_new_session=True)
        procs.append((name, p, str(log)))
        return p

    def check_alive():
        for name, p, log in procs:
            if p.poll() is not None:
                raise ClusterError(f"{name} exited with code {p.returncode}; its log "
                                   f"({log}) ends:\n{_log_tail(sd / f'{name}.log')}")

    try:
        start("scheduler", ["scheduler", "--host", "127.0.0.1", "--port", "0",
                            "--dashboard-address", "127.0.0.1:0",
                            "--scheduler-file", str(sched_file)])
        deadline = time.monotonic() + timeout
        info = None
        while info is None:
            check_alive()
            if time.monotonic() > deadline:
                raise ClusterError(f"the scheduler did not start within {timeout:g} s; log:\n"
                                   f"{_log_tail(sd / 'scheduler.log')}")
            if sched_file.exists():
                try:
                    info = json.loads(sched_file.read_text())
                except ValueError:
                    info = None     # being written
            time.sleep(0.1)
        address = info["address"]
        dashboard_port = info.get("services", {}).get("dashboard")
        dashboard = f"http://127.0.0.1:{dashboard_port}/status" if dashboard_port else None
        for i in range(n_workers):
            # --death-timeout: a worker whose scheduler vanished exits instead of lingering
            start(f"worker-{i}", ["worker", "--scheduler-file", str(sched_file),
                                  "--name", f"worker-{i}", "--host", "127.0.0.1",
                                  "--nthreads", str(threads_per_worker), "--nworkers", "1",
                                  "--memory-limit", str(memory_limit),
                                  "--dashboard-address", "127.0.0.1:0",
                                  "--local-directory", str(sd / "work"),
                                  "--death-timeout", "60"])
        _wait_for_workers(address, n_workers, deadline, check_alive)
        state = {
            "scheduler": address,
            "dashboard": dashboard,
            "scheduler_file": str(sched_file),
            "n_workers": n_workers,
            "threads_per_worker": threads_per_worker,
            "memory_limit": str(memory_limit),
            "started_at": started_at,
            "processes": [{"name": name, "pid": p.pid,
                           "create_time": psutil.Process(p.pid).create_time(), "log": log}
                          for name, p, log in procs],
        }
        _write_state(sd, state)
        return state
    except BaseException:
        stale = {"started_at": started_at, "processes": []}
        for name, p, _ in procs:
            try:
                stale["processes"].append({"pid": p.pid,
                                           "create_time": psutil.Process(p.pid).create_time()})
            except psutil.Error:
                pass
        _terminate(_family(stale), timeout=10)
        for _, p, _ in procs:
            p.poll()            # reap our children
        raise


def _wait_for_workers(address: str, n: int, deadline: float, check_alive):
    from distributed import Client

    with Client(address, timeout="20s", set_as_default=False) as client:
        while len(client.nthreads()) < n:
            check_alive()
            if time.monotonic() > deadline:
                raise ClusterError(f"only {len(client.nthreads())} of {n} workers joined "
                                   f"{address} in time; see the worker logs")
            time.sleep(0.2)


def cluster_status(state_dir=None, *, timeout: float = 5.0) -> dict:
    """What is recorded in ``state_dir`` and whether it runs: ``{"state": dict|None,
    "running": bool, "workers": [{name, address, nthreads, memory_limit, memory, status}],
    "error": str|None}``.
    Running means the recorded scheduler process is alive and answers."""
    state = read_state(state_dir)
    out = {"state": state, "running": False, "workers": [], "error": None}
    if state is None:
        return out
    sched = next((e for e in state["processes"] if e["name"] == "scheduler"), None)
    if sched is None or _proc(sched) is None:
        out["error"] = "the scheduler process is gone"
        return out
    from distributed import Client

    try:
        with Client(state["scheduler"], timeout=f"{timeout}s", set_as_default=False) as client:
            try:
                info = client.scheduler_info(n_workers=-1)    # all workers, not the first 5
            except TypeError:                                  # distributed < 2025.4
                info = client.scheduler_info()
    except (OSError, TimeoutError) as e:
        out["error"] = f"the scheduler does not answer: {e}"
        return out
    out["running"] = True
    out["workers"] = sorted(
        ({"name": str(w.get("name")), "address": addr, "nthreads": w.get("nthreads"),
          "memory_limit": w.get("memory_limit"), "memory": w.get("metrics", {}).get("memory"),
          "status": str(w.get("status"))}
         for addr, w in info["workers"].items()), key=lambda w: w["name"])
    return out


def cluster_down(state_dir=None, *, timeout: float = 20.0) -> dict | None:
    """Stop the cluster recorded in ``state_dir``: SIGTERM to the workers, then the scheduler,
    SIGKILL to whatever is left after ``timeout`` s; then remove the state (and scheduler file).
    Returns ``{"state": ..., "stopped": [pids]}``, or None if nothing was recorded."""
    sd = resolve_state_dir(state_dir)
    state = read_state(sd)
    if state is None:
        return None
    workers = {"processes": [e for e in state["processes"] if e["name"] != "scheduler"],
               "started_at": state.get("started_at", 0)}
    stopped = _terminate(_family(workers), timeout)
    stopped += _terminate(_family(state), timeout)   # the scheduler and anything left over
    for name in (STATE_FILE, SCHEDULER_FILE):
        (sd / name).unlink(missing_ok=True)
    return {"state": state, "stopped": sorted(set(stopped))}
