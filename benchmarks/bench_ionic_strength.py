"""Memory and throughput of the random-forest ionic strength I on a real multi-process dask cluster
(issue: "Prediction of I at 0.05° × 21 years runs on the multi-process cluster without gathering the
full grid to one process (a benchmark prints peak worker memory and time)").

    python benchmarks/bench_ionic_strength.py [--resolution 0.05] [--years 2000-2020] [--workers 2]
                                              [--store DIR] [--chunk-mb 32] [--basins 40]

Four stages on a ``distributed.LocalCluster`` (processes, 1 thread per worker, memory_limit 2GB per
worker, 127.0.0.1 only, dashboard on 127.0.0.1:0), each timed and measured:

1. inputs     — synthetic China (``make_inputs``) and its river basins (``make_basins``), validated
                and published to a local store by ``carbonsink.pipeline.publish_inputs``, then
                reopened from the store (every later stage reads what was written, lazily);
2. predictors — ``carbonsink.ml.basin_predictors``: area-weighted basin-year means, reduced with
                flox on the cluster (only the year × basin sums come back);
3. train      — the synthetic river ion table from those predictors (``make_ion_table(...,
                predictors=...)``, no second reduction) and ``train_ionic_strength`` (10-fold CV, in
                the client process: a few hundred rows);
4. predict    — ``predict_ionic_strength`` (model scattered to every worker) for every pixel-year,
                written block by block to the store with ``Store.write_zarr``.

Memory is measured with the helpers of ``bench_nep_memory.py`` (kernel high-water mark VmHWM reset
per stage + RSS polled every 0.1 s, per worker PID and for the client process, which also hosts the
scheduler); see that file for why not ``client.run`` or ``MemorySampler``. The reference size is the
full (year, lat, lon) float32 I field: a process that gathered the grid would grow by at least that.

Exit status 0 (PASS) when every stage ran, no worker died or reached its memory_limit during
stages 2 and 4, the client's RSS growth during stage 4 stayed below ``--client-fraction`` (50 %) of
the full I field (judged only when the field is ≥ 32 MiB; on coarse grids allocator noise is larger
than the field), and the written product passed its checks (valid values = land pixels × years; one
tile equal to an in-process prediction). 1 otherwise.
"""
from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
from bench_nep_memory import MIB, PeakRSS, ProcPeak, Stage, _quiet_logs, _years  # noqa: E402

CLIENT_FRACTION = 0.5          # client growth in stage 4 must stay below this × full I field
MIN_FIELD_BYTES = 32 * MIB     # below this a gather cannot be told from allocator/import noise
CHECKED_STAGES = ("predictors", "predict")
STORE_REL = "products/ionic_strength_bench.zarr"


@dataclass
class IonicResult:
    grid: str
    shape: tuple[int, int]
    years: tuple[int, int]
    n_workers: int
    memory_limit: str
    limit_bytes: int
    land_pixels: int
    field_bytes: int                     # full (year, lat, lon) float32 I field
    client_fraction: float = CLIENT_FRACTION
    input_chunks: dict = field(default_factory=dict)
    input_bytes: int = 0                 # published inputs, uncompressed
    output_chunks: dict = field(default_factory=dict)
    library: str = ""
    load_start: tuple = ()
    load_end: tuple = ()
    stages: list[Stage] = field(default_factory=list)
    hwm_available: bool = True
    # figures
    n_basins: int = 0
    n_rows: int = 0
    cv_r2: float = math.nan
    cv_rmse: float = math.nan
    i_min: float = math.nan
    i_max: float = math.nan
    valid: int | None = None
    spot_check: str | None = None        # "tile lat a:b lon c:d equal" or a mismatch description
    spot_ok: bool | None = None

    @property
    def nyears(self) -> int:
        return self.years[1] - self.years[0] + 1

    @property
    def pixel_years(self) -> int:
        return self.land_pixels * self.nyears

    def stage(self, name: str) -> Stage | None:
        return next((s for s in self.stages if s.name == name), None)

    @property
    def client_judged(self) -> bool:
        return self.field_bytes >= MIN_FIELD_BYTES

    def failures(self) -> list[str]:
        bad = []
        for name in ("inputs", "predictors", "train", "predict"):
            s = self.stage(name)
            if s is None:
                bad.append(f"stage {name} did not run")
            elif s.error:
                bad.append(f"stage {name} failed: {s.error}")
        for name in CHECKED_STAGES:
            s = self.stage(name)
            for p in (s.peaks.values() if s else ()):
                if not p.name.startswith("worker"):
                    continue
                if p.died:
                    bad.append(f"{name}: {p.name} (pid {p.pid}) died")
                elif p.peak >= self.limit_bytes:
                    bad.append(f"{name}: {p.name} peak {p.peak / MIB:.0f} MiB ≥ limit "
                               f"{self.limit_bytes / MIB:.0f} MiB")
        s = self.stage("predict")
        client = s.peaks.get("client") if s else None
        if client is not None and self.client_judged:
            growth = client.peak - client.start
            if growth >= self.client_fraction * self.field_bytes:
                bad.append(f"predict: client grew {growth / MIB:.0f} MiB ≥ "
                           f"{self.client_fraction:.0%} of the {self.field_bytes / MIB:.0f} MiB "
                           "I field (gathered?)")
        if self.valid is not None and self.valid != self.pixel_years:
            bad.append(f"written I holds {self.valid:,} values, expected {self.pixel_years:,}")
        if self.spot_ok is False:
            bad.append(f"spot check: {self.spot_check}")
        return bad

    @property
    def exit_code(self) -> int:
        return 1 if self.failures() else 0


def _measured(result: "IonicResult", name: str, procs: dict, interval: float, fn,
              log) -> tuple[Stage, object]:
    """Run ``fn()`` as a timed, memory-measured stage appended to ``result``; errors are recorded,
    not raised."""
    stage, value = Stage(name), None
    with PeakRSS(procs, interval) as m:
        t0 = time.perf_counter()
        try:
            value = fn()
        except Exception as e:  # noqa: BLE001 - a killed worker is a result, not a crash
            stage.error = f"{type(e).__name__}: {e}"
        stage.seconds = time.perf_counter() - t0
    stage.peaks = m.peaks
    result.stages.append(stage)
    result.hwm_available &= m.hwm_available
    log(f"stage {name}: {stage.seconds:.1f} s"
        + (f" — FAILED {stage.error}" if stage.error else ""))
    return stage, value


def _spot_check(model, stored, written, grid, log) -> tuple[bool, str]:
    """One tile in the karst south-west predicted in this process (synchronous scheduler, model
    embedded) must equal what the cluster wrote."""
    import dask
    import numpy as np

    from carbonsink import ml

    i0 = int(np.argmin(np.abs(grid.lat - 25.5)))
    j0 = int(np.argmin(np.abs(grid.lon - 107.0)))
    n = min(32, grid.nlat, grid.nlon)
    i0, j0 = max(0, min(i0 - n // 2, grid.nlat - n)), max(0, min(j0 - n // 2, grid.nlon - n))
    win = {"lat": slice(i0, i0 + n), "lon": slice(j0, j0 + n)}
    with dask.config.set(scheduler="synchronous"):
        local = ml.predict_ionic_strength(model, stored.isel(win), client=None).values
        remote = written["ionic_strength"].isel(win).values
    where = f"tile lat[{i0}:{i0 + n}] lon[{j0}:{j0 + n}] ({np.isfinite(local).sum()} values)"
    same = np.array_equal(np.isnan(local), np.isnan(remote)) and np.allclose(
        local, remote, rtol=0, atol=0, equal_nan=True)
    if same:
        return True, f"{where}: cluster result equals the in-process prediction"
    diff = np.nanmax(np.abs(local - remote))
    return False, f"{where}: cluster result differs from the in-process prediction (max |Δ| {diff})"


def run_benchmark(resolution: str = "0.05", years: tuple[int, int] = (2000, 2020), *,
                  workers: int = 2, store_dir: str | None = None, chunk_mb: float = 32.0,
                  memory_limit: str = "2GB", n_basins: int = 40,
                  client_fraction: float = CLIENT_FRACTION, interval: float = 0.1,
                  log=print) -> IonicResult:
    """Run the four stages on a fresh LocalCluster and return the figures (progress via ``log``)."""
    import dask
    import numpy as np
    from dask.utils import parse_bytes
    from distributed import Client, LocalCluster

    import carbonsink
    from carbonsink import ml
    from carbonsink.config import RunConfig
    from carbonsink.io.store import Store
    from carbonsink.pipeline import make_compute, publish_inputs
    from carbonsink.regions import china_mask
    from carbonsink.synthetic import make_basins, make_inputs, make_ion_table

    cfg = RunConfig(store=store_dir or "unused", grid=resolution, years=years, chunk_mb=chunk_mb)
    grid = cfg.grid_obj()
    y0, y1 = cfg.years
    tmp = None
    if store_dir is None:
        tmp = tempfile.mkdtemp(prefix="carbonsink-bench-ionic-")
        store_dir = tmp
        cfg.store = tmp
    store = Store(store_dir)
    nyears = y1 - y0 + 1
    result = IonicResult(
        grid=grid.name, shape=grid.shape, years=(y0, y1), n_workers=workers,
        memory_limit=memory_limit, limit_bytes=int(parse_bytes(memory_limit)), land_pixels=0,
        field_bytes=nyears * grid.shape[0] * grid.shape[1] * 4, client_fraction=client_fraction,
        library=f"carbonsink {carbonsink.__version__} from {os.path.dirname(carbonsink.__file__)}",
        load_start=os.getloadavg())
    _quiet_logs()
    try:
        with dask.config.set({"logging": {"distributed": "error", "bokeh": "error"}}), \
                LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                             memory_limit=memory_limit, host="127.0.0.1",
                             dashboard_address="127.0.0.1:0") as cluster, \
                Client(cluster, set_as_default=True) as client:
            client.wait_for_workers(workers, timeout=120)
            pids = client.run(os.getpid)
            procs = {f"worker-{i}": pid for i, (_, pid) in enumerate(sorted(pids.items()))}
            procs["client"] = os.getpid()
            log(f"cluster up: {workers} worker processes × 1 thread, memory_limit {memory_limit}; "
                f"pids {', '.join(f'{k}={v}' for k, v in procs.items())}; store {store.url}")
            # grid-independent client costs (cnmaps/geopandas, province shapes) before any stage
            china_mask("1")
            result.land_pixels = int(np.asarray(china_mask(grid).values > 0).sum())

            # ---- 1: synthetic inputs + basins → validate → publish → reopen ------------------
            def inputs_stage():
                inputs = make_inputs(grid, cfg.years, seed=cfg.seed, target_mb=cfg.chunk_mb)
                basins = make_basins(grid, n_basins=n_basins, seed=cfg.seed)
                publish_inputs(store, cfg, inputs, basins=basins)
                stored = store.open("inputs", "synthetic")
                basins = store.open("inputs", "regions")["basin"].load()
                return inputs, stored, basins

            s1, out = _measured(result, "inputs", procs, interval, inputs_stage, log)
            if s1.error:
                return result
            inputs, stored, basins = out
            result.input_chunks = dict(zip(stored["tas"].dims, stored["tas"].data.chunksize))
            result.input_bytes = int(sum(v.nbytes for v in inputs.data_vars.values()))
            result.n_basins = int(len(basins.attrs.get("flag_values", [])) or n_basins)

            # ---- 2: basin-year predictors on the cluster ------------------------------------
            s2, predictors = _measured(result, "predictors", procs, interval,
                                       lambda: ml.basin_predictors(stored, basins), log)
            if s2.error:
                return result

            # ---- 3: ion table from those predictors → train (10-fold CV) --------------------
            def train_stage():
                table = make_ion_table(stored, basins, seed=cfg.seed, predictors=predictors)
                return ml.train_ionic_strength(table, predictors, seed=cfg.seed)

            s3, model = _measured(result, "train", procs, interval, train_stage, log)
            if s3.error:
                return result
            result.n_rows, result.cv_r2, result.cv_rmse = model.n_rows, model.cv_r2, model.cv_rmse

            # ---- 4: predict I for every pixel-year → write to the store ---------------------
            out_chunks = {"year": -1, **grid.chunks(stored.sizes["time"], target_mb=cfg.chunk_mb)}

            def predict_stage():
                ionic = ml.predict_ionic_strength(model, stored).chunk(out_chunks)
                result.output_chunks = dict(zip(ionic.dims, ionic.data.chunksize))
                store.write_zarr(ionic.to_dataset(), STORE_REL, compute=make_compute(False))

            s4, _ = _measured(result, "predict", procs, interval, predict_stage, log)
            result.load_end = os.getloadavg()
            if s4.error:
                return result

            # ---- checks, outside the measured stages (reductions on the cluster) ------------
            written = store.open_zarr(STORE_REL)
            i = written["ionic_strength"]
            valid, lo, hi = dask.compute(i.count(), i.min(), i.max())
            result.valid, result.i_min, result.i_max = int(valid), float(lo), float(hi)
            result.spot_ok, result.spot_check = _spot_check(model, stored, written, grid, log)
        return result
    finally:
        if not result.load_end:
            result.load_end = os.getloadavg()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


# --- the report -------------------------------------------------------------------------------
def _ratio(x: float) -> str:
    return f"{x:.2f}" if x < 100 else f"{x:,.0f}"


def _load(t) -> str:
    return " ".join(f"{x:.2f}" for x in t) if t else "?"


def format_report(r: IonicResult) -> str:
    y0, y1 = r.years
    field_mib = r.field_bytes / MIB
    limit_mib = r.limit_bytes / MIB
    lines = [
        f"carbonsink ionic-strength (random forest) benchmark — grid {r.grid} ({r.shape[0]}×"
        f"{r.shape[1]} = {r.shape[0] * r.shape[1]:,} cells, {r.land_pixels:,} land), years "
        f"{y0}–{y1} ({r.nyears}), {r.n_basins} basins",
        f"cluster: distributed.LocalCluster, {r.n_workers} worker processes × 1 thread, "
        f"memory_limit {r.memory_limit} ({limit_mib:.0f} MiB) each, 127.0.0.1; {r.library}",
        f"machine: {os.cpu_count()} CPUs, load average (1/5/15 min) {_load(r.load_start)} at "
        f"start, {_load(r.load_end)} after stage 4",
        "chunks: inputs tas/pr (" + ", ".join(f"{k}={v}" for k, v in r.input_chunks.items())
        + "); I written as (" + ", ".join(f"{k}={v}" for k, v in r.output_chunks.items()) + ")"
        + f"; inputs published {r.input_bytes / MIB:,.0f} MiB uncompressed",
        f"reference (same run): full I field ({r.nyears}×{r.shape[0]}×{r.shape[1]} float32) = "
        f"{field_mib:,.1f} MiB",
        "peak RSS = max of kernel high-water mark (VmHWM, reset per stage)"
        + ("" if r.hwm_available else " [UNAVAILABLE here: polled RSS only]")
        + " and RSS polled every 0.1 s; peak/field = peak RSS ÷ full I field; growth = peak − "
        "start; CPU = CPU seconds used in the stage (≪ seconds × workers means a busy machine)",
        "",
    ]
    head = (f"{'stage':<10} {'seconds':>8} {'land px·yr/s':>13}  {'process':<9} {'pid':>7} "
            f"{'start MiB':>9} {'peak MiB':>9} {'polled MiB':>10} {'growth MiB':>10} "
            f"{'peak/field':>10} {'CPU usr+sys s':>13}  result")
    lines += [head, "-" * len(head)]
    for s in r.stages:
        rate = (r.pixel_years / s.seconds if s.name in ("predictors", "predict") and s.seconds > 0
                and not s.error else math.nan)
        checked = s.name in CHECKED_STAGES
        for k, p in enumerate(s.peaks.values()):
            worker = p.name.startswith("worker")
            growth = p.peak - p.start
            if p.died:
                status = "FAIL (died)" if checked else "died"
            elif worker:
                status = (("PASS" if p.peak < r.limit_bytes else "FAIL") + f" (< {limit_mib:.0f})"
                          if checked else "")
            elif s.name != "predict":
                status = ""
            elif not r.client_judged:
                status = (f"+{growth / MIB:.0f} MiB; field < {MIN_FIELD_BYTES / MIB:.0f} MiB: "
                          "too small to tell a gather")
            elif growth < r.client_fraction * r.field_bytes:
                status = (f"PASS +{growth / MIB:.0f} MiB = {growth / r.field_bytes:.2f}× field "
                          f"< {r.client_fraction:.2f}: no gather")
            else:
                status = (f"FAIL +{growth / MIB:.0f} MiB = {growth / r.field_bytes:.2f}× field: "
                          "gathered?")
            rate_s = f"{rate:>13,.0f}" if not math.isnan(rate) else f"{'—':>13}"
            cols = (f"{s.name:<10} {s.seconds:>8.1f} {rate_s}" if k == 0
                    else f"{'':<10} {'':>8} {'':>13}")
            lines.append(
                f"{cols}  {p.name:<9} {p.pid:>7} {p.start / MIB:>9.0f} {p.peak / MIB:>9.0f} "
                f"{p.sampled / MIB:>10.0f} {growth / MIB:>+10.0f} "
                f"{_ratio(p.peak / r.field_bytes):>10} "
                f"{f'{p.cpu_user:.1f}+{p.cpu_sys:.1f}':>13}  {status}".rstrip())
        if s.error:
            lines.append(f"{'':<10} stage error: {s.error}")
    lines.append("")

    total = sum(s.seconds for s in r.stages if not math.isnan(s.seconds))
    s1 = r.stage("inputs")
    ml_s = sum(s.seconds for s in r.stages if s.name != "inputs" and not math.isnan(s.seconds))
    if s1 is not None and total > 0:
        lines.append(
            f"time: {total:.1f} s in all; stage inputs (synthetic generation + validation + "
            f"publish) {s1.seconds:.1f} s = {s1.seconds / total:.0%}"
            + (" — synthetic input generation dominates the run" if s1.seconds > ml_s else "")
            + f"; ionic-strength stages 2–4 {ml_s:.1f} s")
    if not math.isnan(r.cv_r2):
        lines.append(f"model: random forest on {r.n_rows} basin-years, 10-fold CV R² "
                     f"{r.cv_r2:.3f}, RMSE {r.cv_rmse:.2e} mol L-1")
    s4 = r.stage("predict")
    if s4 is not None and not s4.error:
        workers = [p for p in s4.peaks.values() if p.name.startswith("worker")]
        if workers:
            worst = max(workers, key=lambda p: p.peak)
            lines.append(
                f"predict: {r.pixel_years:,} land pixel·years "
                f"({r.nyears * r.shape[0] * r.shape[1]:,} cells·years written) in "
                f"{s4.seconds:.1f} s = {r.pixel_years / s4.seconds:,.0f} land pixel·years/s; "
                f"max worker peak {worst.peak / MIB:.0f} MiB = "
                f"{worst.peak / r.limit_bytes:.0%} of memory_limit, "
                f"{_ratio(worst.peak / r.field_bytes)}× the full I field")
    if r.valid is not None:
        lines.append(f"check: written I holds {r.valid:,} values = land pixels × years "
                     f"{r.pixel_years:,}" + ("" if r.valid == r.pixel_years else "  MISMATCH")
                     + f"; I from {r.i_min:.2e} to {r.i_max:.2e} mol L-1")
    if r.spot_check is not None:
        lines.append(f"check: {r.spot_check}")
    bad = r.failures()
    lines.append("RESULT: " + (
        f"PASS — no worker reached its {r.memory_limit} limit in stages 2 and 4; "
        + ("the client did not gather the I field" if r.client_judged
           else "client growth not judged (I field too small)") if not bad
        else "FAIL — " + "; ".join(bad)))
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--resolution", default="0.05", help="grid preset [0.05]")
    ap.add_argument("--years", type=_years, default=(2000, 2020), help="year range [2000-2020]")
    ap.add_argument("--workers", type=int, default=2, help="worker processes [2]")
    ap.add_argument("--store", default=None,
                    help="store directory (kept); default a temporary directory, removed after")
    ap.add_argument("--chunk-mb", type=float, default=32.0, help="target chunk size, MB [32]")
    ap.add_argument("--memory-limit", default="2GB", help="dask memory_limit per worker [2GB]")
    ap.add_argument("--basins", type=int, default=40, help="synthetic river basins [40]")
    ap.add_argument("--client-fraction", type=float, default=CLIENT_FRACTION,
                    help="client RSS growth in stage 4 that fails, as a fraction of the full I "
                         "field [0.5]")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    result = run_benchmark(args.resolution, args.years, workers=args.workers,
                           store_dir=args.store, chunk_mb=args.chunk_mb,
                           memory_limit=args.memory_limit, n_basins=args.basins,
                           client_fraction=args.client_fraction)
    print()
    print(format_report(result), flush=True)
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
