"""The carbon-sequestration services family (SCIENCE.md §7, seed 003), registered with
:mod:`carbonsink.products.registry`: storage → emission → balance → wind-routed flow → drivers.

Each product reads the run's inputs (the six services variables, :data:`SERVICES`) and the
tables attached to them (``province_statistics.csv``; ``carbon_pools.csv``, ``lulc_classes.csv``,
``emission_factors.csv`` where the inputs carry their own), a table the run configuration names
(``services:`` section) overriding both, the package's defaults otherwise.
"""
from __future__ import annotations

import io
import logging

import numpy as np
import pandas as pd
import xarray as xr

from ..io import services_tables as tables
from ..io.validate import SERVICES
from .registry import Built, Context, ProductSpec, register

log = logging.getLogger("carbonsink")
FAMILY = "services"


def _csv(table: pd.DataFrame) -> bytes:
    buf = io.StringIO()
    table.to_csv(buf, index=False, float_format="%.12g")   # masses in t: keep the balance exact
    return buf.getvalue().encode()


def _has_services(cfg, record: dict | None) -> bool:
    if not cfg.services.enabled:
        return False
    if record is None:          # the synthetic demo inputs carry them
        return True
    return all(v in record.get("variables", []) for v in SERVICES)


def _has_statistics(cfg, record: dict | None) -> bool:
    return _has_services(cfg, record) and (
        record is None or "province_statistics.csv" in record.get("attachments", {}))


def _table(ctx: Context, name: str, reader, **kw):
    """The configured table, else the inputs' attachment, else the package default."""
    path = getattr(ctx.cfg.services, name.removesuffix(".csv"), None)
    src = path or ctx.raw("inputs", name)
    return reader(src, **kw), (path or (f"inputs attachment {name}" if src else "package default"))


def _params(cfg) -> dict:
    return {"services": cfg.services.model_dump(mode="json"),
            "tables": cfg.services.table_hashes()}


def _sets(regions: xr.Dataset) -> xr.Dataset:
    from ..regions import region_set_names
    return regions[region_set_names(regions)]


def _domain_name(regions):
    return str(regions.attrs.get("domain_name", "China"))


def _long_totals(ds: xr.Dataset, variables, regions, *, factor: float = 1.0,
                 column: str = "variable") -> pd.DataFrame:
    """Totals of several density variables per region and year, one long table (Tg C [a-1])."""
    from ..zonal import totals_many

    fluxes = {v: (ds[v] * factor).assign_attrs(units="g m-2 yr-1")   # t km-2 = g m-2
              for v in variables}
    return totals_many(fluxes, _sets(regions), domain_name=_domain_name(regions), column=column)


# --- storage ------------------------------------------------------------------------------------
def _storage(ctx: Context) -> Built:
    from .services import storage_product

    cfg, inputs, regions = ctx.cfg, ctx.data["inputs"], ctx.data["regions"]
    pools, pools_from = _table(ctx, "carbon_pools.csv", tables.read_pools)
    classes, classes_from = _table(ctx, "lulc_classes.csv", tables.read_classes)
    val = cfg.services.valuation.model_dump() if cfg.services.valuation else None
    ds = storage_product(inputs["lulc"], pools, classes, valuation=val)
    ds.attrs.update({"carbon_pools_source": pools_from, "lulc_classes_source": classes_from})

    def attach(staged):
        t = _long_totals(staged, ("c_total", "c_above", "c_below", "c_soil", "c_dead"), regions,
                         factor=100.0, column="pool")
        t = t.rename(columns={"mean_flux_t_km2": "mean_t_ha", "total_tg": "total_tg_c"})
        t["mean_t_ha"] /= 100.0
        return {"storage_totals.csv": _csv(t), "carbon_pools.csv": _csv(pools)}
    return Built(ds, attach, "carbon storage per pool and year (InVEST carbon model, t C ha-1; "
                 f"pools from {pools_from}) and its change first to last year")


# --- emission -----------------------------------------------------------------------------------
def _emission(ctx: Context) -> Built:
    from .services import emission_product

    cfg, inputs, regions = ctx.cfg, ctx.data["inputs"], ctx.data["regions"]
    factors, factors_from = _table(ctx, "emission_factors.csv", tables.read_emission_factors)
    classes, _ = _table(ctx, "lulc_classes.csv", tables.read_classes)
    raw = ctx.raw("inputs", "province_statistics.csv")
    stats = tables.read_province_statistics(raw, factors["fuel"].tolist(),
                                            years=inputs["year"].values)
    ds, inventory = emission_product(inputs, regions, stats, factors, classes,
                                     rates=cfg.services.landuse_rates, domain=cfg.domain,
                                     grid=cfg.grid_obj())
    ds.attrs["emission_factors_source"] = factors_from
    if ds.attrs["provinces_without_statistics"]:
        log.warning("no province statistics for %s: their emission terms are NaN",
                    ds.attrs["provinces_without_statistics"])

    def attach(staged):
        terms = ("e_total", "e_people", "e_livestock", "e_energy", "e_wood", "e_cement",
                 "e_landuse")
        return {"emission_totals.csv": _csv(_long_totals(staged, terms, regions, column="term")),
                "inventory.csv": _csv(inventory), "emission_factors.csv": _csv(factors)}
    return Built(ds, attach, "carbon emission inventory (seed 003 eqs. 3-8) spread from province "
                 "statistics onto cells, t C km-2 a-1 per term", facts={
                     "provinces_without_statistics": ds.attrs["provinces_without_statistics"]})


# --- balance ------------------------------------------------------------------------------------
def _balance(ctx: Context) -> Built:
    from .services_flow import balance_product, balance_table

    sink = ctx.data.get("sink")
    if ctx.cfg.services.capacity == "storage":
        sink = None
    ds = balance_product(ctx.data["services_emission"], sink=sink,
                         storage=ctx.data["services_storage"])
    regions = ctx.data["regions"]

    def attach(staged):
        return {"balance.csv": _csv(balance_table(staged, regions, _domain_name(regions)))}
    return Built(ds, attach, f"balance of emission and capacity ({ds.attrs['capacity']}): "
                 "ratio E/C, flow min(E, C), surplus and spare capacity", facts={
                     "capacity": ds.attrs["capacity"]})


def _capacity_deps(cfg) -> tuple[str, ...]:
    return () if cfg.services.capacity == "storage" else ("sink",)


# --- flow ---------------------------------------------------------------------------------------
def _routing_regions(cfg, grid):
    from ..regions import region_masks

    wanted = cfg.services.routing_regions
    specs = [s for s in cfg.region_set_specs()
             if (s if isinstance(s, str) else getattr(s, "name", None)) == wanted]
    if not specs:
        specs = [wanted]
    masks = region_masks(grid, cfg.domain_obj(), specs)
    if wanted not in masks:
        return None, np.zeros(0, int), []
    m = masks[wanted]
    return m.values, np.asarray(m.attrs["flag_values"]), list(m.attrs["region_names"])


def _flow(ctx: Context) -> Built:
    from .services_flow import route_years, routing_grid

    cfg, bal, inputs = ctx.cfg, ctx.data["services_balance"], ctx.data["inputs"]
    coarse, _k = routing_grid(cfg.grid_obj(), cfg.services.routing_resolution)
    rmap, codes, names = _routing_regions(cfg, coarse)
    s = cfg.services
    ds, per_year, matrix = route_years(bal, inputs["uas"], inputs["vas"], rmap, codes, names,
                                       routing_resolution=s.routing_resolution,
                                       max_steps=s.max_steps, calm=s.calm_wind)
    ds.attrs.update({"capacity": bal.attrs.get("capacity", ""), "routing_regions": s.routing_regions})

    def attach(staged):
        return {"routing.csv": _csv(per_year), "flow_matrix.csv": _csv(matrix)}
    worst = float(np.max(np.abs(per_year["mass_balance_residual_t"]) /
                         np.maximum(per_year["surplus_t"], 1e-300)))
    return Built(ds, attach, "surplus emission routed downwind onto spare capacity (prevailing "
                 f"8-sector wind, synchronous steps) on the {coarse.name} grid, t C a-1 per cell",
                 facts={"routing_grid": coarse.name, "mass_balance_relative_residual": worst})


# --- drivers ------------------------------------------------------------------------------------
def _drivers(ctx: Context) -> Built:
    from ..kernels.geodetector import INTERACTION_TYPES
    from .services import _primary_map
    from .services_flow import drivers

    cfg, bal, inputs = ctx.cfg, ctx.data["services_balance"], ctx.data["inputs"]
    s = cfg.services
    years = [int(y) for y in (s.driver_years or [int(bal["year"].values[-1])])]
    missing = sorted(set(years) - set(int(y) for y in bal["year"].values))
    if missing:
        from ..config import ConfigError
        raise ConfigError(f"services.driver_years {missing} are not years of the balance "
                          f"({int(bal['year'].values[0])}-{int(bal['year'].values[-1])})")
    classes, _ = _table(ctx, "lulc_classes.csv", tables.read_classes)
    primary = _primary_map(inputs["lulc"], classes).astype("f4")
    primary = primary.where(primary > 0)
    monthly_year = inputs["time"].dt.year
    results = []
    for year in years:
        t = monthly_year == year
        factors = {"population": inputs["population"].sel(year=year),
                   "gdp": inputs["gdp"].sel(year=year),
                   "lulc": primary.sel(year=year), "elevation": inputs["elevation"],
                   "tas": inputs["tas"].isel(time=t.values).mean("time"),
                   "pr": inputs["pr"].isel(time=t.values).sum("time", min_count=1)}
        results.append(drivers(bal["difference"].sel(year=year), factors, k=s.strata,
                               method=s.discretisation, min_stratum_size=s.min_stratum_size))
    names = results[0]["factors"]
    ds = xr.Dataset(coords={"year": years, "factor": names, "factor2": names})

    def stack(key, pick=lambda r, k: r[k]):
        return np.stack([np.asarray(pick(r, key)) for r in results])
    ds["r"] = (("year", "factor"), stack("r").astype("f8"), {
        "long_name": "Pearson r of the balance (capacity - emission) with the factor",
        "units": "1"})
    ds["r_p"] = (("year", "factor"), stack("r_p"), {"long_name": "two-sided p of r", "units": "1"})
    for k, long in (("q", "Geodetector q (power of determinant)"), ("F", "F statistic of q"),
                    ("p", "p of q (non-central F)")):
        ds[f"q_{k}" if k != "q" else "q"] = (("year", "factor"), np.stack(
            [[f[k] for f in r["factor"]] for r in results]).astype("f8"),
            {"long_name": long, "units": "1"})
    ds["q_interaction"] = (("year", "factor", "factor2"), stack("q_interaction"), {
        "long_name": "q of the overlay of two factors' strata (diagonal: the factor's q)",
        "units": "1"})
    ds["interaction_type"] = (("year", "factor", "factor2"), stack("interaction_type"), {
        "long_name": "interaction type", "flag_values": list(range(5)),
        "flag_meanings": " ".join(t.replace(" ", "_").replace("-", "_")
                                  for t in INTERACTION_TYPES), "units": "1"})
    ds.attrs.update({"response": "capacity - emission per km2 (services_balance difference)",
                     "discretisation": f"{s.discretisation}, {s.strata} classes (LULC: primary "
                     "classes as strata)", "n_cells": str([r["n"] for r in results])})

    def attach(_staged):
        rows, fac_rows, int_rows, br = [], [], [], []
        for y, r in zip(years, results):
            for i, n in enumerate(names):
                rows.append({"year": y, "factor": n, "r": r["r"][i], "p": r["r_p"][i],
                             "n": r["n"]})
                f = r["factor"][i]
                fac_rows.append({"year": y, "factor": n, "q": f["q"], "F": f["F"], "p": f["p"],
                                 "strata": f["L"], "n": f["N"]})
                b = r["breaks"][i]
                br.append({"year": y, "factor": n, "breaks": "categorical" if b is None else
                           " ".join(f"{x:.6g}" for x in b)})
                for j in range(i + 1, len(names)):
                    t = int(r["interaction_type"][i, j])
                    int_rows.append({"year": y, "factor1": n, "factor2": names[j],
                                     "q1": r["q_interaction"][i, i],
                                     "q2": r["q_interaction"][j, j],
                                     "q12": r["q_interaction"][i, j],
                                     "type": INTERACTION_TYPES[t] if t >= 0 else "undefined"})
        return {"pearson.csv": _csv(pd.DataFrame(rows)),
                "geodetector.csv": _csv(pd.DataFrame(fac_rows)),
                "interaction.csv": _csv(pd.DataFrame(int_rows)),
                "strata_breaks.csv": _csv(pd.DataFrame(br))}
    return Built(ds, attach, "drivers of the balance: Pearson correlation and Geodetector factor "
                 f"and interaction detectors, years {years}")


def _lines(name, table, pre=""):
    from ..cli_services import summary_lines
    return summary_lines(name, table, pre)


# --- registration -------------------------------------------------------------------------------
register(ProductSpec(
    "services_storage", FAMILY, ("inputs", "regions"), _storage,
    "carbon storage (InVEST carbon model)", outputs=("c_above", "c_below", "c_soil", "c_dead",
                                                     "c_total", "c_total_cell", "c_change"),
    tables=("storage_totals.csv", "carbon_pools.csv"), figures=("storage map",),
    params=_params, applies=_has_services, summary="storage_totals.csv",
    lines=_lines))
register(ProductSpec(
    "services_emission", FAMILY, ("inputs", "regions"), _emission,
    "carbon emission inventory", outputs=("e_people", "e_livestock", "e_energy", "e_wood",
                                          "e_cement", "e_landuse", "e_total"),
    tables=("emission_totals.csv", "inventory.csv", "emission_factors.csv"),
    figures=("emission map",), params=_params, applies=_has_statistics,
    summary="emission_totals.csv",
    lines=_lines))
register(ProductSpec(
    "services_balance", FAMILY, ("services_storage", "services_emission", "regions"), _balance,
    "balance of emission and capacity", outputs=("capacity", "emission", "ratio", "flow",
                                                 "difference", "surplus", "spare"),
    tables=("balance.csv",), figures=("ratio map",), optional=_capacity_deps, params=_params,
    applies=_has_statistics, summary="balance.csv",
    lines=_lines))
register(ProductSpec(
    "services_flow", FAMILY, ("services_balance", "inputs", "regions"), _flow,
    "wind-routed service flows", outputs=("sector", "surplus", "spare", "absorbed",
                                          "throughput", "exported_from", "unabsorbed"),
    tables=("routing.csv", "flow_matrix.csv"), figures=("flow paths", "flow matrix"),
    params=_params, applies=_has_statistics, summary="routing.csv",
    lines=_lines))
register(ProductSpec(
    "services_drivers", FAMILY, ("services_balance", "inputs", "regions"), _drivers,
    "drivers of the balance (Pearson, Geodetector)", outputs=("r", "q", "q_interaction"),
    tables=("pearson.csv", "geodetector.csv", "interaction.csv", "strata_breaks.csv"),
    figures=("driver q",), params=_params, applies=_has_statistics, summary="geodetector.csv",
    lines=_lines))
