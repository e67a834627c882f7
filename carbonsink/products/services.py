"""Carbon-sequestration services (SCIENCE.md §7, seed 003): the xarray layer over
:mod:`carbonsink.kernels.services`.

Today: carbon storage of the InVEST carbon model (:func:`compute_storage`) on any carbonsink grid, lazy
and chunk by chunk on dask — per pool and total t C ha⁻¹, t C per cell with true spherical cell
areas, and the change and its net present value between a baseline and an alternate land-use map.
The pool table is InVEST's own CSV (``lucode, c_above, c_below, c_soil, c_dead`` in t C ha⁻¹), so a
table made for InVEST works unchanged; :data:`carbonsink.kernels.services.SEED003_POOLS` is seed
003's table 2. Emissions, the balance, wind-routed flows and drivers have their kernels
(:mod:`carbonsink.kernels.services`, :mod:`~carbonsink.kernels.routing`,
:mod:`~carbonsink.kernels.geodetector`); their products come with the services inputs.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from ..kernels import services as ks
from ..zonal import cell_area_da

POOLS = ("c_above", "c_below", "c_soil", "c_dead", "c_total")
_LONG = {"c_above": "aboveground biomass carbon", "c_below": "belowground biomass carbon",
         "c_soil": "soil organic carbon", "c_dead": "dead organic matter carbon",
         "c_total": "total carbon storage (sum of the four pools)"}


def _density_block(lulc, lucode, pools, nodata):
    """(5, ...) t C ha⁻¹ of one block: the kernel on the block's codes."""
    table = {"lucode": lucode, **{p: pools[k] for k, p in enumerate(POOLS[:4])}}
    out = ks.storage_density(lulc, table, nodata=nodata)
    return np.stack([out[p] for p in POOLS]).astype("f8")


def _density(lulc: xr.DataArray, lucode, pools, nodata) -> xr.Dataset:
    if lulc.chunks is None:
        stacked = _density_block(np.asarray(lulc.values), lucode, pools, nodata)
        data = {p: (lulc.dims, stacked[k]) for k, p in enumerate(POOLS)}
    else:
        arr = lulc.data.map_blocks(_density_block, lucode, pools, nodata, new_axis=0,
                                   chunks=((5,),) + lulc.data.chunks, dtype="f8")
        data = {p: (lulc.dims, arr[k]) for k, p in enumerate(POOLS)}
    ds = xr.Dataset(data, coords=lulc.coords)
    for p in POOLS:
        ds[p].attrs = {"units": "t C ha-1", "long_name": _LONG[p],
                       "cell_methods": "area: mean"}
    return ds


def compute_storage(lulc: xr.DataArray, pools: pd.DataFrame, lulc_alt: xr.DataArray | None = None,
                    *, nodata: int | None = None, valuation: dict | None = None) -> xr.Dataset:
    """Carbon storage per pool (``c_above``, ``c_below``, ``c_soil``, ``c_dead``) and ``c_total`` in
    t C ha⁻¹ — per pixel the values natcap.invest's carbon model writes for the same map and table
    — plus ``c_total_cell`` (t C per cell, true cell areas on a carbonsink grid).

    ``lulc``: integer land-use codes (lat, lon) (numpy- or dask-backed; codes absent from ``pools``
    → ValueError naming them, ``nodata`` cells → NaN); ``pools``: InVEST's columns (any case,
    extra columns ignored). With ``lulc_alt`` (the same grid): ``c_total_alt`` and ``c_change``
    (alternate − baseline, t C ha⁻¹) and ``c_change_cell`` (t C per cell); with ``valuation``
    ``{price, discount_rate, rate_change, year_bas, year_alt}`` also ``npv`` = c_change × InVEST's
    NPV factor (currency per ha) and its factor in the attrs.
    """
    lucode, table = ks.pool_table(pools)
    if nodata is None:
        nodata = lulc.attrs.get("_FillValue", lulc.attrs.get("nodata"))
    ds = _density(lulc, lucode, table, nodata)
    has_grid = "lat" in lulc.dims and "lon" in lulc.dims
    if has_grid:
        area = cell_area_da(lulc, chunks=dict(zip(lulc.dims, lulc.chunks)) if lulc.chunks
                            else None)
        ds["c_total_cell"] = (ds["c_total"] * area * 1e-4).assign_attrs(
            units="t C", long_name="total carbon storage of the cell (true cell area)",
            cell_methods="area: sum")
    if lulc_alt is not None:
        if lulc_alt.shape != lulc.shape:
            raise ValueError(f"alternate land-use map of shape {lulc_alt.shape} is not on the "
                             f"baseline's grid {lulc.shape}")
        alt = _density(lulc_alt, lucode, table, nodata)
        ds["c_total_alt"] = alt["c_total"].assign_attrs(
            units="t C ha-1", long_name="total carbon storage of the alternate land use")
        ds["c_change"] = (alt["c_total"] - ds["c_total"]).assign_attrs(
            units="t C ha-1", long_name="change in carbon storage, alternate - baseline")
        if has_grid:
            ds["c_change_cell"] = (ds["c_change"] * area * 1e-4).assign_attrs(
                units="t C", long_name="change in carbon storage of the cell",
                cell_methods="area: sum")
        if valuation:
            factor = ks.npv_factor(**valuation)
            ds["npv"] = (ds["c_change"] * factor).assign_attrs(
                units="currency ha-1", long_name="net present value of the change in storage "
                "(InVEST carbon model valuation)", npv_factor=factor,
                **{k: v for k, v in valuation.items()})
    ds.attrs.update({"title": "carbon storage (InVEST carbon model)",
                     "pools": "InVEST columns lucode, c_above, c_below, c_soil, c_dead (t C ha-1)",
                     "pool_table_codes": [int(c) for c in lucode]})
    return ds
