"""The whole pipeline at scale, stage by stage, against the I/O floor measured in the same run
(issue 15: "All China at 1 km for 21 years on one small machine").

    python benchmarks/bench_scale.py --grid 0.05 --years 2000-2020 [--domain china]
        [--workers 2] [--memory-limit 2GB] [--families core,services,scenarios] [--store DIR]
        [--keep] [--no-floor] [--chunk-mb 32] [--performance-report DIR]

On a ``distributed.LocalCluster`` (worker processes × 1 thread, 127.0.0.1 only) it runs what
``carbonsink demo`` runs, one stage at a time — synthetic inputs (generated, validated, published
with their river-chemistry table) and region masks, then every product of the product graph
(:func:`carbonsink.pipeline.product_steps`) in dependency order, then the tables and the catalog —
and prints per stage:

* wall seconds and CPU seconds (workers + client; ``busy`` = worker CPU ÷ (wall × workers));
* peak RSS of each worker and of the client: the kernel's high-water mark (VmHWM, reset at the
  start of every stage) and RSS polled every 0.1 s (``bench_nep_memory.PeakRSS``);
* bytes read (the stored size of the datasets the stage is computed from, at the versions it used)
  and bytes written (the stored size of what it published);
* the **I/O floor** of the stage, measured afterwards on the same cluster: read each dataset it
  depends on once (a sum over every variable, chunk by chunk, as stored) plus write a dataset as big
  as its output (its output re-read and copied to a scratch store, minus the time of reading it
  alone), and the ratio stage ÷ floor. The floor reads hit the page cache as the pipeline's do: it
  is this machine's floor, not a cold-disk one.

The store size and the machine's load average at the start and end of every stage are printed
beside the table (timings are only comparable on an idle machine). ``--performance-report DIR``
writes a dask performance report (HTML) per stage. Exit status 1 if a stage fails or a worker
exceeds ``--limit-mib`` (default 2048).
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_nep_memory import MIB, PeakRSS, _quiet_logs  # noqa: E402

LIMIT_MIB = 2048.0


@dataclass
class StageResult:
    name: str
    seconds: float = math.nan
    cpu_workers: float = math.nan
    cpu_client: float = math.nan
    peak_worker: float = math.nan       # bytes, max over workers
    peak_client: float = math.nan
    bytes_read: int = 0
    bytes_written: int = 0
    deps: tuple[str, ...] = ()
    output: str = ""                    # published key@version
    reused: bool = False
    floor: float = math.nan             # seconds
    error: str | None = None
    died: list[str] = field(default_factory=list)
    load: tuple[float, float] = (math.nan, math.nan)
    n_workers: int = 1
    tasks: dict = field(default_factory=dict)   # task prefix → (count, worker seconds)

    @property
    def busy(self) -> float:
        return self.cpu_workers / (self.seconds * self.n_workers) if self.seconds > 0 else math.nan

    @property
    def ratio(self) -> float:
        return self.seconds / self.floor if self.floor > 0 else math.nan


def dir_bytes(path: str | Path) -> int:
    """Bytes of every file under ``path`` (0 if absent)."""
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.path.getsize(os.path.join(root, f))
    return total


def _local_path(uri: str) -> str:
    return uri[len("file://"):] if uri.startswith("file://") else uri


def _measured(procs, name: str, fn, n_workers: int, report_dir: str | None):
    """Run ``fn()`` as one stage: (StageResult with time/CPU/memory, fn's value or None)."""
    from distributed import get_task_stream, performance_report

    st = StageResult(name, n_workers=n_workers)
    value = None
    load0 = os.getloadavg()[0]
    ctx = (performance_report(filename=os.path.join(report_dir, f"{name}.html"))
           if report_dir else contextlib.nullcontext())
    with PeakRSS(procs, 0.1) as m, ctx, get_task_stream() as ts:
        t0 = time.perf_counter()
        try:
            value = fn()
        except Exception as e:  # noqa: BLE001 - a failed stage is a result
            st.error = f"{type(e).__name__}: {e}"
        st.seconds = time.perf_counter() - t0
    st.load = (load0, os.getloadavg()[0])
    workers = [p for p in m.peaks.values() if p.name.startswith("worker")]
    st.cpu_workers = sum(p.cpu_user + p.cpu_sys for p in workers)
    client = m.peaks["client"]
    st.cpu_client = client.cpu_user + client.cpu_sys
    st.peak_worker = max((p.peak for p in workers), default=math.nan)
    st.peak_client = client.peak
    st.died = [p.name for p in workers if p.died]
    st.tasks = task_profile(ts.data)
    return st, value


def task_profile(records) -> dict[str, tuple[int, float]]:
    """Worker seconds per task prefix (``compute`` intervals of the task stream): {prefix:
    (tasks, seconds)}, largest first."""
    from dask.utils import key_split

    acc: dict[str, list] = {}
    for rec in records:
        name = key_split(rec.get("key"))
        for ss in rec.get("startstops", ()):
            if ss.get("action") == "compute":
                a = acc.setdefault(name, [0, 0.0])
                a[0] += 1
                a[1] += ss["stop"] - ss["start"]
    return dict(sorted(((k, (n, t)) for k, (n, t) in acc.items()), key=lambda kv: -kv[1][1]))


# --- the I/O floor ----------------------------------------------------------------------------
def _read_once(store, p) -> float:
    """Seconds to read every variable of a published version once, chunk by chunk, as stored."""
    import dask

    ds = store.open(p.kind, p.name, p.version)
    t0 = time.perf_counter()
    dask.compute(*[v.data.sum() if hasattr(v.data, "dask") else v.sum()
                   for v in ds.data_vars.values()])
    return time.perf_counter() - t0


def _copy_once(store, p, scratch: str) -> float:
    """Seconds to read a published version and write it, with its chunks and encoding, to a
    scratch Zarr store on the same disk."""
    ds = store.open(p.kind, p.name, p.version)
    for v in list(ds.variables.values()):
        enc = {k: v.encoding[k] for k in ("chunks", "compressors", "filters", "dtype",
                                          "_FillValue", "fill_value") if k in v.encoding}
        v.encoding = enc
    target = os.path.join(scratch, f"{p.name}-{p.version}.zarr")
    shutil.rmtree(target, ignore_errors=True)
    t0 = time.perf_counter()
    from carbonsink.io.store import ZARR_FORMAT

    ds.to_zarr(target, mode="w", consolidated=False, zarr_format=ZARR_FORMAT)
    seconds = time.perf_counter() - t0
    shutil.rmtree(target, ignore_errors=True)
    return seconds


def measure_floor(store, stages: list[StageResult], published: dict, scratch: str, log=print):
    """Fill in each stage's floor: Σ read(deps) + copy(output) − read(output)."""
    reads: dict[str, float] = {}

    def read(name):
        if name not in reads:
            reads[name] = _read_once(store, published[name])
        return reads[name]
    for st in stages:
        if st.name not in published or st.error:
            continue
        try:
            write = max(_copy_once(store, published[st.name], scratch) - read(st.name), 0.0)
            st.floor = sum(read(d) for d in st.deps) + write
        except Exception as e:  # noqa: BLE001 - the table says so
            log(f"floor of {st.name} not measured: {type(e).__name__}: {e}")
    return reads


# --- the run ----------------------------------------------------------------------------------
def run_benchmark(grid: str, years: tuple[int, int], *, domain: str = "china", workers: int = 2,
                  memory_limit: str = "2GB", families=None, store_dir: str | None = None,
                  keep: bool = False, floor: bool = True, chunk_mb: float = 32.0,
                  report_dir: str | None = None, log=print) -> dict:
    import dask
    from distributed import Client, LocalCluster

    from carbonsink.config import RunConfig
    from carbonsink.io.store import Store
    from carbonsink.pipeline import (demo_inputs_step, product_steps, publish_catalog,
                                     summarize)

    tmp = None
    if store_dir is None:
        tmp = store_dir = tempfile.mkdtemp(prefix="carbonsink-scale-")
    os.makedirs(store_dir, exist_ok=True)
    cfg = RunConfig(store=store_dir, grid=grid, domain=domain, years=years, chunk_mb=chunk_mb)
    g = cfg.grid_obj()
    store = Store(cfg.store, auto_release=False)
    if report_dir:
        os.makedirs(report_dir, exist_ok=True)
    _quiet_logs()
    out = {"grid": g.name, "shape": g.shape, "years": tuple(cfg.years), "domain": domain,
           "workers": workers, "memory_limit": memory_limit, "stages": [], "store": store_dir}
    try:
        with dask.config.set({"logging": {"distributed": "error", "bokeh": "error"}}), \
                LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                             memory_limit=memory_limit, host="127.0.0.1",
                             dashboard_address=None) as cluster, \
                Client(cluster, set_as_default=True) as client:
            client.wait_for_workers(workers, timeout=120)
            pids = client.run(os.getpid)
            procs = {f"worker-{i}": pid for i, (_, pid) in enumerate(sorted(pids.items()))}
            procs["client"] = os.getpid()
            log(f"cluster: {workers} worker processes × 1 thread, memory_limit {memory_limit}; "
                f"grid {g.name} {g.nlat}×{g.nlon}, domain {domain}, years {years[0]}–{years[1]}; "
                f"store {store_dir}")
            from carbonsink.regions import china_mask
            china_mask("1")      # one-off client imports (province shapes) outside the stages

            published, stages = {}, out["stages"]
            st, value = _measured(procs, "inputs", lambda: demo_inputs_step(store, cfg),
                                  workers, report_dir)
            stages.append(st)
            if value is None:
                log(f"inputs failed: {st.error}")
                return out
            published["inputs"], published["regions"] = value
            st.output = f"{value[0].key}@{value[0].version}"
            st.bytes_written = (dir_bytes(_local_path(value[0].uri))
                                + dir_bytes(_local_path(value[1].uri)))
            log(_line(st))
            for name, step in product_steps(cfg, inputs=published["inputs"],
                                            families=families).items():
                deps = tuple(step.deps)
                st, p = _measured(procs, name, lambda: step.run(
                    store, cfg, *(published[d] for d in deps)), workers, report_dir)
                st.deps = deps
                st.bytes_read = sum(dir_bytes(_local_path(published[d].uri)) for d in deps)
                if p is not None:
                    published[name] = p
                    st.output, st.reused = f"{p.key}@{p.version}", p.reused
                    st.bytes_written = dir_bytes(_local_path(p.uri))
                stages.append(st)
                log(_line(st))
                if st.error:
                    return out

            def finish():
                tables, facts = summarize(store, published, "")
                return publish_catalog(store, published.values()), facts
            st, value = _measured(procs, "tables+catalog", finish, workers, report_dir)
            stages.append(st)
            log(_line(st))
            if value is not None:
                out["facts"] = value[1]
            out["store_bytes"] = dir_bytes(store_dir)
            if floor:
                scratch = tempfile.mkdtemp(prefix="carbonsink-floor-",
                                           dir=os.path.dirname(os.path.abspath(store_dir)))
                try:
                    t0 = time.perf_counter()
                    # the inputs stage's floor is writing the inputs once (the regions are small)
                    reads = measure_floor(store, [s for s in stages if s.name != "tables+catalog"],
                                          published, scratch, log)
                    out["floor_seconds"] = time.perf_counter() - t0
                    out["read_inputs_once"] = reads.get("inputs", math.nan)
                finally:
                    shutil.rmtree(scratch, ignore_errors=True)
    finally:
        if tmp is not None and not keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _gib(b) -> str:
    return f"{b / 2**30:.2f}" if b == b else "—"


def _line(st: StageResult) -> str:
    top = ", ".join(f"{k} {t:.1f} s/{n}" for k, (n, t) in list(st.tasks.items())[:4])
    return (f"  {st.name:<24} {st.seconds:8.1f} s  CPU {st.cpu_workers:7.1f} s  busy "
            f"{st.busy:4.0%}  peak worker {st.peak_worker / MIB:6.0f} MiB  client "
            f"{st.peak_client / MIB:6.0f} MiB" + (f"  FAILED {st.error}" if st.error else "")
            + ("  (reused)" if st.reused else "") + (f"\n      tasks: {top}" if top else ""))


def format_report(r: dict, limit_mib: float = LIMIT_MIB) -> str:
    y0, y1 = r["years"]
    stages = r["stages"]
    lines = [
        f"carbonsink scale benchmark — grid {r['grid']} ({r['shape'][0]}×{r['shape'][1]}), domain "
        f"{r['domain']}, {y0}–{y1} ({y1 - y0 + 1} years); {r['workers']} workers × 1 thread, "
        f"memory_limit {r['memory_limit']}; {os.cpu_count()} CPUs",
        "",
        "| stage | wall s | CPU s workers+client | busy | peak worker MiB | peak client MiB | read MiB | "
        "written MiB | floor s | ratio | load |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    total = {"wall": 0.0, "cpu": 0.0, "floor": 0.0, "read": 0, "written": 0}
    for st in stages:
        lines.append(
            f"| {st.name} | {st.seconds:.1f} | {st.cpu_workers:.1f}+{st.cpu_client:.1f} | "
            f"{st.busy:.0%} | {st.peak_worker / MIB:.0f} | {st.peak_client / MIB:.0f} | "
            f"{st.bytes_read / MIB:.0f} | {st.bytes_written / MIB:.0f} | "
            + (f"{st.floor:.1f} | {st.ratio:.1f}×" if st.floor == st.floor else "— | —")
            + f" | {st.load[0]:.1f}→{st.load[1]:.1f} |")
        total["wall"] += st.seconds
        total["cpu"] += st.cpu_workers + st.cpu_client
        total["read"] += st.bytes_read
        total["written"] += st.bytes_written
        if st.floor == st.floor:
            total["floor"] += st.floor
    products = [s for s in stages if s.name not in ("inputs", "tables+catalog")]
    p_wall = sum(s.seconds for s in products)
    p_floor = sum(s.floor for s in products if s.floor == s.floor)
    lines.append(f"| **total** | {total['wall']:.1f} | {total['cpu']:.1f} | | "
                 f"{max(s.peak_worker for s in stages) / MIB:.0f} | "
                 f"{max(s.peak_client for s in stages) / MIB:.0f} | {total['read'] / MIB:.0f} | "
                 f"{total['written'] / MIB:.0f} | {total['floor']:.1f} | "
                 f"{total['wall'] / total['floor'] if total['floor'] else math.nan:.1f}× | |")
    lines.append("")
    inputs = stages[0]
    lines.append(f"products: {p_wall:.1f} s against a floor of {p_floor:.1f} s = "
                 f"{p_wall / p_floor if p_floor else math.nan:.1f}× the I/O floor; synthetic inputs "
                 f"{inputs.seconds:.1f} s ({inputs.seconds / p_wall if p_wall else math.nan:.2f}× "
                 f"the products)")
    if "read_inputs_once" in r:
        lines.append(f"reading every input once: {r['read_inputs_once']:.1f} s; store "
                     f"{r.get('store_bytes', 0) / 2**30:.2f} GiB")
    worst = max(stages, key=lambda s: s.peak_worker)
    lines.append(f"peak worker memory {worst.peak_worker / MIB:.0f} MiB in {worst.name} (limit "
                 f"{limit_mib:.0f} MiB); peak client {max(s.peak_client for s in stages) / MIB:.0f} "
                 "MiB")
    facts = r.get("facts") or {}
    for k in sorted(facts)[:12]:
        lines.append(f"  {k}: {facts[k]}")
    return "\n".join(lines)


def exit_code(r: dict, limit_mib: float = LIMIT_MIB) -> int:
    bad = [s for s in r["stages"] if s.error or s.died or s.peak_worker / MIB > limit_mib]
    return 1 if bad or not r["stages"] else 0


def _years(text: str) -> tuple[int, int]:
    a, _, b = text.partition("-")
    return int(a), int(b or a)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--grid", default="0.1")
    ap.add_argument("--years", default="2000-2020", type=_years)
    ap.add_argument("--domain", default="china")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--memory-limit", default="2GB")
    ap.add_argument("--limit-mib", type=float, default=LIMIT_MIB)
    ap.add_argument("--families", default=None,
                    help="comma-separated product families (core, services, scenarios; "
                         "default all)")
    ap.add_argument("--store", default=None)
    ap.add_argument("--keep", action="store_true", help="keep the temporary store")
    ap.add_argument("--no-floor", action="store_true")
    ap.add_argument("--chunk-mb", type=float, default=32.0)
    ap.add_argument("--performance-report", default=None, metavar="DIR")
    a = ap.parse_args(argv)
    fams = None if a.families is None else [f.strip() for f in a.families.split(",")]
    r = run_benchmark(a.grid, a.years, domain=a.domain, workers=a.workers,
                      memory_limit=a.memory_limit, families=fams, store_dir=a.store,
                      keep=a.keep, floor=not a.no_floor, chunk_mb=a.chunk_mb,
                      report_dir=a.performance_report)
    print()
    print(format_report(r, a.limit_mib))
    return exit_code(r, a.limit_mib)


if __name__ == "__main__":
    sys.exit(main())
