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


# --- the published products: storage per year and the emission inventory ---------------------
# Densities are published as t C km-2 (stocks) and t C km-2 a-1 (= g C m-2 a-1, fluxes), the
# units of every other carbonsink product, so region totals use the same true-area machinery.
EMISSION_TERMS = ("e_people", "e_livestock", "e_energy", "e_wood", "e_cement", "e_landuse")
_E_LONG = {"e_people": "respiration of people", "e_livestock": "respiration of pigs and other "
           "large livestock", "e_energy": "energy consumption (fossil fuels)",
           "e_wood": "wood consumption", "e_cement": "cement production",
           "e_landuse": "land-use soil respiration", "e_total": "total carbon emission"}


def _unique_block(b):
    b = np.asarray(b)
    return np.unique(b[np.isfinite(b)]).astype(np.int64)


def codes_present(lulc: xr.DataArray) -> np.ndarray:
    """The land-use codes present in a (lazy) map: one pass, a np.unique per block."""
    import dask

    if lulc.chunks is None:
        return _unique_block(lulc.values)
    parts = dask.compute(*[dask.delayed(_unique_block)(b) for b in lulc.data.to_delayed().ravel()])
    return np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)


def _remap_block(b, keys, values):
    b = np.asarray(b)
    ok = np.isfinite(b)
    codes = np.where(ok, b, 0).astype(np.int64)
    pos = np.clip(np.searchsorted(keys, codes), 0, keys.size - 1)
    return np.where(ok & (keys[pos] == codes), values[pos], 0).astype(np.int32)


def remap_codes(lulc: xr.DataArray, mapping: dict[int, int]) -> xr.DataArray:
    """Integer codes (0 off land / unmapped) through ``mapping`` {code: code}, block by block."""
    keys = np.array(sorted(mapping), dtype=np.int64)
    values = np.array([mapping[k] for k in keys], dtype=np.int64)
    data = (lulc.data.map_blocks(_remap_block, keys, values, dtype=np.int32)
            if lulc.chunks is not None else _remap_block(lulc.values, keys, values))
    return xr.DataArray(data, dims=lulc.dims, coords=lulc.coords, name=lulc.name)


def storage_product(lulc: xr.DataArray, pools: pd.DataFrame, classes: pd.DataFrame, *,
                    valuation: dict | None = None) -> xr.Dataset:
    """Storage per pool and year (t C ha⁻¹, InVEST's numbers), ``c_total_cell`` (t C), and the
    change between the first and the last year (with InVEST's NPV when ``valuation`` gives price,
    discount_rate and rate_change). Codes absent from the pool table use their primary class's
    row (:func:`carbonsink.io.services_tables.pool_codes_for`); codes in neither → TableError."""
    from ..io.services_tables import pool_codes_for

    mapping = pool_codes_for(codes_present(lulc), pools, classes, source="the lulc input")
    codes = remap_codes(lulc, mapping)
    ds = compute_storage(codes, pools, nodata=0)
    ds = ds.where(lulc.notnull())
    years = lulc["year"].values
    first, last = ds["c_total"].isel(year=0, drop=True), ds["c_total"].isel(year=-1, drop=True)
    ds["c_change"] = (last - first).assign_attrs(
        units="t C ha-1", long_name=f"change in carbon storage {years[0]}-{years[-1]} "
        "(last - first year's land use)")
    if valuation:
        factor = ks.npv_factor(valuation["price"], valuation["discount_rate"],
                               valuation["rate_change"], int(years[0]), int(years[-1]))
        ds["npv"] = (ds["c_change"] * factor).assign_attrs(
            units="currency ha-1", long_name="net present value of the change in storage "
            "(InVEST carbon model valuation)", npv_factor=factor,
            **{k: float(v) for k, v in valuation.items()})
    for v in ds.data_vars:
        ds[v] = ds[v].astype("f4")
    ds.attrs["pool_codes_used"] = ", ".join(f"{k}->{v}" for k, v in mapping.items())
    return ds


def _weights_block(prov, codes):
    p = np.asarray(prov).astype(np.int64)
    pos = np.clip(np.searchsorted(codes, p), 0, codes.size - 1)
    return np.where(codes[pos] == p, pos, -1)


def _lookup_block(prov, codes, table):
    """(n_year, *prov.shape): table[year, index of the cell's province] (NaN: no province)."""
    idx = _weights_block(prov, codes)
    out = table[:, np.maximum(idx, 0)]
    out[:, idx < 0] = np.nan
    return out.astype("f8")


def per_province(da_: xr.DataArray, province: xr.DataArray, codes: np.ndarray) -> np.ndarray:
    """Σ over each province's cells of a (year, lat, lon) field → (n_year, n_code), NaN as 0."""
    from flox.xarray import xarray_reduce

    mask = province.astype("int32").rename("__province")
    if da_.chunks is not None:
        mask = mask.chunk({d: c for d, c in da_.chunksizes.items() if d in ("lat", "lon")})
    out = xarray_reduce(da_.fillna(0.0), mask, func="sum", expected_groups=codes.astype("int32"),
                        dim=("lat", "lon"), fill_value=0.0)
    return out.transpose("year", ...)


def province_lookup(province: xr.DataArray, codes, table: np.ndarray, like: xr.DataArray):
    """A (year, lat, lon) field of ``table[year, province]`` on ``like``'s chunks."""
    import dask.array as dsa

    prov = province.chunk({d: c for d, c in like.chunksizes.items() if d in ("lat", "lon")}) \
        if like.chunks is not None else province
    if prov.chunks is None:
        data = _lookup_block(prov.values, codes, table)
    else:
        data = dsa.map_blocks(_lookup_block, prov.data, codes, table, new_axis=0,
                              chunks=((table.shape[0],),) + prov.data.chunks, dtype="f8")
    return xr.DataArray(data, dims=("year", "lat", "lon"),
                        coords={"year": like["year"], "lat": like["lat"], "lon": like["lon"]})


def _primary_map(lulc: xr.DataArray, classes: pd.DataFrame) -> xr.DataArray:
    from ..io.services_tables import primary_of

    codes = codes_present(lulc)
    return remap_codes(lulc, dict(zip(codes.tolist(), primary_of(codes, classes).tolist())))


def _landuse_block(codes, rates_keys, rates_values):
    table = dict(zip(rates_keys.tolist(), rates_values.tolist()))
    return ks.lookup_by_code(codes, table, nodata=0, default=0.0) * 100.0   # t ha-1 → t km-2


def _full_province_area(name: str, grid) -> float:
    """km² of a province's cells on a grid of ``grid``'s resolution (the whole province)."""
    from ..domains import get_domain
    from ..grid import Grid
    from ..zonal import cell_area_da as _area

    dom = get_domain(name)
    g = Grid.covering(grid.res, dom.bounds)
    m = dom.mask(g, require=False) > 0
    area = _area(xr.Dataset(coords={k: xr.Variable(*v) for k, v in g.coords().items()}))
    return float((area.values * m).sum() * 1e-6)


def emission_product(inputs: xr.Dataset, regions: xr.Dataset, stats: pd.DataFrame,
                     factors: pd.DataFrame, classes: pd.DataFrame, *, rates: dict | None = None,
                     domain: str = "china", grid=None) -> tuple[xr.Dataset, pd.DataFrame]:
    """The emission inventory of SCIENCE.md §7 per cell and year (t C km⁻² a⁻¹ per term) and per
    province and year (the inventory table, t C a⁻¹).

    Province statistics are spread onto the province's cells: people by population, pigs and
    large livestock by cropland + grassland area, energy, wood and cement by GDP; a province whose
    weight sums to 0 is spread by area (flagged). Each province's Σ(density × true cell area)
    equals its statistic. The land-use term is the class rate × area. In a study area that cuts a
    province, the province's statistic is scaled by the share of its area inside the study area
    (recorded as ``domain_share``); provinces of the map without statistics get NaN (listed);
    provinces of the table absent from the map are an error for all China and are left out (listed)
    for a study area."""
    import dask

    from ..io.services_tables import TableError

    lulc, pop, gdp = inputs["lulc"], inputs["population"], inputs["gdp"]
    years = lulc["year"].values
    spatial = {d: c for d, c in lulc.chunksizes.items() if d in ("lat", "lon")} \
        if lulc.chunks is not None else None
    area_km2 = cell_area_da(lulc, chunks=spatial) * 1e-6
    province = regions["province"]
    names = list(province.attrs["region_names"])
    map_codes = dict(zip(names, (int(c) for c in province.attrs["flag_values"])))
    stats = stats[stats["year"].isin(years)]
    absent = sorted(set(stats["province"]) - set(names))
    if absent and domain == "china":
        raise TableError("province statistics table", "province",
                         f"provinces {absent} have statistics but no cell of the province map "
                         f"on this grid (every province of the table must be on the map)")
    stats = stats[stats["province"].isin(names)]
    in_table = [n for n in names if n in set(stats["province"])]
    codes = np.array(sorted(map_codes[n] for n in in_table), dtype=np.int64)
    code_names = {c: n for n, c in map_codes.items()}
    order = [code_names[c] for c in codes]

    primary = _primary_map(lulc, classes)
    land = lulc.notnull()
    cropgrass = primary.isin([1, 3]).where(land).astype("f8")
    ones = xr.ones_like(lulc, dtype="f8").where(land)
    w_pop, w_gdp, w_cg, w_area = dask.compute(*(per_province(x * area_km2, province, codes) for x in
                                                (pop, gdp, cropgrass, ones)))
    w_pop, w_gdp, w_cg, w_area = (np.asarray(w.values, dtype="f8") for w in
                                  (w_pop, w_gdp, w_cg, w_area))

    # the inventory per (year, province) from the rows present; NaN where a row is missing
    fuels = factors["fuel"].tolist()
    full = pd.MultiIndex.from_product([years, order], names=["year", "province"])
    st = stats.set_index(["year", "province"]).reindex(full)
    have = st[["population"]].notna().to_numpy().ravel()
    rows = st[have]
    inv = ks.province_inventory(rows["population"], rows["pigs"], rows["large_livestock"],
                                rows[[f"energy_{f}" for f in fuels]].to_numpy(),
                                factors["factor"].to_numpy(), rows["wood"], rows["cement"])
    shape = (years.size, codes.size)

    def grid_of_rows(values):
        out = np.full(years.size * codes.size, np.nan)
        out[have] = values
        return out.reshape(shape)
    terms = {"e_people": grid_of_rows(inv["respiration_people"]),
             "e_livestock": grid_of_rows(inv["respiration_pigs"] + inv["respiration_livestock"]),
             "e_energy": grid_of_rows(inv["energy"]), "e_wood": grid_of_rows(inv["wood"]),
             "e_cement": grid_of_rows(inv["cement"])}
    share = np.ones(codes.size)
    if domain != "china":
        share = np.array([min(1.0, w_area[0, k] / max(_full_province_area(n, grid), 1e-12))
                          for k, n in enumerate(order)])
        terms = {k: v * share[None, :] for k, v in terms.items()}
    weights = {"e_people": (w_pop, pop), "e_livestock": (w_cg, cropgrass),
               "e_energy": (w_gdp, gdp), "e_wood": (w_gdp, gdp), "e_cement": (w_gdp, gdp)}
    ds = xr.Dataset(coords={"year": lulc["year"], "lat": lulc["lat"], "lon": lulc["lon"]})
    flags = {}
    for term, stat in terms.items():
        wsum, density = weights[term]
        by_area = ~(wsum > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            scale_w = np.where(by_area, 0.0, stat / np.where(by_area, 1.0, wsum))
            scale_a = np.where(by_area, stat / w_area, 0.0)
        flags[term] = by_area
        value = (province_lookup(province, codes, scale_w, lulc) * density.fillna(0.0)
                 + province_lookup(province, codes, scale_a, lulc)).where(land)
        ds[term] = value.astype("f4").assign_attrs(
            units="t C km-2 yr-1", long_name=f"carbon emission from {_E_LONG[term]}",
            cell_methods="area: mean")
    prim_codes = remap_codes(lulc, {int(c): int(c) for c in codes_present(lulc)})
    rates = ks.SEED003_LANDUSE_RATES if rates is None else rates
    rk = np.array(sorted(rates), dtype=np.int64)
    rv = np.array([rates[k] for k in rk], dtype="f8")
    lu = (prim_codes.data.map_blocks(_landuse_block, rk, rv, dtype="f8")
          if prim_codes.chunks is not None else _landuse_block(prim_codes.values, rk, rv))
    ds["e_landuse"] = xr.DataArray(lu, dims=lulc.dims, coords=lulc.coords).where(land) \
        .astype("f4").assign_attrs(units="t C km-2 yr-1", long_name=_E_LONG["e_landuse"]
                                   + " (class rate x area)", cell_methods="area: mean",
                                   rates_t_ha_yr=str(rates))
    ds["e_total"] = sum(ds[t] for t in EMISSION_TERMS).astype("f4").assign_attrs(
        units="t C km-2 yr-1", long_name=_E_LONG["e_total"] + " (sum of the six terms)",
        cell_methods="area: mean")
    no_stats = [n for n in names if n not in set(in_table)]
    ds.attrs.update({"provinces_without_statistics": no_stats,
                     "provinces_outside_map": absent,
                     "emission_factors": "; ".join(f"{f}: {x:g} t C tce-1" for f, x in
                                                   zip(fuels, factors["factor"]))})

    table = pd.DataFrame({"year": np.repeat(years, codes.size),
                          "province": np.tile(order, years.size)})
    for term, stat in terms.items():
        table[f"{term}_t"] = stat.ravel()
        table[f"{term}_by_area"] = flags[term].ravel()
    by_fuel = np.full((years.size * codes.size, len(fuels)), np.nan)
    by_fuel[have] = inv["energy_by_fuel"]
    for k, f in enumerate(fuels):
        table[f"e_energy_{f}_t"] = by_fuel[:, k] * np.repeat(share[None, :], years.size, 0).ravel()
    table["domain_share"] = np.tile(share, years.size)
    return ds, table
