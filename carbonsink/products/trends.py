"""Per-pixel trends, stability and change classes of any product variable (SCIENCE.md §5)."""
from __future__ import annotations

import math
import operator
from contextlib import contextmanager
from functools import partial

import dask.array
import dask.base
import numba
import numpy as np
import xarray as xr
from dask.highlevelgraph import HighLevelGraph

from ..kernels import trend as k

STATS = ("slope", "intercept", "p_value", "sen_slope", "mk_z", "mk_p", "cv", "n_valid")
ROBUST_STATS = ("sen_slope", "mk_z", "mk_p")
#: Per-pixel products work on blocks of at least this many pixels (whole groups of the input's
#: chunks): at 0.05° the pipeline's 176 × 176 tiles become 352 × 352.
BLOCK_PIXELS = 1 << 16


def per_year_units(units: str | None) -> str:
    """Units of a rate of change per year: 'g m-2 yr-1' → 'g m-2 yr-2', 'degC' → 'degC yr-1'."""
    if not units or units == "1":
        return "yr-1"
    for n in range(1, 4):
        if units.endswith(f"yr-{n}"):
            return units[: -len(f"yr-{n}")] + f"yr-{n + 1}"
    return f"{units} yr-1"


@contextmanager
def _numba_threads(n):
    """numba's thread count for the calling thread (a dask task thread) while in the block.

    Under dask every block is a task and the tasks already fill the cores (2 worker processes × 1
    thread on 2 cores in the demo and the benchmark), so numba's default of one thread per core
    in every task thread oversubscribes the cores and its OpenMP threads spin between calls. The
    setting is thread-local, so tasks in other threads keep theirs."""
    if n is None:
        yield
        return
    prev = numba.get_num_threads()
    numba.set_num_threads(min(n, prev))
    try:
        yield
    finally:
        numba.set_num_threads(prev)


def _groups(chunks, min_pixels):
    """Group consecutive chunks along each spatial dim so a block of groups has ≥ ~min_pixels:
    per dim, the lists of chunk indices of each group."""
    pixels = math.prod(max(c) for c in chunks)
    f = max(1, math.ceil((min_pixels / max(pixels, 1)) ** (1 / max(len(chunks), 1))))
    return [[list(range(i, min(i + f, len(c)))) for i in range(0, len(c), f)] for c in chunks]


def _nested_keys(name, groups, block):
    """The input keys of one block as nested lists, one level per spatial dim."""
    def level(d, prefix):
        if d == len(groups):
            return (name, 0) + prefix
        return [level(d + 1, prefix + (i,)) for i in groups[d][block[d]]]
    return level(0, ())


def _run_block(func, *inputs, axis=0):
    """One task: func on each chunk of the block (inputs as nested lists of chunks, one level per
    spatial dim), and each output joined from its pieces. The inputs are never concatenated into
    a copy, and the kernel's scratch is that of one chunk."""
    if not isinstance(inputs[0], list):
        return func(*inputs)
    parts = [_run_block(func, *chunks, axis=axis + 1) for chunks in zip(*inputs)]
    return tuple(np.concatenate(pieces, axis=axis) if len(pieces) > 1 else pieces[0]
                 for pieces in zip(*parts))


def per_pixel(func, arrays, dim, dtypes, **kwargs):
    """Apply ``func`` to the whole ``dim`` series of every pixel: a list of ``len(dtypes)``
    DataArrays over the other dims of ``arrays[0]`` (aligned exactly, as apply_ufunc would).

    ``func(*blocks, threads=..., **kwargs)`` gets numpy blocks with ``dim`` FIRST (n, *pixels) — the
    layout of the inputs, so nothing is transposed — and returns a tuple of arrays shaped like the
    pixel block. ``threads`` is 1 under dask (see :func:`_numba_threads`), None otherwise.

    Under dask one task computes a block made of whole groups of the inputs' spatial chunks (at
    least :data:`BLOCK_PIXELS` pixels), chunk by chunk, and one getitem per output and block
    splits its result. ``apply_ufunc`` adds rechunk, transpose and alias tasks (≈ 2 keys per
    output and chunk) and gives every chunk its own task: with the annual series of chunks sized
    for the monthly cube (12× fewer bytes than the chunk target), scheduling those keys cost more
    than the statistics on 2 cores. Worker memory stays bounded by the block size (its input,
    its outputs and the kernel's bounded scratch); the outputs are chunked like the blocks.
    """
    arrays = xr.broadcast(*xr.align(*arrays, join="exact"))
    first = arrays[0].transpose(dim, ...)
    arrays = [first] + [a.transpose(*first.dims) for a in arrays[1:]]
    template = first.isel({dim: 0}, drop=True)
    template.attrs = {}
    template.encoding = {}      # the input's (e.g. a Zarr dtype) must not reach the outputs
    if not any(a.chunks is not None for a in arrays):
        outs = func(*(np.asarray(a.values) for a in arrays), threads=None, **kwargs)
        return [template.copy(data=o) for o in outs]

    ref = next(a for a in arrays if a.chunks is not None).data
    chunks = ((ref.shape[0],),) + ref.chunks[1:]
    datas = [dask.array.asarray(a.data).rechunk(chunks) for a in arrays]
    groups = _groups(chunks[1:], BLOCK_PIXELS)
    out_chunks = tuple(tuple(sum(c[i] for i in g) for g in gs)
                       for c, gs in zip(chunks[1:], groups))
    call = partial(func, threads=1, **kwargs)
    name = (getattr(func, "__name__", "per_pixel").strip("_") + "-"
            + dask.base.tokenize(func, kwargs, *datas, groups))
    blocks = list(np.ndindex(*(len(g) for g in groups)))
    layer = {(name,) + b: (_run_block, call, *(_nested_keys(d.name, groups, b) for d in datas))
             for b in blocks}
    graph = HighLevelGraph.from_collections(name, layer, dependencies=datas)
    outs = []
    for i, dt in enumerate(dtypes):
        leaf = f"{name}-{i}"
        split = {(leaf,) + b: (operator.getitem, (name,) + b, i) for b in blocks}
        leaf_graph = HighLevelGraph({**graph.layers, leaf: split},
                                    {**graph.dependencies, leaf: {name}})
        arr = dask.array.Array(leaf_graph, leaf, chunks=out_chunks,
                               meta=np.empty((0,) * len(out_chunks), dt))
        outs.append(template.copy(data=arr))
    return outs


def _stats_kernel(y, x, min_valid, names, classes, threads):
    """The statistics ``names`` then the change class of one block (time first), float32.

    One pass per pixel (:func:`~carbonsink.kernels.trend._stats`), written as float32 straight
    away; the OLS-only variant skips the O(n²) Sen/Mann–Kendall pair loop. Change classes are taken
    from the float32 slope and p written out, so they agree with what a reader of the product would
    compute from them."""
    robust = any(n in ROBUST_STATS for n in names)
    with _numba_threads(threads):
        out, shape = k._stats(y, x, min_valid, robust, robust, dtype="f4")
    res = tuple(out[name].astype("f4", copy=False).reshape(shape) for name in names)
    by_name = dict(zip(names, res))
    cls = k.change_class(by_name["slope"], by_name["p_value"], **classes)
    return (*res, cls)


def _slope_kernel(y, x, min_valid, threads):
    with _numba_threads(threads):
        return (np.asarray(k.ols_trend(y, x=x, min_valid=min_valid)[0], "f4"),)


def compute_trends(da: xr.DataArray, dim: str = "year", *, alpha: float = 0.05,
                   classes: str = "significance", breaks=None, stable: float = 0.0,
                   min_valid: int = 3, robust: bool = True) -> xr.Dataset:
    """OLS slope/intercept/p (t-test, df n−2), Sen's slope, Mann–Kendall Z/p (tie-corrected),
    CV and 5 change classes per pixel, lazily chunk by chunk.

    classes: "significance" (sign of the OLS slope × p < alpha; |slope| ≤ ``stable`` is stable),
    "breaks" (4 ascending ``breaks`` on the slope) or "natural" (Fisher–Jenks breaks computed once
    on a fixed-seed sample of all pixels, then applied to every chunk).
    robust=False leaves out Sen's slope and Mann–Kendall (sen_slope, mk_z, mk_p), the O(n²) part
    of the work: the OLS statistics, CV and classes then cost about a quarter of the compute.

    Under dask the work is done by :func:`per_pixel`: blocks of whole input chunks (at least
    :data:`BLOCK_PIXELS` pixels), one task each, numba on one thread per task; the outputs are
    chunked like the blocks.
    """
    if dim not in da.dims:
        raise ValueError(f"{da.name!r} has no dimension {dim!r} (dims {da.dims})")
    if classes not in k.CHANGE_CLASS_METHODS:
        raise ValueError(f"classes must be one of {k.CHANGE_CLASS_METHODS}, got {classes!r}")
    x = np.asarray(da[dim].values, dtype="f8")
    names = STATS if robust else tuple(n for n in STATS if n not in ROBUST_STATS)

    if classes == "natural":
        # every slope is needed before any chunk can be classed: take them from an OLS-only pass
        (sample,) = per_pixel(_slope_kernel, [da], dim, ["f4"], x=x, min_valid=min_valid)
        sample = np.asarray(sample.values).ravel()
        breaks = k.natural_breaks(sample[np.isfinite(sample)])
        method = "breaks"
    else:
        method = classes
    class_kw = dict(alpha=alpha, method=method, stable=stable,
                    breaks=None if breaks is None else np.asarray(breaks, "f8"))
    outs = per_pixel(_stats_kernel, [da], dim, ["f4"] * len(names) + ["i1"], x=x,
                     min_valid=min_valid, names=names, classes=class_kw)
    ds = xr.Dataset(dict(zip((*names, "change_class"), outs)))

    units = da.attrs.get("units")
    rate = per_year_units(units)
    name = da.name or "variable"
    ds["slope"].attrs = {"units": rate, "long_name": f"OLS trend of {name}"}
    # the kernel's intercept is the fitted value at x[0], the first year of the series (at year 0
    # it would be an extrapolation across two millennia)
    first = int(x[0]) if x[0] == int(x[0]) else float(x[0])
    ds["intercept"].attrs = {
        "units": units or "1",
        "long_name": f"OLS fitted value of {name} at the first {dim} ({first})",
        f"reference_{dim}": first,
        "comment": f"OLS line: {name} = intercept + slope * ({dim} - {first})"}
    ds["p_value"].attrs = {"units": "1", "long_name": "two-sided t-test p-value of the OLS slope "
                           "(df = n - 2)"}
    if robust:
        ds["sen_slope"].attrs = {"units": rate, "long_name": f"Sen's slope of {name}"}
        ds["mk_z"].attrs = {"units": "1", "long_name": "Mann-Kendall Z (tie-corrected, "
                            "continuity corrected)"}
        ds["mk_p"].attrs = {"units": "1", "long_name": "Mann-Kendall two-sided p-value"}
    ds["cv"].attrs = {"units": "1", "long_name": f"coefficient of variation of {name} "
                      "(s, ddof=1, / |mean|)"}
    ds["n_valid"].attrs = {"units": "1", "long_name": f"number of valid {dim}s"}
    ds["change_class"].attrs = {
        "long_name": f"change class of {name}", "units": "1",
        "flag_values": list(range(1, 6)), "flag_meanings": " ".join(k.CHANGE_CLASS_MEANINGS),
        "_note": "0 = no data",
        "classification": classes, "alpha": alpha, "stable_band": stable}
    if breaks is not None:
        ds["change_class"].attrs["breaks"] = [float(b) for b in np.asarray(breaks)]
    ds.attrs.update({k_: v for k_, v in da.attrs.items() if k_ in ("grid", "crs", "domain", "domain_name")})
    ds.attrs.update({"title": f"carbonsink trends of {name}", "Conventions": "CF-1.10",
                     "trend_dim": dim, "trend_period": f"{int(x.min())}-{int(x.max())}"})
    return ds
