"""Attribution of each pixel's trend to climate drivers and human activity (SCIENCE.md §6)."""
from __future__ import annotations

import numpy as np
import xarray as xr

from ..kernels import attribution as k
from .trends import per_pixel, per_year_units

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


# pixels handed to the kernel at a time: its float64 outputs (6k + 6 per pixel) stay ~5 MiB
_SLICE = 1 << 15


def _kernel(y, *xs, x, method, min_valid, threads=None):
    """All fields of one block (time first, as :func:`~carbonsink.products.trends.per_pixel`
    hands them), float32 (dominant factor int8), filled slice by slice of pixels; the kernel
    solves only the pixels with enough valid years. The drivers are passed as they are, not
    stacked into a copy. (``threads`` is unused: nothing here runs parallel numba.)"""
    n, pix = y.shape[0], y.shape[1:]
    y2 = y.reshape(n, -1)
    x2 = [a.reshape(n, -1) for a in xs]
    npix, k_drv = y2.shape[1], len(xs)
    out = [np.empty(npix, "f4") for _ in range(6 * k_drv + 6)]
    out[-2] = np.empty(npix, "i1")
    for a in range(0, npix, _SLICE):
        sl = slice(a, a + _SLICE)
        r = k.attribute(y2[:, sl], [d[:, sl] for d in x2], x=x, method=method,
                        min_valid=min_valid)
        fields = []
        for i in range(k_drv):
            fields += [r["beta"][i], r["driver_slope"][i], r["C"][i], r["share"][i],
                       r["pcorr_r"][i], r["pcorr_p"][i]]
        fields += [r["y_slope"], r["C_climate"], r["C_HA"], r["share"][k_drv], r["dominant"],
                   r["n_valid"]]
        for o, f in zip(out, fields):
            o[sl] = f
    return tuple(o.reshape(pix) for o in out)


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
    x = np.asarray(y[dim].values, dtype="f8")
    fields = _fields(names)
    outs = per_pixel(_kernel, [y, *drivers.values()], dim,
                     ["i1" if f == "dominant_factor" else "f4" for f in fields],
                     x=x, method=method, min_valid=min_valid)
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
    ds.attrs.update({k_: v for k_, v in y.attrs.items() if k_ in ("grid", "crs", "domain", "domain_name")})
    ds.attrs.update({"title": f"carbonsink attribution of {yname}", "Conventions": "CF-1.10",
                     "attribution_method": method, "drivers": " ".join(names),
                     "trend_period": f"{int(x.min())}-{int(x.max())}"})
    return ds
