"""System test: the ``carbonsink demo`` CLI against a real multi-process dask cluster (started with the
``dask`` CLI) writing to an S3-protocol server (moto), then read back through the Intake catalog.

Everything listens on 127.0.0.1. The dask workers have no AWS_* environment: S3 reaches them only
through the storage options inside the task graph (see conftest.py). The CLI and the test process get
the keys and the endpoint from AWS_* variables, as a user would.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from _checks import assert_identical_values

# the demo CLI on s3:// with an external 2-worker cluster (about 2.5 minutes on 2 cores), in the
# default run again since the pipeline got faster (README "Tests and benchmarks")
pytestmark = [pytest.mark.system]

CLI = Path(sys.executable).parent / "carbonsink"
YEARS = (2000, 2003)
PREFIX = "run1"
PRODUCTS = ("nep", "nep_pei")


@pytest.fixture(scope="module")
def demo(moto_s3, dask_cluster):
    """Run the demo CLI once (a subprocess) against the cluster and the S3 server; record what each
    worker did while it ran."""
    from distributed import Client

    def compute_log(dask_worker, since):
        """Task names a worker was asked to compute since ``since`` (its transition log); defined
        here so that it is pickled by value (the workers cannot import this test module)."""
        from dask.utils import key_split

        return sorted({key_split(e[0]) for e in dask_worker.state.log
                       if len(e) > 2 and e[1] == "compute-task" and e[-1] >= since})

    store = f"s3://{moto_s3.bucket}/{PREFIX}"
    env = moto_s3.client_env()
    args = [str(CLI), "demo", "--store", store, "--scheduler", str(dask_cluster),
            "--resolution", "1", "--years", f"{YEARS[0]}-{YEARS[1]}", "--no-progress"]
    with Client(str(dask_cluster), set_as_default=False, timeout=30) as client:
        before = client.run(lambda dask_worker: dask_worker.state.transition_counter)
        t0 = time.time()
        proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            # while the CLI starts (imports, China boundaries), load the boundaries here too: the
            # bad-input test needs them (make_inputs), and on 2 cores this overlap saves ~6 s
            from carbonsink.regions import china_mask

            china_mask("1")
            stdout, stderr = proc.communicate(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        proc = subprocess.CompletedProcess(args, proc.returncode, stdout, stderr)
        after = client.run(lambda dask_worker: dask_worker.state.transition_counter)
        ran = client.run(compute_log, since=t0)
        n_workers = len(client.scheduler_info()["workers"])
    return {"store": store, "proc": proc, "args": args, "elapsed": time.time() - t0,
            "before": before, "after": after, "ran": ran, "n_workers": n_workers}


def _ok(demo, dask_cluster):
    proc = demo["proc"]
    assert proc.returncode == 0, (f"demo failed ({proc.returncode})\nstdout:\n{proc.stdout}\n"
                                  f"stderr:\n{proc.stderr}\ncluster logs:\n{dask_cluster.logs()}")
    return proc


@pytest.fixture
def s3_env(moto_s3, monkeypatch):
    """The test process as an S3 consumer: keys and endpoint from AWS_* variables only."""
    for k, v in moto_s3.env.items():
        monkeypatch.setenv(k, v)
    return moto_s3




# --- 2. the demo publishes the right thing ------------------------------------------------------
def test_demo_cli_publishes_products_readable_through_the_catalog(demo, dask_cluster, s3_env):
    from carbonsink.catalog import open_catalog
    from carbonsink.config import load_config
    from carbonsink.io.store import Store
    from carbonsink.products.nep import compute_nep

    out = _ok(demo, dask_cluster).stdout
    store_url = demo["store"]
    assert f"store {store_url}" in out
    assert f"dask cluster: {dask_cluster}" in out
    assert f"catalog: {store_url}/catalog.yaml" in out
    for key in ("inputs/synthetic", "inputs/regions", "products/nep", "products/nep_pei"):
        assert f"  {key}: {store_url}/{key}/c-" in out, key     # content-addressed versions
    for name in PRODUCTS:
        assert f"{name}: NEP: China mean " in out
        assert f"products/{name}/" in out and ".totals.csv" in out

    cfg = load_config(store=store_url)
    store = Store(cfg.store, cfg.resolved_storage_options())
    cat = open_catalog(f"{store_url}/catalog.yaml")
    sources = yaml.safe_load(store.read_text("catalog.yaml"))["sources"]
    for entry, (kind, name) in {"nep": ("products", "nep"), "nep_pei": ("products", "nep_pei"),
                                "synthetic": ("inputs", "synthetic"),
                                "regions": ("inputs", "regions")}.items():
        version = store.latest(kind, name)
        assert sources[entry]["metadata"]["version"] == version  # the catalog points at latest
        assert version in sources[entry]["args"]["urlpath"]
        via_intake = cat[entry].to_dask()
        direct = store.open(kind, name, version)
        assert_identical_values(via_intake, direct)

    # the cluster computed the right NEP: recompute in-process (threaded scheduler) from the
    # published inputs and compare with what the workers published
    inputs = store.open("inputs", "synthetic")
    assert inputs.sizes["year"] == YEARS[1] - YEARS[0] + 1
    for name, model in (("nep", cfg.rh_model), ("nep_pei", "pei")):
        published = store.open("products", name).load()
        assert published["nep"].attrs["rh_model"] == model
        expected = compute_nep(inputs, rh_model=model).compute(scheduler="threads")
        for var in ("npp", "rh", "nep"):
            np.testing.assert_allclose(published[var].values, expected[var].values,
                                       rtol=1e-6, atol=0, equal_nan=True, err_msg=f"{name}.{var}")
        land = inputs["land_mask"].values > 0
        assert np.isfinite(published["nep"].values[:, land]).all()
        assert np.isnan(published["nep"].values[:, ~land]).all()

    # the totals table of the nep product, through the catalog
    table = cat["nep_totals"].read()
    assert isinstance(table, pd.DataFrame)
    national = table[(table.region_set == "domain") & (table.region == "China")]
    assert sorted(national.year) == list(range(YEARS[0], YEARS[1] + 1))
    mean_nep = national.mean_flux_t_km2.mean()
    assert 50 <= mean_nep <= 400, mean_nep
    assert f"nep: NEP: China mean {mean_nep:.2f} t C km-2 a-1" in out
    assert {"province", "division", "karst_region"} <= set(table.region_set)


# --- 3. the work ran on the external workers ----------------------------------------------------
def test_demo_ran_on_both_external_workers(demo, dask_cluster):
    _ok(demo, dask_cluster)
    assert demo["n_workers"] == 2
    before, after, ran = demo["before"], demo["after"], demo["ran"]
    assert set(before) == set(after) and len(after) == 2
    for addr in after:
        assert after[addr] > before[addr], f"worker {addr} did no work: {before} → {after}"
        assert ran[addr], f"worker {addr} computed no task"
    prefixes = set().union(*ran.values())
    # the zarr writes themselves (not just reads/reductions) ran on the workers
    assert any("store" in p for p in prefixes), prefixes


# --- 4. secrets never leak ----------------------------------------------------------------------
def test_no_secret_in_output_records_catalog_or_attrs(demo, dask_cluster, moto_s3):
    proc = _ok(demo, dask_cluster)
    secrets = (moto_s3["key"], moto_s3["secret"])
    assert secrets == ("AKIACARBONSINKTEST", "carbonsink-secret-xyz")

    def clean(text: str, where: str):
        for s in secrets:
            assert s not in text, f"secret {s[:6]}… leaked into {where}"

    clean(proc.stdout, "CLI stdout")
    clean(proc.stderr, "CLI stderr")
    clean(dask_cluster.logs(), "scheduler/worker logs")

    fs = moto_s3.fs()
    objects = moto_s3.objects(PREFIX)
    root = f"{moto_s3.bucket}/{PREFIX}"
    assert f"{root}/catalog.yaml" in objects
    records = [o for o in objects if o.endswith(".json") and ".zarr/" not in o]
    zarr_meta = [o for o in objects if o.endswith((".zarray", ".zattrs", ".zgroup"))]
    # inputs (synthetic, regions) and products (nep, nep_pei, karst, sink, trends ×2,
    # attribution ×2) and the 5 services products: one version each, all in the one release
    release = json.loads(fs.cat_file(f"{root}/releases/current.json"))
    assert len(release["datasets"]) == 16, release
    assert sum(o.endswith(".manifest.json") for o in records) == 16
    assert len(records) >= 34         # 16 records + 16 manifests + the release (current + history)
    assert len(zarr_meta) >= 4 * 3    # group + arrays of 4 datasets
    assert not [o for o in objects if "/_staging/" in o], "staging left behind"
    for path in [f"{root}/catalog.yaml", *records, *zarr_meta,
                 *[o for o in objects if o.endswith(".csv")]]:
        text = fs.cat_file(path).decode()
        clean(text, path)
        if path.endswith(".json") and not path.endswith("zarr.json"):
            json.loads(text)
    # and no object at all (chunks included) carries them
    blob = b"".join(fs.cat_file(o) for o in sorted(objects))
    for s in secrets:
        assert s.encode() not in blob


# --- 5. bad input on S3 publishes nothing -------------------------------------------------------
def test_bad_input_publishes_nothing_on_s3(moto_s3, dask_cluster, s3_env):
    from distributed import Client

    from carbonsink.config import load_config
    from carbonsink.io.store import Store
    from carbonsink.io.validate import InputError
    from carbonsink.pipeline import publish_inputs
    from carbonsink.synthetic import make_inputs

    url = f"s3://{moto_s3.bucket}/bad-run"
    cfg = load_config(store=url, grid="1", years="2000-2002")
    store = Store(cfg.store, cfg.resolved_storage_options())
    inputs = make_inputs("1", (2000, 2002))
    pr = inputs["pr"]
    i, j = np.argwhere(inputs["land_mask"].values > 0)[0]
    spot = ((pr["time"] == pr["time"][7]) & (pr["lat"] == pr["lat"][i])
            & (pr["lon"] == pr["lon"][j]))
    bad = inputs.assign(pr=pr.where(~spot, -2.5).assign_attrs(pr.attrs))

    before = moto_s3.objects()
    with Client(str(dask_cluster), set_as_default=True, timeout=30):  # validation on the cluster
        with pytest.raises(InputError) as err:
            publish_inputs(store, cfg, bad)
    assert err.value.variable == "pr"
    assert "'pr'" in str(err.value) and "-2.5" in str(err.value)
    assert moto_s3.objects() == before
    assert not moto_s3.objects("bad-run")


# --- everything stays on the loopback interface -------------------------------------------------
def test_cluster_and_s3_listen_on_loopback_only(dask_cluster, moto_s3):
    import os

    import psutil

    pids = {os.getpid()}  # the moto server runs in a thread of this process
    for _, p in dask_cluster.procs.procs:
        proc = psutil.Process(p.pid)
        pids |= {proc.pid} | {c.pid for c in proc.children(recursive=True)}
    listening = [c for c in psutil.net_connections(kind="inet")
                 if c.pid in pids and c.status == psutil.CONN_LISTEN]
    # scheduler + dashboard, 2 × (nanny + worker + worker dashboard), moto
    assert len(listening) >= 8, listening
    assert {c.laddr.ip for c in listening} == {"127.0.0.1"}, listening
