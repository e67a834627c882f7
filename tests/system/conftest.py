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
    """The current environment without any AWS_* or CARBONSINK_* variable (+ isolation)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "CARBONSINK_"))}
    env.update(_AWS_ISOLATION)
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

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{self.procs.log(name)}" for name, _ in self.procs.procs)


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    """``dask scheduler`` + two ``dask worker`` processes (1 thread each) on 127.0.0.1; yields the
    scheduler address. Workers get no AWS_* environment (see the module docstring)."""
    from distributed import Client

    tmp = tmp_path_factory.mktemp("dask-cluster")
    sched_file = tmp / "scheduler.json"
    env = _clean_env()
    env["PYTHONUNBUFFERED"] = "1"
    # belt and braces should this pytest process be SIGKILLed (no teardown): an idle scheduler
    # exits after 15 min and workers exit 60 s after losing it
    sched_env = {**env, "DASK_DISTRIBUTED__SCHEDULER__IDLE_TIMEOUT": "900s"}
    procs = _Procs(tmp)
    try:
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
        for i in range(2):
            procs.start(f"worker{i}", [str(DASK), "worker", "--scheduler-file", str(sched_file),
                                       "--nthreads", "1", "--nworkers", "1",
                                       "--memory-limit", "2GB", "--host", "127.0.0.1",
                                       "--dashboard-address", "127.0.0.1:0",
                                       "--death-timeout", "60"], env)
        with Client(address, timeout=30, set_as_default=False) as client:
            try:
                client.wait_for_workers(2, timeout=60)
            except TimeoutError:
                procs.check_alive()
                raise
            workers = client.scheduler_info()["workers"].values()
            hosts = {w["host"] for w in workers} | {w["nanny"].rsplit(":", 1)[0]
                                                     for w in workers}
            assert hosts == {"127.0.0.1", "tcp://127.0.0.1"}, hosts
            # the workers really have no AWS_* environment (the point of this fixture)
            leaked = client.run(lambda: sorted(k for k in os.environ if k.startswith("AWS_")
                                               and k not in _AWS_ISOLATION))
            assert all(v == [] for v in leaked.values()), leaked
        cluster = DaskCluster(address)
        cluster.procs, cluster.scheduler_file = procs, sched_file
        yield cluster
    finally:
        procs.stop()
