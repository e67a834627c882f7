"""Throughput of the compiled random-forest predictor against scikit-learn's, in one run (issue 15
"scale": the ionic-strength forest's predict was the main cost of the karst product at 1 km).

    python benchmarks/bench_forest.py [--resolution 1] [--years 2000-2020] [--rows 2000000]
                                      [--trees N] [--repeat 3] [--seed 0]

1. The forest: the demo's. Synthetic China (``make_inputs``) with 40 basins (``make_basins``) and
   their river ion table (``make_ion_table``) at ``--resolution``, then ``train_ionic_strength``
   as the pipeline calls it. Its size is chosen by the 10-fold CV unless ``--trees`` fixes it. The
   training time, the chosen size and the CV R² of every size on the ladder are printed.
2. The rows: ``--rows`` pixel-years drawn with replacement from the valid land pixel-years of the
   same inputs' annual predictors (pr, tas, aet, npp). This is the distribution the grid predicts
   on, in float32 as ``carbonsink.ml._predict_block`` gathers them.
3. Both predictors on the same rows, ``--repeat`` times each, alternating, on one thread:
   ``RandomForestRegressor.predict`` (``n_jobs=None``: one job) and
   ``carbonsink.kernels.forest.predict_forest``. The flattening and the numba compile (or cache
   load) are timed apart, before, and not counted in rows/s. The best run of each gives rows/s.
   The ratio is compiled over sklearn. The two outputs are compared bit for bit.

Exit status 0 when the outputs are identical, 1 otherwise. No speed threshold: the ratio is a
figure to report (2–2.3× on the 2-core development machine), not a gate.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np


def _years(text: str) -> tuple[int, int]:
    a, _, b = text.partition("-")
    return int(a), int(b or a)


def demo_forest(grid: str, years: tuple[int, int], trees: int | None, seed: int):
    """(model, pixel predictor rows float32 (n, 4), training seconds) of the demo forest."""
    from carbonsink import ml
    from carbonsink.synthetic import make_basins, make_inputs, make_ion_table

    inputs = make_inputs(grid, years)
    basins = make_basins(grid, n_basins=40, seed=seed)
    predictors = ml.basin_predictors(inputs, basins)
    table = make_ion_table(inputs, basins, seed=seed, predictors=predictors)
    kw = {} if trees is None else {"n_estimators": trees}
    t0 = time.perf_counter()
    model = ml.train_ionic_strength(table, predictors, seed=seed, **kw)
    train_s = time.perf_counter() - t0
    fields = ml.annual_predictors(inputs).compute()
    x = np.stack([fields[v].values.ravel() for v in ml.PREDICTORS], axis=1)
    land = np.broadcast_to(inputs["land_mask"].values > 0, fields["pr"].shape).ravel()
    x = x[land & np.isfinite(x).all(axis=1)].astype(np.float32)
    return model, x, train_s


def run(args) -> int:
    from carbonsink.kernels.forest import flatten_forest, predict_forest

    model, pixels, train_s = demo_forest(args.resolution, args.years, args.trees, args.seed)
    rf = model.regressor
    nodes = sum(e.tree_.node_count for e in rf.estimators_)
    print(f"forest: grid {args.resolution}, {args.years[0]}-{args.years[1]}, {model.n_rows} "
          f"basin-years, trained in {train_s:.1f} s; {rf.n_estimators} trees "
          f"({'chosen by 10-fold CV' if model.n_estimators_cv else 'given'}), {nodes:,} nodes")
    if model.n_estimators_cv:
        print("  pooled out-of-fold R² by size: " + "  ".join(
            f"{k}:{r2:.4f}" for k, r2 in model.n_estimators_cv)
            + f"  (tolerance {model.n_estimators_tolerance:g})")
    print(f"  CV R² {model.cv_r2:.4f}, leave-basins-out R² {model.basin_cv_r2:.4f}")

    rng = np.random.default_rng(args.seed)
    x = pixels[rng.integers(0, len(pixels), args.rows)]
    print(f"rows: {args.rows:,} pixel-years drawn from {len(pixels):,} valid land pixel-years, "
          f"float32 (n, 4)")

    t0 = time.perf_counter()
    flat = flatten_forest(rf)
    flatten_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    predict_forest(x[:16], flat)
    jit_s = time.perf_counter() - t0
    print(f"flatten {flatten_s * 1e3:.0f} ms ({flat.nbytes / 2**20:.1f} MiB), first call "
          f"(numba compile or cache load) {jit_s:.2f} s — not counted below")

    times = {"sklearn": [], "compiled": []}
    out = {}
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        out["sklearn"] = rf.predict(x)
        times["sklearn"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        out["compiled"] = predict_forest(x, flat)
        times["compiled"].append(time.perf_counter() - t0)
    rate = {k: args.rows / min(v) for k, v in times.items()}
    print(f"{'predictor':<10} {'best s':>8} {'rows/s':>12}   all runs (s)")
    for k in ("sklearn", "compiled"):
        print(f"{k:<10} {min(times[k]):8.2f} {rate[k]:12,.0f}   "
              + " ".join(f"{t:.2f}" for t in times[k]))
    same = np.array_equal(out["sklearn"].view(np.uint64), out["compiled"].view(np.uint64))
    print(f"ratio compiled / sklearn: {rate['compiled'] / rate['sklearn']:.2f}×; outputs "
          f"{'identical bit for bit' if same else 'DIFFER'} "
          f"(max |Δ| {np.max(np.abs(out['sklearn'] - out['compiled'])):.3g})")
    print(f"cpu: {os.cpu_count()} cores; both predictors single-threaded")
    return 0 if same else 1


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--resolution", default="1", help="grid of the demo inputs (default 1)")
    ap.add_argument("--years", type=_years, default=(2000, 2020), help="e.g. 2000-2020")
    ap.add_argument("--rows", type=int, default=2_000_000, help="rows to predict (2,000,000)")
    ap.add_argument("--trees", type=int, default=None,
                    help="fix n_estimators (default: chosen by CV, as the pipeline does)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each predictor (best counts)")
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args(argv)


def main(argv=None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
