"""Library-level runs that the CLI and the Prefect flows call: validate → publish inputs → compute →
publish products (+ tables) → regenerate the catalog.

Nothing here starts or picks a cluster: dask work runs on the active distributed client if there is
one (the CLI and flows make it), else on the local threaded scheduler. Every product is computed from
published datasets read back from the store, as any later, separate run would.

Content addressing, skip and resume: each dataset's version id is derived from what determines it
(:func:`content_version`: its name and parameters, the run configuration's hash, the versions of the
datasets it is computed from, the code fingerprint). Each ``*_step`` function first asks the store
whether that version is already complete and, if so, reuses it (``Published.reused``) instead of
recomputing; a rerun of an unchanged configuration therefore recomputes nothing, and a failed run
resumes where it stopped. :func:`product_steps` is the product graph (which product is computed from
which datasets) that :func:`run_demo`, :func:`run_products` and the Prefect flows walk.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import pandas as pd
import xarray as xr

from . import __version__, ml
from .catalog import write_catalog
from .config import ConfigError, RunConfig
from .io.names import validate_prefix
from .io.store import Published, Store, compute_default
from .io.validate import (OPTIONAL, REQUIRED, check_value_stats, validate_inputs, value_stats)
from .kernels.respiration import RH_MODELS
from .products.attribution import compute_attribution
from .products.climate import annual_drivers
from .products.karst import compute_karst, compute_sink
from .products.nep import compute_nep
from .products.trends import compute_trends
from .regions import region_masks, region_set_names
from .synthetic import make_basins, make_inputs, make_ion_table
from .zonal import category_areas, cell_area_da, period_summary, totals

log = logging.getLogger("carbonsink")

DEMO_RH_MODELS = ("soil_tps", "pei")
CONTENT_PREFIX = "c-"


@dataclass
class RunResult:
    store: str
    catalog: str = ""
    published: dict[str, Published] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)   # name → summary table
    facts: dict[str, object] = field(default_factory=dict)           # headline numbers
    prefix: str = ""                         # products published as prefix + product


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
           "grid": cfg.grid_obj().name, "grid_bbox": list(cfg.grid_obj().bounds),
           "domain": cfg.domain, "domain_name": cfg.domain_obj().label,
           "config_hash": cfg.config_hash(),
           "config": {k: v for k, v in cfg.public_dict().items()
                      if k not in ("storage_options", "cluster")}, **extra}
    if "year" in ds.coords:
        rec["years"] = [int(ds["year"].values.min()), int(ds["year"].values.max())]
    else:  # static fields and per-pixel statistics: the years of the run they belong to
        rec["years"] = [int(cfg.years[0]), int(cfg.years[1])]
    return rec


def _read_csv(store: Store, p: Published, suffix: str) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(store.read_bytes(p.record["attachments"][suffix])))


def _region_sets(regions: xr.Dataset) -> xr.Dataset:
    """The region-set masks of a regions dataset (those of the run's domain, see region_masks)."""
    return regions[region_set_names(regions)]


def _domain_name(regions: xr.Dataset) -> str:
    return str(regions.attrs.get("domain_name", "China"))


def _totals_attachment(var: str, regions: xr.Dataset, where=None):
    """Totals of ``var`` per region and year, computed from the staged (written) product."""
    def attach(staged: xr.Dataset) -> dict[str, bytes]:
        flux = staged[var] if where is None else staged[var].where(where(staged))
        return {"totals.csv": _csv(totals(flux, _region_sets(regions),
                                          domain_name=_domain_name(regions)))}
    return attach


# --- content addressing -------------------------------------------------------------------------
# What computes values: the modules whose source decides a dataset's numbers. A change to any of
# them (a kernel fix, a new default) gives every dataset new versions; the CLI, the cluster helpers
# and the catalog writer only present or move results and are left out.
_COMPUTING = ("kernels", "products", "io", "grid.py", "units.py", "regions.py", "synthetic.py",
              "ml.py", "zonal.py", "pipeline.py", "config.py", "domains.py")


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """carbonsink's version + 12 hex digits of the SHA-256 of the source of the computing modules
    (:data:`_COMPUTING`), so an edited kernel in a development install cannot reuse versions
    computed by the old code under an unchanged version number."""
    import pathlib

    root = pathlib.Path(__file__).parent
    files = sorted(p for entry in _COMPUTING for p in
                   ((root / entry).rglob("*.py") if (root / entry).is_dir() else [root / entry]))
    h = hashlib.sha256()
    for f in files:
        h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return f"{__version__}+{h.hexdigest()[:12]}"


def _address(cfg: RunConfig, kind: str, name: str, params: dict | None = None,
             inputs: dict[str, Published] | None = None) -> tuple[str, dict]:
    key = {"dataset": f"{kind}/{name}", "params": params or {}, "config_hash": cfg.config_hash(),
           "inputs": {k: f"{p.key}@{p.version}" for k, p in sorted((inputs or {}).items())},
           "code_version": code_fingerprint()}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
    return CONTENT_PREFIX + digest[:16], key


def content_version(cfg: RunConfig, kind: str, name: str, params: dict | None = None,
                    inputs: dict[str, Published] | None = None) -> str:
    """The content address of a dataset: ``c-`` + 16 hex digits of the SHA-256 of its kind/name and
    parameters, the run configuration's hash (:meth:`RunConfig.config_hash`: what determines results,
    not where they go or what computes them), the versions of the datasets it is computed from and
    the code (:func:`code_fingerprint`: the carbonsink version and the source of its computing
    modules). Same configuration, inputs and code → same id; change any of them and
    this id, and every id downstream of it, changes."""
    return _address(cfg, kind, name, params, inputs)[0]


def _step(store: Store, cfg: RunConfig, kind: str, name: str, *, params: dict,
          inputs: dict[str, Published], build: Callable[[str, dict], Published]) -> Published:
    """Reuse the complete content-addressed version of ``kind/name`` if there is one, else call
    ``build(version, record_extra)`` to compute and publish it under that version."""
    version, key = _address(cfg, kind, name, params, inputs)
    found = store.reuse(kind, name, version)
    if found is not None:
        log.info("%s/%s %s is complete: reused", kind, name, version)
        return found
    # the claim covers everything the build computes (e.g. training the ionic-strength forest),
    # so a second run of the same configuration waits for the first instead of repeating it
    with store.claim(kind, name, version) as done:
        if done is not None:
            log.info("%s/%s %s was completed by another run: reused", kind, name, version)
            return done
        log.info("computing %s/%s %s", kind, name, version)
        return build(version, {"content_address": key})


def open_published(store: Store, p: Published) -> xr.Dataset:
    """Open exactly the version ``p`` (not whatever ``latest`` points at by now), with the full
    time axis in every dask chunk as the products want it (inputs may be stored a year per chunk)."""
    ds = store.open(p.kind, p.name, p.version)
    full_time = {d: -1 for d in ("time", "year") if d in ds.dims}
    return ds.chunk(full_time) if full_time else ds


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
    p_inputs = publish_canonical(store, cfg, inputs, name=name, attachments=attachments,
                                 progress=progress)
    p_regions = publish_regions(store, cfg, inputs.sizes["time"], basins=basins,
                                progress=progress)
    return p_inputs, p_regions


def publish_canonical(store: Store, cfg: RunConfig, inputs: xr.Dataset, *, name: str,
                      attachments: dict[str, bytes] | None = None, progress: bool = False,
                      version: str | None = None, extra: dict | None = None) -> Published:
    """Validate and publish canonical inputs alone (see :func:`publish_inputs`); ``version``: the id
    to publish under (default timestamped), ``extra``: more fields for the version record."""
    source = inputs.attrs.get("source")
    variables = REQUIRED["all"] + tuple(v for v in OPTIONAL if v in inputs.data_vars)
    validate_inputs(inputs, variables, source=source, check_values=False)
    inputs = inputs.assign_attrs(run_config_hash=cfg.config_hash())
    check = (value_stats(inputs, variables),
             lambda stats: check_value_stats(inputs, variables, stats, source))
    return store.publish(inputs, "inputs", name, compute=make_compute(progress),
                         attachments=attachments, check=check, version=version,
                         record=_record(inputs, cfg, "canonical carbonsink inputs "
                                        f"({inputs.attrs.get('title', name)})", **(extra or {})))


def _tiles(cfg: RunConfig, p_in: Published) -> dict:
    """The spatial tiles of published inputs (the chunks of their region masks and basins)."""
    return cfg.grid_obj().chunks(p_in.record["dims"]["time"], target_mb=cfg.chunk_mb)


def publish_regions(store: Store, cfg: RunConfig, ntime: int, *,
                    basins: xr.DataArray | None = None, progress: bool = False,
                    version: str | None = None, extra: dict | None = None,
                    name: str = "regions") -> Published:
    """The region masks (+ cell areas, + river basins if given) of the configured grid, in the same
    tiles as inputs of ``ntime`` months, published as ``inputs/<name>``."""
    chunks = cfg.grid_obj().chunks(ntime, target_mb=cfg.chunk_mb)
    # tile by tile on the workers: no full-grid mask in the client or in the graph
    regions = region_masks(cfg.grid_obj(), cfg.domain_obj(), cfg.region_set_specs(),
                           chunks=chunks)
    regions["cell_area"] = cell_area_da(regions, chunks=chunks)
    if basins is not None:
        basins = basins.chunk(chunks)
        regions["basin"] = basins.where(regions["domain_mask"] > 0, 0).astype(basins.dtype) \
            .assign_attrs(basins.attrs)
    regions = regions.chunk(chunks)
    return store.publish(regions, "inputs", name, compute=make_compute(progress),
                         version=version,
                         record=_record(regions, cfg, "region masks (province, division, "
                                        "karst_region, basin) and true cell areas (m2)",
                                        **(extra or {})))


def demo_inputs_step(store: Store, cfg: RunConfig, *, rebuild: str = "",
                     progress: bool = False) -> tuple[Published, Published]:
    """The demo's synthetic inputs (with their river-chemistry table) and region masks, each reused
    if its content-addressed version is complete, else generated, validated and published.
    ``rebuild``: a tag that gives the inputs — and so every product computed from them — new
    versions (a full rebuild); the same tag again reuses them (a failed rebuild resumes)."""
    params = {"source": "carbonsink.synthetic", **({"rebuild": rebuild} if rebuild else {})}
    v_in, key_in = _address(cfg, "inputs", "synthetic", params)
    p_in = store.reuse("inputs", "synthetic", v_in)
    basins = None
    if p_in is None:
        log.info("synthetic China (%s) on %s for %s–%s", cfg.domain_obj().label, cfg.grid_obj(),
                 *cfg.years)
        inputs = make_inputs(cfg.grid_obj(), cfg.years, seed=cfg.seed, target_mb=cfg.chunk_mb,
                             land=cfg.domain_obj())
        inputs.attrs.update(cfg.domain_obj().attrs(cfg.grid_obj()))
        chunks = {d: inputs.chunksizes[d][0] for d in ("lat", "lon")}
        basins = synthetic_basins(cfg, chunks)

        def ions(staged: xr.Dataset) -> dict[str, bytes]:
            # from the written inputs: the synthetic fields are drawn once, for the write only
            out = {"river_chemistry.csv": _csv(make_ion_table(staged, basins, seed=cfg.seed))}
            if "lulc" in staged:    # the services' province statistics, consistent with them
                from .synthetic_services import make_province_statistics
                province = region_masks(cfg.grid_obj(), cfg.domain_obj(),
                                        cfg.region_set_specs(), chunks=chunks)["province"]
                out["province_statistics.csv"] = _csv(make_province_statistics(
                    staged, province.chunk(dict(zip(province.dims, [
                        staged.chunksizes["lat"], staged.chunksizes["lon"]]))), seed=cfg.seed))
            return out
        p_in = publish_canonical(store, cfg, inputs, name="synthetic", progress=progress,
                                 attachments=ions, version=v_in,
                                 extra={"content_address": key_in})
    else:
        log.info("%s %s is complete: reused", p_in.key, p_in.version)

    p_reg = regions_step(store, cfg, p_in, progress=progress,
                         basins=lambda: synthetic_basins(cfg, _tiles(cfg, p_in)) if basins is None
                         else basins)
    return p_in, p_reg


def domain_land(cfg: RunConfig):
    """The domain's mask on the run's grid, or None for all China (the synthetic default)."""
    return None if cfg.domain == "china" else cfg.domain_obj().mask(cfg.grid_obj())


def synthetic_basins(cfg: RunConfig, chunks: dict | None = None):
    """The demo's synthetic river basins on the run's domain: 40, or a third of the domain's land
    cells when it has fewer than 120 (a province at 1°). ``chunks``: all China's basins tile by
    tile (dask-backed); a smaller domain's are computed at once (its sites depend on its mask)."""
    land = domain_land(cfg)
    import numpy as np

    n = 40 if land is None else int(max(1, min(40, int((np.asarray(land) > 0).sum()) // 3)))
    return make_basins(cfg.grid_obj(), n_basins=n, seed=cfg.seed, land=land,
                       chunks=chunks if land is None else None)


def regions_name(inputs: str) -> str:
    """The region masks published for an input set: ``regions`` for the synthetic inputs (the
    demo), ``regions_<name>`` for others (their river basins come from the inputs)."""
    return "regions" if inputs == "synthetic" else f"regions_{inputs}"


def regions_step(store: Store, cfg: RunConfig, p_in: Published, *, basins=None,
                 progress: bool = False) -> Published:
    """The region masks (+ cell areas, + river basins) of ``p_in``'s grid, reused if complete.

    ``basins``: a callable returning the basin DataArray (the demo's synthetic basins) or None to
    take the inputs' own optional ``basin`` layer (ingested), if they have one."""
    from_inputs = basins is None
    has_basin = "basin" in p_in.record.get("variables", [])
    label = (f"inputs/{p_in.name}:basin" if has_basin else "none") if from_inputs \
        else "carbonsink.synthetic"

    def build(version, extra):
        if not from_inputs:
            b = basins()
        elif has_basin:
            b = open_published(store, p_in)["basin"].fillna(0).astype("i4")
            b.attrs = {"long_name": "river basin id (0: no basin)", "units": "1",
                       "source": f"{p_in.key}@{p_in.version}"}
        else:
            b = None
        return publish_regions(store, cfg, p_in.record["dims"]["time"], basins=b,
                               progress=progress, version=version, extra=extra, name=name)
    name = regions_name(p_in.name)
    return _step(store, cfg, "inputs", name, params={"basins": label},
                 inputs={"inputs": p_in}, build=build)


def published_inputs_step(store: Store, cfg: RunConfig, name: str, version: str = "latest", *,
                          progress: bool = False) -> tuple[Published, Published]:
    """Inputs already in the store (ingested, or an earlier demo's) at ``version``, checked against
    the configuration's grid and years, and their region masks (reused if complete)."""
    # already published: nothing is computed for it (reused)
    p_in = dataclasses.replace(store.complete("inputs", name, store.resolve("inputs", name,
                                                                           version)), reused=True)
    rec = p_in.record
    if rec.get("grid") != cfg.grid_obj().name:
        raise ConfigError(f"{p_in.key} {p_in.version} is on grid {rec.get('grid')}, the "
                          f"configuration asks for {cfg.grid_obj().name}")
    if rec.get("domain", "china") != cfg.domain:
        raise ConfigError(f"{p_in.key} {p_in.version} covers the domain "
                          f"{rec.get('domain_name', rec.get('domain', 'china'))!r}, the "
                          f"configuration asks for {cfg.domain_obj().label!r}")
    if list(rec.get("years") or []) != list(cfg.years):
        raise ConfigError(f"{p_in.key} {p_in.version} covers years {rec.get('years')}, the "
                          f"configuration asks for {list(cfg.years)}")
    if name == "synthetic":
        basins = functools.partial(synthetic_basins, cfg, _tiles(cfg, p_in))
    else:
        basins = None
    return p_in, regions_step(store, cfg, p_in, basins=basins, progress=progress)


# --- products ---------------------------------------------------------------------------------
def run_nep(store: Store, cfg: RunConfig, inputs: xr.Dataset, regions: xr.Dataset, *,
            rh_model: str, name: str = "nep", progress: bool = False,
            version: str | None = None, extra: dict | None = None) -> Published:
    """Compute NEP with one Rh model and publish it with its totals table."""
    if rh_model not in RH_MODELS:
        raise ValueError(f"unknown Rh model {rh_model!r}")
    # inputs come from the store, validated when they were published
    nep = compute_nep(inputs, rh_model=rh_model, validate=False)
    nep = nep.chunk({"year": -1, **_chunks(cfg, inputs)})
    return store.publish(
        nep, "products", name, compute=make_compute(progress), version=version,
        attachments=_totals_attachment("nep", regions),
        record=_record(nep, cfg, f"ecosystem organic sink NEP = NPP - Rh, Rh model {rh_model} "
                                 "(positive = sink), g C m-2 a-1 = t C km-2 a-1", **(extra or {})))


def run_karst(store: Store, cfg: RunConfig, inputs: xr.Dataset, regions: xr.Dataset,
              ion_table: pd.DataFrame | None, *, name: str = "karst", progress: bool = False,
              version: str | None = None,
              extra: dict | None = None) -> tuple[Published, ml.IonicStrengthModel | None]:
    """Train the ionic-strength forest on the river table, predict I for every pixel-year on the
    cluster, compute the MPD karst sink with it and publish it with the model and totals.
    ``ion_table`` None: no forest, I = 3[Ca²⁺]eq iterated per pixel (SCIENCE.md §2)."""
    model = None
    if ion_table is not None:
        basins = regions["basin"]
        ml.validate_ion_table(ion_table, basins, source="river chemistry table")
        predictors = ml.basin_predictors(inputs, basins)
        model = ml.train_ionic_strength(ion_table, predictors, seed=cfg.seed,
                                        cv=cfg.ionic_strength_cv)
        ionic = ml.predict_ionic_strength(model, inputs)
    else:
        ionic = None
    weak = ""
    if model is not None and not model.cv_r2 >= cfg.ionic_strength_min_r2:
        # a forest that explains little of I: said loudly, recorded, and not used if so configured
        iterate = cfg.ionic_strength_fallback == "iterate"
        weak = (f"the ionic-strength random forest explains little: "
                f"{'basin-held-out' if model.cv == 'basin' else f'{model.n_splits}-fold'} CV R² "
                f"{model.cv_r2:.3f} < ionic_strength_min_r2 {cfg.ionic_strength_min_r2:g} "
                f"({model.n_rows} basin-years); it is " + (
                    "not used: I = 3[Ca2+]eq is iterated per pixel instead" if iterate else
                    "used anyway (ionic_strength_fallback: iterate iterates I = 3[Ca2+]eq)"))
        log.warning(weak)
        ionic = None if iterate else ionic
    karst = compute_karst(inputs, ionic, validate=False)
    karst = karst.chunk({"year": -1, **_chunks(cfg, inputs)})
    if model is not None:
        karst.attrs.update(model.to_attrs())
    if weak:
        karst.attrs["ionic_strength_model_warning"] = weak
        karst.attrs["ionic_strength_method"] = "iterated" if ionic is None else "random_forest"

    def attach(staged):
        # "karst China": CCS per region over carbonate pixels only (SCIENCE.md §4)
        out = _totals_attachment("ccs", regions, where=lambda s: s.carbonate_fraction > 0)(staged)
        if model is not None:
            out["ionic_strength_model.joblib"] = ml.model_bytes(model)
            out["ionic_strength_cv.csv"] = _csv(pd.DataFrame([model.to_attrs()]))
            if model.cv_predictions is not None:     # observed vs out-of-fold predicted I
                out["ionic_strength_cv_predictions.csv"] = _csv(model.cv_predictions)
        return out
    how = ("random-forest ionic strength" if ionic is not None
           else "ionic strength iterated as I = 3[Ca2+]eq (no river chemistry or basins)"
           if model is None else "ionic strength iterated as I = 3[Ca2+]eq (the random forest's "
           f"CV R² {model.cv_r2:.3f} is below ionic_strength_min_r2 {cfg.ionic_strength_min_r2:g})")
    facts = {"ionic_strength_model": model.to_attrs()} if model is not None else {}
    if weak:
        facts["ionic_strength_model_warning"] = weak
    p = store.publish(karst, "products", name, compute=make_compute(progress), attachments=attach,
                      version=version,
                      record=_record(karst, cfg, "karst inorganic sink (maximum potential "
                                     f"dissolution) with {how}; CCS in g C m-2 a-1 = t C km-2 a-1",
                                     **facts, **(extra or {})))
    return p, model


def run_sink(store: Store, cfg: RunConfig, nep: xr.Dataset, karst: xr.Dataset,
             regions: xr.Dataset, *, name: str = "sink", progress: bool = False,
             version: str | None = None, extra: dict | None = None) -> Published:
    sink = compute_sink(nep, karst)
    return store.publish(sink, "products", name, compute=make_compute(progress), version=version,
                         attachments=_totals_attachment("ecosystem_sink", regions),
                         record=_record(sink, cfg, "ecosystem carbon sink = NEP + CCS",
                                        **(extra or {})))


def run_trends(store: Store, cfg: RunConfig, da: xr.DataArray, regions: xr.Dataset, *,
               name: str, progress: bool = False, version: str | None = None,
               extra: dict | None = None) -> Published:
    """Trends, stability and change classes of one variable, with change-class areas."""
    tr = compute_trends(da)

    def attach(staged):
        sets, dname = _region_sets(regions), _domain_name(regions)
        areas = category_areas(staged.change_class, sets, domain_name=dname)
        sign = xr.where(staged.slope > 0, 1, xr.where(staged.slope < 0, 2, 0)).astype("i1")
        sign.attrs = {"flag_values": [1, 2], "flag_meanings": "increase decrease"}
        return {"change_areas.csv": _csv(areas),
                "increase_decrease_areas.csv": _csv(category_areas(sign, sets,
                                                                   domain_name=dname))}
    return store.publish(tr, "products", name, compute=make_compute(progress), attachments=attach,
                         version=version,
                         record=_record(tr, cfg, f"trends of {da.name} (OLS, Sen/Mann-Kendall, CV, "
                                        "change classes)", variable=str(da.name), **(extra or {})))


def run_attribution(store: Store, cfg: RunConfig, da: xr.DataArray, drivers: xr.Dataset,
                    regions: xr.Dataset, *, name: str, progress: bool = False,
                    version: str | None = None, extra: dict | None = None) -> Published:
    """Attribution of a variable's trend to P, T, SR and human activity, with dominant-factor areas."""
    att = compute_attribution(da, {v: drivers[v] for v in ("pr", "tas", "rsds")})

    def attach(staged):
        return {"dominant_areas.csv": _csv(category_areas(
            staged.dominant_factor, _region_sets(regions), domain_name=_domain_name(regions)))}
    return store.publish(att, "products", name, compute=make_compute(progress), attachments=attach,
                         version=version,
                         record=_record(att, cfg, f"attribution of the trend of {da.name} to "
                                        "precipitation, temperature, solar radiation and human "
                                        "activity (partial derivatives, detrended)",
                                        variable=str(da.name), **(extra or {})))


def _chunks(cfg: RunConfig, inputs: xr.Dataset) -> dict[str, int]:
    return cfg.grid_obj().chunks(inputs.sizes["time"], target_mb=cfg.chunk_mb)


# --- product steps: reuse the content-addressed version, or compute and publish it -------------
# Each takes and returns Published references (kind, name, version, Zarr URI, record); datasets
# are opened from the store at exactly the referenced versions.
def nep_step(store: Store, cfg: RunConfig, inputs: Published, regions: Published, *,
             rh_model: str, name: str = "nep", progress: bool = False) -> Published:
    return _step(store, cfg, "products", name, params={"rh_model": rh_model},
                 inputs={"inputs": inputs, "regions": regions},
                 build=lambda version, extra: run_nep(
                     store, cfg, open_published(store, inputs), open_published(store, regions),
                     rh_model=rh_model, name=name, progress=progress, version=version,
                     extra=extra))


def karst_step(store: Store, cfg: RunConfig, inputs: Published, regions: Published, *,
               name: str = "karst", progress: bool = False) -> Published:
    """Karst sink with the ionic-strength forest trained on the inputs' river-chemistry table and
    the regions' river basins; inputs without both get I = 3[Ca²⁺]eq iterated per pixel."""
    with_rf = ("river_chemistry.csv" in inputs.record.get("attachments", {})
               and "basin" in regions.record.get("variables", []))

    def build(version, extra):
        table = _read_csv(store, inputs, "river_chemistry.csv") if with_rf else None
        return run_karst(store, cfg, open_published(store, inputs),
                         open_published(store, regions), table, name=name, progress=progress,
                         version=version, extra=extra)[0]
    return _step(store, cfg, "products", name,
                 params={"ionic_strength": "random_forest" if with_rf else "iterated"},
                 inputs={"inputs": inputs, "regions": regions}, build=build)


def sink_step(store: Store, cfg: RunConfig, nep: Published, karst: Published,
              regions: Published, *, name: str = "sink", progress: bool = False) -> Published:
    return _step(store, cfg, "products", name, params={},
                 inputs={"nep": nep, "karst": karst, "regions": regions},
                 build=lambda version, extra: run_sink(
                     store, cfg, open_published(store, nep), open_published(store, karst),
                     open_published(store, regions), name=name, progress=progress,
                     version=version, extra=extra))


def trends_step(store: Store, cfg: RunConfig, source: Published, regions: Published, *,
                variable: str, name: str, progress: bool = False) -> Published:
    return _step(store, cfg, "products", name, params={"variable": variable},
                 inputs={"source": source, "regions": regions},
                 build=lambda version, extra: run_trends(
                     store, cfg, open_published(store, source)[variable],
                     open_published(store, regions), name=name, progress=progress,
                     version=version, extra=extra))


def attribution_step(store: Store, cfg: RunConfig, source: Published, inputs: Published,
                     regions: Published, *, variable: str, name: str,
                     progress: bool = False) -> Published:
    return _step(store, cfg, "products", name, params={"variable": variable},
                 inputs={"source": source, "inputs": inputs, "regions": regions},
                 build=lambda version, extra: run_attribution(
                     store, cfg, open_published(store, source)[variable],
                     annual_drivers(open_published(store, inputs)),
                     open_published(store, regions), name=name, progress=progress,
                     version=version, extra=extra))


@dataclass(frozen=True)
class ProductStep:
    """One node of the product graph: ``run(store, cfg, *deps, progress=...) -> Published``, where
    ``deps`` name the datasets it is computed from ("inputs", "regions" or another product's
    published name). ``product``: what it is ("nep", "karst", "trends_sink", ...), ``name``: the
    name it is published under (``prefix`` + product)."""
    name: str
    deps: tuple[str, ...]
    run: Callable[..., Published]
    product: str = ""
    family: str = "core"


def registered_step(store: Store, cfg: RunConfig, *refs: Published, spec, dep_names,
                    name: str, progress: bool = False) -> Published:
    """Any registered product (:mod:`carbonsink.products.registry`): reuse its content-addressed
    version, or open its dependencies at exactly the given versions, compute it and publish it
    with its tables — the one step every registered family shares."""
    from .products.registry import Context

    published = dict(zip(dep_names, refs))

    def build(version, extra):
        data = {d: open_published(store, p) for d, p in published.items()}
        built = spec.compute(Context(cfg, data, published, store))
        return store.publish(built.dataset, "products", name, compute=make_compute(progress),
                             attachments=built.attach, version=version,
                             record=_record(built.dataset, cfg, built.description,
                                            family=spec.family, product=spec.product,
                                            **built.facts, **extra))
    return _step(store, cfg, "products", name, params=spec.params(cfg), inputs=published,
                 build=build)


def product_steps(cfg: RunConfig, rh_models=DEMO_RH_MODELS, prefix: str = "",
                  inputs: Published | None = None,
                  families: Iterable[str] | None = None) -> dict[str, ProductStep]:
    """The product graph in dependency order, keyed by published name: NEP with the configured Rh
    model (``nep``) and each other one (``nep_<model>``), karst, the sink, and trends and
    attribution of NEP and the sink, then every registered product family
    (:mod:`carbonsink.products.registry`) that applies to the inputs (``inputs``' record; None:
    the synthetic demo inputs) — each published as ``prefix + product``. ``families``: only the
    registered products of these families and what they are computed from."""
    steps = _core_steps(cfg, rh_models, prefix)
    steps.update(_registered_steps(cfg, prefix, inputs, steps))
    if families is not None:
        steps = _closure(steps, [n for n, s in steps.items() if s.family in set(families)])
    return steps


def _registered_steps(cfg, prefix, inputs, core) -> dict[str, ProductStep]:
    from .products import registry

    steps = dict(core)
    record = None if inputs is None else inputs.record
    for spec in registry.specs():
        if not spec.applies(cfg, record):
            continue
        if spec.check is not None:
            spec.check(cfg)
        missing = [d for d in spec.deps if d not in ("inputs", "regions") and prefix + d not in steps]
        optional = registry.optional_deps(spec, cfg)
        if spec.product == "services_balance" and cfg.services.capacity == "sequestration" \
                and prefix + "sink" not in steps:
            raise ConfigError("services.capacity: sequestration needs the sink product")
        if missing:
            log.info("%s is not computed: it needs %s", spec.product, missing)
            continue
        deps = tuple(spec.deps) + tuple(d for d in optional if prefix + d in steps)
        name = prefix + spec.product
        steps[name] = ProductStep(
            name, tuple(d if d in ("inputs", "regions") else prefix + d for d in deps),
            functools.partial(registered_step, spec=spec, dep_names=deps, name=name),
            spec.product, spec.family)
    return {k: v for k, v in steps.items() if k not in core}


def _closure(steps: dict[str, ProductStep], wanted) -> dict[str, ProductStep]:
    keep, todo = set(), list(wanted)
    while todo:
        n = todo.pop()
        if n in keep or n not in steps:
            continue
        keep.add(n)
        todo.extend(steps[n].deps)
    return {k: v for k, v in steps.items() if k in keep}


def _core_steps(cfg: RunConfig, rh_models, prefix: str) -> dict[str, ProductStep]:
    steps: dict[str, ProductStep] = {}

    def add(product, deps, fn, **kw):
        name = prefix + product
        deps = tuple(d if d in ("inputs", "regions") else prefix + d for d in deps)
        steps[name] = ProductStep(name, deps, functools.partial(fn, name=name, **kw), product)
    for model in [cfg.rh_model] + [m for m in rh_models if m != cfg.rh_model]:
        add("nep" if model == cfg.rh_model else f"nep_{model}", ("inputs", "regions"), nep_step,
            rh_model=model)
    add("karst", ("inputs", "regions"), karst_step)
    add("sink", ("nep", "karst", "regions"), sink_step)
    for source, variable in (("nep", "nep"), ("sink", "ecosystem_sink")):
        add(f"trends_{source}", (source, "regions"), trends_step, variable=variable)
        add(f"attribution_{source}", (source, "inputs", "regions"), attribution_step,
            variable=variable)
    return steps


def demo_products(cfg: RunConfig, rh_models=DEMO_RH_MODELS) -> dict[str, ProductStep]:
    """The demo's products (:func:`product_steps` without a prefix)."""
    return product_steps(cfg, rh_models)


def default_prefix(inputs: str) -> str:
    """Products of the synthetic inputs keep their plain names; those of other input sets are
    published as ``<inputs>_<product>`` so both can live in one store."""
    return "" if inputs == "synthetic" else f"{inputs}_"


def publish_catalog(store: Store, published: Iterable[Published]) -> str:
    """Release the given versions (the ones this run produced or reused) together — ``latest`` of
    every dataset of the run moves in one atomic write — and regenerate the catalog under the same
    store lock; returns the catalog's URL."""
    urls = []
    store.release(published, note="run", after=lambda: urls.append(write_catalog(store)))
    return urls[0]


def _registered(product: str):
    from .products import registry
    return next((s for s in registry.specs() if s.product == product), None)


def summarize(store: Store, published: dict[str, Published],
              prefix: str = "") -> tuple[dict, dict]:
    """Headline tables (period summaries, area tables) and facts of the products, read from their
    published attachments (the same for computed and reused versions); keyed by product (the
    published name without ``prefix``)."""
    tables: dict[str, pd.DataFrame] = {}
    facts: dict[str, object] = {}
    for name, p in published.items():
        if p.kind != "products":
            continue
        name = name.removeprefix(prefix)
        if name.startswith(("nep", "karst", "sink")):
            tables[name] = period_summary(_read_csv(store, p, "totals.csv"))
        elif name.startswith("trends_"):
            tables[name] = _read_csv(store, p, "increase_decrease_areas.csv")
        elif name.startswith("attribution_"):
            tables[name] = _read_csv(store, p, "dominant_areas.csv")
        spec = _registered(name)
        if spec is not None and spec.summary:
            t = _read_csv(store, p, spec.summary)
            tables[name] = t[t["region_set"] == "domain"] if "region_set" in t else t
        if name == "karst" and "ionic_strength_model" in p.record:
            m = p.record["ionic_strength_model"]
            facts.update({k: m.get(f"ionic_strength_{k}") for k in (
                "cv_r2", "cv_rmse", "cv_folds", "cv_scheme", "basin_cv_r2", "basin_cv_rmse")})
    return tables, facts


# --- the demo ---------------------------------------------------------------------------------
def run_demo(cfg: RunConfig, *, progress: bool = False, rh_models=DEMO_RH_MODELS,
             rebuild: str = "", families: Iterable[str] | None = None) -> RunResult:
    """The demo end to end on synthetic China: inputs → NEP (each Rh model) → karst → sink →
    trends and attribution of NEP and the sink → tables → catalog. Datasets whose content-addressed
    version is already complete are reused, not recomputed (``Published.reused``)."""
    store = Store(cfg.store, cfg.resolved_storage_options(), auto_release=False)
    p_inputs, p_regions = demo_inputs_step(store, cfg, rebuild=rebuild, progress=progress)
    return _run_products(store, cfg, p_inputs, p_regions, rh_models, "", progress, families)


def run_products(cfg: RunConfig, inputs: str, version: str = "latest", *,
                 prefix: str | None = None, progress: bool = False,
                 rh_models=DEMO_RH_MODELS, families: Iterable[str] | None = None) -> RunResult:
    """Every product from inputs already published in the store (e.g. by ``carbonsink ingest``):
    region masks with the inputs' river basins → NEP (each Rh model) → karst (random-forest ionic
    strength if the inputs carry river chemistry and basins, else iterated) → sink → trends and
    attribution → tables → catalog. Products are published as ``prefix + product`` (default
    :func:`default_prefix`); complete content-addressed versions are reused."""
    prefix = validate_prefix(default_prefix(inputs) if prefix is None else prefix)
    store = Store(cfg.store, cfg.resolved_storage_options(), auto_release=False)
    p_inputs, p_regions = published_inputs_step(store, cfg, inputs, version, progress=progress)
    return _run_products(store, cfg, p_inputs, p_regions, rh_models, prefix, progress, families)


def _run_products(store: Store, cfg: RunConfig, p_inputs: Published, p_regions: Published,
                  rh_models, prefix: str, progress: bool,
                  families: Iterable[str] | None = None) -> RunResult:
    result = RunResult(store=store.url, prefix=prefix)
    result.published.update({p_inputs.name: p_inputs, p_regions.name: p_regions})
    done = {"inputs": p_inputs, "regions": p_regions}
    for name, step in product_steps(cfg, rh_models, prefix, p_inputs, families).items():
        done[name] = step.run(store, cfg, *(done[d] for d in step.deps), progress=progress)
        result.published[name] = done[name]
    result.tables, result.facts = summarize(store, result.published, prefix)
    result.catalog = publish_catalog(store, result.published.values())
    return result
