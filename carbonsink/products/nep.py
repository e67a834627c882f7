"""Ecosystem organic sink NEP = NPP − Rh (SCIENCE.md §1), lazily on dask."""
from __future__ import annotations

import numpy as np
import xarray as xr

from ..io.validate import REQUIRED, InputError, validate_inputs
from ..kernels import respiration as k
from ._attrs import product_attrs

RH_ATTRS = {
    "soil_tps": "soil respiration model of seed 000 eq. 2 (T, P, SOC) with Rh_d = 0.6163 Rs_d^0.7918",
    "pei": "Pei et al. monthly Rh model of seed 004 eq. 2 (T, P)",
    "bond_lamberty": "seed 000 Rs model, annual Rh by ln Rh = 1.22 + 0.73 ln Rs (Bond-Lamberty 2004)",
}


def _expand_annual_climate(inputs: xr.Dataset) -> xr.Dataset:
    """SCIENCE.md §1: only annual climate → T each month = annual mean, P each month = annual/12."""
    from ..units import conversion

    out = inputs.copy()
    years = inputs["year"].values
    time = xr.DataArray(
        np.array([np.datetime64(f"{y}-{m:02d}-01") for y in years for m in range(1, 13)]),
        dims="time")
    for var, divide in (("tas", False), ("pr", True)):
        da = inputs[var]
        if "year" not in da.dims:
            raise InputError(var, None, "annual_climate=True needs annual (year, lat, lon) input")
        units = da.attrs.get("units", "")
        if divide:
            # annual total mm a-1 → monthly mm month-1
            f, _ = conversion(units, "mm yr-1")
            monthly = (da * f / 12.0)
            attrs = dict(da.attrs, units="mm month-1")
        else:
            monthly = da
            attrs = dict(da.attrs)
        monthly = monthly.isel(year=xr.DataArray(np.repeat(np.arange(years.size), 12), dims="time"))
        monthly = monthly.drop_vars("year").assign_coords(time=time).transpose("time", "lat", "lon")
        attrs["annual_climate"] = "expanded from annual values (SCIENCE.md §1 annual_climate option)"
        out[var] = monthly.astype("f4")
        out[var].attrs = attrs
    return out.chunk({"time": -1})


def compute_nep(inputs: xr.Dataset, rh_model: str = k.DEFAULT_RH_MODEL, *,
                annual_climate: bool = False, validate: bool = True) -> xr.Dataset:
    """NPP, Rh and NEP per year on the input grid (lazy when the inputs are dask-backed).

    ``inputs`` follows the canonical schema (README). Units are read from the attrs and converted
    for each model; unknown or missing units raise. With only annual climate, pass
    ``annual_climate=True`` (recorded in the attrs); without it, annual T/P are rejected.
    ``validate`` (default) runs the full value checks (one pass over the inputs) before building
    the graph; pass False only for inputs already validated (e.g. published by publish_inputs).
    """
    if rh_model not in k.RH_MODELS:
        raise ValueError(f"unknown Rh model {rh_model!r}; choose one of {k.RH_MODELS}")
    needs = REQUIRED["nep_pei" if rh_model == "pei" else "nep"]
    if annual_climate:
        inputs = _expand_annual_climate(inputs)
    elif "tas" in inputs and "year" in inputs["tas"].dims:
        raise InputError("tas", inputs.encoding.get("source"),
                         "is annual; the Rh models need monthly climate. Pass annual_climate=True "
                         "to spread annual values over months explicitly (SCIENCE.md §1)")
    validate_inputs(inputs, needs, check_values=validate)

    tas, pr, npp = inputs["tas"], inputs["pr"], inputs["npp"]
    years = inputs["year"].values
    days = k.days_in_month(years)
    soc = inputs["soc"] if rh_model != "pei" else xr.zeros_like(inputs["land_mask"], dtype="f4")
    kwargs = dict(model=rh_model, tas_units=tas.attrs["units"], pr_units=pr.attrs["units"],
                  soc_units=soc.attrs.get("units", "kg m-2"), days=days)

    def kernel(t, p, s):
        return k.rh_annual(t, p, s, **kwargs)

    rh = xr.apply_ufunc(
        kernel, tas, pr, soc,
        input_core_dims=[["time"], ["time"], []],
        output_core_dims=[["year"]],
        dask="parallelized",
        output_dtypes=["f4"],
        dask_gufunc_kwargs={"output_sizes": {"year": years.size}},
    ).assign_coords(year=inputs["year"]).transpose("year", "lat", "lon")
    rh = rh.where(inputs["land_mask"] > 0)

    from ..units import convert
    npp = convert(npp.astype("f4"), npp.attrs["units"], "g m-2 yr-1")
    nep = (npp - rh).astype("f4")

    ds = xr.Dataset({"npp": npp, "rh": rh, "nep": nep})
    ds["npp"].attrs = {
        "units": "g m-2 yr-1", "long_name": "annual net primary productivity",
        "standard_name": "net_primary_productivity_of_biomass_expressed_as_carbon",
        "cell_methods": "year: sum", "units_note": "g C m-2 a-1 = t C km-2 a-1"}
    ds["rh"].attrs = {
        "units": "g m-2 yr-1", "long_name": f"annual heterotrophic respiration ({rh_model})",
        "standard_name": "heterotrophic_respiration_carbon_flux", "cell_methods": "year: sum",
        "rh_model": rh_model, "rh_model_description": RH_ATTRS[rh_model],
        "units_note": "g C m-2 a-1 = t C km-2 a-1"}
    ds["nep"].attrs = {
        "units": "g m-2 yr-1", "long_name": "net ecosystem productivity NEP = NPP - Rh",
        "sign_convention": "positive = sink (uptake by the land)", "cell_methods": "year: sum",
        "units_note": "g C m-2 a-1 = t C km-2 a-1", "rh_model": rh_model}
    ds["year"].attrs = {"long_name": "calendar year"}
    ds.attrs.update(product_attrs(
        inputs, title=f"carbonsink NEP ({rh_model})",
        extra={"rh_model": rh_model, "annual_climate": int(annual_climate)}))
    return ds
