"""The balance of emission and capacity, its wind-routed flows and its drivers (SCIENCE.md §7):
the xarray/dask layer over :mod:`carbonsink.kernels.services`, :mod:`~carbonsink.kernels.routing`
and :mod:`~carbonsink.kernels.geodetector`.

Capacity C is either the annual sequestration flux of carbonsink's own products (NEP + CCS,
clipped at 0; the emission then leaves out the land-use soil respiration, which NEP already nets)
or, as seed 003 does, the standing storage (t C km⁻², against the full annual emission). Which one
a run used is in every product's ``capacity`` attrs.

Routing is global (a parcel may cross the domain), so each year routes in one task on a grid of at
most ``routing_resolution`` (default 0.05°): finer grids are summed to it by area (t per cell) and
their wind averaged, all lazily on dask; a year's coarse fields (≈ 1 M cells for all China) are
built, routed and kept on the worker that routes it, and only the tables come back.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from ..grid import Grid, grid_of
from ..kernels import geodetector as kg
from ..kernels import routing as kr
from ..kernels import services as ks
from ..zonal import cell_area_da

DENSITY = "t C km-2 yr-1"
STOCK = "t C km-2"


# --- balance ------------------------------------------------------------------------------------
def balance_product(emission: xr.Dataset, *, sink: xr.Dataset | None = None,
                    storage: xr.Dataset | None = None) -> xr.Dataset:
    """Per cell and year: ``capacity`` C, ``emission`` E, ``ratio`` E/C (NaN where C = 0),
    ``flow`` min(E, C), ``difference`` C − E, ``surplus`` max(E − C, 0), ``spare`` max(C − E, 0).
    With ``sink`` (the ecosystem sink product) C = max(NEP + CCS, 0) and E excludes land-use
    soil respiration; else C is the storage (t C km⁻²) and E the full inventory (seed 003)."""
    if sink is not None:
        years = np.intersect1d(emission["year"].values, sink["year"].values)
        cap = sink["ecosystem_sink"].sel(year=years).clip(min=0.0)
        e = (emission["e_total"] - emission["e_landuse"]).sel(year=years)
        kind, cap_units = "sequestration", DENSITY
        how = ("annual sequestration flux max(NEP + CCS, 0) of the sink product; emission "
               "without land-use soil respiration (already inside NEP)")
    else:
        years = np.intersect1d(emission["year"].values, storage["year"].values)
        cap = storage["c_total"].sel(year=years) * 100.0           # t C ha-1 → t C km-2
        e = emission["e_total"].sel(year=years)
        kind, cap_units = "storage", STOCK
        how = ("standing carbon storage (InVEST pools) against the annual emission, as seed 003 "
               "does (a stock against a flux: ratios are seed-comparable, not physical)")
    cap = cap.where(e.notnull())
    e = e.where(cap.notnull())
    ds = xr.Dataset({
        "capacity": cap.astype("f4").assign_attrs(units=cap_units, long_name=f"carbon capacity "
                                                  f"({kind})"),
        "emission": e.astype("f4").assign_attrs(units=DENSITY, long_name="carbon emission "
                                                "counted against the capacity"),
        "ratio": (e / cap.where(cap > 0)).astype("f4").assign_attrs(
            units="1", long_name="emission / capacity (seed 003's supply-demand ratio; NaN "
            "where the capacity is 0)"),
        "flow": np.fmin(e, cap).astype("f4").assign_attrs(
            units=DENSITY, long_name="carbon flow min(E, C) per cell (seed 003 eq. 10)"),
        "difference": (cap - e).astype("f4").assign_attrs(
            units=cap_units, long_name="capacity - emission (> 0: the land takes up more)"),
        "surplus": (e - cap).clip(min=0.0).astype("f4").assign_attrs(
            units=DENSITY, long_name="surplus emission max(E - C, 0)"),
        "spare": (cap - e).clip(min=0.0).astype("f4").assign_attrs(
            units=cap_units, long_name="spare capacity max(C - E, 0)"),
    })
    ds.attrs.update({"capacity": kind, "capacity_definition": how})
    return ds


def balance_table(ds: xr.Dataset, regions: xr.Dataset, domain_name: str) -> pd.DataFrame:
    """Per region set, region and year: ΣE, ΣC (Tg C), ratio ΣE/ΣC, the region's flow
    min(ΣE, ΣC) and Σ of per-cell flows (Tg C), and the mean flow density (t C km⁻²)."""
    from ..regions import region_set_names
    from ..zonal import totals_many

    sets = regions[region_set_names(regions)]
    # t km-2 (a-1) = g m-2 (a-1)
    t = totals_many({v: ds[v].assign_attrs(units="g m-2 yr-1") for v in
                     ("emission", "capacity", "flow")}, sets, domain_name=domain_name)
    e, c, f = (t[t["variable"] == v].reset_index(drop=True) for v in
               ("emission", "capacity", "flow"))
    out = e[["region_set", "region", "year", "area_km2"]].copy()
    out["emission_tg"] = e["total_tg"].to_numpy()
    out["capacity_tg"] = c["total_tg"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        out["ratio"] = out["emission_tg"] / out["capacity_tg"].where(out["capacity_tg"] > 0)
    out["flow_tg"] = np.minimum(out["emission_tg"], out["capacity_tg"])
    out["flow_cells_tg"] = f["total_tg"].to_numpy()
    out["flow_t_km2"] = f["mean_flux_t_km2"].to_numpy()
    out["capacity"] = ds.attrs.get("capacity", "")
    return out


# --- routing ------------------------------------------------------------------------------------
def routing_grid(grid: Grid, routing_resolution: float) -> tuple[Grid, int]:
    """The grid routing runs on: ``grid`` itself if it is as coarse as ``routing_resolution``, else
    the grid of resolution k × res (k = round(routing_resolution / res)) covering it."""
    k = max(1, int(round(routing_resolution / grid.res)))
    if k == 1:
        return grid, 1
    return Grid.covering(grid.res * k, grid.bounds), k


def _pad_to(da_: xr.DataArray, fine: Grid, coarse: Grid) -> xr.DataArray:
    """``da_`` padded with NaN so its box is ``coarse``'s (same resolution as ``fine``)."""
    n = fine.per_degree
    top = int(round((coarse.north - fine.north) * n))
    left = int(round((fine.west - coarse.west) * n))
    bottom = int(round((fine.south - coarse.south) * n))
    right = int(round((coarse.east - fine.east) * n))
    if top == left == bottom == right == 0:
        return da_
    return da_.pad(lat=(top, bottom), lon=(left, right), constant_values=np.nan)


def coarse_sum(da_: xr.DataArray, fine: Grid, coarse: Grid, k: int) -> xr.DataArray:
    """Σ over each coarse cell (NaN-skipping; all-NaN → NaN), lazily."""
    if k == 1:
        return da_
    padded = _pad_to(da_, fine, coarse)
    out = padded.fillna(0.0).coarsen(lat=k, lon=k).sum()
    out = out.where(padded.notnull().coarsen(lat=k, lon=k).sum() > 0)
    return out.assign_coords(lat=coarse.lat, lon=coarse.lon)


def coarse_mean(da_: xr.DataArray, fine: Grid, coarse: Grid, k: int) -> xr.DataArray:
    if k == 1:
        return da_
    out = _pad_to(da_, fine, coarse).coarsen(lat=k, lon=k).mean()
    return out.assign_coords(lat=coarse.lat, lon=coarse.lon)


def _sector_block(u, v, calm):
    """(n_year, ny, nx) int8 prevailing sectors from 12 × n_year monthly (u, v) of a block."""
    u, v = np.asarray(u), np.asarray(v)
    ny = u.shape[0] // 12
    out = np.full((ny,) + u.shape[1:], -1, dtype=np.int8)
    valid = np.isfinite(u).all(axis=0) & np.isfinite(v).all(axis=0)
    for y in range(ny):           # a dozen years per block, not pixels
        out[y] = kr.wind_sector(u[12 * y:12 * y + 12], v[12 * y:12 * y + 12], valid, calm=calm)
    return out


def prevailing_sector(uas: xr.DataArray, vas: xr.DataArray, years, calm: float = 0.0):
    """The prevailing downwind sector per cell and year (int8, −1 calm/outside), lazily."""
    import dask.array as dsa

    u, v = uas.chunk({"time": -1}), vas.chunk({"time": -1})
    data = dsa.map_blocks(_sector_block, u.data, v.data, calm, dtype=np.int8,
                          chunks=((len(years),),) + u.data.chunks[1:])
    return xr.DataArray(data, dims=("year", "lat", "lon"),
                        coords={"year": np.asarray(years), "lat": uas["lat"], "lon": uas["lon"]})


ROUTED = ("absorbed", "throughput", "exported_from", "unabsorbed")
_LONG = {"surplus": "surplus emission of the routing cell", "spare": "spare capacity of the "
         "routing cell", "absorbed": "routed surplus absorbed in the cell",
         "throughput": "routed surplus that entered the cell from upwind (the flow path)",
         "exported_from": "routed surplus that left the domain from the cell",
         "unabsorbed": "routed surplus left where it stands (calm, dead loops, max_steps)"}


def _route_year(s, k, sector, regions, region_codes, labels, year, max_steps):
    """One year's routing (a task on a worker): the year's grids as float32 (surplus, spare and
    the four routed fields) and int8 sector, its totals row and its flow-matrix rows."""
    s, k = np.asarray(s, "f8")[0], np.asarray(k, "f8")[0]
    on = np.isfinite(s) & np.isfinite(k)
    sec = np.where(on, np.asarray(sector)[0], -1).astype("i1")
    r = kr.route_surplus(s, k, sec, regions=regions,
                         region_codes=region_codes, max_steps=max_steps)
    grids = np.stack([s, k] + [r[n] for n in ROUTED]).astype("f4")[:, None]
    row = {"year": int(year), "surplus_t": r["surplus_total"], "absorbed_t": r["absorbed_total"],
           **{f"exported_{e}_t": float(r["exported"][i]) for i, e in enumerate(kr.EDGES)},
           "unabsorbed_t": r["unabsorbed_total"], "trapped_t": r["trapped"],
           "in_transit_t": r["in_transit"], "steps": r["steps"],
           "mass_balance_residual_t": r["surplus_total"] - r["absorbed_total"]
           - r["exported_total"] - r["unabsorbed_total"]}
    rows = []
    if regions is not None:
        m, exp_o, un_o = r["flow_matrix"], r["exported_by_origin"], r["unabsorbed_by_origin"]
        for i, o in enumerate(labels):      # regions × regions, not pixels
            if r["surplus_by_origin"][i] <= 0:
                continue
            rows += [(int(year), o, d, m[i, j]) for j, d in enumerate(labels) if m[i, j] > 0]
            rows += [(int(year), o, f"exported {edge}", exp_o[i, e])
                     for e, edge in enumerate(kr.EDGES) if exp_o[i, e] > 0]
            if un_o[i] > 0:
                rows.append((int(year), o, "unabsorbed", un_o[i]))
    return grids, sec[None], row, rows


def route_years(balance: xr.Dataset, uas: xr.DataArray, vas: xr.DataArray, regions_coarse,
                region_codes, region_names, *, routing_resolution: float = 0.05,
                max_steps: int | None = None, calm: float = 0.0):
    """Route each year's surplus downwind onto spare capacity (masses in t per routing cell).

    Every year is one task (on the cluster's workers when there is one): the routing-grid fields
    are summed lazily from the balance, routed where they are computed and kept there (persisted)
    until the product is written; only the per-year totals and flow-matrix rows come back.

    Returns (dataset on the routing grid, per-year totals table, flow-matrix table)."""
    import dask
    import dask.array as dsa

    fine = grid_of(balance)
    coarse, k = routing_grid(fine, routing_resolution)
    years = balance["year"].values
    spatial = {d: c for d, c in balance.chunksizes.items() if d in ("lat", "lon")}
    area_km2 = cell_area_da(balance, chunks=spatial or None) * 1e-6
    s_mass = coarse_sum(balance["surplus"].astype("f8") * area_km2, fine, coarse, k)
    k_mass = coarse_sum(balance["spare"].astype("f8") * area_km2, fine, coarse, k)
    wind_years = np.isin(uas["time"].dt.year.values, years)
    u = coarse_mean(uas.isel(time=wind_years), fine, coarse, k)
    v = coarse_mean(vas.isel(time=wind_years), fine, coarse, k)
    sector = prevailing_sector(u, v, years, calm)

    def per_year(da_):        # one (1, ny, nx) block per year
        return dsa.asarray(da_.data).rechunk((1, -1, -1)).to_delayed().ravel()
    labels = list(region_names) + ["(no region)"]
    if regions_coarse is not None:      # one key in the graph, shared by every year
        regions_coarse = dask.delayed(np.asarray(regions_coarse).astype(
            np.min_scalar_type(max(1, int(np.max(regions_coarse))))), pure=True)
    tasks = [dask.delayed(_route_year, pure=True)(s_, k_, sec_, regions_coarse, region_codes,
                                                  labels, int(year), max_steps)
             for s_, k_, sec_, year in zip(per_year(s_mass), per_year(k_mass),
                                           per_year(sector), years)]
    tasks = dask.persist(*tasks)
    small = dask.compute(*[t[2:] for t in tasks])
    shape = (1,) + coarse.shape
    grids = dsa.concatenate([dsa.from_delayed(t[0], (6,) + shape, np.float32) for t in tasks],
                            axis=1)
    sec = dsa.concatenate([dsa.from_delayed(t[1], shape, np.int8) for t in tasks], axis=0)
    dims = ("year", "lat", "lon")
    ds = xr.Dataset(coords={"year": years, "lat": coarse.lat, "lon": coarse.lon})
    ds["sector"] = xr.DataArray(sec, dims=dims, attrs={
        "long_name": "prevailing downwind sector of the year", "flag_values": list(range(8)),
        "flag_meanings": " ".join(kr.SECTORS), "_note": "-1: calm or outside", "units": "1"})
    for i, n in enumerate(("surplus", "spare") + ROUTED):
        ds[n] = xr.DataArray(grids[i], dims=dims, attrs={
            "units": "t C yr-1", "long_name": _LONG[n], "cell_methods": "area: sum"})
    ds.attrs.update({"routing_resolution_deg": coarse.res, "routing_factor": k,
                     **coarse.attrs()})
    matrix = pd.DataFrame([r for _row, rows in small for r in rows],
                          columns=["year", "origin", "destination", "mass_t"])
    return ds, pd.DataFrame([row for row, _rows in small]), matrix


# --- drivers ------------------------------------------------------------------------------------
FACTORS = ("population", "gdp", "lulc", "elevation", "tas", "pr")


def _partials_block(y, *factors, breaks, n_strata, shift):
    """One block's sufficient statistics: the Pearson matrix of [y, factors] and, per factor and
    per pair, the strata (N_h, Σy, Σy²) — summed over blocks by the caller."""
    y = np.asarray(y, "f8").ravel()
    fs = [np.asarray(f, "f8").ravel() for f in factors]
    ok = np.isfinite(y) & np.all([np.isfinite(f) for f in fs], axis=0)
    pear = ks.pearson_partials(y[ok], *[f[ok] for f in fs], shift=shift)
    strata = [kg.discretize(f[ok], breaks=b) if b is not None else f[ok].astype(np.int64)
              for f, b in zip(fs, breaks)]
    single = [kg.strata_partials(y[ok], s, n, shift[0]) for s, n in zip(strata, n_strata)]
    pairs = {}
    for i in range(len(fs)):
        for j in range(i + 1, len(fs)):
            lab = strata[i] * n_strata[j] + strata[j]
            pairs[(i, j)] = kg.strata_partials(y[ok], lab, n_strata[i] * n_strata[j], shift[0])
    return pear, single, pairs


def _sum_parts(a, b):
    return (a[0] + b[0], [x + y for x, y in zip(a[1], b[1])],
            {k: a[2][k] + b[2][k] for k in a[2]})


def drivers(y: xr.DataArray, factors: dict[str, xr.DataArray], *, k: int = 5,
            method: str = "quantile", categorical=("lulc",), min_stratum_size: int = 1,
            sample: int = 20000) -> dict:
    """Pearson r (with p) of y against each factor and the Geodetector (factor q, F, p and the
    interaction q and type of every pair) over the cells where y and every factor are valid, as
    block partials summed over the dask blocks (memory bounded by a block). Continuous factors
    are discretised into ``k`` classes by ``method`` with breaks from a regular sample of
    ``sample`` cells; categorical ones (LULC primary classes) are their own strata."""
    from functools import reduce

    import dask

    names = list(factors)
    arrays = [y] + [factors[n] for n in names]
    arrays = [a.chunk(dict(zip(y.dims, y.chunks))) if y.chunks is not None else a
              for a in xr.align(*arrays, join="exact")]
    step = max(1, int(np.sqrt(y.size / sample)))
    thin = dask.compute(*[a.isel(lat=slice(None, None, step), lon=slice(None, None, step))
                          for a in arrays])
    ok = np.all([np.isfinite(np.asarray(a.values, "f8")) for a in thin], axis=0)
    shift = np.array([float(np.asarray(a.values, "f8")[ok].mean()) if ok.any() else 0.0
                      for a in thin])
    breaks, n_strata = [], []
    for n, a in zip(names, thin[1:]):
        if n in categorical:
            breaks.append(None)
            # class codes as strata: one-digit primary classes, or whatever the sample shows
            n_strata.append(max(9, int(np.nanmax(a.values)) if ok.any() else 0) + 1)
        else:
            b = kg.class_breaks(np.asarray(a.values, "f8")[ok], k=k, method=method)
            breaks.append(np.asarray(b))
            n_strata.append(len(b) + 1)
    if y.chunks is None:
        blocks = [[a.values for a in arrays]]
    else:
        delayed = [a.data.to_delayed().ravel() for a in arrays]
        blocks = list(zip(*delayed))
    parts = [dask.delayed(_partials_block)(*b, breaks=breaks, n_strata=n_strata, shift=shift)
             for b in blocks]
    while len(parts) > 1:    # a tree reduction: a handful of partials per task
        parts = [dask.delayed(reduce)(_sum_parts, parts[i:i + 8])
                 for i in range(0, len(parts), 8)]
    pear, single, pairs = dask.compute(parts[0])[0]
    r, p, n = ks.pearson_from_partials(pear)
    fac = [kg.factor_from_partials(s, shift[0], min_stratum_size=min_stratum_size)
           for s in single]
    m = len(names)
    q12 = np.full((m, m), np.nan)
    types = np.full((m, m), -1, dtype=np.int8)
    for i in range(m):
        q12[i, i] = fac[i]["q"]
        for j in range(i + 1, m):
            q = kg.factor_from_partials(pairs[(i, j)], shift[0],
                                        min_stratum_size=min_stratum_size)["q"]
            q12[i, j] = q12[j, i] = q
            types[i, j] = types[j, i] = kg.interaction_type(fac[i]["q"], fac[j]["q"], q)
    return {"factors": names, "r": r[0, 1:], "r_p": p[0, 1:], "n": n, "factor": fac,
            "q_interaction": q12, "interaction_type": types, "breaks": breaks,
            "n_strata": n_strata}
