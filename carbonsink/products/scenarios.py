"""Enhancement scenarios on the map (SCIENCE.md §9, seed 002): eligible area per measure from the
land-use map and its covariates, ranked allocation of each measure's area to cells, the added sink
per cell and year, the stock change of land-use-changing measures through the storage model, and
the projection of the scenario's totals against the target band.

Allocation, in the scenario's order of measures. A cell's *free* share starts at 1 and shrinks by
what land-use-changing measures (``converts_to``) take; a measure is eligible on the free share of
the cells its ``applies_to`` and ``eligibility`` rules select (:func:`carbonsink.io.measures.
eligibility_mask`) on the land-use map of the allocation year. Its area (``area_ha``, or
``share_of_eligible`` × the eligible area) goes to the highest-priority cells first — the steepest
when the measure has a slope rule (the seed's slope farmland first), else the wettest (rates grow
with water) — with priorities binned into :data:`N_BINS` classes and the last class taken in
part, so the allocated area equals the request exactly (:func:`carbonsink.kernels.scenarios.
allocation_cut`). Management measures stack on the same fields; land-use changes exclude each
other. A measure given by ``potential_share`` of a national potential is spread evenly over its
eligible area (its map), or stays national (tables only) where the map has none of its classes.

Everything spatial is dask-lazy on the inputs' chunks; one small reduction (a histogram of
eligible area by priority class) per measure is computed to place the cut.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from .. import units as u
from ..io.measures import MeasureError, Scenario, eligibility_mask, projection_inputs
from ..kernels import scenarios as ksc
from ..kernels.terrain import slope_deg
from ..zonal import cell_area_da

N_BINS = 1000
T_C_PER_GT_CO2 = 1e9 / u.C_TO_CO2          # t C in one Gt CO2


# --- covariates ---------------------------------------------------------------------------------
def slope_map(elevation: xr.DataArray) -> xr.DataArray:
    """Slope (degrees) of the elevation field with true metric spacings (a one-cell halo between
    chunks; one-sided differences at the grid's edges)."""
    lat = elevation["lat"].values
    dlat = float(abs(lat[1] - lat[0])) if lat.size > 1 else 1.0
    lon = elevation["lon"].values
    dlon = float(abs(lon[1] - lon[0])) if lon.size > 1 else 1.0
    r = 6_371_008.8
    dy = r * np.radians(dlat)
    dx_rows = r * np.radians(dlon) * np.cos(np.radians(lat))
    z = elevation.astype("f8")
    if z.chunks is None:
        data = slope_deg(z.values, dy, dx_rows)
    else:
        import dask.array as dsa
        dx = dsa.from_array(dx_rows[:, None], chunks=(z.data.chunks[0], 1))
        dx = dsa.broadcast_to(dx, z.shape, chunks=z.data.chunks)
        data = dsa.map_overlap(lambda zz, xx: slope_deg(zz, dy, xx[:, 0]), z.data, dx,
                               depth=1, boundary="none", dtype="f8")
    return xr.DataArray(data, dims=elevation.dims, coords=elevation.coords,
                        attrs={"units": "degree", "long_name": "terrain slope"})


def annual_precipitation(pr: xr.DataArray) -> xr.DataArray:
    """Mean annual precipitation (mm a-1) from monthly totals (mm month-1): the mean over the
    years of each year's sum."""
    annual = pr.groupby("time.year").sum("time", min_count=1)
    return annual.mean("year").assign_attrs(units="mm yr-1",
                                            long_name="mean annual precipitation")


# --- allocation ---------------------------------------------------------------------------------
def _mask(lulc, slope, elevation, precip, *, measure, classes):
    return eligibility_mask(measure, lulc, slope_deg=slope, elevation_m=elevation,
                            precipitation_mm=precip, classes=classes).astype("f4")


def eligible_share(measure, lulc: xr.DataArray, cov: dict, classes) -> xr.DataArray:
    """1 where the measure may go (its classes and rules), else 0, on ``lulc``'s chunks."""
    return xr.apply_ufunc(_mask, lulc, cov["slope"], cov["elevation"], cov["precip"],
                          kwargs={"measure": measure, "classes": classes},
                          dask="parallelized", output_dtypes=["f4"])


def _bins_block(score, lo, hi):
    return ksc.priority_bins(score, lo, hi, N_BINS).astype("i4")


def _hist_block(bins, weights):
    b = np.asarray(bins).ravel()
    w = np.asarray(weights, dtype="f8").ravel()
    ok = (b >= 0) & (w > 0)
    return np.bincount(b[ok], weights=w[ok], minlength=N_BINS)[None, :]


def _area_by_bin(bins: xr.DataArray, weights: xr.DataArray) -> np.ndarray:
    """Σ of ``weights`` per priority bin (one small vector per chunk, summed)."""
    import dask

    if bins.chunks is None:
        return _hist_block(bins.values, weights.values)[0]
    parts = [dask.delayed(_hist_block)(b, w) for b, w in
             zip(bins.data.to_delayed().ravel(), weights.data.to_delayed().ravel())]
    return np.sum(dask.compute(*parts), axis=0)[0]


def priority(measure, cov: dict) -> tuple[xr.DataArray, str]:
    if any(k.endswith("slope_deg") for k in measure.eligibility):
        return cov["slope"], "steepest first"
    return cov["precip"], "wettest first"


def allocate_scenario(scenario: Scenario, lulc: xr.DataArray, cov: dict, classes, area_ha:
                      xr.DataArray, *, national: bool) -> tuple[list[xr.DataArray], list[dict]]:
    """The treated share of each cell per scenario measure (list, scenario order) and a record
    per measure (eligible and allocated ha, mode, priority, map or national). ``area_ha``: the
    cells' true areas in ha; ``national``: whether the map is all China (national potentials may
    only be used there)."""
    import dask

    land = lulc.notnull() & (lulc > 0)
    free = land.astype("f4")
    fractions, records = [], []
    # tranches of one measure (an id listed again) share its eligible area: their shares are of
    # the first tranche's eligible area, and a later tranche goes where earlier ones did not
    measure_ha: dict[str, float] = {}
    used: dict[str, xr.DataArray] = {}
    changed = False                   # whether a land-use change came earlier in the scenario
    for i, sm in enumerate(scenario.measures):
        m = sm.measure
        rec = {"entry": i, "measure": sm.id, "mode": sm.mode,
               "amount": getattr(sm, sm.mode), "ecosystem": m.ecosystem,
               "converts_to": m.converts_to, "priority": ""}
        if not m.applies_to:
            if sm.mode != "potential_share":
                raise MeasureError(scenario.source, sm.id, sm.mode, "not on the land-use map "
                                   "(applies_to is empty): only potential_share can use it")
            if not national:
                raise MeasureError(scenario.source, sm.id, "potential_share",
                                   "a national potential cannot be placed on a study area; "
                                   "give area_ha or share_of_eligible (by its rate)")
            fractions.append(None)
            records.append({**rec, "eligible_ha": np.nan, "allocated_ha": np.nan,
                            "mapped": False})
            continue
        elig = eligible_share(m, lulc, cov, classes) * free
        if sm.id in used and sm.mode != "potential_share":
            elig = (elig - used[sm.id]).clip(min=0.0)
        score, rule = priority(m, cov)
        if sm.mode == "potential_share":
            # a national potential has no area of its own: its map spreads it evenly over the
            # eligible area, which it neither takes from other measures nor converts
            if not national:
                raise MeasureError(scenario.source, sm.id, "potential_share",
                                   "a national potential cannot be placed on a study area; "
                                   "give area_ha or share_of_eligible (by its rate)")
            (available_ha,) = dask.compute((elig * area_ha).sum())
            available_ha = float(available_ha)
            mapped = available_ha > 0        # none of its classes on the map: national only
            fractions.append(elig.where(lulc.notnull()).astype("f4") if mapped else None)
            records.append({**rec, "eligible_ha": measure_ha.setdefault(sm.id, available_ha),
                            "available_ha": available_ha,
                            "allocated_ha": available_ha if mapped else np.nan,
                            "priority": "spread evenly over the eligible area (national "
                            "potential)" if mapped else "", "mapped": mapped})
            continue
        score = score.where(elig > 0)
        lo, hi, eligible_ha = dask.compute(score.min(), score.max(), (elig * area_ha).sum())
        lo, hi, available_ha = float(lo), float(hi), float(eligible_ha)
        eligible_ha = measure_ha.setdefault(sm.id, available_ha)
        if sm.mode == "area_ha":
            request = float(sm.area_ha)
        else:
            request = float(sm.share_of_eligible) * eligible_ha
        if not np.isfinite(lo):
            lo = hi = 0.0
        bins = xr.apply_ufunc(_bins_block, score, kwargs={"lo": lo, "hi": hi},
                              dask="parallelized", output_dtypes=["i4"])
        hist = _area_by_bin(bins, elig * area_ha)
        try:
            k, f = ksc.allocation_cut(hist, request)
        except ValueError:
            why = [w for w, hit in (("earlier land-use changes", changed),
                                    ("earlier tranches of the measure", sm.id in used)) if hit]
            taken = f" (what {' and '.join(why)} left)" if why else ""
            raise MeasureError(scenario.source, sm.id, sm.mode,
                               f"asks for {request:.6g} ha but only {available_ha:.6g} ha are "
                               f"eligible on the map{taken}") from None
        frac = xr.apply_ufunc(ksc.allocate, bins, elig, kwargs={"k": k, "f": f},
                              dask="parallelized", output_dtypes=["f8"])
        # kept on the workers: the later measures' eligible shares are computed from it
        frac = frac.where(lulc.notnull()).astype("f4").persist()
        if m.converts_to is not None:
            free = (free - frac.fillna(0.0)).clip(min=0.0)
            changed = True
        else:
            prev = used.get(sm.id)
            used[sm.id] = frac.fillna(0.0) if prev is None else prev + frac.fillna(0.0)
        used.setdefault(sm.id, xr.zeros_like(frac))
        fractions.append(frac)
        records.append({**rec, "eligible_ha": eligible_ha, "available_ha": available_ha,
                        "allocated_ha": request, "priority": rule, "mapped": True})
    return fractions, records


# --- projection ---------------------------------------------------------------------------------
def project_scenario(scenario: Scenario, records: list[dict], baseline) -> dict:
    """Years, the added sink per measure (years, m, 3) and the totals (years, 3) in Gt CO2 a-1 on
    top of ``baseline`` (3,), and where they stand against the target band."""
    eligible = {}
    for r, sm in zip(records, scenario.measures):
        if r["mapped"] and sm.mode != "potential_share":
            eligible.setdefault(sm.id, r["eligible_ha"])
    for r, sm in zip(records, scenario.measures):   # area requests were placed: the map's check
        if sm.mode == "area_ha":
            eligible[sm.id] = max(eligible.get(sm.id, 0.0), r["eligible_ha"])
    inp = projection_inputs(scenario, eligible)
    # share_of_eligible and area_ha entries use exactly what was allocated
    for j, (r, sm) in enumerate(zip(records, scenario.measures)):
        if sm.mode != "potential_share":
            inp["amounts"][j] = r["allocated_ha"]
    years = scenario.years()
    added = ksc.project(years, inp["values"], inp["amounts"], inp["starts"], inp["ramps"],
                        inp["saturations"], inp["declines"], kind=inp["kind"])
    totals = ksc.combine(np.asarray(baseline, dtype="f8"), added)
    met = ksc.target_met(years, totals, *scenario.target_gt_co2,
                         by_year=scenario.target_years[1])
    return {"years": years, "added": added, "totals": totals, "target": met, "inputs": inp}


def added_density(scenario: Scenario, records, fractions, area_ha: xr.DataArray, inputs: dict,
                  years) -> xr.DataArray | None:
    """The central added sink per cell (g C m-2 a-1 = t C km-2 a-1) in ``years``: rate × treated
    share, or a national potential spread over its eligible area; None without mapped measures."""
    f = ksc.ramp(np.asarray(years, dtype="f8"), inputs["starts"], inputs["ramps"],
                 inputs["saturations"], inputs["declines"])          # (n_years, m)
    layers = []
    for j, (r, sm, frac) in enumerate(zip(records, scenario.measures, fractions)):
        if frac is None:
            continue
        central = float(inputs["values"][j, 1])
        if sm.mode == "potential_share":
            total_t = central * float(inputs["amounts"][j]) * T_C_PER_GT_CO2
            per_km2 = total_t / (r["eligible_ha"] * 1e-2) if r["eligible_ha"] > 0 else 0.0
            dens = frac * per_km2
        else:
            dens = frac * (central * 100.0)                   # t C ha-1 a-1 → t C km-2 a-1
        layers.append(dens * xr.DataArray(f[:, j], dims="year", coords={"year": list(years)}))
    if not layers:
        return None
    out = sum(layers[1:], layers[0])
    return out.transpose("year", ...).astype("f4").assign_attrs(
        units="g m-2 yr-1", long_name="sink added by the scenario's measures (central)")


def stock_change(scenario: Scenario, fractions, c_total: xr.DataArray, pools, classes):
    """Long-run storage change (t C km-2) of the land-use changes: treated share × (storage of
    the class left behind − storage now), InVEST's pools; None without land-use changes."""
    from ..io.services_tables import pool_codes_for
    from ..kernels.services import pool_table

    lucode, table = pool_table(pools)
    total_by_code = dict(zip(lucode.tolist(), table.sum(axis=0).tolist()))
    out = None
    for sm, frac in zip(scenario.measures, fractions):
        code = sm.measure.converts_to
        if frac is None or code is None or sm.mode == "potential_share":
            continue
        row = pool_codes_for([code], pools, classes, source=f"measure {sm.id} converts_to")[code]
        d = frac * (total_by_code[row] - c_total) * 100.0
        out = d if out is None else out + d
    if out is None:
        return None
    return out.fillna(0.0).where(c_total.notnull()).astype("f4").assign_attrs(
        units="t km-2", long_name="long-run carbon storage change of the scenario's land-use "
        "changes (InVEST carbon model, treated share of each cell)")


def baseline_from_sink(sink: xr.DataArray, n_years: int, domain_name: str) -> tuple[np.ndarray,
                                                                                   list[int]]:
    """The measured sink as low / central / high Gt CO2 a-1: the min, mean and max of the domain
    totals of the run's last ``n_years`` years."""
    from ..zonal import totals

    years = [int(y) for y in sink["year"].values[-n_years:]]
    t = totals(sink.sel(year=years), domain_name=domain_name)
    tg = t[t.region_set == "domain"]["total_tg"].to_numpy()
    gt = tg * 1e-3 * u.C_TO_CO2
    return np.array([gt.min(), gt.mean(), gt.max()]), years


def cell_area_ha(like: xr.DataArray) -> xr.DataArray:
    chunks = dict(zip(like.dims, like.chunks)) if like.chunks else None
    return cell_area_da(like, chunks=chunks) * 1e-4


def labels(scenario: Scenario) -> list[str]:
    """The component name of each scenario entry: its label or id, "#2", "#3"... on repeats."""
    seen: dict[str, int] = {}
    out = []
    for sm in scenario.measures:
        base = sm.label or sm.id
        seen[base] = seen.get(base, 0) + 1
        out.append(base if seen[base] == 1 else f"{base}#{seen[base]}")
    return out


def projection_rows(name: str, scenario: Scenario, res: dict, baseline) -> pd.DataFrame:
    """One row per year and component (baseline, each measure entry, total), Gt CO2 a-1."""
    rows = []
    labels_ = labels(scenario)
    for i, y in enumerate(res["years"]):
        rows.append({"scenario": name, "year": int(y), "component": "baseline",
                     "ecosystem": "", "low": baseline[0], "central": baseline[1],
                     "high": baseline[2]})
        for j, sm in enumerate(scenario.measures):
            lo, c, hi = res["added"][i, j]
            rows.append({"scenario": name, "year": int(y), "component": labels_[j],
                         "ecosystem": sm.measure.ecosystem, "low": lo, "central": c, "high": hi})
        lo, c, hi = res["totals"][i]
        rows.append({"scenario": name, "year": int(y), "component": "total", "ecosystem": "",
                     "low": lo, "central": c, "high": hi})
    return pd.DataFrame(rows)


def target_row(name: str, scenario: Scenario, res: dict, baseline, baseline_from: str) -> dict:
    met, years, tot = res["target"], res["years"], res["totals"]
    lo_y, hi_y = scenario.target_years
    at = {y: tot[int(np.flatnonzero(years == y)[0])] for y in (lo_y, hi_y)}
    peak = res["added"][:, :, 1].sum(axis=1)          # the measures' central sum per year
    i_peak = int(np.argmax(peak))
    return {"scenario": name, "target_low": scenario.target_gt_co2[0],
            "target_high": scenario.target_gt_co2[1], "target_years": f"{lo_y}-{hi_y}",
            "baseline_low": baseline[0], "baseline_central": baseline[1],
            "baseline_high": baseline[2], "baseline_from": baseline_from,
            "central_reaches_lower": met["central_reaches_lower"],
            "low_reaches_lower": met["low_reaches_lower"],
            "high_reaches_lower": met["high_reaches_lower"],
            "central_reaches_upper": met["central_reaches_upper"],
            "central_holds_lower_from": met["central_holds_lower_from"],
            "met_by_low": met["met_by"]["low"], "met_by_central": met["met_by"]["central"],
            "met_by_high": met["met_by"]["high"],
            **{f"total_{y}_{c}": at[y][k] for y in (lo_y, hi_y)
               for k, c in enumerate(("low", "central", "high"))},
            "gap_central_end": float(met["gap_to_lower"][-1, 1]),
            "added_peak_central": float(peak[i_peak]), "added_peak_year": int(years[i_peak])}
