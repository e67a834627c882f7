"""`carbonsink cluster up|status|down`: a detached local dask cluster driven from the CLI.

Every test uses its own state directory under tmp_path; whatever a test leaves running (also when it
fails half-way) is killed by the ``state_dir`` fixture: the processes recorded in the state, their
children, and any process whose command line names this test's unique state directory, with its
process group.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner

from carbonsink import cluster as cl
from carbonsink.cli import main

pytestmark = pytest.mark.integration


def _ours(state_dir) -> list[psutil.Process]:
    """Live processes started for ``state_dir``: by the recorded state and by command line (every
    scheduler/worker command line carries the state dir's scheduler file), plus their groups."""
    found = {}
    with contextlib.suppress(Exception):
        state = cl.read_state(state_dir)
        if state:
            found.update({p.pid: p for p in cl._family(state)})
    leaders = set()
    for p in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if p.pid != os.getpid() and str(state_dir) in " ".join(p.info["cmdline"] or []):
                found[p.pid] = p
                leaders.add(p.pid)
    for p in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(p.pid) in leaders:
                found[p.pid] = p
    return [p for p in found.values() if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


@pytest.fixture
def state_dir(tmp_path):
    sd = (tmp_path / "cluster-state").resolve()
    yield sd
    procs = _ours(sd)
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(procs, timeout=10)


def invoke(*args, env=None):
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_default_state_dir(monkeypatch, tmp_path):
    monkeypatch.delenv(cl.STATE_DIR_ENV, raising=False)
    assert cl.default_state_dir() == Path.home() / ".carbonsink" / "cluster"
    monkeypatch.setenv(cl.STATE_DIR_ENV, str(tmp_path / "x"))
    assert cl.resolve_state_dir() == (tmp_path / "x").resolve()
    assert cl.resolve_state_dir(tmp_path / "y") == (tmp_path / "y").resolve()


def test_up_demo_status_down(state_dir, tmp_path):
    from distributed import Client

    r = invoke("cluster", "up", "--workers", "2", "--state-dir", str(state_dir))
    assert r.exit_code == 0, r.output
    state = json.loads((state_dir / "state.json").read_text())
    addr = state["scheduler"]
    assert addr.startswith("tcp://127.0.0.1:")
    assert state["dashboard"].startswith("http://127.0.0.1:")
    for text in (f"scheduler: {addr}", f"dashboard: {state['dashboard']}",
                 f"carbonsink demo --scheduler {addr}", f"CARBONSINK_SCHEDULER={addr}",
                 f"Client({addr!r})", "carbonsink cluster down --state-dir"):
        assert text in r.output, text
    assert [p["name"] for p in state["processes"]] == ["scheduler", "worker-0", "worker-1"]
    # detached: each in its own session, so a terminal's Ctrl-C or hang-up does not reach them
    for entry in state["processes"]:
        p = psutil.Process(entry["pid"])
        assert os.getsid(p.pid) == p.pid != os.getsid(os.getpid())
    assert (state_dir / "scheduler.log").exists() and (state_dir / "worker-1.log").exists()

    with Client(addr, timeout="20s", set_as_default=False) as client:
        assert len(client.nthreads()) == 2
        pids = client.run(os.getpid)
        assert len(set(pids.values())) == 2 and os.getpid() not in pids.values()
        before = sum(client.run(lambda dask_worker: dask_worker.state.executed_count).values())

        store = tmp_path / "store"
        r = invoke("demo", "--scheduler", addr, "--resolution", "1", "--years", "2000-2001",
                   "--store", str(store), "--no-progress")
        assert r.exit_code == 0, r.output
        assert f"dask cluster: {addr}" in r.output
        assert "products/nep:" in r.output and (store / "catalog.yaml").exists()
        # the work ran on the cluster's workers, and both took part
        executed = client.run(lambda dask_worker: dask_worker.state.executed_count)
        assert sum(executed.values()) > before
        assert all(n > 0 for n in executed.values()), executed

    r = invoke("cluster", "status", "--state-dir", str(state_dir))
    assert r.exit_code == 0, r.output
    assert f"running: {addr}" in r.output
    assert "2 worker(s)" in r.output and "worker-0" in r.output and "worker-1" in r.output

    family = cl._family(state)
    assert len(family) >= 3          # scheduler, 2 nannies (+ their worker children)
    r = invoke("cluster", "down", "--state-dir", str(state_dir))
    assert r.exit_code == 0, r.output
    assert f"stopped the cluster at {addr}" in r.output
    gone, alive = psutil.wait_procs(family, timeout=5)
    assert not alive, alive
    assert not _ours(state_dir)
    assert not (state_dir / "state.json").exists()
    assert not (state_dir / "scheduler.json").exists()

    r = invoke("cluster", "status", "--state-dir", str(state_dir))
    assert r.exit_code == 1 and "not running: no cluster recorded" in r.output
    r = invoke("cluster", "down", "--state-dir", str(state_dir))
    assert r.exit_code == 0 and "nothing to stop" in r.output


def test_second_up_refused_and_stale_state_cleaned(state_dir, monkeypatch):
    # the state dir from the environment, as a user would set it
    monkeypatch.setenv(cl.STATE_DIR_ENV, str(state_dir))
    r = invoke("cluster", "up", "--workers", "1", "--memory-limit", "1GB")
    assert r.exit_code == 0, r.output
    assert "stop it:   carbonsink cluster down\n" in r.output     # default dir: no --state-dir
    state = cl.read_state()
    r = invoke("cluster", "up", "--workers", "1")
    assert r.exit_code == 2 and "already running" in r.output
    assert cl.read_state() == state                                  # untouched

    # the scheduler dies hard: status says so, down still stops the orphaned worker
    sched = next(e for e in state["processes"] if e["name"] == "scheduler")
    os.kill(sched["pid"], signal.SIGKILL)
    psutil.wait_procs([psutil.Process(sched["pid"])], timeout=5)
    r = invoke("cluster", "status")
    assert r.exit_code == 1 and "the scheduler process is gone" in r.output
    r = invoke("cluster", "down", "--timeout", "5")
    assert r.exit_code == 0, r.output
    assert not _ours(state_dir)
    assert cl.read_state() is None


def test_failed_up_leaves_nothing_running(state_dir):
    r = invoke("cluster", "up", "--workers", "2", "--memory-limit", "plenty",
               "--state-dir", str(state_dir), "--timeout", "60")
    assert r.exit_code == 2, r.output
    assert "worker-" in r.output and "exited" in r.output
    assert not _ours(state_dir)
    assert cl.read_state(state_dir) is None
