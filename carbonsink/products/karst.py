"""Karst inorganic sink by maximum potential dissolution (SCIENCE.md §2), lazily on dask."""
from __future__ import annotations

import numpy as np
import xarray as xr

from ..io.validate import InputError, validate_inputs
from ..kernels import karst as k
from ._attrs import product_attrs
from .climate import annual_drivers

REQUIRED = ("tas", "pr", "aet", "carbonate_fraction", "land_mask")
OUTPUTS = ("pco2", "ionic_strength", "ca_eq", "dmax", "ccs")

ATTRS = {
    "pco2": {"units": "atm", "long_name": "soil CO2 partial pressure (Brook et al. 1983, from AET)"},
    "ionic_strength": {"units": "mol L-1", "long_name": "ionic strength of soil/river water"},
    "ca_eq": {"units": "mol L-1",
              "long_name": "equilibrium Ca2+ concentration of calcite dissolution"},
    "dmax": {"units": "mol km-2 yr-1",
             "long_name": "maximum potential carbonate dissolution Dmax = 1e6 (P-E)+ [Ca2+]eq"},
    "ccs": {"units": "g m-2 yr-1",
            "long_name": "carbonate weathering carbon sink CCS = Dmax * 12.011e-6 * f",
            "units_note": "g C m-2 a-1 = t C km-2 a-1", "sign_convention":
            "positive = sink (1 mol CO2 consumed per mol carbonate dissolved)"},
}


def _kernel(t, p, e, f, i):
    # apply_ufunc hands NaN-filled placeholders for "no ionic-strength field": iterate I = 3[Ca]
    ionic = None if i is None or (np.ndim(i) == 0 and np.isnan(i)) else i
    out = k.karst_sink(t, p, e, np.where(np.isnan(f), 0.0, f), ionic)
    return tuple(out[name].astype("f4") for name in OUTPUTS)


def compute_karst(inputs: xr.Dataset, ionic_strength=None, *, validate: bool = True) -> xr.Dataset:
    """pCO₂, ionic strength, [Ca²⁺]eq, Dmax and CCS per year on the input grid.

    ``ionic_strength``: a (year, lat, lon) DataArray in mol L-1 (e.g. the random-forest
    prediction), a scalar, or None to iterate I = 3[Ca²⁺]eq per pixel (SCIENCE.md §2).
    """
    validate_inputs(inputs, REQUIRED, check_values=validate)
    drivers = annual_drivers(inputs)
    f = inputs["carbonate_fraction"]
    if ionic_strength is None:
        i_arg, i_source = np.nan, "iterated I = 3[Ca2+]eq (no ionic-strength field)"
    elif isinstance(ionic_strength, xr.DataArray):
        units = ionic_strength.attrs.get("units")
        if units not in ("mol L-1", "mol/L", "mol dm-3"):
            raise InputError("ionic_strength", None, f"units {units!r} must be 'mol L-1'")
        i_arg = ionic_strength
        i_source = ionic_strength.attrs.get("model", "ionic-strength field supplied by the caller")
    else:
        i_arg, i_source = float(ionic_strength), f"constant {float(ionic_strength)} mol L-1"
    outs = xr.apply_ufunc(
        _kernel, drivers["tas"], drivers["pr"], drivers["aet"], f, i_arg,
        output_core_dims=[[]] * len(OUTPUTS), dask="parallelized",
        output_dtypes=["f4"] * len(OUTPUTS))
    land = inputs["land_mask"] > 0
    ds = xr.Dataset({name: da.where(land).transpose("year", "lat", "lon")
                     for name, da in zip(OUTPUTS, outs)})
    for name in OUTPUTS:
        ds[name].attrs = dict(ATTRS[name])
    ds["ionic_strength"].attrs["source"] = i_source
    ds["carbonate_fraction"] = f
    ds.attrs.update(product_attrs(inputs, title="carbonsink karst inorganic sink (MPD)",
                                  extra={"ionic_strength_source": i_source}))
    return ds


def compute_sink(nep: xr.Dataset | xr.DataArray, karst: xr.Dataset | xr.DataArray) -> xr.Dataset:
    """Ecosystem sink = NEP + CCS per pixel-year (SCIENCE.md §4); CCS counts 0 off carbonate."""
    nep_da = nep["nep"] if isinstance(nep, xr.Dataset) else nep
    ccs_da = karst["ccs"] if isinstance(karst, xr.Dataset) else karst
    for name, da in (("nep", nep_da), ("ccs", ccs_da)):
        if da.attrs.get("units") != "g m-2 yr-1":
            raise InputError(name, None, f"units {da.attrs.get('units')!r}, expected 'g m-2 yr-1'")
    sink = (nep_da + ccs_da.fillna(0.0).where(nep_da.notnull())).astype("f4")
    sink.attrs = {"units": "g m-2 yr-1", "long_name": "ecosystem carbon sink = NEP + CCS",
                  "units_note": "g C m-2 a-1 = t C km-2 a-1",
                  "sign_convention": "positive = sink (uptake by the land)",
                  "cell_methods": "year: sum"}
    ds = xr.Dataset({"ecosystem_sink": sink, "nep": nep_da, "ccs": ccs_da})
    src = nep if isinstance(nep, xr.Dataset) else nep_da.to_dataset()
    ds.attrs.update(product_attrs(src, title="carbonsink ecosystem sink (NEP + CCS)"))
    return ds
