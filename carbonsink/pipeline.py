"""Library-level runs that the CLI and the Prefect flows call: validate → publish inputs → compute →
publish products (+ tables) → regenerate the catalog.

Nothing here starts or picks a cluster: dask work runs on the active distributed client if there is
one (the CLI and flows make it), else on the local threaded scheduler. Every product is computed from
published datasets read back from the store, as any later, separate run would.
"""
from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field

import pandas as pd
import xarray as xr

from . import ml
from .catalog import write_catalog
from .config import RunConfig
from .io.store import Published, Store, compute_default
from .io.validate import (REQUIRED, check_value_stats, validate_inputs, value_stats)
from .kernels.respiration import RH_MODELS
from .products.attribution import compute_attribution
from .products.climate import annual_drivers
from .products.karst import compute_karst, compute_sink
from .products.nep import compute_nep
from .products.trends import compute_trends
from .regions import region_masks
from .synthetic import make_basins, make_inputs, make_ion_table
from .zonal import category_areas, cell_area_da, period_summary, totals

log = logging.getLogger("carbonsink")

DEMO_RH_MODELS = ("soil_tps", "pei")
REGION_SETS = ["province", "division", "karst_region"]


@dataclass
class RunResult:
    store: str
    catalog: str = ""
    published: dict[str, Published] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)   # name → summary table
    facts: dict[str, object] = field(default_factory=dict)           # headline numbers


def make_compute(progress: bool):
    """A compute callback for the store layer: the active client, with a progress bar if asked."""
    def compute(*collections):
        return compute_default(*collections, progress=progress)
    return compute


def _csv(table: pd.DataFrame) -> bytes:
    buf = io.StringIO()
    table.to_csv(buf, index=False, float_format="%.6g")
    return buf.getvalue().encode()


def _record(ds: xr.Dataset, cfg: RunConfig, description: str, **extra) -> dict:
    rec = {"description": description,
           "units": {k: v.attrs.get("units") for k, v in ds.data_vars.items()},
           "grid": cfg.grid_obj().name, "config_hash": cfg.config_hash(),
           "config": {k: v for k, v in cfg.public_dict().items()
                      if k not in ("storage_options", "cluster")}, **extra}
    if "year" in ds.coords:
        rec["years"] = [int(ds["year"].values.min()), int(ds["year"].values.max())]
    return rec


def _read_csv(store: Store, p: Published, suffix: str) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(store.read_bytes(p.record["attachments"][suffix])))


def _totals_attachment(var: str, regions: xr.Dataset, where=None):
    """Totals of ``var`` per region and year, computed from the staged (written) product."""
    def attach(staged: xr.Dataset) -> dict[str, bytes]:
        flux = staged[var] if where is None else staged[var].where(where(staged))
        return {"totals.csv": _csv(totals(flux, regions[REGION_SETS]))}
    return attach


# --- inputs -----------------------------------------------------------------------------------
def publish_inputs(store: Store, cfg: RunConfig, inputs: xr.Dataset, *, name: str = "synthetic",
                   attachments: dict[str, bytes] | None = None, basins: xr.DataArray | None = None,
                   progress: bool = False) -> tuple[Published, Published]:
    """Validate and publish the canonical inputs, then the region masks (+ cell areas, + river
    basins if given) of their grid.

    Structure is checked before anything is written; values (ranges, NaN on land, mask) are checked
    on statistics computed in the same dask pass as the staged write — the inputs are generated or
    read once — and a failure removes the staged copy before anything is visible.
    """
    source = inputs.attrs.get("source")
    variables = REQUIRED["all"]
    validate_inputs(inputs, variables, source=source, check_values=False)
    compute = make_compute(progress)
    inputs = inputs.assign_attrs(run_config_hash=cfg.config_hash())
    check = (value_stats(inputs, variables),
             lambda stats: check_value_stats(inputs, variables, stats, source))
    p_inputs = store.publish(inputs, "inputs", name, compute=compute, attachments=attachments,
                             check=check,
                             record=_record(inputs, cfg, "canonical carbonsink inputs "
                                            f"({inputs.attrs.get('title', name)})"))
    regions = region_masks(cfg.grid_obj())
    regions["cell_area"] = cell_area_da(regions)
    if basins is not None:
        regions["basin"] = basins
    regions = regions.chunk(_chunks(cfg, inputs))   # the same tiles as the inputs
    p_regions = store.publish(regions, "inputs", "regions", compute=compute,
                              record=_record(regions, cfg, "region masks (province, division, "
                                             "karst_region, basin) and true cell areas (m2)"))
    return p_inputs, p_regions


# --- products ---------------------------------------------------------------------------------
def run_nep(store: Store, cfg: RunConfig, inputs: xr.Dataset, regions: xr.Dataset, *,
            rh_model: str, name: str = "nep", progress: bool = False) -> Published:
    """Compute NEP with one Rh model and publish it with its totals table."""
    if rh_model not in RH_MODELS:
        raise ValueError(f"unknown Rh model {rh_model!r}")
    # inputs come from the store, validated when they were published
    nep = compute_nep(inputs, rh_model=rh_model, validate=False)
    nep = nep.chunk({"year": -1, **_chunks(cfg, inputs)})
    return store.publish(
        nep, "products", name, compute=make_compute(progress),
        attachments=_totals_attachment("nep", regions),
        record=_record(nep, cfg, f"ecosystem organic sink NEP = NPP - Rh, Rh model {rh_model} "
                                 "(positive = sink), g C m-2 a-1 = t C km-2 a-1"))


def run_karst(store: Store, cfg: RunConfig, inputs: xr.Dataset, regions: xr.Dataset,
              ion_table: pd.DataFrame, *, name: str = "karst",
              progress: bool = False) -> tuple[Published, ml.IonicStrengthModel]:
    """Train the ionic-strength forest on the river table, predict I for every pixel-year on the
    cluster, compute the MPD karst sink with it and publish it with the model and totals."""
    basins = regions["basin"]
    ml.validate_ion_table(ion_table, basins, source="river chemistry table")
    predictors = ml.basin_predictors(inputs, basins)
    model = ml.train_ionic_strength(ion_table, predictors, seed=cfg.seed)
    ionic = ml.predict_ionic_strength(model, inputs)
    karst = compute_karst(inputs, ionic, validate=False)
    karst = karst.chunk({"year": -1, **_chunks(cfg, inputs)})
    karst.attrs.update(model.to_attrs())

    def attach(staged):
        # "karst China": CCS per region over carbonate pixels only (SCIENCE.md §4)
        out = _totals_attachment("ccs", regions, where=lambda s: s.carbonate_fraction > 0)(staged)
        out["ionic_strength_model.joblib"] = ml.model_bytes(model)
        out["ionic_strength_cv.csv"] = _csv(pd.DataFrame([model.to_attrs()]))
        return out
    p = store.publish(karst, "products", name, compute=make_compute(progress), attachments=attach,
                      record=_record(karst, cfg, "karst inorganic sink (maximum potential "
                                     "dissolution) with random-forest ionic strength; CCS in "
                                     "g C m-2 a-1 = t C km-2 a-1", ionic_strength_model=
                                     model.to_attrs()))
    return p, model


def run_sink(store: Store, cfg: RunConfig, nep: xr.Dataset, karst: xr.Dataset,
             regions: xr.Dataset, *, name: str = "sink", progress: bool = False) -> Published:
    sink = compute_sink(nep, karst)
    return store.publish(sink, "products", name, compute=make_compute(progress),
                         attachments=_totals_attachment("ecosystem_sink", regions),
                         record=_record(sink, cfg, "ecosystem carbon sink = NEP + CCS"))


def run_trends(store: Store, cfg: RunConfig, da: xr.DataArray, regions: xr.Dataset, *,
               name: str, progress: bool = False) -> Published:
    """Trends, stability and change classes of one variable, with change-class areas."""
    tr = compute_trends(da)

    def attach(staged):
        areas = category_areas(staged.change_class, regions[REGION_SETS])
        sign = xr.where(staged.slope > 0, 1, xr.where(staged.slope < 0, 2, 0)).astype("i1")
        sign.attrs = {"flag_values": [1, 2], "flag_meanings": "increase decrease"}
        return {"change_areas.csv": _csv(areas),
                "increase_decrease_areas.csv": _csv(category_areas(sign, regions[REGION_SETS]))}
    return store.publish(tr, "products", name, compute=make_compute(progress), attachments=attach,
                         record=_record(tr, cfg, f"trends of {da.name} (OLS, Sen/Mann-Kendall, CV, "
                                        "change classes)", variable=str(da.name)))


def run_attribution(store: Store, cfg: RunConfig, da: xr.DataArray, drivers: xr.Dataset,
                    regions: xr.Dataset, *, name: str, progress: bool = False) -> Published:
    """Attribution of a variable's trend to P, T, SR and human activity, with dominant-factor areas."""
    att = compute_attribution(da, {v: drivers[v] for v in ("pr", "tas", "rsds")})

    def attach(staged):
        return {"dominant_areas.csv": _csv(category_areas(staged.dominant_factor,
                                                          regions[REGION_SETS]))}
    return store.publish(att, "products", name, compute=make_compute(progress), attachments=attach,
                         record=_record(att, cfg, f"attribution of the trend of {da.name} to "
                                        "precipitation, temperature, solar radiation and human "
                                        "activity (partial derivatives, detrended)",
                                        variable=str(da.name)))


def _chunks(cfg: RunConfig, inputs: xr.Dataset) -> dict[str, int]:
    return cfg.grid_obj().chunks(inputs.sizes["time"], target_mb=cfg.chunk_mb)


# --- the demo ---------------------------------------------------------------------------------
def run_demo(cfg: RunConfig, *, progress: bool = False,
             rh_models=DEMO_RH_MODELS) -> RunResult:
    """The demo end to end on synthetic China: inputs → NEP (each Rh model) → karst → sink →
    trends and attribution of NEP and the sink → tables → catalog."""
    store = Store(cfg.store, cfg.resolved_storage_options())
    grid = cfg.grid_obj()
    log.info("synthetic China on %s for %s–%s", grid, *cfg.years)
    inputs = make_inputs(grid, cfg.years, seed=cfg.seed, target_mb=cfg.chunk_mb)
    basins = make_basins(grid, seed=cfg.seed)
    ions = make_ion_table(inputs, basins, seed=cfg.seed)
    p_inputs, p_regions = publish_inputs(store, cfg, inputs, basins=basins, progress=progress,
                                         attachments={"river_chemistry.csv": _csv(ions)})
    result = RunResult(store=store.url)
    result.published.update(synthetic=p_inputs, regions=p_regions)

    stored = store.open("inputs", "synthetic")
    # lazy, Zarr-backed masks: tasks read their tiles instead of carrying full-grid arrays
    regions = store.open("inputs", "regions")
    models = [cfg.rh_model] + [m for m in rh_models if m != cfg.rh_model]
    for model in models:
        name = "nep" if model == cfg.rh_model else f"nep_{model}"
        log.info("computing %s (Rh model %s)", name, model)
        p = run_nep(store, cfg, stored, regions, rh_model=model, name=name, progress=progress)
        result.published[name] = p
        result.tables[name] = period_summary(_read_csv(store, p, "totals.csv"))

    table = _read_csv(store, p_inputs, "river_chemistry.csv")
    p, model = run_karst(store, cfg, stored, regions, table, progress=progress)
    result.published["karst"] = p
    result.tables["karst"] = period_summary(_read_csv(store, p, "totals.csv"))
    result.facts.update(ionic_strength_cv_r2=model.cv_r2, ionic_strength_cv_rmse=model.cv_rmse)

    nep, karst = store.open("products", "nep"), store.open("products", "karst")
    p = run_sink(store, cfg, nep, karst, regions, progress=progress)
    result.published["sink"] = p
    result.tables["sink"] = period_summary(_read_csv(store, p, "totals.csv"))

    sink = store.open("products", "sink")
    drivers = annual_drivers(stored)
    for var, da in (("nep", nep["nep"]), ("sink", sink["ecosystem_sink"])):
        p = run_trends(store, cfg, da, regions, name=f"trends_{var}", progress=progress)
        result.published[f"trends_{var}"] = p
        result.tables[f"trends_{var}"] = _read_csv(store, p, "increase_decrease_areas.csv")
        p = run_attribution(store, cfg, da, drivers, regions, name=f"attribution_{var}",
                            progress=progress)
        result.published[f"attribution_{var}"] = p
        result.tables[f"attribution_{var}"] = _read_csv(store, p, "dominant_areas.csv")
    result.catalog = write_catalog(store)
    return result
