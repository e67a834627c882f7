"""Throughput of the trend and attribution products against generic alternatives, on one dask
array in one run (issue: "trend kernel vs xarray.polyfit and vs
xr.apply_ufunc(scipy.stats.linregress, vectorize=True) on the same dask array in one run; prints
pixels·years/s and the ratios; attribution throughput likewise". Target: ≥ 100× faster than
apply_ufunc(linregress) and ≥ 3× faster than xarray.polyfit at 0.05° × 21 years; worker memory
stays bounded by chunk size).

    python benchmarks/bench_trends.py [--resolution 0.05] [--years 2000-2020] [--workers 2]
                                      [--linregress-fraction 0.02] [--attribution-fraction 0.02]
                                      [--chunk-mb 32] [--numba-threads N] [--repeat 3]
                                      [--gate both|product|kernel] [--no-thresholds]

Setup on a ``distributed.LocalCluster`` (processes, 1 thread per worker, memory_limit 2GB,
127.0.0.1): ONE (year, lat, lon) float32 dask array ``y`` — the synthetic NPP of
``carbonsink.synthetic.make_inputs`` — and the annual drivers pr/tas/rsds of
``carbonsink.products.climate.annual_drivers`` are persisted on the workers first (chunks as the
pipeline makes them: the whole year axis, square spatial tiles), so every method below times
computation only, never data generation. Imports and numba loading are paid on every worker before
any timing (``client.run``). Numba's default is one thread per core in every worker's task
thread (``--numba-threads`` sets it); the carbonsink rows run their numba kernels with one thread
per dask task whatever it is (2 workers × 2 numba threads would oversubscribe 2 cores), so the
setting only changes what the report says.

Trend methods, all on ``y`` (same chunks):
  carbonsink compute_trends     the product (robust=True, its default): OLS slope/intercept/p, Sen,
                                Mann–Kendall Z/p, CV, n_valid and change classes, all 9 outputs;
  carbonsink ols_trend kernel   ``carbonsink.kernels.trend.ols_trend`` alone, wrapped as the
                                product wraps its kernel (``carbonsink.products.trends.per_pixel``:
                                blocks of whole chunks, one numba thread per dask task): slope,
                                intercept and p only, i.e. what linregress and polyfit give;
  xarray polyfit                ``y.polyfit("year", deg=1)`` as written (skipna defaults to True on
                                dask: a per-pixel NaN-aware lstsq, ``da.apply_along_axis``);
  xarray polyfit skipna=False   the vectorised ``dask.array.linalg.lstsq`` path; it rejects NaN, so
                                it runs on ``y.fillna(0)`` and pixels with any missing year are
                                masked after — the usual workaround; for reference, not a gate;
  scipy linregress              ``xr.apply_ufunc(linregress per pixel, vectorize=True)`` on a SUBSET
                                of whole chunks (``--linregress-fraction`` of them, the window whose
                                land fraction is nearest the whole grid's), split into ≥ 4 tasks per
                                worker; its whole-grid time is extrapolated from its land
                                pixel·years/s.
Attribution: ``compute_attribution(y, {pr, tas, rsds})`` (all 24 outputs) against a per-pixel
``np.linalg.lstsq`` loop (detrend all four series, multiple regression, t-values → partial
correlations, contributions) through ``apply_ufunc(vectorize=True)`` on a subset, extrapolated
likewise.

Each method is timed from building its graph to ``wait(client.persist(result))`` (results stay on
the workers; nothing is gathered), best of ``--repeat`` runs (the host's load average is printed:
other processes on a shared machine slow every row, and a carbonsink row of a few tenths of a
second more, relatively, than a reference row of seconds; three runs by default). Its values on the subset are pulled afterwards
(small) to check agreement: slopes (and p-values) of every trend method against linregress;
sensitivities, partial correlations and the human contribution of the attribution against the
lstsq loop; all to 1e-4 relative.

Rates are land pixel·years per second (pixels with any data × years ÷ seconds), as in
bench_nep_memory.py. Peak worker RSS per method is measured as in bench_nep_memory.py: the kernel's
high-water mark (VmHWM, reset per method through /proc/<pid>/clear_refs) and psutil polling by PID
every 0.1 s from the client; Δpeak is the growth over the method (the persisted inputs are resident
before it starts). It includes the method's persisted outputs (their size ÷ workers is printed);
what is left, the working set, is compared with the size of one input chunk.

Exit status: 0 if every method ran, every agreement check passes and (unless ``--no-thresholds``)
the targets hold — ≥ 100× apply_ufunc(linregress) and ≥ 3× xarray.polyfit (default, NaN-aware) —
for the carbonsink rows chosen by ``--gate``: ``both`` (default), ``product`` (the full
compute_trends, which also computes Sen's slope, Mann–Kendall, CV and classes that neither
reference does) or ``kernel`` (the ols_trend kernel, like for like with linregress/polyfit); 1
otherwise. A table of the ratios of both rows against both references comes before the verdicts;
the ratios of a row not gated are printed as "info".
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field

from pathlib import Path

import numpy as np

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
# one way to measure memory in every benchmark: kernel high-water mark (VmHWM) + polling by PID
from bench_nep_memory import MIB, PeakRSS, ProcPeak, _years  # noqa: E402

RTOL = 1e-4
MIN_X_LINREGRESS = 100.0
MIN_X_POLYFIT = 3.0


# --- per-pixel references and the minimal OLS wrapper (module level: shipped to workers) ------
def _ols_kernel(y, x, threads=None):
    """carbonsink's OLS kernel alone on a time-first block, as the product wraps its kernel
    (``per_pixel``, with numba's threads for the task): (slope, intercept, p) float32."""
    from carbonsink.kernels.trend import ols_trend
    from carbonsink.products.trends import _numba_threads as task_numba_threads

    with task_numba_threads(threads):
        out = ols_trend(y, x=x)
    return tuple(np.asarray(a, dtype="f4") for a in out)


def _linregress_pixel(v, x):
    """scipy.stats.linregress on one pixel's valid years (NaN-aware, ≥ 3 valid as carbonsink)."""
    from scipy.stats import linregress

    ok = np.isfinite(v)
    if ok.sum() < 3:
        return np.nan, np.nan, np.nan
    r = linregress(x[ok], v[ok])
    return r.slope, r.intercept, r.pvalue


def _attribution_pixel(yv, pr, tas, rsds, x, min_valid):
    """One pixel of SCIENCE.md §6 by plain least squares: detrend Y and the drivers (lstsq on
    [1, t]), regress detrended Y on the detrended drivers (lstsq), β's t-values → partial
    correlations r = t/√(t² + df), contributions Cᵢ = βᵢ·dXᵢ/dt, human C_HA = dY/dt − ΣCᵢ.
    Returns β_pr, β_tas, β_rsds, r_pr, r_tas, r_rsds, C_HA."""
    nan7 = (np.nan,) * 7
    Z = np.column_stack([yv, pr, tas, rsds]).astype("f8")
    ok = np.isfinite(Z).all(axis=1)
    n = int(ok.sum())
    if n < min_valid:
        return nan7
    Z = Z[ok]
    A = np.column_stack([np.ones(n), x[ok]])
    trend, *_ = np.linalg.lstsq(A, Z, rcond=None)
    E = Z - A @ trend
    D = np.column_stack([np.ones(n), E[:, 1:]])
    b, *_ = np.linalg.lstsq(D, E[:, 0], rcond=None)
    resid = E[:, 0] - D @ b
    df = n - 4
    sigma2 = resid @ resid / df
    try:
        se = np.sqrt(sigma2 * np.diag(np.linalg.inv(D.T @ D)))[1:]
    except np.linalg.LinAlgError:
        return nan7
    with np.errstate(divide="ignore", invalid="ignore"):
        t = b[1:] / se
        r = t / np.sqrt(t * t + df)
    C = b[1:] * trend[1, 1:]
    return (*b[1:], *r, trend[1, 0] - C.sum())


def _warm_worker():
    """Pay imports and numba (cache) loading on a worker before anything is timed."""
    import numba
    import scipy.stats  # noqa: F401
    import xarray as xr
    from xarray.core import nputils

    from carbonsink.products.attribution import compute_attribution
    from carbonsink.products.trends import compute_trends

    rng = np.random.default_rng(0)
    x = np.arange(2000, 2021, dtype="f8")
    y = rng.normal(size=(21, 40, 40)).astype("f4")
    y[:, 0, :] = np.nan
    # the products on numpy data run the very kernels (and numba specialisations) of the timings
    da = xr.DataArray(y, dims=("year", "lat", "lon"), coords={"year": x})
    compute_trends(da)
    compute_attribution(da, {n: da.copy(data=rng.normal(size=y.shape).astype("f4"))
                             for n in ("pr", "tas", "rsds")})
    _ols_kernel(y, x)
    _linregress_pixel(y[:, 1, 1], x)
    _attribution_pixel(y[:, 1, 1], y[:, 1, 2], y[:, 1, 3], y[:, 1, 4], x, 6)
    nputils._nanpolyfit_1d(y[:, 1, 1].astype("f8"), np.vander(x, 2))
    try:
        return numba.threading_layer()
    except ValueError:
        return "?"


def _numba_threads(n=None):
    """Set (if n is given) and report numba's thread count in the CALLING thread, with its id.

    numba.set_num_threads is thread-local: called through ``client.run`` it changes the worker's
    event-loop thread and not the thread that runs tasks, so it must be submitted as a task."""
    import threading

    import numba

    if n is not None:
        numba.set_num_threads(int(n))
    return numba.get_num_threads(), threading.get_ident()


# --- results -------------------------------------------------------------------------------
@dataclass
class Method:
    key: str
    group: str                   # "trends" or "attribution"
    label: str
    outputs: str
    pixels: int = 0              # land pixels in the array it ran on
    cells: int = 0               # grid cells in the array it ran on
    seconds: float = math.nan    # measured: best of the runs
    subset: bool = False         # measured on the subset, whole-grid time extrapolated
    runs: list[float] = field(default_factory=list)
    out_bytes: int = 0           # size of the persisted outputs (all workers)
    peaks: dict[str, ProcPeak] = field(default_factory=dict)
    error: str | None = None

    def rate(self, nyears: int) -> float:
        if self.error or not self.seconds > 0:
            return math.nan
        return self.pixels * nyears / self.seconds

    def full_seconds(self, land_pixels: int, nyears: int) -> float:
        """Seconds for the whole grid: measured, or extrapolated from the subset's rate."""
        r = self.rate(nyears)
        return land_pixels * nyears / r if r > 0 else math.nan

    def peak_worker(self) -> ProcPeak | None:
        w = [p for p in self.peaks.values()]
        return max(w, key=lambda p: p.peak) if w else None

    def max_growth(self) -> int:
        return max((p.peak - p.start for p in self.peaks.values()), default=0)

    def working_set(self, n_workers: int) -> int:
        """Δpeak less this worker's share of the persisted outputs (an even split)."""
        return max(0, self.max_growth() - self.out_bytes // max(n_workers, 1))


@dataclass
class Check:
    name: str
    max_rel: float
    n: int
    nan_mismatch: int
    tol: float = RTOL
    all_nan_expected: bool = False   # too few years for the statistic: both must be all NaN

    @property
    def ok(self) -> bool:
        if self.all_nan_expected:
            return self.n == 0 and self.nan_mismatch == 0
        return self.n > 0 and self.nan_mismatch == 0 and self.max_rel <= self.tol


@dataclass
class BenchResult:
    grid: str
    shape: tuple[int, int]
    years: tuple[int, int]
    n_workers: int
    memory_limit: str
    land_pixels: int
    chunks: dict
    chunk_bytes: int
    n_chunks: int
    array_bytes: int
    subsets: dict = field(default_factory=dict)   # name → description
    numba: str = ""
    library: str = ""
    setup_seconds: float = math.nan
    methods: list[Method] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    thresholds: bool = True
    gate: str = "both"           # which carbonsink rows the targets apply to: both/product/kernel
    repeat: int = 1
    load: tuple | None = None    # host load averages (1, 5, 15 min) at the start and end of timing
    hwm_available: bool = True

    @property
    def nyears(self) -> int:
        return self.years[1] - self.years[0] + 1

    def method(self, key: str) -> Method:
        return next(m for m in self.methods if m.key == key)

    def ratio(self, fast: str, slow: str) -> float:
        """How many times faster ``fast`` is than ``slow`` (ratio of land pixel·years/s)."""
        a, b = self.method(fast).rate(self.nyears), self.method(slow).rate(self.nyears)
        return a / b if a > 0 and b > 0 else math.nan

    def gates(self) -> list[tuple[str, float, float, bool]]:
        """(description, ratio, required, gated) for the issue's two targets."""
        out = []
        for ref, need in (("linregress", MIN_X_LINREGRESS), ("polyfit", MIN_X_POLYFIT)):
            for cs, which in (("cs_ols", "kernel"), ("cs_trends", "product")):
                gated = self.gate in (which, "both")
                out.append((f"{self.method(cs).label} vs {self.method(ref).label}",
                            self.ratio(cs, ref), need, gated))
        return out

    def failures(self) -> list[str]:
        bad = [f"{m.label}: {m.error}" for m in self.methods if m.error]
        bad += [f"{m.label}: a worker died" for m in self.methods
                if any(p.died for p in m.peaks.values())]
        bad += [f"check {c.name}: max rel {c.max_rel:.2e}, {c.nan_mismatch} NaN mismatches"
                for c in self.checks if not c.ok]
        if not self.checks:
            bad.append("no agreement checks ran")
        if self.thresholds:
            bad += [f"{name}: {x:.1f}× < {need:g}×" for name, x, need, gated in self.gates()
                    if gated and not x >= need]
        return bad

    @property
    def exit_code(self) -> int:
        return 1 if self.failures() else 0


# --- helpers -------------------------------------------------------------------------------
def _quiet_logs():
    for name in ("distributed", "distributed.worker", "distributed.scheduler", "distributed.nanny",
                 "distributed.core", "distributed.worker.memory", "distributed.shuffle", "bokeh",
                 "tornado"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _bounds(chunks):
    return np.concatenate([[0], np.cumsum(chunks)]).astype(int)


def choose_window(land: np.ndarray, chunks: tuple[tuple[int, ...], tuple[int, ...]],
                  fraction: float) -> tuple[slice, slice, int]:
    """A window of whole chunks, ``round(fraction · n_chunks)`` (≥ 1) of them side by side in one
    chunk row (or whole rows when more are asked for than a row holds), whose land fraction is
    nearest that of the whole grid (first such window on ties).
    Returns (lat slice, lon slice, number of chunks)."""
    rb, cb = _bounds(chunks[0]), _bounds(chunks[1])
    nr, nc = len(chunks[0]), len(chunks[1])
    want = max(1, min(nr * nc, int(round(fraction * nr * nc))))
    target = land.mean()
    best = None
    if want >= nc:    # whole chunk rows
        rows = max(1, int(round(want / nc)))
        cands = [(slice(rb[r], rb[r + rows]), slice(0, cb[-1]), rows * nc)
                 for r in range(nr - rows + 1)]
    else:
        cands = [(slice(rb[r], rb[r + 1]), slice(cb[c], cb[c + want]), want)
                 for r in range(nr) for c in range(nc - want + 1)]
    for s in cands:
        lf = land[s[0], s[1]].mean()
        if lf == 0:
            continue
        score = abs(lf - target)
        if best is None or score < best[0]:
            best = (score, s)
    if best is None:
        raise RuntimeError("no chunk window with land found")
    return best[1]


def _compare(name: str, a, ref, *, floor: float | None = None, tol: float = RTOL) -> Check:
    """Max relative difference of ``a`` to ``ref`` where both are finite, and the count of pixels
    finite in one but not the other. The denominator is max(|ref|, floor); floor defaults to
    1e-6·max|ref| so a slope that is 0 in one method and 1e-17 in another does not count."""
    a = np.asarray(a, dtype="f8").ravel()
    ref = np.asarray(ref, dtype="f8").ravel()
    fa, fr = np.isfinite(a), np.isfinite(ref)
    both = fa & fr
    mismatch = int((fa != fr).sum())
    if not both.any():
        return Check(name, math.inf, 0, mismatch, tol)
    if floor is None:
        floor = 1e-6 * float(np.abs(ref[both]).max())
    den = np.maximum(np.abs(ref[both]), max(floor, np.finfo("f8").tiny))
    rel = float((np.abs(a[both] - ref[both]) / den).max())
    return Check(name, rel, int(both.sum()), mismatch, tol)


# --- the run -------------------------------------------------------------------------------
def run_benchmark(resolution: str = "0.05", years: tuple[int, int] = (2000, 2020), *,
                  workers: int = 2, linregress_fraction: float = 0.02,
                  attribution_fraction: float = 0.02, chunk_mb: float = 32.0,
                  memory_limit: str = "2GB", numba_threads: int | None = None,
                  thresholds: bool = True, gate: str = "both", repeat: int = 3,
                  polyfit_skipna_false: bool = True,
                  interval: float = 0.1, log=print) -> BenchResult:
    """Set up the cluster and the persisted inputs, time every method, check agreement; returns the
    figures (only progress lines go through ``log``)."""
    import dask
    import xarray as xr
    from distributed import Client, LocalCluster, futures_of, wait

    import carbonsink
    from carbonsink.grid import get_grid
    from carbonsink.products.attribution import compute_attribution
    from carbonsink.products.climate import annual_drivers
    from carbonsink.products.trends import compute_trends, per_pixel
    from carbonsink.synthetic import make_inputs

    grid = get_grid(resolution)
    y0, y1 = years
    nyears = y1 - y0 + 1
    x = np.arange(y0, y1 + 1, dtype="f8")
    _quiet_logs()
    with dask.config.set({"logging": {"distributed": "error", "bokeh": "error"}}), \
            LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                         memory_limit=memory_limit, host="127.0.0.1",
                         dashboard_address="127.0.0.1:0") as cluster, \
            Client(cluster, set_as_default=True) as client:
        client.wait_for_workers(workers, timeout=120)
        if __name__ != "__main__":
            # imported (e.g. by the tests, from its path): the functions below are pickled by
            # reference to this module, so the workers need to be able to import it too
            client.upload_file(os.path.abspath(__file__), load=True)
        pids = client.run(os.getpid)
        procs = {f"worker-{i}": pid for i, (_, pid) in enumerate(sorted(pids.items()))}
        layers = sorted(set(client.run(_warm_worker).values()))

        def task_threads(n=None) -> int:
            """numba threads of the task thread of every worker, set to n first if given; the
            setting holds for later tasks because each worker has one task thread, which is
            checked (same thread, same count) before returning the count."""
            got = {}
            for addr in sorted(pids):
                got[addr] = client.submit(_numba_threads, n, workers=[addr], pure=False,
                                          allow_other_workers=False).result()
            for addr in sorted(pids):
                again = client.submit(_numba_threads, workers=[addr], pure=False,
                                      allow_other_workers=False).result()
                if again != got[addr]:
                    raise RuntimeError(f"numba threads of {addr}'s task thread did not hold: "
                                       f"{got[addr]} then {again}")
            counts = {c for c, _ in got.values()}
            if len(counts) != 1 or (n is not None and counts != {n}):
                raise RuntimeError(f"numba threads per worker task thread: {got}")
            return counts.pop()

        default_threads = task_threads(numba_threads)
        log(f"cluster up: {workers} worker processes × 1 thread, memory_limit {memory_limit}; "
            f"numba {default_threads} thread(s) per task thread, layer {', '.join(layers)}")

        # ---- inputs, persisted before anything is timed ----------------------------------------
        t0 = time.perf_counter()
        inputs = make_inputs(grid, (y0, y1), target_mb=chunk_mb)
        drv = annual_drivers(inputs)
        y = inputs["npp"]
        drivers = {n: drv[n].transpose("year", "lat", "lon").chunk(
            dict(zip(y.dims, y.data.chunks))) for n in ("pr", "tas", "rsds")}
        y, *dvals = client.persist([y, *drivers.values()])
        drivers = dict(zip(drivers, dvals))
        wait(futures_of([y, *dvals]))
        land = np.asarray(y.notnull().any("year").compute())
        setup = time.perf_counter() - t0
        land_pixels = int(land.sum())
        log(f"inputs persisted in {setup:.1f} s: npp {dict(y.sizes)} chunks "
            f"{dict(zip(y.dims, y.data.chunksize))}, {land_pixels:,} land pixels")

        result = BenchResult(
            grid=grid.name, shape=grid.shape, years=(y0, y1), n_workers=workers,
            memory_limit=memory_limit, land_pixels=land_pixels,
            chunks=dict(zip(y.dims, y.data.chunksize)),
            chunk_bytes=int(np.prod(y.data.chunksize)) * y.dtype.itemsize,
            n_chunks=int(y.data.npartitions), array_bytes=int(y.nbytes),
            numba=f"{default_threads} thread(s) in each task thread, layer {', '.join(layers)}"
                  + (" (--numba-threads)" if numba_threads is not None else " (numba's default)")
                  + "; carbonsink's per_pixel runs 1 per dask task",
            library=f"carbonsink {carbonsink.__version__} from "
                    f"{os.path.dirname(carbonsink.__file__)}; xarray {xr.__version__}, "
                    f"dask {dask.__version__}",
            setup_seconds=setup, thresholds=thresholds, gate=gate, repeat=repeat)
        load0 = os.getloadavg()

        # ---- subsets: whole chunks, split into ≥ 4 tasks per worker, persisted untimed ---------
        spatial_chunks = y.data.chunks[1:]

        def subset(fraction, name):
            la, lo, n = choose_window(land, spatial_chunks, fraction)
            sub_land = int(land[la, lo].sum())
            cells = (la.stop - la.start) * (lo.stop - lo.start)
            result.subsets[name] = (
                f"{n} whole chunk(s) lat[{la.start}:{la.stop}] lon[{lo.start}:{lo.stop}] = "
                f"{cells:,} cells ({cells / land.size:.1%} of the grid), land fraction "
                f"{sub_land / cells:.2f} (grid {land.mean():.2f})")
            return la, lo, sub_land, cells

        def split(da_, la, lo):
            sub = da_.isel(lat=la, lon=lo)
            step = max(1, math.ceil((la.stop - la.start) / (4 * workers)))
            return sub.chunk({"year": -1, "lat": step, "lon": -1})

        lr_lat, lr_lon, lr_land, lr_cells = subset(linregress_fraction, "linregress")
        at_lat, at_lon, at_land, at_cells = subset(attribution_fraction, "attribution")
        y_lr = split(y, lr_lat, lr_lon)
        y_at = split(y, at_lat, at_lon)
        d_at = {n: split(v, at_lat, at_lon) for n, v in drivers.items()}
        y_lr, y_at, *d_vals = client.persist([y_lr, y_at, *d_at.values()])
        d_at = dict(zip(d_at, d_vals))
        wait(futures_of([y_lr, y_at, *d_vals]))

        # ---- the timed methods -----------------------------------------------------------------
        keep: dict[str, dict[str, np.ndarray]] = {}

        def timed(m: Method, build, pick):
            """Time build() + persist + wait, ``repeat`` times (best time, worst memory); then
            pull pick(persisted) of the last run (a dict of small arrays) for the checks."""
            obj, keys = None, set()
            for _ in range(max(1, repeat)):
                # the same graph has the same keys: release the previous run's results and wait
                # until the scheduler has forgotten them, or the next run would just reuse them
                obj = futs = None
                deadline = time.monotonic() + 10
                while keys & cluster.scheduler.tasks.keys():
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{m.label}: results of the previous run still held")
                    time.sleep(0.02)
                with PeakRSS(procs, interval) as mem:
                    t0 = time.perf_counter()
                    try:
                        obj = client.persist(build())
                        m.out_bytes = int(obj.nbytes)
                        futs = futures_of(obj)
                        keys = {f.key for f in futs}
                        wait(futs)
                        # wait() does not raise for a failed task (and no loop variable may keep
                        # a future alive: its key would never be released)
                        failed = [f.exception() for f in futs if f.status == "error"]
                        if failed:
                            raise failed[0]
                    except Exception as e:  # noqa: BLE001 - reported in the table
                        m.error = f"{type(e).__name__}: {e}"
                        obj = None
                    m.runs.append(time.perf_counter() - t0)
                result.hwm_available &= mem.hwm_available
                growth = max((p.peak - p.start for p in mem.peaks.values()), default=0)
                if not m.peaks or growth > m.max_growth():
                    m.peaks = mem.peaks
                if m.error:
                    break
            m.seconds = min(m.runs)
            result.methods.append(m)
            rate = m.rate(nyears)
            log(f"{m.label}: " + ", ".join(f"{t:.2f}" for t in m.runs) + " s"
                + (" (subset)" if m.subset else "")
                + (f", best {rate:,.0f} land px·yr/s" if rate > 0 else "")
                + (f" — FAILED {m.error}" if m.error else ""))
            if obj is not None:
                keep[m.key] = {k: np.asarray(v.compute()) for k, v in pick(obj).items()}
            del obj

        full = dict(pixels=land_pixels, cells=land.size)
        lr_sub = dict(lat=lr_lat, lon=lr_lon)
        at_sub = dict(lat=at_lat, lon=at_lon)

        timed(Method("cs_trends", "trends", "carbonsink compute_trends",
                     "9 stats + change_class", **full),
              lambda: compute_trends(y),
              lambda ds: {"slope": ds["slope"].isel(**lr_sub), "p": ds["p_value"].isel(**lr_sub)})

        def ols():
            return xr.Dataset(dict(zip(("slope", "intercept", "p_value"), per_pixel(
                _ols_kernel, [y], "year", ["f4"] * 3, x=x))))

        timed(Method("cs_ols", "trends", "carbonsink ols_trend kernel", "slope, intercept, p",
                     **full),
              ols,
              lambda ds: {"slope": ds["slope"].isel(**lr_sub), "p": ds["p_value"].isel(**lr_sub)})

        timed(Method("polyfit", "trends", "xarray polyfit", "coefficients (f8)", **full),
              lambda: y.polyfit("year", deg=1),
              lambda ds: {"slope": ds["polyfit_coefficients"].sel(degree=1).isel(**lr_sub)})

        if polyfit_skipna_false:
            # the vectorised lstsq path rejects NaN (scipy solve_triangular checks finiteness), so
            # fill, fit, and mask pixels with any missing year — the usual workaround
            timed(Method("polyfit_nonan", "trends", "xarray polyfit skipna=False",
                         "coefficients (f8)", **full),
                  lambda: y.fillna(0).polyfit("year", deg=1, skipna=False).where(
                      y.notnull().all("year")),
                  lambda ds: {"slope": ds["polyfit_coefficients"].sel(degree=1).isel(**lr_sub)})

        timed(Method("linregress", "trends", "scipy linregress (vectorize)",
                     "slope, intercept, p", pixels=lr_land, cells=lr_cells, subset=True),
              lambda: xr.Dataset(dict(zip(("slope", "intercept", "p_value"), xr.apply_ufunc(
                  _linregress_pixel, y_lr, kwargs={"x": x}, input_core_dims=[["year"]],
                  output_core_dims=[[]] * 3, vectorize=True, dask="parallelized",
                  output_dtypes=["f8"] * 3)))),
              lambda ds: {"slope": ds["slope"], "p": ds["p_value"]})

        names = list(drivers)
        timed(Method("cs_attr", "attribution", "carbonsink compute_attribution",
                     f"{len(names) * 6 + 6} fields", **full),
              lambda: compute_attribution(y, drivers),
              lambda ds: {**{f"beta_{n}": ds[f"sensitivity_{n}"].isel(**at_sub) for n in names},
                          **{f"r_{n}": ds[f"pcorr_{n}"].isel(**at_sub) for n in names},
                          "C_ha": ds["contribution_ha"].isel(**at_sub)})

        ref_fields = [*(f"beta_{n}" for n in names), *(f"r_{n}" for n in names), "C_ha"]
        timed(Method("attr_ref", "attribution", "per-pixel lstsq loop (vectorize)",
                     "β, partial r, C_HA", pixels=at_land, cells=at_cells, subset=True),
              lambda: xr.Dataset(dict(zip(ref_fields, xr.apply_ufunc(
                  _attribution_pixel, y_at, *d_at.values(),
                  kwargs={"x": x, "min_valid": len(names) + 3},
                  input_core_dims=[["year"]] * (1 + len(names)),
                  output_core_dims=[[]] * len(ref_fields), vectorize=True, dask="parallelized",
                  output_dtypes=["f8"] * len(ref_fields))))),
              lambda ds: {f: ds[f] for f in ref_fields})

        # ---- agreement on the subsets (values pulled after the timings) -----------------------
        ref = keep.get("linregress")
        if ref is not None:
            for key in ("cs_trends", "cs_ols", "polyfit", "polyfit_nonan"):
                if key in keep:
                    label = result.method(key).label
                    result.checks.append(_compare(f"slope {label} vs linregress",
                                                  keep[key]["slope"], ref["slope"]))
                    if "p" in keep[key]:
                        # p below 1e-12 is compared absolutely (float32 output, and p ≈ 0 anyway)
                        result.checks.append(_compare(f"p-value {label} vs linregress",
                                                      keep[key]["p"], ref["p"], floor=1e-12))
        if "cs_attr" in keep and "attr_ref" in keep:
            a, r = keep["cs_attr"], keep["attr_ref"]
            too_short = nyears < len(names) + 3     # below the default min_valid k + 3
            for f in ref_fields:
                c = _compare(f"{f} compute_attribution vs lstsq loop", a[f], r[f])
                c.all_nan_expected = too_short
                result.checks.append(c)
        result.load = (load0, os.getloadavg())
    return result


# --- the report ----------------------------------------------------------------------------------
def _fmt_x(v: float) -> str:
    return f"{v:,.1f}×" if math.isfinite(v) else "—"


def ratio_table(r: BenchResult) -> list[str]:
    """Both carbonsink trend rows against both references, side by side, with the targets."""
    gated = {"cs_trends": r.gate in ("product", "both"), "cs_ols": r.gate in ("kernel", "both")}
    head = (f"  {'carbonsink row':<46} {'× scipy linregress':>18} {'× xarray polyfit':>17}  "
            "speed target")
    lines = [f"speed vs the references (targets ≥ {MIN_X_LINREGRESS:g}× linregress and "
             f"≥ {MIN_X_POLYFIT:g}× polyfit, in land pixel·years/s):", head]
    for key, what in (("cs_trends", "full product: compute_trends, 9 outputs"),
                      ("cs_ols", "kernel only: ols_trend, slope/intercept/p")):
        xl, xp = r.ratio(key, "linregress"), r.ratio(key, "polyfit")
        met = xl >= MIN_X_LINREGRESS and xp >= MIN_X_POLYFIT
        verdict = ("met" if met else "NOT met") + ("" if gated[key] else " (info)")
        lines.append(f"  {what:<46} {_fmt_x(xl):>18} {_fmt_x(xp):>17}  {verdict}")
    return lines


def format_report(r: BenchResult) -> str:
    y0, y1 = r.years
    lines = [
        f"carbonsink trend/attribution throughput — grid {r.grid} ({r.shape[0]}×{r.shape[1]} = "
        f"{r.shape[0] * r.shape[1]:,} cells, {r.land_pixels:,} land), years {y0}–{y1} "
        f"({r.nyears}); {r.land_pixels * r.nyears:,} land pixel·years",
        f"cluster: distributed.LocalCluster, {r.n_workers} worker processes × 1 thread, "
        f"memory_limit {r.memory_limit} each, 127.0.0.1; numba per worker: {r.numba}",
        f"{r.library}",
        "y: synthetic NPP float32 (" + ", ".join(f"{k}={v}" for k, v in r.chunks.items())
        + f") chunks = {r.chunk_bytes / MIB:.2f} MiB each, {r.n_chunks} chunks, whole array "
        f"{r.array_bytes / MIB:.1f} MiB; y and annual pr/tas/rsds persisted on the workers in "
        f"{r.setup_seconds:.1f} s (not timed)",
    ]
    for name, desc in r.subsets.items():
        lines.append(f"subset for {name}: {desc}; split into ≥ 4 tasks per worker")
    lines += [
        "rate = land pixel·years/s; '*' = measured on the subset, whole-grid seconds extrapolated "
        "at that rate; × = how many times faster carbonsink is than the row",
        "peak = max worker RSS over the method (VmHWM reset per method"
        + ("" if r.hwm_available else " UNAVAILABLE: polled RSS only")
        + " + 0.1 s polling); Δpeak = max growth over the method; out = its persisted outputs "
        "per worker; work = Δpeak − out, in units of one y chunk",
        f"seconds = best of {r.repeat} run(s), graph building to results persisted"
        + ("" if r.load is None else
           "; host load average (1/5/15 min) at start " + "/".join(f"{v:.2f}" for v in r.load[0])
           + ", at end " + "/".join(f"{v:.2f}" for v in r.load[1])
           + f" on {os.cpu_count()} CPUs"),
        "",
    ]
    head = (f"{'method':<36} {'outputs':<22} {'seconds':>9} {'grid s':>9} {'px·yr/s':>13} "
            f"{'× product':>10} {'× kernel':>10} {'peak MiB':>9} {'Δpeak MiB':>9} "
            f"{'out MiB':>8} {'work/chunk':>10}")
    group = None
    for m in r.methods:
        if m.group != group:
            lines += ([""] if group is not None else []) + [f"[{m.group}]", head, "-" * len(head)]
            group = m.group
        rate = m.rate(r.nyears)
        full_s = m.full_seconds(r.land_pixels, r.nyears)
        if group == "trends":
            xp, xk = r.ratio("cs_trends", m.key), r.ratio("cs_ols", m.key)
        else:
            xp, xk = r.ratio("cs_attr", m.key), math.nan
        pk = m.peak_worker()
        growth = m.max_growth()
        lines.append(
            f"{m.label + (' *' if m.subset else ''):<36} {m.outputs:<22} {m.seconds:>9.2f} "
            f"{full_s:>9.1f} {rate:>13,.0f} {_fmt_x(xp):>10} {_fmt_x(xk):>10} "
            f"{(pk.peak / MIB if pk else math.nan):>9.0f} {growth / MIB:>9.0f} "
            f"{m.out_bytes / r.n_workers / MIB:>8.1f} "
            f"{m.working_set(r.n_workers) / r.chunk_bytes:>10.1f}"
            + (f"  FAILED: {m.error}" if m.error else ""))
    lines.append("")
    lines.append("agreement on the subset (rtol 1e-4; denominator max(|ref|, 1e-6·max|ref|), "
                 "p-values max(|ref|, 1e-12)):")
    for c in r.checks:
        if c.all_nan_expected:
            lines.append(f"  {'ok  ' if c.ok else 'FAIL'} {c.name:<62} all NaN in both as expected "
                         f"(fewer years than min_valid), {c.nan_mismatch} NaN mismatches")
            continue
        lines.append(f"  {'ok  ' if c.ok else 'FAIL'} {c.name:<62} max rel {c.max_rel:.1e} over "
                     f"{c.n:,} pixels, {c.nan_mismatch} NaN mismatches")
    lines.append("")
    lines += ratio_table(r)
    lines.append("")
    for name, x, need, gated in r.gates():
        if gated:
            verdict = ("PASS" if x >= need else "FAIL") if r.thresholds else "skip"
            tag = "" if r.thresholds else "  (--no-thresholds)"
        else:
            verdict = "info"
            tag = "  (not gated, see --gate" + (
                "; the product computes Sen, MK, CV and classes too)" if "compute_trends" in name
                else ")")
        lines.append(f"{verdict}: {name}: {_fmt_x(x)} (target ≥ {need:g}×){tag}")
    if "polyfit_nonan" in {m.key for m in r.methods}:
        lines.append(f"info: carbonsink ols_trend kernel vs xarray polyfit skipna=False "
                     f"(vectorised lstsq on fillna(0)): "
                     f"{_fmt_x(r.ratio('cs_ols', 'polyfit_nonan'))}; compute_trends vs it: "
                     f"{_fmt_x(r.ratio('cs_trends', 'polyfit_nonan'))}")
    lines.append(f"info: carbonsink compute_attribution vs per-pixel lstsq loop: "
                 f"{_fmt_x(r.ratio('cs_attr', 'attr_ref'))}")
    worst = max(r.methods, key=lambda m: m.working_set(r.n_workers))
    ws = worst.working_set(r.n_workers)
    out_w = worst.out_bytes / r.n_workers
    lines.append(f"memory: largest working set {ws / MIB:.0f} MiB ({worst.label}: Δpeak "
                 f"{worst.max_growth() / MIB:.0f} MiB − outputs {out_w / MIB:.0f} MiB per worker) "
                 f"= {ws / r.chunk_bytes:.1f}× one {r.chunk_bytes / MIB:.2f} MiB chunk, "
                 f"{ws / r.array_bytes:.2f}× the whole y array")
    bad = r.failures()
    lines.append("RESULT: " + ("PASS" if not bad else "FAIL — " + "; ".join(bad))
                 + ("" if r.thresholds else " (speed thresholds not applied: --no-thresholds)"))
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--resolution", default="0.05", help="grid preset [0.05]")
    ap.add_argument("--years", type=_years, default=(2000, 2020), help="year range [2000-2020]")
    ap.add_argument("--workers", type=int, default=2, help="worker processes [2]")
    ap.add_argument("--linregress-fraction", type=float, default=0.02,
                    help="fraction of the chunks linregress runs on [0.02]")
    ap.add_argument("--attribution-fraction", type=float, default=0.02,
                    help="fraction of the chunks the per-pixel attribution loop runs on [0.02]")
    ap.add_argument("--chunk-mb", type=float, default=32.0,
                    help="make_inputs chunk target, MB of the monthly cube [32]")
    ap.add_argument("--memory-limit", default="2GB", help="dask memory_limit per worker [2GB]")
    ap.add_argument("--numba-threads", type=int, default=None,
                    help="numba.set_num_threads(N) in every worker's task thread "
                         "[numba's default]")
    ap.add_argument("--repeat", type=int, default=3,
                    help="time every method N times and keep the best: the first run of a method "
                         "also pays one-off costs (thread pools, first calls, connections between "
                         "workers), and on a shared machine other processes' load varies [3]")
    ap.add_argument("--gate", choices=("both", "product", "kernel"), default="both",
                    help="which carbonsink rows the speed targets apply to: the full "
                         "compute_trends product, the ols_trend kernel (like for like with "
                         "linregress/polyfit), or both [both]")
    ap.add_argument("--no-polyfit-skipna-false", dest="polyfit_skipna_false",
                    action="store_false", help="skip the polyfit skipna=False reference row")
    ap.add_argument("--no-thresholds", dest="thresholds", action="store_false",
                    help="do not apply the ≥100×/≥3× speed targets (tiny grids); the checks "
                         "still apply")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    result = run_benchmark(args.resolution, args.years, workers=args.workers,
                           linregress_fraction=args.linregress_fraction,
                           attribution_fraction=args.attribution_fraction,
                           chunk_mb=args.chunk_mb, memory_limit=args.memory_limit,
                           numba_threads=args.numba_threads, thresholds=args.thresholds,
                           gate=args.gate, repeat=args.repeat,
                           polyfit_skipna_false=args.polyfit_skipna_false)
    print()
    print(format_report(result), flush=True)
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
