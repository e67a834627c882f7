"""The store's guarantees on an S3-protocol server (moto on 127.0.0.1), with real processes:

- two processes publishing the same content-addressed version at once: exactly one computes and
  writes, the other waits on its claim (a conditional If-None-Match PUT) and reuses the result; the
  version is complete and intact, no staging, claim or lock is left;
- two processes releasing different datasets at once: the release and the catalog name both;
- a deleted or truncated chunk object is found by ``verify`` (listing vs manifest, ETags too) and the
  damaged version is quarantined rather than reused.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os

import numpy as np
import pytest

pytestmark = pytest.mark.system

SLOW_CHUNK_S = 0.4


def _slow_dataset(value: float, marker: str):
    """A 4-chunk dataset whose chunks take SLOW_CHUNK_S each and leave a marker file when they
    are computed (so the test can count who computed)."""
    import time

    import dask.array as da
    import xarray as xr

    def block(x):
        time.sleep(SLOW_CHUNK_S)
        with open(marker, "a") as f:
            f.write(f"{os.getpid()}\n")
        return np.full(x.shape, value, "f4")

    # meta given: dask would otherwise call block() once on a 0-size array to infer it
    data = da.zeros((8, 8), chunks=(4, 4), dtype="f4").map_blocks(
        block, dtype="f4", meta=np.empty((0, 0), "f4"))
    return xr.Dataset({"a": (("y", "x"), data, {"units": "1"})})


def _publish(url, options, version, value, marker, out):
    import dask

    from carbonsink.io.store import Store

    dask.config.set(scheduler="threads")
    store = Store(url, options)
    p = store.publish(_slow_dataset(value, marker), "products", "p", version=version)
    out.put((os.getpid(), p.reused, p.version))


def _release(url, options, name, out):
    import dask

    from carbonsink.catalog import write_catalog
    from carbonsink.io.store import Store

    dask.config.set(scheduler="threads")
    store = Store(url, options, auto_release=False)
    p = store.publish(_slow_dataset(1.0, os.devnull), "products", name)
    store.release([p], after=lambda: write_catalog(store))
    out.put(name)


def _run_two(target, args_a, args_b, timeout=120):
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, out)) for args in (args_a, args_b)]
    for p in procs:
        p.start()
    results = [out.get(timeout=timeout) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    return results


def test_two_processes_publishing_one_version_on_s3(moto_s3, tmp_path):
    from carbonsink.io.store import Store

    url = f"s3://{moto_s3.bucket}/race"
    marker = str(tmp_path / "computed")
    results = _run_two(_publish, (url, moto_s3.storage_options, "c-race", 7.0, marker),
                       (url, moto_s3.storage_options, "c-race", 9.0, marker))
    reused = sorted(r[1] for r in results)
    assert reused == [False, True], results                  # one computed, one reused
    computed_by = {line.strip() for line in open(marker)}
    assert len(computed_by) == 1, computed_by                 # only the claim holder computed
    store = Store(url, moto_s3.storage_options)
    assert store.versions("products", "p") == ["c-race"]
    assert store.verify("products", "p", "c-race") == []
    values = np.unique(store.open("products", "p").a.values)
    assert len(values) == 1 and values[0] in (7.0, 9.0)      # one writer's data, whole
    left = [o for o in moto_s3.objects("race") if "/_staging/" in o or o.endswith(
        (".claim", ".lock"))]
    assert not left, left


def test_two_processes_releasing_at_once_lose_nothing(moto_s3):
    import yaml

    from carbonsink.io.store import Store

    url = f"s3://{moto_s3.bucket}/two-releases"
    _run_two(_release, (url, moto_s3.storage_options, "left"),
             (url, moto_s3.storage_options, "right"))
    store = Store(url, moto_s3.storage_options)
    assert set(store.current_release()["datasets"]) == {"products/left", "products/right"}
    assert len(store.releases()) == 2
    sources = yaml.safe_load(store.read_text("catalog.yaml"))["sources"]
    assert {"left", "right"} <= set(sources)


def test_damaged_chunks_on_s3_are_found_and_not_reused(moto_s3, tmp_path):
    from carbonsink.io.store import Store

    url = f"s3://{moto_s3.bucket}/damage"
    store = Store(url, moto_s3.storage_options)
    fs = moto_s3.fs()
    for version in ("c-deleted", "c-rewritten"):
        store.publish(_slow_dataset(1.0, os.devnull), "products", "p", version=version)
        assert store.verify("products", "p", version) == []
    root = f"{moto_s3.bucket}/damage/products/p"
    fs.rm(f"{root}/c-deleted.zarr/a/0.0")
    chunk = f"{root}/c-rewritten.zarr/a/1.1"
    data = fs.cat_file(chunk)
    fs.pipe_file(chunk, bytes(reversed(data)))                 # same size, other content
    assert any("missing" in p for p in store.verify("products", "p", "c-deleted"))
    assert any("ETag" in p for p in store.verify("products", "p", "c-rewritten"))
    assert store.reuse("products", "p", "c-deleted") is None   # quarantined
    rec = json.loads(fs.cat_file(f"{root}/c-deleted.damaged.json"))
    assert rec["damaged"] and not fs.exists(f"{root}/c-deleted.json")
