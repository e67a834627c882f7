"""Helpers of test_store_trust.py: running the real CLI, fingerprints of released data, store
listings, and the functions the multiprocessing (spawn) children of the race tests run — they
live here so that a spawned interpreter can import them by module name."""
from __future__ import annotations

import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np

CARBONSINK = str(Path(sys.executable).with_name("carbonsink"))
DEMO_ARGS = ("--resolution", "1", "--years", "2000-2005", "--workers", "1", "--no-progress")
SPECIAL = (".manifest.json", ".damaged.json")


def demo_cmd(store) -> list[str]:
    return [CARBONSINK, "demo", *DEMO_ARGS, "--store", str(store)]


def cli_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CARBONSINK_") and k != "PYTHONWARNINGS"}
    env["CARBONSINK_NO_ATLAS"] = "1"     # the atlas has its own tests
    env.update(extra)
    return env


def cli(*args, timeout: float = 300, env=None, cwd=None) -> subprocess.CompletedProcess:
    """Run ``carbonsink ARGS`` as a separate process (text output)."""
    return subprocess.run([CARBONSINK, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env or cli_env(), cwd=cwd, check=False)


def error_line(stderr: str, *needles: str) -> str:
    """The one ``error: ...`` line of a failed command; no traceback anywhere."""
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, f"expected exactly one error line:\n{stderr}"
    assert "Traceback" not in stderr, stderr
    for n in needles:
        assert n in errors[0], f"{n!r} not in {errors[0]!r}; stderr:\n{stderr[-3000:]}"
    return errors[0]


def fresh_fingerprint() -> str:
    """The code fingerprint computed now (pipeline.code_fingerprint is cached per process)."""
    from carbonsink.pipeline import code_fingerprint
    return code_fingerprint.__wrapped__()


# --- what a store holds ------------------------------------------------------------------------
def files(root) -> set[str]:
    root = Path(root)
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def leftovers(root) -> list[str]:
    """Files or folders a finished run must not leave: staging, claims, locks, temp files."""
    root = Path(root)
    out = [str(p.relative_to(root)) for p in root.rglob("*")
           if p.name.endswith((".tmp", ".claim", ".lock"))]
    staging = root / "_staging"
    if staging.exists():
        out += [f"_staging/{p.relative_to(staging)}" for p in staging.rglob("*")] or ["_staging/"]
    return sorted(out)


def records(root, kind: str = "*", name: str = "*") -> list[str]:
    """Complete version records (not manifests, not quarantined ones)."""
    return sorted(p for p in glob.glob(f"{root}/{kind}/{name}/*.json") if not p.endswith(SPECIAL))


def array_hash(a) -> str:
    a = np.ascontiguousarray(a)
    return hashlib.sha256(f"{a.dtype}{a.shape}".encode() + a.tobytes()).hexdigest()[:20]


def released_fingerprint(root) -> dict[str, dict[str, str]]:
    """{dataset: {variable or attachment: hash}} of every released dataset: every array (data
    variables and coordinates) and every CSV attachment — version ids left out, so stores made by
    different runs compare by content."""
    from carbonsink.io.store import Store

    store = Store(str(root))
    out = {}
    for p in store.published():
        ds = store.open(p.kind, p.name, p.version)
        h = {v: array_hash(ds[v].values) for v in sorted(ds.variables)}
        for suffix, rel in p.record.get("attachments", {}).items():
            if suffix.endswith(".csv"):
                h[suffix] = hashlib.sha256(store.read_bytes(rel)).hexdigest()[:20]
        out[p.key] = h
    return out


def released_versions(root) -> dict[str, str]:
    from carbonsink.io.store import Store
    return dict(Store(str(root)).current_release().get("datasets", {}))


def copy_store(src, dst) -> Path:
    shutil.copytree(src, dst)
    return Path(dst)


def chunk_files(root, kind: str, name: str, var: str) -> list[Path]:
    """The chunk objects of ``var`` of the released version of kind/name."""
    v = released_versions(root)[f"{kind}/{name}"]
    d = Path(root) / kind / name / f"{v}.zarr" / var
    return sorted(p for p in d.iterdir() if re.fullmatch(r"\d+(\.\d+)*", p.name))


def blosc_codec(chunk: Path):
    import json

    import numcodecs
    meta = json.loads((chunk.parent / ".zarray").read_text())
    return numcodecs.get_codec(meta["compressor"])


def printed_datasets(stdout: str) -> dict[str, dict[str, str]]:
    """{dataset: {"zarr": uri, attachment: uri}} from a demo/run report."""
    out, current = {}, None
    for line in stdout.splitlines():
        m = re.match(r"^  ((?:inputs|products)/\S+): (\S+)", line)
        if m:
            current = out.setdefault(m.group(1), {"zarr": m.group(2)})
            continue
        m = re.match(r"^      (\S+): (\S+)$", line)
        if m and current is not None:
            current[m.group(1)] = m.group(2)
    return out


def wait_for(predicate, timeout: float, what: str, poll: float = 0.05):
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)
    return time.monotonic() - t0


# --- datasets and spawn children of the race tests -------------------------------------------
def _slow_block(x, marker_dir=None, sleep=0.2, block_info=None):
    time.sleep(sleep)
    if marker_dir is not None and block_info:
        loc = ".".join(map(str, block_info[0]["chunk-location"]))
        Path(marker_dir, f"{os.getpid()}-{loc}").touch()
    return x + 1.0


def slow_dataset(marker_dir=None, n_chunks: int = 8, sleep: float = 0.2):
    """A small dataset whose every chunk takes ``sleep`` s to compute and leaves a marker file
    ``<pid>-<chunk>`` in ``marker_dir`` (so a test can count who computed what). Values: 1.0."""
    import dask.array as da
    import xarray as xr

    arr = da.zeros((n_chunks, 4, 5), chunks=(1, 4, 5), dtype="f8").map_blocks(
        _slow_block, marker_dir=None if marker_dir is None else str(marker_dir), sleep=sleep,
        dtype="f8", meta=np.array((), dtype="f8"))   # meta given: no call to infer it
    return xr.Dataset({"v": (("t", "y", "x"), arr, {"units": "1"})},
                      coords={"t": np.arange(n_chunks)})


def tiny_dataset(value: float):
    import xarray as xr
    return xr.Dataset({"a": (("y", "x"), np.full((3, 4), value, "f4"), {"units": "1"})})


def _report(queue, fn):
    try:
        queue.put(fn())
    except BaseException:  # noqa: BLE001 - the parent asserts on it
        queue.put({"pid": os.getpid(), "error": traceback.format_exc()})


def child_publish_same_version(root, version, marker_dir, n_chunks, barrier, queue):
    """Spawned: publish the slow dataset as products/race@version, starting with the other."""
    def run():
        from carbonsink.io.store import Store
        ds = slow_dataset(marker_dir, n_chunks)
        store = Store(root)
        barrier.wait(timeout=120)
        t0 = time.monotonic()
        p = store.publish(ds, "products", "race", version=version)
        return {"pid": os.getpid(), "reused": p.reused, "version": p.version,
                "seconds": time.monotonic() - t0}
    _report(queue, run)


def child_release_many(root, tag, n, barrier, queue):
    """Spawned: publish n tiny datasets <tag><i> and release each with the catalog (the pipeline's
    publish_catalog), at the same time as another such child."""
    def run():
        from carbonsink.io.store import Store
        from carbonsink.pipeline import publish_catalog
        store = Store(root, auto_release=False)
        barrier.wait(timeout=120)
        names = []
        for i in range(n):
            p = store.publish(tiny_dataset(i), "products", f"{tag}{i}", version=f"v{i}")
            publish_catalog(store, [p])
            names.append(p.name)
        return {"pid": os.getpid(), "names": names}
    _report(queue, run)


def child_publish_forever(root, version, marker_dir):
    """Spawned: publish a dataset whose chunks take a minute each (killed by the test while it
    holds the claim and writes its staging copy)."""
    from carbonsink.io.store import Store
    Store(root).publish(slow_dataset(marker_dir, 4, sleep=60), "products", "killed",
                        version=version)


def run_processes(procs, queue, timeout: float = 240) -> list:
    """Start the processes, collect one result each from ``queue``, and join them (killing any
    that hang)."""
    for p in procs:
        p.start()
    try:
        return [queue.get(timeout=timeout) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
