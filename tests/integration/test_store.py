"""Store layer: atomic versioned publish, latest, failures leave nothing visible."""
import json
import time

import numpy as np
import pytest
import xarray as xr

from carbonsink.io.store import Store, StoreError, new_version

pytestmark = pytest.mark.integration


def _ds(value=1.0):
    return xr.Dataset({"a": (("y", "x"), np.full((4, 6), value, "f4"), {"units": "1"})}).chunk(
        {"y": 2, "x": 3})


def _listing(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("url", ["local", "memory://carbonsink-test-store"])
def test_publish_versions_and_latest(tmp_path, url):
    store = Store(str(tmp_path / "s") if url == "local" else url)
    assert store.latest("products", "p") is None
    p1 = store.publish(_ds(1), "products", "p", record={"grid": "test"})
    p2 = store.publish(_ds(2), "products", "p",
                       attachments=lambda staged: {"sum.csv": str(float(staged.a.sum())).encode()})
    assert store.versions("products", "p") == sorted([p1.version, p2.version])
    assert store.latest("products", "p") == p2.version
    assert float(store.open("products", "p").a.mean()) == 2.0
    assert float(store.open("products", "p", p1.version).a.mean()) == 1.0   # earlier kept
    assert store.record("products", "p", p1.version)["grid"] == "test"
    assert store.read_text(p2.record["attachments"]["sum.csv"]) == "48.0"
    assert [q.version for q in store.published()] == [p2.version]
    with pytest.raises(StoreError, match="no complete version"):
        store.open("products", "p", "v-missing")
    with pytest.raises(StoreError, match="nothing published"):
        store.open("products", "other")


def test_failed_write_leaves_latest_and_listing_untouched(tmp_path):
    store = Store(str(tmp_path / "s"))
    good = store.publish(_ds(1), "products", "p")
    before = _listing(tmp_path / "s" / "products")

    def boom(block):
        raise RuntimeError("worker died mid-write")
    bad = _ds(5)
    bad["a"] = bad.a.map_blocks(lambda b: boom(b), template=bad.a)
    with pytest.raises(RuntimeError, match="worker died"):
        store.publish(bad, "products", "p")
    assert store.latest("products", "p") == good.version
    assert store.versions("products", "p") == [good.version]
    assert _listing(tmp_path / "s" / "products") == before
    assert float(store.open("products", "p").a.mean()) == 1.0


def test_failed_attachment_leaves_no_version(tmp_path):
    store = Store(str(tmp_path / "s"))

    def attach(staged):
        raise ValueError("table failed")
    with pytest.raises(ValueError, match="table failed"):
        store.publish(_ds(), "products", "p", attachments=attach)
    assert store.versions("products", "p") == [] and store.latest("products", "p") is None
    assert not [f for f in (tmp_path / "s").rglob("*") if f.is_file()]   # not one file written


def test_release_is_written_last(tmp_path, monkeypatch):
    """Up to the moment the current release is written, consumers still resolve the old version;
    the record and manifest of the new one exist before."""
    store = Store(str(tmp_path / "s"))
    old = store.publish(_ds(1), "products", "p")
    seen = []
    real = store.write_text

    def spy(rel, text):
        if rel == "releases/current.json":
            seen.append(store.latest("products", "p"))
            assert len(store.versions("products", "p")) == 2
        return real(rel, text)
    monkeypatch.setattr(store, "write_text", spy)
    new = store.publish(_ds(2), "products", "p")
    assert seen == [old.version] and store.latest("products", "p") == new.version
    current = json.loads((tmp_path / "s/releases/current.json").read_text())
    assert current["datasets"] == {"products/p": new.version}
    assert (tmp_path / f"s/releases/{current['release']}.json").exists()     # kept: history
    assert not list((tmp_path / "s").rglob("latest.json"))


def test_version_ids_sort_by_time_and_are_unique():
    vs = [new_version() for _ in range(50)]
    assert len(set(vs)) == 50 and vs == sorted(vs)


def test_repr_hides_storage_options(tmp_path):
    s = Store(str(tmp_path), {"secret": "do-not-print"})
    assert "do-not-print" not in repr(s)


def test_missing_bucket_is_a_clear_error(tmp_path):
    pytest.importorskip("moto")
    import logging
    from moto.server import ThreadedMotoServer
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    srv = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    srv.start()
    try:
        host, port = srv.get_host_and_port()
        opts = {"key": "k", "secret": "s", "client_kwargs": {"endpoint_url": f"http://{host}:{port}"}}
        with pytest.raises(StoreError, match="does not exist"):
            Store("s3://no-such-bucket/x", opts)
    finally:
        srv.stop()


def test_versions_order_by_record_time_not_by_its_spelling(tmp_path):
    """Ordering is by the time a record denotes (any precision or UTC offset), not by string."""
    store = Store(str(tmp_path / "s"))
    a = store.publish(_ds(1), "products", "p", version="c-bbb")
    b = store.publish(_ds(2), "products", "p", version="c-aaa")
    assert len(b.record["created"]) == len("2026-11-21T08:36:40.000000+00:00")   # µs, UTC
    for v, created in ((a.version, "2026-11-21T16:36:39.100000+08:00"),
                       (b.version, "2026-11-21T08:36:40+00:00")):
        rec = store.record("products", "p", v)
        rec["created"] = created
        store.write_text(f"products/p/{v}.json", json.dumps(rec))
    assert store.versions("products", "p") == [a.version, b.version]


def test_stage_and_commit_are_the_publish_steps(tmp_path):
    store = Store(str(tmp_path / "s"))
    with pytest.raises(StoreError, match="nothing staged"):
        store.commit("products", "p", "v1", _ds(1), staged="_staging/w-x/products/p/v1.zarr")
    with pytest.raises(RuntimeError, match="halfway"):
        with store.stage("products", "p", "v1") as staged:
            store.write_zarr(_ds(3), staged)
            raise RuntimeError("halfway")
    assert not (tmp_path / "s" / "_staging").exists() and store.versions("products", "p") == []
    with store.stage("products", "p", "v1") as staged:
        store.write_zarr(_ds(3), staged)
    assert store.latest("products", "p") is None          # staged is not visible
    pub = store.commit("products", "p", "v1", _ds(3), staged=staged, record={"k": 1})
    assert store.latest("products", "p") == "v1" and pub.record["k"] == 1
    assert float(store.open("products", "p").a.mean()) == 3.0
    with pytest.raises(StoreError, match="already published"):
        with store.stage("products", "p", "v1"):
            pass


def test_a_second_writer_of_the_same_version_waits_and_reuses_the_first(tmp_path):
    """Two writers (two Store instances, as two processes would have) of one content-addressed
    version: the second finds the first's claim, waits, and returns its result without writing."""
    import threading

    a, b = Store(str(tmp_path / "s")), Store(str(tmp_path / "s"))
    entered, results = threading.Event(), {}

    def first():
        with a.claim("products", "p", "c-1") as done:
            assert done is None
            entered.set()
            time.sleep(1.5)               # computing, while the second writer arrives
            results["a"] = a.publish(_ds(1), "products", "p", version="c-1")
    t = threading.Thread(target=first)
    t.start()
    entered.wait(10)
    results["b"] = b.publish(_ds(2), "products", "p", version="c-1")   # would write 2s
    t.join()
    assert not results["a"].reused and results["b"].reused
    assert float(b.open("products", "p").a.mean()) == 1.0 and b.versions("products", "p") == ["c-1"]
    assert b.verify("products", "p", "c-1") == []
    assert not list((tmp_path / "s").rglob("*.claim"))


def test_a_dead_writers_claim_and_staging_are_taken_over(tmp_path):
    """A writer SIGKILLed mid-write leaves its claim (a pid that no longer lives) and its staged
    copy: the next writer takes the claim at once and removes the abandoned copy."""
    import subprocess
    import sys

    store = Store(str(tmp_path / "s"))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    claim = tmp_path / "s/products/p/c-1.claim"
    claim.parent.mkdir(parents=True)
    claim.write_text(json.dumps({"token": "x", "host": __import__("socket").gethostname(),
                                 "pid": int(dead), "heartbeat": time.time()}))
    junk = tmp_path / "s/_staging/w-deadbeef/products/p/c-1.zarr/a/0.0"
    junk.parent.mkdir(parents=True)
    junk.write_bytes(b"half")
    t0 = time.monotonic()
    p = store.publish(_ds(3), "products", "p", version="c-1")
    assert time.monotonic() - t0 < 20 and not p.reused          # no wait for the heartbeat TTL
    assert not claim.exists() and not (tmp_path / "s/_staging").exists()
    assert float(store.open("products", "p").a.mean()) == 3.0


@pytest.mark.parametrize("name", ["../x", "a/b", "/abs", "", ".hidden", "x y", "..", "~"])
def test_names_that_would_leave_the_store_are_refused(tmp_path, name):
    store = Store(str(tmp_path / "s"))
    with pytest.raises(ValueError, match="invalid"):
        store.publish(_ds(1), "products", name)
    with pytest.raises(ValueError, match="invalid"):
        store.latest("inputs", name)
    assert not [f for f in tmp_path.rglob("*") if f.is_file()]


def test_damaged_versions_are_found_and_never_reused(tmp_path):
    store = Store(str(tmp_path / "s"))
    p = store.publish(_ds(1), "products", "p", version="c-1")
    assert store.verify("products", "p", "c-1") == []
    chunk = next((tmp_path / "s/products/p/c-1.zarr/a").glob("0.*"))
    chunk.write_bytes(chunk.read_bytes()[:-3])                    # truncated
    problems = store.verify("products", "p", "c-1")
    assert problems and "truncated" in problems[0]
    assert store.reuse("products", "p", "c-1") is None           # quarantined, not reused
    assert (tmp_path / "s/products/p/c-1.damaged.json").exists()
    q = store.publish(_ds(1), "products", "p", version="c-1")     # recomputed under the same id
    assert not q.reused and store.verify("products", "p", "c-1") == []
    assert float(store.open("products", "p").a.mean()) == 1.0 and p.version == q.version


def test_a_release_sweeps_old_temporaries_of_killed_writes(tmp_path):
    import os

    store = Store(str(tmp_path / "s"))
    store.publish(_ds(1), "products", "p")
    old, young = tmp_path / "s/catalog.yaml.abc.tmp", tmp_path / "s/products/p/x.json.def.tmp"
    for f in (old, young):
        f.write_text("cut short")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    store.publish(_ds(2), "products", "p")                 # released: sweeps
    assert not old.exists() and young.exists()              # an in-flight write is left alone
