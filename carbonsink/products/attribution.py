"""Attribution of each pixel's trend to climate drivers and human activity (SCIENCE.md §6)."""
from __future__ import annotations

import numpy as np
import xarray as xr

from ..kernels import attribution as k
from .trends import per_year_units

HUMAN = "ha"
DRIVER_NAMES = {"pr": "precipitation", "tas": "temperature", "rsds": "solar radiation",
                HUMAN: "human activity"}


def _fields(names):
    out = []
    for n in names:
        out += [f"sensitivity_{n}", f"slope_{n}", f"contribution_{n}", f"share_{n}",
                f"pcorr_{n}", f"pcorr_p_{n}"]
    return out + ["slope_y", "contribution_climate", f"contribution_{HUMAN}", f"share_{HUMAN}",
                  "dominant_factor", "n_valid"]


def _kernel(y, *xs, x, method, min_valid):
    # apply_ufunc puts the core (time) dim last; kernels want time first
    Y = np.moveaxis(y, -1, 0)
    X = np.stack([np.moveaxis(a, -1, 0) for a in xs])
    r = k.attribute(Y, X, x=x, method=method, min_valid=min_valid)
    out = []
    for i in range(len(xs)):
        out += [r["beta"][i], r["driver_slope"][i], r["C"][i], r["share"][i], r["pcorr_r"][i],
                r["pcorr_p"][i]]
    out += [r["y_slope"], r["C_climate"], r["C_HA"], r["share"][len(xs)], r["dominant"],
            r["n_valid"]]
    return tuple(np.asarray(a, dtype="i1" if a is r["dominant"] else "f4") for a in out)


def compute_attribution(y: xr.DataArray, drivers: dict[str, xr.DataArray], dim: str = "year",
                        method: str = k.DEFAULT_METHOD, *, min_valid: int | None = None
                        ) -> xr.Dataset:
    """Sensitivities, contributions, human residual, shares, dominant factor and second-order
    partial correlations of ``y`` against ``drivers`` (e.g. {"pr", "tas", "rsds"}) per pixel.

    method: "detrended" (default — regress linearly detrended series; recovers planted truth) or
    "raw". Driver names become variable suffixes; human activity is ``ha``.
    """
    if method not in k.METHODS:
        raise ValueError(f"method must be one of {k.METHODS}, got {method!r}")
    if not drivers:
        raise ValueError("at least one driver is needed")
    names = list(drivers)
    if HUMAN in names:
        raise ValueError(f"driver name {HUMAN!r} is reserved for human activity")
    for n, da in [("y", y), *drivers.items()]:
        if dim not in da.dims:
            raise ValueError(f"{n} has no dimension {dim!r} (dims {da.dims})")
    arrays = [y, *drivers.values()]
    arrays = [a.chunk({dim: -1}) if a.chunks is not None else a for a in arrays]
    x = np.asarray(y[dim].values, dtype="f8")
    fields = _fields(names)
    outs = xr.apply_ufunc(
        _kernel, *arrays, kwargs={"x": x, "method": method, "min_valid": min_valid},
        input_core_dims=[[dim]] * len(arrays), output_core_dims=[[]] * len(fields),
        dask="parallelized",
        output_dtypes=["i1" if f == "dominant_factor" else "f4" for f in fields])
    ds = xr.Dataset(dict(zip(fields, outs)))

    yname, yu = y.name or "y", y.attrs.get("units", "1")
    for n in names:
        xu = drivers[n].attrs.get("units", "1")
        label = DRIVER_NAMES.get(n, n)
        ds[f"sensitivity_{n}"].attrs = {
            "units": f"({yu}) ({xu})-1",
            "long_name": f"sensitivity d{yname}/d{n} ({method} multiple regression)"}
        ds[f"slope_{n}"].attrs = {"units": per_year_units(xu), "long_name": f"OLS trend of {n}"}
        ds[f"contribution_{n}"].attrs = {
            "units": per_year_units(yu),
            "long_name": f"contribution of {label} to the trend of {yname} (beta * d{n}/dt)"}
        ds[f"share_{n}"].attrs = {"units": "%", "long_name": f"relative contribution of {label}"}
        ds[f"pcorr_{n}"].attrs = {
            "units": "1", "long_name": f"partial correlation of {yname} with {n} controlling "
            f"{', '.join(m for m in names if m != n) or 'nothing'} ({method})"}
        ds[f"pcorr_p_{n}"].attrs = {"units": "1", "long_name": f"t-test p-value of pcorr_{n} "
                                    f"(df = n - {len(names) + 1})"}
    ds["slope_y"].attrs = {"units": per_year_units(yu), "long_name": f"OLS trend of {yname}"}
    ds["contribution_climate"].attrs = {"units": per_year_units(yu),
                                        "long_name": "sum of climate contributions"}
    ds[f"contribution_{HUMAN}"].attrs = {
        "units": per_year_units(yu),
        "long_name": "contribution of human activity (trend minus climate contributions)"}
    ds[f"share_{HUMAN}"].attrs = {"units": "%", "long_name": "relative contribution of human "
                                  "activity"}
    meanings = [DRIVER_NAMES.get(n, n).replace(" ", "_") for n in [*names, HUMAN]]
    ds["dominant_factor"].attrs = {
        "long_name": f"dominant factor of the trend of {yname} (largest |contribution|)",
        "units": "1", "flag_values": list(range(1, len(names) + 2)),
        "flag_meanings": " ".join(meanings), "_note": "0 = no data"}
    ds["n_valid"].attrs = {"units": "1", "long_name": f"number of {dim}s used"}
    ds.attrs.update({k_: v for k_, v in y.attrs.items() if k_ in ("grid", "crs")})
    ds.attrs.update({"title": f"carbonsink attribution of {yname}", "Conventions": "CF-1.10",
                     "attribution_method": method, "drivers": " ".join(names),
                     "trend_period": f"{int(x.min())}-{int(x.max())}"})
    return ds
