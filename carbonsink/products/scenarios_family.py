"""The enhancement-scenario family (SCIENCE.md §9, seed 002), registered with
:mod:`carbonsink.products.registry`: one product, ``scenarios``, holding every scenario of the run
(``scenarios.files``, default the package's demo set ``carbonsink/data/scenarios/``).

Per scenario: the measures placed on the run's land-use map (:mod:`carbonsink.products.scenarios`),
the sink they add per year 2020-2060 (low / central / high) on top of the sink this run measured
(the ``sink`` product's domain totals, Gt CO2 a-1), the gap to the target band and the year it is
met, the added sink per cell in the target years with its totals per region, and the long-run
storage change of the land-use changes (InVEST pools).
"""
from __future__ import annotations

import io
import logging

import dask
import numpy as np
import pandas as pd
import xarray as xr

from ..io import services_tables as tables
from ..io.measures import MeasureError, load_measures, load_scenario
from . import scenarios as sc
from .registry import Built, Context, ProductSpec, register

log = logging.getLogger("carbonsink")
FAMILY = "scenarios"
BOUNDS = ["low", "central", "high"]


def _csv(table: pd.DataFrame) -> bytes:
    buf = io.StringIO()
    table.to_csv(buf, index=False, float_format="%.10g")
    return buf.getvalue().encode()


def _applies(cfg, record: dict | None) -> bool:
    if not cfg.scenarios.enabled:
        return False
    if record is None:           # the synthetic demo inputs carry land use and elevation
        return True
    return all(v in record.get("variables", []) for v in ("lulc", "elevation", "pr"))


def _params(cfg) -> dict:
    s = cfg.scenarios
    return {"scenarios": s.model_dump(mode="json", exclude={"files", "measures"}),
            "files": s.file_hashes(), "tables": cfg.services.table_hashes()}


def _table(ctx: Context, name: str, reader):
    path = getattr(ctx.cfg.services, name.removesuffix(".csv"), None)
    return reader(path or ctx.raw("inputs", name))


def _scenarios(ctx: Context) -> Built:
    from .services import storage_product

    cfg, inputs, regions = ctx.cfg, ctx.data["inputs"], ctx.data["regions"]
    s = cfg.scenarios
    classes = _table(ctx, "lulc_classes.csv", tables.read_classes)
    pools = _table(ctx, "carbon_pools.csv", tables.read_pools)
    catalogue = load_measures(s.measures, classes=classes, include_pathways=True)
    national = cfg.domain_obj().key == "china"
    domain_name = str(regions.attrs.get("domain_name", "China"))
    years = [int(y) for y in inputs["lulc"]["year"].values]
    year = s.allocation_year or years[-1]
    if year not in years:
        raise MeasureError("scenarios.allocation_year", None, "allocation_year",
                           f"{year} is not a year of the land-use input ({years[0]}-{years[-1]})")
    lulc = inputs["lulc"].sel(year=year, drop=True)
    cov = {"slope": sc.slope_map(inputs["elevation"]), "elevation": inputs["elevation"],
           "precip": sc.annual_precipitation(inputs["pr"])}
    area_ha = sc.cell_area_ha(lulc)
    c_total = storage_product(lulc.expand_dims(year=[year]), pools, classes)["c_total"].isel(
        year=0, drop=True)
    # every measure of every scenario reads these maps: computed once, kept on the workers
    # (a few 2-D fields, not a cube)
    lulc, c_total, *covs = dask.persist(lulc, c_total, *cov.values())
    cov = dict(zip(cov, covs))

    loaded = [load_scenario(f, catalogue) for f in s.scenario_files()]
    names = [x.name for x in loaded]
    if len(set(names)) != len(names):
        raise MeasureError(", ".join(s.scenario_files()), None, "name",
                           f"two scenarios share a name: {names}")
    target_years = sorted({y for x in loaded for y in x.target_years})
    results, skipped = [], []
    for scen in loaded:
        try:
            fractions, records = sc.allocate_scenario(scen, lulc, cov, classes, area_ha,
                                                      national=national)
        except MeasureError as e:
            if s.files is None and not national and "national potential" in str(e):
                skipped.append(scen.name)        # the demo set on a study area
                log.warning("scenario %s skipped on %s: %s", scen.name, domain_name, e)
                continue
            raise
        base, base_years = _baseline(scen, ctx, s.baseline_years, domain_name)
        res = sc.project_scenario(scen, records, base)
        dens = sc.added_density(scen, records, fractions, area_ha, res["inputs"], target_years)
        change = sc.stock_change(scen, fractions, c_total, pools, classes)
        results.append((scen, fractions, records, base, base_years, res, dens, change))
    if not results:
        raise MeasureError(", ".join(s.scenario_files()), None, None,
                           f"no scenario applies to {domain_name}: {skipped} use national "
                           "potentials (give scenarios.files with area-based measures)")
    ds = _dataset(results, lulc, target_years)
    ds.attrs.update({"allocation_year": year, "domain_name": domain_name,
                     "scenarios_skipped": ", ".join(skipped),
                     "measure_catalogue": s.measures or "package default (seed 002)",
                     "allocation": "ranked: steepest first for slope rules, else wettest first; "
                     "land-use changes take cells exclusively, management measures stack"})

    def attach(staged):
        return _tables(results, staged, regions, domain_name)
    return Built(ds, attach, "enhancement scenarios: measures placed on the land-use map, the sink "
                 "they add to the measured one 2020-2060 against the 2.0-2.5 Gt CO2 a-1 target",
                 facts={"scenarios": [r[0].name for r in results], "scenarios_skipped": skipped,
                        "allocation_year": year})


def _baseline(scen, ctx: Context, n_years: int, domain_name: str):
    b = scen.baseline
    if b.resolved:
        return b.gt_co2.as_array(), "given"
    if b.store not in (None, "run"):
        raise MeasureError(scen.source, None, "baseline", f"the baseline of another store "
                           f"({b.store}) cannot be read in a run: give product (this run's) or "
                           "gt_co2")
    if b.product != "sink":
        raise MeasureError(scen.source, None, "baseline",
                           f"product {b.product!r}: a run's baseline is its 'sink' product")
    sink = ctx.data["sink"]
    if b.variable not in sink:
        raise MeasureError(scen.source, None, "baseline", f"variable {b.variable!r} is not in "
                           f"the sink product ({sorted(sink.data_vars)})")
    base, yrs = sc.baseline_from_sink(sink[b.variable], n_years, domain_name)
    return base, f"{b.variable} {yrs[0]}-{yrs[-1]} (min/mean/max of {len(yrs)} years)"


def _dataset(results, lulc, target_years) -> xr.Dataset:
    labels = list(dict.fromkeys(lab for r in results for lab in sc.labels(r[0])))
    proj_years = sorted({int(y) for r in results for y in r[5]["years"]})
    frac_layers, dens_layers, change_layers = [], [], []
    zero = xr.zeros_like(lulc, dtype="f4").where(lulc.notnull())
    for scen, fractions, _rec, _b, _by, _res, dens, change in results:
        per = dict(zip(sc.labels(scen), fractions))
        frac_layers.append(xr.concat([(per.get(lab) if per.get(lab) is not None else zero)
                                      for lab in labels], dim="measure"))
        dens_layers.append(dens if dens is not None else
                           zero.expand_dims(year=target_years).astype("f4"))
        change_layers.append(change if change is not None else zero)
    coords = {"scenario": [r[0].name for r in results]}
    ds = xr.Dataset(coords={**coords, "measure": labels, "bound": BOUNDS})
    ds["treated_fraction"] = xr.concat(frac_layers, dim="scenario").assign_coords(
        scenario=coords["scenario"], measure=labels).astype("f4").assign_attrs(
        units="1", long_name="share of the cell's area the measure is applied to")
    ds["added_sink"] = xr.concat(dens_layers, dim="scenario").assign_coords(
        scenario=coords["scenario"]).astype("f4").assign_attrs(
        units="g m-2 yr-1", long_name="sink added by the scenario's mapped measures (central) in "
        "the target years")
    ds["stock_change"] = xr.concat(change_layers, dim="scenario").assign_coords(
        scenario=coords["scenario"]).assign_attrs(
        units="t km-2", long_name="long-run carbon storage change of the land-use changes "
        "(InVEST carbon model)")
    tot = np.full((len(results), len(proj_years), 3), np.nan)
    base = np.full((len(results), 3), np.nan)
    for i, r in enumerate(results):
        idx = np.searchsorted(proj_years, r[5]["years"])
        tot[i, idx] = r[5]["totals"]
        base[i] = r[3]
    ds = ds.assign_coords(projection_year=proj_years)
    ds["total_sink"] = (("scenario", "projection_year", "bound"), tot, {
        "units": "Gt CO2 yr-1", "long_name": "measured sink plus the scenario's measures"})
    ds["baseline_sink"] = (("scenario", "bound"), base, {
        "units": "Gt CO2 yr-1", "long_name": "the measured sink the measures add to"})
    # one chunk per scenario in every variable, so the dataset has one chunking per dimension
    for v in ("total_sink", "baseline_sink"):
        ds[v] = ds[v].chunk({"scenario": 1})
    return ds


def _tables(results, staged: xr.Dataset, regions, domain_name) -> dict[str, bytes]:
    from .services_family import _sets
    from ..zonal import totals_many

    names = [r[0].name for r in results]
    # every scenario's added sink and storage change, each in one pass over the cells
    region_tot = {}
    for var in ("added_sink", "stock_change"):
        das = {n: staged[var].sel(scenario=n, drop=True) for n in names}
        if var == "stock_change":
            das = {n: da.expand_dims(year=[0]) for n, da in das.items()}
        region_tot[var] = totals_many(
            {n: da.assign_attrs(units="g m-2 yr-1") for n, da in das.items()}, _sets(regions),
            domain_name=domain_name, column="scenario")
    proj, target, meas, reg = [], [], [], []
    for scen, _f, records, base, base_from, res, _d, _c in results:
        name = scen.name
        proj.append(sc.projection_rows(name, scen, res, base))
        target.append(sc.target_row(name, scen, res, base, base_from))
        labels = sc.labels(scen)
        ty = list(scen.target_years)
        idx = [int(np.flatnonzero(res["years"] == y)[0]) for y in ty]
        for j, (rec, sm) in enumerate(zip(records, scen.measures)):
            m = sm.measure
            row = {"scenario": name, "component": labels[j], **{k: rec.get(k, np.nan) for k in (
                "measure", "ecosystem", "mode", "amount", "eligible_ha", "available_ha",
                "allocated_ha", "priority", "mapped", "converts_to")},
                "kind": m.kind, "stars_overall": m.stars_overall, "ipcc": m.ipcc,
                "start_year": sm.start_year, "ramp_years": sm.ramp_years,
                "saturation_years": sm.saturation_years, "decline_years": sm.decline_years}
            for y, i in zip(ty, idx):
                for k, b in enumerate(BOUNDS):
                    row[f"added_{y}_{b}"] = res["added"][i, j, k]
            meas.append(row)
        for var, what in (("added_sink", "added sink"), ("stock_change", "storage change")):
            t = region_tot[var]
            t = t[t["scenario"] == name].reset_index(drop=True)
            t.insert(1, "quantity", what)
            if var == "stock_change":
                t["year"] = ""
            reg.append(t.rename(columns={"total_tg": "total_tg_c"}))
    return {"projection.csv": _csv(pd.concat(proj, ignore_index=True)),
            "target.csv": _csv(pd.DataFrame(target)),
            "measures.csv": _csv(pd.DataFrame(meas)),
            "region_totals.csv": _csv(pd.concat(reg, ignore_index=True))}


def summary_lines(name: str, table, pre: str = "") -> list[str]:
    """One line per scenario from target.csv: where the total stands against the band."""
    if table is None or not len(table):
        return []
    out = []
    for r in table.itertuples():
        y0, y1 = (int(x) for x in str(r.target_years).split("-"))
        c = getattr(r, f"total_{y1}_central")
        lo, hi = getattr(r, f"total_{y1}_low"), getattr(r, f"total_{y1}_high")
        reached = (f"central reaches {r.target_low:g} in {int(r.central_reaches_lower)}"
                   if pd.notna(r.central_reaches_lower) else
                   f"central does not reach {r.target_low:g} by {y1}")
        out.append(f"{pre}{name}: {r.scenario}: baseline {r.baseline_central:.2f} "
                   f"({r.baseline_low:.2f}-{r.baseline_high:.2f}) Gt CO2 a-1, {y1} total "
                   f"{c:.2f} ({lo:.2f}-{hi:.2f}) vs target {r.target_low:g}-{r.target_high:g}: "
                   f"{reached}")
    return out


def _check(cfg) -> None:
    """The catalogue and every scenario file read and checked before anything is computed."""
    catalogue = load_measures(cfg.scenarios.measures, include_pathways=True,
                              classes=tables.read_classes(cfg.services.lulc_classes))
    for f in cfg.scenarios.scenario_files():
        load_scenario(f, catalogue)


register(ProductSpec(
    "scenarios", FAMILY, ("inputs", "regions", "sink"), _scenarios,
    "enhancement scenarios (seed 002)", outputs=("treated_fraction", "added_sink",
                                                 "stock_change", "total_sink", "baseline_sink"),
    tables=("projection.csv", "target.csv", "measures.csv", "region_totals.csv"),
    figures=("scenario projection", "scenario allocation"), params=_params, applies=_applies,
    summary="target.csv", lines=summary_lines, check=_check))
