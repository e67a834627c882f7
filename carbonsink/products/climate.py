"""Annual climate drivers from the monthly canonical inputs (lazy)."""
from __future__ import annotations

import xarray as xr

from .. import units as u
from ..kernels.climate import annual_from_monthly
from ..kernels.respiration import days_in_month


def _annual(da: xr.DataArray, how: str, years, days=None) -> xr.DataArray:
    return xr.apply_ufunc(
        annual_from_monthly, da, kwargs={"how": how, "days": days},
        input_core_dims=[["time"]], output_core_dims=[["year"]], dask="parallelized",
        output_dtypes=["f8"], dask_gufunc_kwargs={"output_sizes": {"year": len(years)}},
    ).assign_coords(year=years).transpose("year", ...)


def annual_drivers(inputs: xr.Dataset) -> xr.Dataset:
    """``pr`` annual total (mm yr-1), ``tas`` annual mean (degC, days-weighted), ``rsds`` and
    ``aet`` as given — the yearly drivers of the karst model and of attribution (SCIENCE.md §2, §6)."""
    years = inputs["year"]
    pr = u.convert(inputs["pr"], inputs["pr"].attrs["units"], "mm month-1")
    tas = u.convert(inputs["tas"], inputs["tas"].attrs["units"], "degC")
    out = xr.Dataset({
        "pr": _annual(pr, "sum", years).astype("f4").assign_attrs(
            units="mm yr-1", long_name="annual precipitation (sum of monthly)",
            cell_methods="time: sum"),
        "tas": _annual(tas, "mean", years, days_in_month(years.values)).astype("f4").assign_attrs(
            units="degC", long_name="annual mean air temperature (days-weighted)",
            cell_methods="time: mean"),
    })
    for var, canonical in (("rsds", "MJ m-2 yr-1"), ("aet", "mm yr-1")):
        if var in inputs:
            da = u.convert(inputs[var], inputs[var].attrs["units"], canonical)
            out[var] = da.assign_attrs({**inputs[var].attrs, "units": canonical})
    return out
