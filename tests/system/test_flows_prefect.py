"""System tests of the Prefect flows and deployments, for real: a ``prefect server start`` process, the
deployments of ``flows/prefect.yaml`` (``prefect deploy``) run by a ``prefect worker`` (process work
pool) through the server, a multi-process dask cluster whose workers run the tasks and report to
the server, and moto's S3 server — all on 127.0.0.1, all started here.

- the ``demo`` deployment runs the demo end to end on s3://; a separate consumer process opens every
  dataset through the Intake catalog and gets exactly the published values;
- the ``monthly-update`` deployment (compute flow) reruns over the same store and recomputes nothing:
  every product task finishes "Reused" and no version is added;
- a dask worker killed (SIGKILL, nanny and all) mid-compute: the run completes with the same
  content-addressed versions and bit-identical values as the clean run;
- the S3 server cut off during a publish: the run retries, then fails; no partial version is ever
  visible through ``latest`` or the catalog; the rerun resumes — products finished before the
  outage are reused, not recomputed — and ends identical to the clean run;
- no access key or secret in any log (processes and the Prefect API), record, attr or catalog.

Runtime ≈ 2–3 min on 2 cores (1° grid, 4 years).
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
import yaml

# The deployment demo on S3, its rerun and the secrets (about 3 minutes on 2 cores) run by default;
# the S3 outage and the killed worker (about 2.5 more) with `pytest -m slow`, so CI stays under
# 30 minutes (the default run took 13.5 min without this module)
pytestmark = [pytest.mark.system]

YEARS = "2000-2003"
POOL = "carbonsink"
DATASETS = {"synthetic": "inputs", "regions": "inputs", "nep": "products", "nep_pei": "products",
            "karst": "products", "sink": "products", "trends_nep": "products",
            "attribution_nep": "products", "trends_sink": "products",
            "attribution_sink": "products", "services_storage": "products",
            "services_emission": "products", "services_balance": "products",
            "services_flow": "products", "services_drivers": "products",
            "scenarios": "products"}
PRODUCTS = [n for n, k in DATASETS.items() if k == "products"]
RUN_TIMEOUT = 300


# --- helpers ---------------------------------------------------------------------------------
def _api(server):
    """A synchronous Prefect client on ``server`` (use inside ``server.settings()``)."""
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def task_states(server, flow_run_id) -> dict[str, list]:
    """{task run name: [task runs]} of a flow run and its subflow runs."""
    from prefect.client.schemas.filters import (FlowRunFilter, FlowRunFilterId,
                                                FlowRunFilterParentFlowRunId)

    with server.settings(), _api(server) as c:
        subflows = c.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id])))
        ids = [flow_run_id, *(f.id for f in subflows)]
        runs = c.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)))
    out: dict[str, list] = {}
    for t in runs:
        out.setdefault(t.name, []).append(t)
    return out


def _state_names(states: dict[str, list]) -> dict[str, str]:
    return {name: runs[-1].state.name for name, runs in states.items()
            if name in PRODUCTS or name.startswith("demo-inputs")}


def demo_params(store: str, scheduler: str, **extra) -> dict:
    return {"store": store, "grid": "1", "years": YEARS, "scheduler": str(scheduler), **extra}


@pytest.fixture(scope="module")
def demo_run(prefect_dask_cluster, deployments, moto_s3):
    """The ``demo`` deployment, run once through the server on s3://<bucket>/flows."""
    store = f"s3://{moto_s3.bucket}/flows"
    t0 = time.monotonic()
    fr = deployments.run("carbonsink-demo/demo", demo_params(store, prefect_dask_cluster))
    return {"store": store, "flow_run": fr, "elapsed": time.monotonic() - t0,
            "tasks": task_states(deployments.server, fr.id)}


def _store(url: str, moto_s3):
    from carbonsink.io.store import Store

    return Store(url, moto_s3.storage_options)


def fingerprints(store) -> dict[str, dict]:
    """{dataset: {"version": ..., var: sha256 of its values}} of the latest of every dataset."""
    out = {}
    for p in store.published():
        ds = store.open(p.kind, p.name, p.version).load()
        out[p.name] = {"version": p.version, **{v: _digest(ds[v].values)
                                                for v in sorted(ds.variables)}}
    return out


def _digest(values) -> str:
    return hashlib.sha256(np.ascontiguousarray(values).tobytes()).hexdigest()


def _ok(fr, deployments):
    assert fr.state.is_completed(), (f"flow run {fr.name} ended {fr.state}\n--- worker/flow "
                                     f"logs\n{deployments.logs()[-20000:]}")


# --- 1. the deployment runs the demo on s3://; a consumer reads it through the catalog ---------
CONSUMER = textwrap.dedent('''
    import hashlib, json, sys
    import numpy as np
    import intake
    cat = intake.open_catalog(sys.argv[1])
    out = {}
    for name in cat:
        src = cat[name]
        if src.container != "xarray":
            continue                                   # a table
        ds = src.to_dask()
        assert all(v.chunks is not None for v in ds.data_vars.values()), name   # lazy
        ds = ds.load()
        digest = lambda a: hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()
        out[name] = {v: digest(ds[v].values) for v in sorted(ds.variables)}
    print(json.dumps(out))
''')


def test_deployment_runs_demo_on_s3_and_a_consumer_reads_it_through_the_catalog(
        demo_run, deployments, moto_s3, prefect_dask_cluster):
    fr = demo_run["flow_run"]
    _ok(fr, deployments)
    # the deployments of flows/prefect.yaml, with their schedules and parameters
    with deployments.server.settings(), _api(deployments.server) as c:
        deps = {f"{c.read_flow(d.flow_id).name}/{d.name}": d for d in c.read_deployments()}
    assert {"carbonsink-demo/yearly-rebuild", "carbonsink-compute/monthly-update",
            "carbonsink-demo/demo", "carbonsink-publish/publish"} <= set(deps)
    yearly, monthly = deps["carbonsink-demo/yearly-rebuild"], deps["carbonsink-compute/monthly-update"]
    assert [s.schedule.cron for s in yearly.schedules] == ["0 2 1 1 *"]
    assert [s.schedule.cron for s in monthly.schedules] == ["0 3 1 * *"]
    assert yearly.parameters["full_rebuild"] is True and monthly.parameters["grid"] == "0.1"
    assert all(d.work_pool_name == POOL for d in deps.values())

    # every dataset computed (nothing to reuse in an empty store), by tasks on the dask workers
    states = _state_names(demo_run["tasks"])
    assert set(states) == {*PRODUCTS, next(n for n in states if n.startswith("demo-inputs"))}
    assert set(states.values()) == {"Completed"}, states

    store = _store(demo_run["store"], moto_s3)
    published = {p.name: p for p in store.published()}
    assert set(published) == set(DATASETS)
    for name, p in published.items():
        assert p.kind == DATASETS[name] and p.version.startswith("c-"), p
        assert store.versions(p.kind, p.name) == [p.version]
    assert not moto_s3.objects("flows/_staging")

    # the catalog: every input and product, with description, units, grid, years and version
    sources = yaml.safe_load(store.read_text("catalog.yaml"))["sources"]
    for name, p in published.items():
        meta = sources[name]["metadata"]
        assert sources[name]["description"], name
        assert meta["version"] == p.version and meta["grid"] == "1deg", name
        # the drivers are computed for the run's last year (services.driver_years); the scenarios
        # hold their target years (2050, 2060)
        expected = {"services_drivers": [2003, 2003], "scenarios": [2050, 2060]}
        assert meta["years"] == expected.get(name, [2000, 2003]), name
        assert set(meta["units"]) == set(p.record["variables"]), name
        assert p.version in sources[name]["args"]["urlpath"], name
    assert "storage_options" in sources["nep"]["args"]   # the endpoint, not the keys (test 5)

    # a consumer process: only the catalog URL and AWS_* keys of its own environment
    out = subprocess.run([sys.executable, "-c", CONSUMER, f"{demo_run['store']}/catalog.yaml"],
                         env=moto_s3.client_env(), capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(seen) == set(DATASETS)
    assert seen == {name: {k: v for k, v in fp.items() if k != "version"}
                    for name, fp in fingerprints(store).items()}


# --- 2. a rerun recomputes nothing ------------------------------------------------------------
def test_rerun_of_the_unchanged_demo_reuses_every_dataset(demo_run, deployments, moto_s3,
                                                          prefect_dask_cluster):
    store = _store(demo_run["store"], moto_s3)
    before = fingerprints(store)
    data = {o for o in moto_s3.objects("flows") if ".zarr/" in o}
    fr = deployments.run("carbonsink-demo/demo",
                         demo_params(demo_run["store"], prefect_dask_cluster))
    _ok(fr, deployments)
    states = _state_names(task_states(deployments.server, fr.id))
    assert set(states.values()) == {"Reused"} and len(states) == len(PRODUCTS) + 1, states
    assert fingerprints(store) == before                         # the same latest versions
    for name, kind in DATASETS.items():
        assert len(store.versions(kind, name)) == 1, name       # no version added
    assert {o for o in moto_s3.objects("flows") if ".zarr/" in o} == data   # no data written


# --- 3. the S3 server goes down during a publish -------------------------------------------------
def _visible_problems(fs, root: str) -> list[str]:
    """What a consumer would see right now that is not complete: a ``latest`` pointer or catalog
    entry naming a version without a record, or without the Zarr metadata of a listed variable."""
    problems = []
    fs.invalidate_cache()
    targets = []
    if fs.exists(f"{root}/releases/current.json"):
        targets = [(f"{root}/{key}", version) for key, version in
                   json.loads(fs.cat_file(f"{root}/releases/current.json"))["datasets"].items()]
    if fs.exists(f"{root}/catalog.yaml"):
        for src in yaml.safe_load(fs.cat_file(f"{root}/catalog.yaml"))["sources"].values():
            rel = src["args"]["urlpath"].replace("{{ CATALOG_DIR }}/", "")
            if rel.endswith(".zarr"):
                kind_name, leaf = rel.rsplit("/", 1)
                targets.append((f"{root}/{kind_name}", leaf[:-5]))
    for kind_name, version in targets:
        rec_path = f"{kind_name}/{version}.json"
        if not fs.exists(rec_path):
            problems.append(f"{rec_path} missing")
            continue
        for var in json.loads(fs.cat_file(rec_path))["variables"]:
            if not fs.exists(f"{kind_name}/{version}.zarr/{var}/.zarray"):
                problems.append(f"{kind_name}/{version}.zarr/{var} missing")
    return problems


def _wait_until_idle(scheduler, timeout: float = RUN_TIMEOUT):
    from distributed import Client

    deadline = time.monotonic() + timeout
    with Client(str(scheduler), set_as_default=False, timeout=30) as client:
        while any(client.processing().values()):
            assert time.monotonic() < deadline, f"cluster still busy: {client.processing()}"
            time.sleep(0.5)


@pytest.fixture(scope="module")
def outage(demo_run, deployments, moto_s3, prefect_dask_cluster, s3_gate, tmp_path_factory):
    """The demo on s3://<bucket>/outage, reaching S3 through a gate that is cut — and stays cut
    until the run has failed — once one product is complete while another is being staged. The
    store starts with the clean run's published inputs (so the run gets to the products quickly). A
    watcher reads S3 directly all along and records anything incomplete a consumer could see."""
    prefix = "outage"
    root = f"{moto_s3.bucket}/{prefix}"
    fs = moto_s3.fs()
    fs.copy(f"{moto_s3.bucket}/flows/inputs", f"{root}/inputs", recursive=True)
    # ... and released there, as the clean run released them
    clean, target = _store(demo_run["store"], moto_s3), _store(f"s3://{root}", moto_s3)
    target.release([(kind, name, clean.latest(kind, name)) for name, kind in DATASETS.items()
                    if kind == "inputs"])
    # the flows reach S3 through the gate (the config's endpoint wins over AWS_ENDPOINT_URL), with
    # short client timeouts and few client-side retries so that the outage surfaces quickly
    config = tmp_path_factory.mktemp("outage") / "run.yaml"
    config.write_text(yaml.safe_dump({"storage_options": {
        "client_kwargs": {"endpoint_url": s3_gate.endpoint},
        "config_kwargs": {"connect_timeout": 2, "read_timeout": 10,
                          "retries": {"max_attempts": 2, "mode": "standard"}}}}))
    problems: list[str] = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            try:
                problems.extend(_visible_problems(fs, root))
            except FileNotFoundError:
                pass        # a pointer listed, then replaced before it was read: next round
            time.sleep(0.2)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        fr = deployments.run("carbonsink-demo/demo", demo_params(
            f"s3://{root}", prefect_dask_cluster, config=str(config), retries=1,
            retry_delay_seconds=1), wait=False)
        deadline = time.monotonic() + RUN_TIMEOUT
        while True:
            objects = moto_s3.objects(prefix)
            records = [o for o in objects if "/products/" in o and o.endswith(".json")
                       and ".zarr/" not in o and "_staging" not in o
                       and not o.endswith(".manifest.json")]
            if records and any("/_staging/" in o and "/products/" in o for o in objects):
                break
            assert time.monotonic() < deadline, "no product was complete while another staged"
            time.sleep(0.1)
        s3_gate.close()
        fr = deployments.wait(fr.id)
        s3_gate.open()
        # the failed flow run has ended, but product tasks it submitted may still run on the dask
        # workers (dask cannot stop a running task) and go on writing once S3 is back: wait until
        # the cluster is idle, so that no orphan of this run writes during the tests that follow
        _wait_until_idle(prefect_dask_cluster)
        problems.extend(_visible_problems(fs, root))
    finally:
        stop.set()
        watcher.join(timeout=10)
        if not s3_gate.is_open:
            s3_gate.open()
    return {"root": root, "store": f"s3://{root}", "flow_run": fr, "problems": problems,
            "tasks": task_states(deployments.server, fr.id)}


@pytest.mark.slow
def test_s3_outage_during_publish_fails_the_run_and_never_shows_a_partial_version(
        outage, moto_s3):
    fr = outage["flow_run"]
    assert fr.state.is_failed(), f"the run survived a lasting S3 outage: {fr.state}"
    assert not outage["problems"], outage["problems"][:20]
    tasks = outage["tasks"]
    summary = {n: [(t.state.name, t.run_count) for t in runs] for n, runs in tasks.items()}
    # the inputs were reused; the tasks that hit the outage were retried (a transient error) and
    # then failed; what depends on them never ran
    assert _state_names(tasks)[next(n for n in tasks if n.startswith("demo-inputs"))] == "Reused"
    failed = {n for n, runs in tasks.items() if runs[-1].state.is_failed() and n in PRODUCTS}
    assert failed, summary
    assert all(runs[-1].run_count == 2 for n, runs in tasks.items() if n in failed), summary
    # a product's latest pointer, if any, names its one complete version (a version may be complete
    # — its record written — and not yet latest, when S3 went down right in between)
    from carbonsink.io.store import Store

    store = Store(outage["store"], moto_s3.storage_options)
    for name in PRODUCTS:
        versions = store.versions("products", name)
        assert len(versions) <= 1 and store.latest("products", name) in (*versions, None), name
    assert not store.exists("catalog.yaml")      # the catalog is published last


# --- 4. the rerun resumes, while a worker is killed mid-compute ------------------------------------
@pytest.mark.slow
def test_rerun_after_the_outage_resumes_and_survives_a_killed_worker_identical_to_a_clean_run(
        outage, demo_run, deployments, moto_s3, prefect_dask_cluster):
    """The monthly update (compute flow) over the store the failed run left: products complete
    before the outage are reused, the rest computed; one dask worker is SIGKILLed (nanny and
    worker process, for good) while a product computes. The result: the clean run's
    content-addressed versions with bit-identical values."""
    from distributed import Client

    from carbonsink.io.store import Store

    store = Store(outage["store"], moto_s3.storage_options)
    done_before = {n for n in PRODUCTS if store.versions("products", n)}
    assert done_before and set(PRODUCTS) - done_before, done_before
    fr = deployments.run("carbonsink-compute/monthly-update",
                         demo_params(outage["store"], prefect_dask_cluster), wait=False)
    # kill while a product that is computed (not reused) runs: karst (training and prediction of
    # the ionic strength) if the failed run had not finished it, else the first one to run. (The
    # failed run's own orphaned tasks may have finished products after the outage ended.)
    targets = ["karst"] if "karst" not in done_before else sorted(set(PRODUCTS) - done_before)
    killed = None
    deadline = time.monotonic() + RUN_TIMEOUT
    with Client(str(prefect_dask_cluster), set_as_default=False, timeout=30) as client:
        while killed is None:
            states = task_states(deployments.server, fr.id)
            seen = {n: [(t.state.name if t.state else None) for t in runs]
                    for n, runs in states.items()}
            assert time.monotonic() < deadline, (
                f"none of {targets} was seen running: {seen}\n"
                f"{deployments.logs()[-6000:]}")
            with deployments.server.settings(), _api(deployments.server) as c:
                flow_state = c.read_flow_run(fr.id).state
            assert flow_state is None or not flow_state.is_final(), (
                f"the run ended ({flow_state}) before {targets} ran: {seen}\n"
                f"{deployments.logs()[-6000:]}")
            # a task run is created before its first state is set: state None until then
            running = [n for n in targets if any(t.state is not None and t.state.is_running()
                                                 for t in states.get(n, []))]
            busy = client.processing() if running else {}
            if any(busy.values()):
                if "karst" in running:
                    time.sleep(1.0)     # into the training and prediction of the ionic strength
                    busy = client.processing()
                target = max(busy, key=lambda w: len(busy[w]))
                if not busy[target]:
                    continue
                nanny = client.run(os.getppid, workers=[target])[target]
                name, proc = next((n, p) for n, p in prefect_dask_cluster.procs.procs
                                  if p.pid == nanny)
                os.killpg(proc.pid, signal.SIGKILL)
                killed = (name, len(busy[target]), running)
            else:
                time.sleep(0.1)
        fr = deployments.wait(fr.id)
        remaining = len(client.scheduler_info()["workers"])
    _ok(fr, deployments)
    assert killed[1] > 0 and remaining == 1, (killed, remaining)
    prefect_dask_cluster.add_worker(f"{killed[0]}-replacement")   # for what follows
    states = _state_names(task_states(deployments.server, fr.id))
    assert {n for n in PRODUCTS if states[n] == "Reused"} == done_before, states
    assert {n for n in PRODUCTS if states[n] == "Completed"} == set(PRODUCTS) - done_before
    assert fingerprints(store) == fingerprints(_store(demo_run["store"], moto_s3))
    for name, kind in DATASETS.items():
        assert len(store.versions(kind, name)) == 1, name
    assert not moto_s3.objects(f"{outage['root'].split('/', 1)[1]}/_staging")
    assert not _visible_problems(moto_s3.fs(), outage["root"])


# --- 5. secrets -----------------------------------------------------------------------------------
def test_no_secret_in_logs_api_records_attrs_or_catalogs(
        demo_run, deployments, moto_s3, prefect_dask_cluster, prefect_server):
    from prefect.client.schemas.filters import LogFilter

    secrets = (moto_s3["key"], moto_s3["secret"])
    assert secrets == ("AKIACARBONSINKTEST", "carbonsink-secret-xyz")

    def clean(text: str, where: str):
        for s in secrets:
            assert s not in text, f"secret {s[:6]}… leaked into {where}"

    # process logs: prefect server, worker (and the flow-run processes it started), dask
    clean(prefect_server.log(), "prefect server log")
    clean(deployments.logs(), "prefect worker / flow-run logs")
    clean(prefect_dask_cluster.logs(), "dask scheduler/worker logs")
    clean(deployments.cli_output, "prefect deploy output")
    # everything the Prefect API holds: flow runs (parameters), task runs, deployments, logs
    with prefect_server.settings(), _api(prefect_server) as c:
        flow_runs = c.read_flow_runs()
        assert len(flow_runs) >= 2
        logs = []
        offset = 0
        while batch := c.read_logs(log_filter=LogFilter(), offset=offset, limit=200):
            logs += batch
            offset += len(batch)
        assert any("computed and published" in log.message for log in logs)   # task logs arrive
        api = [*(f.model_dump_json() for f in flow_runs),
               *(t.model_dump_json() for t in c.read_task_runs()),
               *(d.model_dump_json() for d in c.read_deployments()),
               *(w.model_dump_json() for w in c.read_work_pools()),
               *(log.model_dump_json() for log in logs)]
    clean("\n".join(api), "the Prefect API (flow runs, task runs, deployments, logs)")
    # every object written to S3 by the flows: records, pointers, catalogs, Zarr metadata (attrs),
    # tables, chunks
    fs = moto_s3.fs()
    objects = sorted(moto_s3.objects())
    assert any(o.endswith("flows/catalog.yaml") for o in objects)
    for o in objects:
        data = fs.cat_file(o)
        for s in secrets:
            assert s.encode() not in data, f"secret {s[:6]}… in s3://{o}"
