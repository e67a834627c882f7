"""Memory and throughput of NEP on a real multi-process dask cluster (issue: "computing NEP at 0.05°
for 21 years keeps each worker under 1 GiB (a benchmark prints it)").

    python benchmarks/bench_nep_memory.py [--resolution 0.05] [--years 2000-2020] [--workers 2]
                                          [--rh-model soil_tps] [--store DIR] [--chunk-mb 32]

Two stages on a ``distributed.LocalCluster`` (processes, 1 thread per worker, memory_limit 2GB per
worker, 127.0.0.1 only), each timed and measured:

1. inputs — synthetic China at the resolution/years (``carbonsink.synthetic.make_inputs``), validated
   and published to a local store by ``carbonsink.pipeline.publish_inputs``;
2. NEP    — the published inputs are opened back from the store, ``compute_nep`` builds NPP, Rh, NEP
   and ``Store.publish`` writes them (staged, checked, atomically made ``latest``).

How memory is measured (per worker process, per stage):
* the kernel's own high-water mark (``VmHWM`` in /proc/<pid>/status), reset at the start of every
  stage by writing ``5`` to /proc/<pid>/clear_refs: it counts every page that was ever resident, so
  no spike between two samples can be missed — this is the "peak MiB" that passes or fails;
* a background thread in the client reading each worker's RSS with psutil by PID every 0.1 s, as a
  cross-check ("polled MiB") that does not need the worker's event loop, and to notice a worker that
  dies (the nanny kills a worker at 95 % of memory_limit).
Polling through ``client.run(lambda: psutil.Process().memory_info().rss)`` every 0.2 s also works here
(checked at 0.1°: its peaks came within 4 MiB of VmHWM; replies took 14 ms median, 0.85 s worst on a
loaded machine), but it is a sample, not a bound. ``distributed.diagnostics.MemorySampler`` records
``scheduler.memory`` — the cluster-wide sum from heartbeats — so it cannot show a per-worker peak.
The PIDs come from ``client.run(os.getpid)``; the workers of a LocalCluster are on this machine.

The client process (which also runs the LocalCluster's scheduler) is measured the same way: it must
not gather the grid, so its growth is compared with the size of the full-resolution monthly cube
(``tas``, float32), printed as a same-run reference. A worker peak that is a small fraction of that
cube, and does not grow with the grid, shows memory is bounded by the chunk, not by the grid.

Exit status: 0 if every worker stays under the limit (default 1024 MiB) during the NEP stage, 1 if any
worker exceeds it, dies, or the stage fails.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

import psutil

MIB = 2**20
LIMIT_MIB = 1024.0


# --- measuring --------------------------------------------------------------------------------
def _read_hwm(pid: int) -> int | None:
    """Peak resident set size (bytes) since the last reset, from the kernel; None if unavailable."""
    try:
        with open(f"/proc/{pid}/status") as f:
            m = re.search(r"^VmHWM:\s+(\d+)\s+kB", f.read(), re.M)
        return int(m.group(1)) * 1024 if m else None
    except OSError:
        return None


def _reset_hwm(pid: int) -> bool:
    """Reset the kernel's peak-RSS counter of ``pid`` to its current RSS (Linux ≥ 4.0)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


@dataclass
class ProcPeak:
    name: str
    pid: int
    start: int = 0              # RSS at the start of the stage (bytes)
    sampled: int = 0            # max RSS seen by the polling thread
    hwm: int | None = None      # kernel high-water mark over the stage
    samples: int = 0
    died: bool = False
    cpu_user: float = float("nan")    # CPU seconds spent by the process during the stage
    cpu_sys: float = float("nan")

    @property
    def peak(self) -> int:
        """The stage's peak RSS: the kernel high-water mark where available, else the samples."""
        return max(self.sampled, self.hwm or 0)


class PeakRSS:
    """Peak RSS of a set of processes over a ``with`` block (kernel high-water mark + polling)."""

    def __init__(self, procs: dict[str, int], interval: float = 0.1):
        self.peaks = {name: ProcPeak(name, pid) for name, pid in procs.items()}
        self.interval = interval
        self._stop = threading.Event()
        self._procs = {}
        self._cpu0 = {}
        self._thread = threading.Thread(target=self._poll, name="peak-rss", daemon=True)
        self.hwm_available = True

    def __enter__(self) -> "PeakRSS":
        for p in self.peaks.values():
            self.hwm_available &= _reset_hwm(p.pid)
            try:
                proc = psutil.Process(p.pid)
                p.start = p.sampled = proc.memory_info().rss
                self._cpu0[p.name] = proc.cpu_times()
                self._procs[p.name] = proc
            except psutil.Error:
                p.died = True
        self._thread.start()
        return self

    def _sample(self):
        for name, proc in self._procs.items():
            p = self.peaks[name]
            if p.died:
                continue
            try:
                rss = proc.memory_info().rss
            except psutil.Error:
                p.died = True
                continue
            p.sampled = max(p.sampled, rss)
            p.samples += 1

    def _poll(self):
        while not self._stop.wait(self.interval):
            self._sample()

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()
        for name, p in self.peaks.items():
            if not p.died:
                proc = self._procs[name]
                p.died = not proc.is_running()
                with contextlib.suppress(psutil.Error):
                    cpu = proc.cpu_times()
                    p.cpu_user = cpu.user - self._cpu0[name].user
                    p.cpu_sys = cpu.system - self._cpu0[name].system
            p.hwm = _read_hwm(p.pid) if (self.hwm_available and not p.died) else None
        return False


# --- the run ----------------------------------------------------------------------------------
@dataclass
class Stage:
    name: str
    seconds: float = math.nan
    peaks: dict[str, ProcPeak] = field(default_factory=dict)
    error: str | None = None
    loadavg: tuple[float, float] | None = None   # 1-min load average at the start and the end

    def worker_cpu_use(self) -> float:
        """CPU seconds of the workers ÷ (wall seconds × workers): ~1 when they computed all along;
        well below 1 when they waited (I/O, scheduling, or other programs on the machine)."""
        ws = [p for p in self.peaks.values() if p.name.startswith("worker")]
        if not ws or not self.seconds > 0:
            return math.nan
        return sum(p.cpu_user + p.cpu_sys for p in ws) / (self.seconds * len(ws))


@dataclass
class BenchResult:
    grid: str
    shape: tuple[int, int]
    years: tuple[int, int]
    rh_model: str
    n_workers: int
    memory_limit: str
    limit_mib: float
    land_pixels: int
    cube_bytes: int             # full-resolution monthly tas cube, as stored (float32)
    input_chunks: dict
    input_chunk_bytes: int
    n_input_chunks: int
    output_chunks: dict | None = None
    library: str = ""           # which carbonsink ran (version and path)
    nep_valid: int | None = None
    stages: list[Stage] = field(default_factory=list)
    hwm_available: bool = True

    @property
    def nyears(self) -> int:
        return self.years[1] - self.years[0] + 1

    @property
    def nep_stage(self) -> Stage:
        return next(s for s in self.stages if s.name == "nep")

    def worker_failures(self, stage: Stage) -> list[str]:
        bad = []
        if stage.error:
            bad.append(f"stage failed: {stage.error}")
        for p in stage.peaks.values():
            if not p.name.startswith("worker"):
                continue
            if p.died:
                bad.append(f"{p.name} (pid {p.pid}) died during the stage")
            elif p.peak / MIB > self.limit_mib:
                bad.append(f"{p.name} peak {p.peak / MIB:.0f} MiB > {self.limit_mib:.0f} MiB")
        return bad

    @property
    def exit_code(self) -> int:
        return 1 if self.worker_failures(self.nep_stage) else 0


def _quiet_logs():
    for name in ("distributed", "distributed.worker", "distributed.scheduler", "distributed.nanny",
                 "distributed.core", "distributed.worker.memory", "bokeh", "tornado"):
        logging.getLogger(name).setLevel(logging.ERROR)


def run_benchmark(resolution: str = "0.05", years: tuple[int, int] = (2000, 2020), *,
                  workers: int = 2, rh_model: str = "soil_tps", store_dir: str | None = None,
                  chunk_mb: float = 32.0, memory_limit: str = "2GB",
                  limit_mib: float = LIMIT_MIB, interval: float = 0.1,
                  log=print) -> BenchResult:
    """Run both stages on a fresh LocalCluster and return the figures (nothing printed but progress
    lines through ``log``)."""
    import dask
    import numpy as np
    from distributed import Client, LocalCluster

    import carbonsink
    from carbonsink.config import RunConfig
    from carbonsink.io.store import Store
    from carbonsink.pipeline import make_compute, publish_inputs
    from carbonsink.products.nep import compute_nep
    from carbonsink.regions import china_mask
    from carbonsink.synthetic import make_inputs

    cfg = RunConfig(store=store_dir or "unused", grid=resolution, years=years, rh_model=rh_model,
                    chunk_mb=chunk_mb)
    grid = cfg.grid_obj()
    tmp = None
    if store_dir is None:
        tmp = tempfile.mkdtemp(prefix="carbonsink-bench-")
        store_dir = tmp
        cfg.store = tmp
    store = Store(store_dir)
    _quiet_logs()
    try:
        # worker logs (spawned processes inherit the dask config) at error level too
        with dask.config.set({"logging": {"distributed": "error", "bokeh": "error"}}), \
                LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                             memory_limit=memory_limit, host="127.0.0.1",
                             dashboard_address=None) as cluster, \
                Client(cluster, set_as_default=True) as client:
            client.wait_for_workers(workers, timeout=120)
            pids = client.run(os.getpid)  # worker address → pid
            procs = {f"worker-{i}": pid for i, (_, pid) in enumerate(sorted(pids.items()))}
            procs["client"] = os.getpid()
            log(f"cluster up: {workers} worker processes × 1 thread, memory_limit {memory_limit}; "
                f"pids {', '.join(f'{k}={v}' for k, v in procs.items())}; store {store.url}")

            # fixed, grid-independent client costs (cnmaps/geopandas import, province shapes)
            # are paid before the stages so the client's growth in a stage is about the grid
            china_mask("1")

            # ---- stage 1: synthetic inputs → validate → publish ----------------------------
            s1 = Stage("inputs")
            result = None
            load0 = os.getloadavg()[0]
            with PeakRSS(procs, interval) as m1:
                t0 = time.perf_counter()
                try:
                    inputs = make_inputs(grid, cfg.years, seed=cfg.seed, target_mb=cfg.chunk_mb)
                    tas = inputs["tas"]  # the lazy graph already knows sizes and chunks
                    result = BenchResult(
                        grid=grid.name, shape=grid.shape, years=tuple(cfg.years),
                        rh_model=rh_model, n_workers=workers, memory_limit=memory_limit,
                        limit_mib=limit_mib,
                        land_pixels=int(inputs["land_mask"].sum().compute()),
                        cube_bytes=int(tas.nbytes),
                        input_chunks=dict(zip(tas.dims, tas.data.chunksize)),
                        input_chunk_bytes=int(np.prod(tas.data.chunksize)) * tas.dtype.itemsize,
                        n_input_chunks=int(tas.data.npartitions), stages=[s1],
                        library=f"carbonsink {carbonsink.__version__} from "
                                f"{os.path.dirname(carbonsink.__file__)}")
                    publish_inputs(store, cfg, inputs)
                except Exception as e:  # noqa: BLE001 - a killed worker is a result, not a crash
                    s1.error = f"{type(e).__name__}: {e}"
                s1.seconds = time.perf_counter() - t0
            s1.peaks = m1.peaks
            s1.loadavg = (load0, os.getloadavg()[0])
            log(f"stage inputs: {s1.seconds:.1f} s" + (f" — FAILED {s1.error}" if s1.error else ""))
            if result is None:  # nothing to report on: the inputs could not even be described
                raise RuntimeError(f"building the synthetic inputs failed: {s1.error}")
            result.hwm_available = m1.hwm_available
            if s1.error:  # no inputs, no NEP: reported as a failed NEP stage (exit status 1)
                result.stages.append(Stage("nep", 0.0, {}, "not run: publishing the inputs failed"))
                return result

            # ---- stage 2: open the published inputs → compute_nep → publish -----------------
            s2 = Stage("nep")
            load0 = os.getloadavg()[0]
            with PeakRSS(procs, interval) as m2:
                t0 = time.perf_counter()
                try:
                    stored = store.open("inputs", "synthetic")
                    nep = compute_nep(stored, rh_model=rh_model)
                    out_chunks = grid.chunks(stored.sizes["time"], target_mb=cfg.chunk_mb)
                    nep = nep.chunk({"year": -1, **out_chunks})
                    result.output_chunks = dict(zip(nep["nep"].dims, nep["nep"].data.chunksize))
                    store.publish(nep, "products", "nep", compute=make_compute(False),
                                  record={"description": "benchmarks/bench_nep_memory.py"})
                except Exception as e:  # noqa: BLE001 - a killed worker is a result, not a crash
                    s2.error = f"{type(e).__name__}: {e}"
                s2.seconds = time.perf_counter() - t0
            s2.peaks = m2.peaks
            s2.loadavg = (load0, os.getloadavg()[0])
            result.stages.append(s2)
            log(f"stage nep: {s2.seconds:.1f} s" + (f" — FAILED {s2.error}" if s2.error else ""))

            # outside the measured stages: the product really holds a value on every land pixel
            if not s2.error:
                back = store.open("products", "nep")
                result.nep_valid = int(back["nep"].count().compute())
        return result
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


# --- the report -------------------------------------------------------------------------------
def format_report(r: BenchResult) -> str:
    y0, y1 = r.years
    cube_mib = r.cube_bytes / MIB
    lines = [
        f"carbonsink NEP memory benchmark — grid {r.grid} ({r.shape[0]}×{r.shape[1]} = "
        f"{r.shape[0] * r.shape[1]:,} cells, {r.land_pixels:,} land), years {y0}–{y1} "
        f"({r.nyears}), Rh model {r.rh_model}",
        f"cluster: distributed.LocalCluster, {r.n_workers} worker processes × 1 thread, "
        f"memory_limit {r.memory_limit} each, 127.0.0.1; {r.library}",
        "chunks: inputs tas/pr (" + ", ".join(f"{k}={v}" for k, v in r.input_chunks.items())
        + f") = {r.input_chunk_bytes / MIB:.1f} MiB float32, {r.n_input_chunks} spatial tiles; "
        + ("NEP (" + ", ".join(f"{k}={v}" for k, v in r.output_chunks.items()) + ")"
           if r.output_chunks else "NEP: not built"),
        f"reference (same run): full-resolution monthly cube tas ({r.nyears * 12}×{r.shape[0]}×"
        f"{r.shape[1]} float32) = {cube_mib:,.1f} MiB",
        "peak RSS = kernel high-water mark (VmHWM, reset per stage)"
        + ("" if r.hwm_available else " UNAVAILABLE here: polled RSS only")
        + " and max of RSS polled every 0.1 s; peak/cube = peak RSS ÷ tas cube; CPU = seconds "
        "of CPU the process used in the stage (CPU ≪ seconds × workers means a busy machine)",
        "",
    ]
    head = (f"{'stage':<7} {'seconds':>8} {'pixel·years/s':>14}  {'process':<9} {'pid':>7} "
            f"{'start MiB':>9} {'peak MiB':>9} {'polled MiB':>10} {'limit MiB':>9} "
            f"{'peak/cube':>9} {'CPU usr+sys s':>13}  result")
    lines += [head, "-" * len(head)]
    for s in r.stages:
        rate = r.land_pixels * r.nyears / s.seconds if s.seconds > 0 and not s.error else math.nan
        for k, p in enumerate(s.peaks.values()):
            worker = p.name.startswith("worker")
            growth = p.peak - p.start
            if p.died:
                status = "FAIL (died)"
            elif worker:
                status = "PASS" if p.peak / MIB <= r.limit_mib else "FAIL"
            elif r.cube_bytes < 64 * MIB:  # too small a grid to tell a gather from imports
                status = f"+{growth / MIB:.0f} MiB in stage"
            elif growth < r.cube_bytes:
                status = f"+{growth / MIB:.0f} MiB in stage = {growth / r.cube_bytes:.2f}× cube: no gather"
            else:
                status = f"+{growth / MIB:.0f} MiB in stage ≥ cube: GATHERED?"
            stage_cols = (f"{s.name:<7} {s.seconds:>8.1f} {rate:>14,.0f}" if k == 0
                          else f"{'':<7} {'':>8} {'':>14}")
            lines.append(
                f"{stage_cols}  {p.name:<9} {p.pid:>7} {p.start / MIB:>9.0f} {p.peak / MIB:>9.0f} "
                f"{p.sampled / MIB:>10.0f} {(f'{r.limit_mib:.0f}' if worker else '—'):>9} "
                f"{p.peak / r.cube_bytes:>9.2f} {f'{p.cpu_user:.1f}+{p.cpu_sys:.1f}':>13}  {status}")
        if s.error:
            lines.append(f"{'':<7} stage error: {s.error}")
    lines.append("")
    nep = r.nep_stage
    workers = [p for p in nep.peaks.values() if p.name.startswith("worker")]
    if workers and not nep.error:
        worst = max(workers, key=lambda p: p.peak)
        lines.append(
            f"NEP stage: max worker peak {worst.peak / MIB:.0f} MiB = "
            f"{worst.peak / MIB / r.limit_mib:.0%} of the {r.limit_mib:.0f} MiB limit, "
            f"{worst.peak / r.cube_bytes:.2f}× the tas cube, "
            f"{worst.peak / r.input_chunk_bytes:.1f}× one input chunk; "
            f"{r.land_pixels * r.nyears / nep.seconds:,.0f} land pixel·years/s")
    for s in r.stages:
        if s.loadavg and not math.isnan(s.worker_cpu_use()):
            lines.append(f"{s.name} stage: workers busy {s.worker_cpu_use():.0%} of wall time × "
                         f"workers; 1-min load average {s.loadavg[0]:.1f} → {s.loadavg[1]:.1f} on "
                         f"{os.cpu_count()} CPUs (timings are only comparable on an idle machine)")
    if r.nep_valid is not None:
        expect = r.land_pixels * r.nyears
        lines.append(f"check: published nep holds {r.nep_valid:,} values = land pixels × years "
                     f"{expect:,}" + ("" if r.nep_valid == expect else "  MISMATCH"))
    bad = r.worker_failures(nep)
    lines.append("RESULT: " + ("PASS — every worker stayed under "
                               f"{r.limit_mib:.0f} MiB while computing NEP" if not bad
                               else "FAIL — " + "; ".join(bad)))
    return "\n".join(lines)


def _years(text: str) -> tuple[int, int]:
    from carbonsink.config import parse_years

    return parse_years(text)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--resolution", default="0.05", help="grid preset [0.05]")
    ap.add_argument("--years", type=_years, default=(2000, 2020), help="year range [2000-2020]")
    ap.add_argument("--workers", type=int, default=2, help="worker processes [2]")
    ap.add_argument("--rh-model", default="soil_tps", help="Rh model [soil_tps]")
    ap.add_argument("--store", default=None,
                    help="store directory (kept); default a temporary directory, removed after")
    ap.add_argument("--chunk-mb", type=float, default=32.0, help="target chunk size, MB [32]")
    ap.add_argument("--memory-limit", default="2GB", help="dask memory_limit per worker [2GB]")
    ap.add_argument("--limit-mib", type=float, default=LIMIT_MIB,
                    help="per-worker peak RSS that passes, MiB [1024]")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    result = run_benchmark(args.resolution, args.years, workers=args.workers,
                           rh_model=args.rh_model, store_dir=args.store, chunk_mb=args.chunk_mb,
                           memory_limit=args.memory_limit, limit_mib=args.limit_mib)
    print()
    print(format_report(result), flush=True)
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
