"""Two runs of the same configuration at once never publish a partial product.

For each of N pairs: a fresh local store; `carbonsink demo` started, then the same command again
`offset` seconds later (offsets staggered across the pairs, so the second run meets the first one
in every phase: generating inputs, computing, committing, releasing). Each run has its own local
dask cluster. After both exit, the store is checked:

- both runs exit 0;
- every dataset has exactly one version (the second run waited for and reused the first one's);
- `carbonsink verify` finds every version intact (every object its manifest lists, same sizes);
- the released versions' data equal a clean single run's, bit for bit (hash of every array);
- nothing is left in `_staging/`, no claim and no lock.

Prints one row per pair and the number of partial versions published (the target is 0).

    python benchmarks/bench_concurrent_publish.py [--pairs 6] [--max-offset 40] [--grid 1]
                                                  [--years 2000-2005] [--workdir DIR]
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def demo_cmd(store: Path, grid: str, years: str) -> list[str]:
    return [sys.executable, "-m", "carbonsink.cli", "demo", "--resolution", grid, "--years", years,
            "--workers", "1", "--store", str(store), "--no-progress"]


def fingerprints(store: Path) -> dict[str, str]:
    """{kind/name@version: sha256 of every array} of the current release."""
    from carbonsink.io.store import Store

    st = Store(str(store))
    out = {}
    for p in st.published():
        ds = st.open(p.kind, p.name, p.version).load()
        h = hashlib.sha256()
        for v in sorted(ds.variables):
            h.update(v.encode() + np.ascontiguousarray(ds[v].values).tobytes())
        out[f"{p.key}@{p.version}"] = h.hexdigest()
    return out


def check(store: Path) -> dict:
    from carbonsink.io.store import Store
    from carbonsink.maintenance import verify_store

    st = Store(str(store))
    findings, n = verify_store(st)
    released = st.current_release().get("datasets", {})
    multi = {k: len(st.versions(*k.split("/", 1))) for k in released}
    leftovers = [str(f.relative_to(store)) for f in store.rglob("*") if f.is_file() and (
        "_staging" in f.parts or f.suffix in (".claim", ".lock", ".tmp"))]
    return {"checked": n, "damaged": len(findings), "released": len(released),
            "extra_versions": sum(v - 1 for v in multi.values()), "leftovers": leftovers}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=6)
    ap.add_argument("--max-offset", type=float, default=40.0)
    ap.add_argument("--grid", default="1")
    ap.add_argument("--years", default="2000-2005")
    ap.add_argument("--workdir", default=None)
    a = ap.parse_args(argv)
    work = Path(a.workdir or tempfile.mkdtemp(prefix="bench-concurrent-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    t0 = time.perf_counter()
    ref = work / "reference"
    shutil.rmtree(ref, ignore_errors=True)
    r = subprocess.run(demo_cmd(ref, a.grid, a.years), env=env, capture_output=True, text=True)
    if r.returncode:
        print(r.stdout[-3000:], r.stderr[-3000:])
        return 1
    t_single = time.perf_counter() - t0
    want = fingerprints(ref)
    print(f"single run: {t_single:.1f} s, {len(want)} datasets released")
    offsets = [a.max_offset * i / max(a.pairs - 1, 1) for i in range(a.pairs)]
    print(f"{'pair':>4} {'offset s':>8} {'exit':>6} {'wall s':>7} {'versions':>8} {'extra':>5} "
          f"{'damaged':>7} {'equal':>5} {'leftovers':>9}")
    partial = failures = 0
    for i, off in enumerate(offsets):
        store = work / f"pair{i}"
        shutil.rmtree(store, ignore_errors=True)
        t = time.perf_counter()
        first = subprocess.Popen(demo_cmd(store, a.grid, a.years), env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(off)
        second = subprocess.Popen(demo_cmd(store, a.grid, a.years), env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        outs = [p.communicate()[0] for p in (first, second)]
        codes = (first.returncode, second.returncode)
        wall = time.perf_counter() - t
        c = check(store)
        equal = fingerprints(store) == want
        partial += c["damaged"]
        bad = codes != (0, 0) or c["damaged"] or c["extra_versions"] or not equal or c["leftovers"]
        failures += bool(bad)
        print(f"{i:>4} {off:>8.1f} {str(codes):>6} {wall:>7.1f} {c['checked']:>8} "
              f"{c['extra_versions']:>5} {c['damaged']:>7} {str(equal):>5} "
              f"{len(c['leftovers']):>9}")
        if bad:
            for out in outs:
                print("    | " + "\n    | ".join(out.strip().splitlines()[-15:]))
    print(f"\n{a.pairs} concurrent pairs, offsets 0–{a.max_offset:.0f} s: {partial} partial "
          f"versions published, {failures} pair(s) not identical to a single run")
    return 1 if (partial or failures) else 0


if __name__ == "__main__":
    sys.exit(main())
