"""Per-pixel trends, stability and change classes of any product variable (SCIENCE.md §5)."""
from __future__ import annotations

import numpy as np
import xarray as xr

from ..kernels import trend as k

STATS = ("slope", "intercept", "p_value", "sen_slope", "mk_z", "mk_p", "cv", "n_valid")
ROBUST_STATS = ("sen_slope", "mk_z", "mk_p")


def per_year_units(units: str | None) -> str:
    """Units of a rate of change per year: 'g m-2 yr-1' → 'g m-2 yr-2', 'degC' → 'degC yr-1'."""
    if not units or units == "1":
        return "yr-1"
    for n in range(1, 4):
        if units.endswith(f"yr-{n}"):
            return units[: -len(f"yr-{n}")] + f"yr-{n + 1}"
    return f"{units} yr-1"


def _time_last_to_first(a):
    return np.moveaxis(a, -1, 0)


def _stats_kernel(y, x, min_valid, names):
    y = _time_last_to_first(y)
    if any(n in ROBUST_STATS for n in names):
        out = k.trend_stats(y, x=x, min_valid=min_valid)
    else:
        # OLS + CV only: one moments pass, no O(n²) Sen/Mann–Kendall pass (~85 % of the time)
        slope, intercept, p = k.ols_trend(y, x=x, min_valid=min_valid)
        out = {"slope": slope, "intercept": intercept, "p_value": p,
               "n_valid": (~np.isnan(y)).sum(axis=0),
               "cv": k.coefficient_of_variation(y, min_valid=min_valid)}
    return tuple(np.asarray(out[name], dtype="f4") for name in names)


def _slope_kernel(y, x, min_valid):
    return np.asarray(k.ols_trend(_time_last_to_first(y), x=x, min_valid=min_valid)[0], "f4")


def _class_kernel(slope, p_value, *, alpha, method, breaks, stable):
    return k.change_class(slope, p_value, breaks=breaks, alpha=alpha, method=method,
                          stable=stable)


def compute_trends(da: xr.DataArray, dim: str = "year", *, alpha: float = 0.05,
                   classes: str = "significance", breaks=None, stable: float = 0.0,
                   min_valid: int = 3, robust: bool = True) -> xr.Dataset:
    """OLS slope/intercept/p (t-test, df n−2), Sen's slope, Mann–Kendall Z/p (tie-corrected),
    CV and 5 change classes per pixel, lazily chunk by chunk.

    classes: "significance" (sign of the OLS slope × p < alpha; |slope| ≤ ``stable`` is stable),
    "breaks" (4 ascending ``breaks`` on the slope) or "natural" (Fisher–Jenks breaks computed once
    on a fixed-seed sample of all pixels, then applied to every chunk).
    robust=False leaves out Sen's slope and Mann–Kendall (sen_slope, mk_z, mk_p), the O(n²) part
    of the work: the OLS statistics, CV and classes then cost about a third.
    """
    if dim not in da.dims:
        raise ValueError(f"{da.name!r} has no dimension {dim!r} (dims {da.dims})")
    if classes not in k.CHANGE_CLASS_METHODS:
        raise ValueError(f"classes must be one of {k.CHANGE_CLASS_METHODS}, got {classes!r}")
    x = np.asarray(da[dim].values, dtype="f8")
    if da.chunks is not None:
        da = da.chunk({dim: -1})
    names = STATS if robust else tuple(n for n in STATS if n not in ROBUST_STATS)
    outs = xr.apply_ufunc(
        _stats_kernel, da, kwargs={"x": x, "min_valid": min_valid, "names": names},
        input_core_dims=[[dim]], output_core_dims=[[]] * len(names),
        dask="parallelized", output_dtypes=["f4"] * len(names))
    ds = xr.Dataset(dict(zip(names, outs)))

    if classes == "natural":
        # every slope is needed before any chunk can be classed: take them from an OLS-only pass,
        # not ds["slope"], whose graph is the multi-output kernel (Sen/MK would run twice)
        sample = xr.apply_ufunc(_slope_kernel, da, kwargs={"x": x, "min_valid": min_valid},
                                input_core_dims=[[dim]], dask="parallelized",
                                output_dtypes=["f4"]).data
        sample = np.asarray(sample.compute() if hasattr(sample, "compute") else sample).ravel()
        breaks = k.natural_breaks(sample[np.isfinite(sample)])
        method = "breaks"
    else:
        method = classes
    ds["change_class"] = xr.apply_ufunc(
        _class_kernel, ds["slope"], ds["p_value"],
        kwargs=dict(alpha=alpha, method=method,
                    breaks=None if breaks is None else np.asarray(breaks, "f8"), stable=stable),
        dask="parallelized", output_dtypes=["i1"])

    units = da.attrs.get("units")
    rate = per_year_units(units)
    name = da.name or "variable"
    ds["slope"].attrs = {"units": rate, "long_name": f"OLS trend of {name}"}
    ds["intercept"].attrs = {"units": units or "1",
                             "long_name": f"OLS intercept of {name} at {dim} = 0"}
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
    ds.attrs.update({k_: v for k_, v in da.attrs.items() if k_ in ("grid", "crs")})
    ds.attrs.update({"title": f"carbonsink trends of {name}", "Conventions": "CF-1.10",
                     "trend_dim": dim, "trend_period": f"{int(x.min())}-{int(x.max())}"})
    return ds
