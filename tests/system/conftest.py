"""Fixtures of the system tests: an S3-protocol server (moto) and a real multi-process dask cluster
started with the ``dask`` CLI, both on 127.0.0.1 only.

The dask workers are started WITHOUT any AWS_* variable in their environment (and with the AWS config
and credential files pointed at nothing): the S3 endpoint and keys reach them only through the storage
options that the store layer puts into the task graph. The system tests therefore prove that this path
works; a deployment may still export AWS_* to its workers, which is not needed.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

# Distinctive fake credentials: the leak test greps for them everywhere.
FAKE_KEY = "AKIACARBONSINKTEST"
FAKE_SECRET = "carbonsink-secret-xyz"
REGION = "us-east-1"

DASK = Path(sys.executable).parent / "dask"

# never let the machine's AWS configuration (profiles, SSO, instance metadata) leak into a test
_AWS_ISOLATION = {
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}


def _clean_env() -> dict[str, str]:
    """The current environment without any AWS_* or CARBONSINK_* variable (+ isolation), but
    with CARBONSINK_NO_ATLAS as the test session set it (the atlas has its own tests)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "CARBONSINK_"))}
    env.update(_AWS_ISOLATION)
    if "CARBONSINK_NO_ATLAS" in os.environ:
        env["CARBONSINK_NO_ATLAS"] = os.environ["CARBONSINK_NO_ATLAS"]
    return env


# --- S3 ----------------------------------------------------------------------------------------
class S3Server(dict):
    """What the tests need of the moto server: endpoint, keys, bucket and ready-made helpers."""

    @property
    def endpoint(self) -> str:
        return self["endpoint_url"]

    @property
    def bucket(self) -> str:
        return self["bucket"]

    @property
    def storage_options(self) -> dict:
        return {"key": self["key"], "secret": self["secret"],
                "client_kwargs": {"endpoint_url": self["endpoint_url"]}}

    @property
    def env(self) -> dict[str, str]:
        """AWS_* variables a client (CLI, intake) needs to reach the server."""
        return {"AWS_ACCESS_KEY_ID": self["key"], "AWS_SECRET_ACCESS_KEY": self["secret"],
                "AWS_ENDPOINT_URL": self["endpoint_url"], "AWS_DEFAULT_REGION": REGION,
                **_AWS_ISOLATION}

    def client_env(self) -> dict[str, str]:
        """A full environment for a client subprocess: the current one without any AWS_* or
        CARBONSINK_* variable, plus :attr:`env`."""
        return {**_clean_env(), **self.env}

    def fs(self):
        """A fresh s3fs filesystem (no instance or listing cache shared with other code)."""
        import s3fs

        return s3fs.S3FileSystem(key=self["key"], secret=self["secret"],
                                 client_kwargs={"endpoint_url": self["endpoint_url"]},
                                 skip_instance_cache=True, use_listings_cache=False)

    def objects(self, prefix: str = "") -> set[str]:
        """Every object key under ``bucket/prefix`` right now."""
        fs = self.fs()
        root = f"{self.bucket}/{prefix}".rstrip("/")
        if not fs.exists(root):
            return set()
        return set(fs.find(root))


@pytest.fixture(scope="module")
def moto_s3():
    """A moto S3 server on 127.0.0.1 (free port) with one bucket; endpoint, keys and bucket."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    mp = pytest.MonkeyPatch()
    mp.setenv("AWS_DEFAULT_REGION", REGION)
    for k, v in _AWS_ISOLATION.items():
        mp.setenv(k, v)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        assert host == "127.0.0.1"
        s3 = S3Server(endpoint_url=f"http://127.0.0.1:{port}", key=FAKE_KEY, secret=FAKE_SECRET,
                      bucket=f"carbonsink-sys-{uuid.uuid4().hex[:8]}")
        s3.fs().mkdir(s3.bucket)
        assert s3.fs().exists(s3.bucket)
        yield s3
    finally:
        server.stop()
        mp.undo()


# --- dask cluster ------------------------------------------------------------------------------
class _Procs:
    """Processes started by a fixture, each in its own session (process group) so that a worker's
    nanny and its worker child can be reaped even if the CLI process dies first."""

    def __init__(self, logdir: Path):
        self.logdir = logdir
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.t0 = time.time()

    def start(self, name: str, args: list[str], env: dict) -> subprocess.Popen:
        out = open(self.logdir / f"{name}.log", "wb")
        try:
            p = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            out.close()
        self.procs.append((name, p))
        return p

    def check_alive(self):
        for name, p in self.procs:
            if p.poll() is not None:
                raise RuntimeError(f"{name} exited with {p.returncode}:\n{self.log(name)}")

    def log(self, name: str) -> str:
        path = self.logdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, timeout: float = 20.0):
        """SIGTERM the workers and wait for them, then the scheduler; then make sure nothing is left
        in their process groups (SIGTERM, then SIGKILL as a last resort)."""
        workers = [p for name, p in self.procs if name != "scheduler"]
        scheduler = [p for name, p in self.procs if name == "scheduler"]
        for wave in (workers, scheduler):
            for p in wave:
                if p.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        p.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            for p in wave:
                try:
                    p.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        p.kill()
                    p.wait(timeout=10)
        leftovers = self._leftovers()  # e.g. a nanny's worker child orphaned by a hard crash
        for proc in leftovers:
            with contextlib.suppress(psutil.Error):
                proc.terminate()
        _, alive = psutil.wait_procs(leftovers, timeout=5)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(alive, timeout=5)
        self.procs.clear()

    def _leftovers(self) -> list[psutil.Process]:
        """Live processes in the process groups (sessions) of the processes started here, created
        after the first of them (so a recycled pid is never mistaken for one of ours)."""
        groups = {p.pid for _, p in self.procs}
        out = []
        for proc in psutil.process_iter():
            try:
                if (os.getpgid(proc.pid) in groups and proc.create_time() >= self.t0 - 1
                        and proc.pid != os.getpid() and proc.status() != psutil.STATUS_ZOMBIE):
                    out.append(proc)
            except (psutil.Error, ProcessLookupError, PermissionError):
                continue
        return out


class DaskCluster(str):
    """The scheduler address (a str), plus the processes and their logs."""

    procs: _Procs
    scheduler_file: Path
    env: dict[str, str]

    def add_worker(self, name: str):
        """Start one more worker (e.g. to replace one a test killed) and wait for it."""
        from distributed import Client

        with Client(str(self), timeout=30, set_as_default=False) as client:
            n = len(client.scheduler_info()["workers"])
            self.procs.start(name, _worker_args(self.scheduler_file), self.env)
            client.wait_for_workers(n + 1, timeout=60)

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{self.procs.log(name)}" for name, _ in self.procs.procs)


def _worker_args(sched_file: Path) -> list[str]:
    return [str(DASK), "worker", "--scheduler-file", str(sched_file), "--nthreads", "1",
            "--nworkers", "1", "--memory-limit", "2GB", "--host", "127.0.0.1",
            "--dashboard-address", "127.0.0.1:0", "--death-timeout", "60"]


def start_dask_cluster(tmp: Path, procs: _Procs, extra_env: dict[str, str] | None = None,
                       n_workers: int = 2) -> DaskCluster:
    """Start ``dask scheduler`` + ``n_workers`` ``dask worker`` processes (1 thread each) on
    127.0.0.1 under ``procs`` (the caller stops them); workers get no AWS_* environment, plus
    ``extra_env`` (e.g. the Prefect API of the flows' tasks)."""
    from distributed import Client

    sched_file = tmp / "scheduler.json"
    env = {**_clean_env(), **(extra_env or {})}
    env["PYTHONUNBUFFERED"] = "1"
    # tests read what ran from the workers' task logs (``dask_worker.state.log``), which keep only
    # the last `low-level-log-length` events (1000 by default): a demo with more products pushed
    # its first zarr writes out of that window. Keep the whole run's events.
    env["DASK_DISTRIBUTED__ADMIN__LOW_LEVEL_LOG_LENGTH"] = "500000"
    # belt and braces should this pytest process be SIGKILLed (no teardown): an idle scheduler
    # exits after 15 min and workers exit 60 s after losing it
    sched_env = {**env, "DASK_DISTRIBUTED__SCHEDULER__IDLE_TIMEOUT": "900s"}
    procs.start("scheduler", [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", "0",
                              "--dashboard-address", "127.0.0.1:0",
                              "--scheduler-file", str(sched_file)], sched_env)
    deadline = time.monotonic() + 30
    address = None
    while address is None:
        procs.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"scheduler did not start:\n{procs.log('scheduler')}")
        if sched_file.exists():
            with contextlib.suppress(ValueError):
                address = json.loads(sched_file.read_text())["address"]
        time.sleep(0.1)
    assert address.startswith("tcp://127.0.0.1:"), address
    for i in range(n_workers):
        procs.start(f"worker{i}", _worker_args(sched_file), env)
    with Client(address, timeout=30, set_as_default=False) as client:
        try:
            client.wait_for_workers(n_workers, timeout=60)
        except TimeoutError:
            procs.check_alive()
            raise
        workers = client.scheduler_info()["workers"].values()
        hosts = {w["host"] for w in workers} | {w["nanny"].rsplit(":", 1)[0]
                                                 for w in workers}
        assert hosts == {"127.0.0.1", "tcp://127.0.0.1"}, hosts
        # the workers really have no AWS_* environment (the point of these clusters)
        leaked = client.run(lambda: sorted(k for k in os.environ if k.startswith("AWS_")
                                           and k not in _AWS_ISOLATION))
        assert all(v == [] for v in leaked.values()), leaked
    cluster = DaskCluster(address)
    cluster.procs, cluster.scheduler_file, cluster.env = procs, sched_file, env
    return cluster


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    """``dask scheduler`` + two ``dask worker`` processes (1 thread each) on 127.0.0.1; yields the
    scheduler address. Workers get no AWS_* environment (see the module docstring)."""
    tmp = tmp_path_factory.mktemp("dask-cluster")
    procs = _Procs(tmp)
    try:
        yield start_dask_cluster(tmp, procs)
    finally:
        procs.stop()


# --- Prefect server -----------------------------------------------------------------------------
PREFECT = Path(sys.executable).parent / "prefect"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrefectServer(str):
    """The API URL (a str) of a ``prefect server start`` process, plus what a client needs."""

    home: Path
    procs: _Procs

    @property
    def env(self) -> dict[str, str]:
        """Prefect settings for any process that talks to this server (flows, dask workers, CLI)."""
        return {"PREFECT_API_URL": str(self), "PREFECT_HOME": str(self.home),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
                "PREFECT_LOGGING_LEVEL": "INFO"}

    def settings(self):
        """A context in which this (test) process's Prefect client talks to the server."""
        from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

        return temporary_settings(updates={PREFECT_API_URL: str(self), PREFECT_HOME: self.home})

    def log(self) -> str:
        return self.procs.log("prefect-server")

    def ready(self, timeout: float = 90):
        """Wait until the API answers /health."""
        import urllib.request

        deadline = time.monotonic() + timeout
        while not self._ready:
            self.procs.check_alive()
            try:
                with urllib.request.urlopen(f"{self}/health", timeout=2) as r:
                    self._ready = r.status == 200
            except OSError:
                pass
            if not self._ready:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"prefect server did not start:\n{self.log()}")
                time.sleep(0.3)
        return self


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    """``prefect server start --host 127.0.0.1 --port <free>`` on SQLite in a temporary
    PREFECT_HOME, analytics off; yields its API URL as soon as the process runs (call
    ``ready()`` before using it, so that other processes can start while it boots). The scheduler
    service is off: the deployments' yearly/monthly schedules must not start runs during a test."""
    tmp = tmp_path_factory.mktemp("prefect")
    home = tmp / "home"
    home.mkdir()
    port = free_port()
    server = PrefectServer(f"http://127.0.0.1:{port}/api")
    server.home, server.procs, server._ready = home, _Procs(tmp), False
    env = {**_clean_env(), **server.env, "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
           "PREFECT_UI_ENABLED": "false", "PREFECT_SERVER_LOGGING_LEVEL": "WARNING"}
    env.pop("PREFECT_API_URL")
    try:
        server.procs.start("prefect-server", [str(PREFECT), "server", "start", "--host",
                                              "127.0.0.1", "--port", str(port)], env)
        yield server
    finally:
        server.procs.stop()


@pytest.fixture(scope="module")
def prefect_dask_cluster(tmp_path_factory, prefect_server):
    """Like ``dask_cluster``, but the workers (which run the flows' tasks) talk to the Prefect
    server: PREFECT_API_URL and PREFECT_HOME in their environment (else each worker would start a
    temporary API server of its own). Still no AWS_* environment."""
    tmp = tmp_path_factory.mktemp("prefect-dask-cluster")   # starts while the server boots
    procs = _Procs(tmp)
    try:
        yield start_dask_cluster(tmp, procs, extra_env=prefect_server.env)
    finally:
        procs.stop()


# --- an S3 outage -------------------------------------------------------------------------------
class TcpGate:
    """A TCP forwarder 127.0.0.1:port → the S3 server that can be cut: ``close()`` refuses new
    connections and resets every open one, as an object store that went down would; ``open()``
    listens again on the same port. (moto's threaded server cannot itself be stopped and restarted
    with its data: its keep-alive connections outlive ``stop()``, and a new process starts empty.)"""

    def __init__(self, target_port: int):
        import threading

        self.target = ("127.0.0.1", target_port)
        self.port = free_port()
        self._lock = threading.Lock()
        self._socks: set = set()
        self._listener = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def is_open(self) -> bool:
        return self._listener is not None

    def open(self):
        import socket
        import threading

        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", self.port))
        ls.listen(64)
        self._listener = ls
        threading.Thread(target=self._accept, args=(ls,), daemon=True).start()

    def close(self):
        import socket
        import struct

        ls, self._listener = self._listener, None
        if ls is not None:
            with contextlib.suppress(OSError):
                ls.shutdown(socket.SHUT_RDWR)
            ls.close()
        with self._lock:
            socks, self._socks = self._socks, set()
        for s in socks:
            with contextlib.suppress(OSError):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()   # linger 0: the peer sees a reset

    def _accept(self, ls):
        import socket
        import threading

        while True:
            try:
                client, _ = ls.accept()
            except OSError:
                return
            if self._listener is not ls:
                client.close()
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._socks |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src, dst):
        import socket

        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            with self._lock:
                self._socks -= {src, dst}


@pytest.fixture(scope="module")
def s3_gate(moto_s3):
    """A cuttable TCP gate in front of the S3 server (open to begin with)."""
    gate = TcpGate(int(moto_s3.endpoint.rsplit(":", 1)[1]))
    gate.open()
    try:
        yield gate
    finally:
        gate.close()


# --- Prefect deployments and a process worker ---------------------------------------------------
ROOT = Path(__file__).resolve().parents[2]
POOL = "carbonsink"           # the work pool of flows/prefect.yaml
RUN_TIMEOUT = 300


class Deployments:
    """The work pool, the deployments of flows/prefect.yaml and a process worker running them."""

    def __init__(self, server, procs: _Procs, env: dict):
        self.server, self.procs, self.env = server, procs, env
        self.cli_output = ""

    def run(self, name: str, parameters: dict, *, wait: bool = True):
        """Run a deployment through the server (the worker picks it up); the flow run, final if
        ``wait``."""
        from prefect.deployments import run_deployment

        with self.server.settings():
            fr = run_deployment(name, parameters=parameters, timeout=RUN_TIMEOUT if wait else 0)
        if wait:
            assert fr.state.is_final(), f"{name} did not finish in {RUN_TIMEOUT} s: {fr.state}"
        return fr

    def wait(self, flow_run_id, timeout: float = RUN_TIMEOUT):
        deadline = time.monotonic() + timeout
        with self.server.settings():
            from prefect.client.orchestration import get_client

            with get_client(sync_client=True) as c:
                while True:
                    fr = c.read_flow_run(flow_run_id)
                    if fr.state is not None and fr.state.is_final():
                        return fr
                    assert time.monotonic() < deadline, (
                        f"flow run {fr.name} not final after {timeout} s: {fr.state}\n--- worker "
                        f"and flow-run logs\n{self.logs()[-8000:]}")
                    time.sleep(0.5)

    def logs(self) -> str:
        return "\n".join(self.procs.log(n) for n, _ in self.procs.procs)


@pytest.fixture(scope="module")
def deployments(prefect_server, moto_s3, tmp_path_factory):
    """``prefect work-pool create`` + ``prefect deploy --all`` of flows/prefect.yaml from the
    repository root + ``prefect worker start``. The worker (hence each flow-run process) has the S3
    keys and endpoint in its environment, as a deployment would; parameters never carry them."""
    tmp = tmp_path_factory.mktemp("prefect-worker")
    env = {**moto_s3.client_env(), **prefect_server.env, "PYTHONUNBUFFERED": "1",
           "PREFECT_WORKER_QUERY_SECONDS": "1"}
    procs = _Procs(tmp)
    d = Deployments(prefect_server, procs, env)
    prefect_server.ready()
    try:
        out = subprocess.run([str(PREFECT), "work-pool", "create", POOL, "--type", "process"],
                             env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr
        procs.start("prefect-worker", [str(PREFECT), "worker", "start", "--pool", POOL,
                                       "--type", "process"], env)
        out = subprocess.run([str(PREFECT), "--no-prompt", "deploy", "--all", "--prefect-file",
                              "flows/prefect.yaml"], env=env, cwd=ROOT, capture_output=True,
                             text=True, timeout=180)
        assert out.returncode == 0, out.stdout + out.stderr
        d.cli_output = out.stdout + out.stderr
        yield d
    finally:
        procs.stop()
