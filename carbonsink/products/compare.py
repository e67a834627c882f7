"""Bottom-up vs top-down comparison of land-sink products, ILAMB-style (SCIENCE.md §8, seed 001).

:func:`load_products` reads a flux manifest (:mod:`carbonsink.io.fluxes`) into sink-positive
g C m⁻² month⁻¹ DataArrays on one comparison grid; the analyses here work on those:

- :func:`totals`: annual totals (Pg C a⁻¹) per product, ensemble member (plus the ensemble mean),
  region and year — the study area first (its row is named after the domain: ``China``), then
  region sets (the four geographic divisions, land-cover classes, any built-in or given mask);
- :func:`period_totals`: period mean ± s.d. across years, shares of the study-area total and, for
  land-cover classes, shares of the sum of the named classes (seed 001 reports the latter);
- :func:`seasonal_cycle` (mean over years of monthly totals), :func:`zonal_means` (area means by
  latitude row and month), :func:`ensemble_table` (mean, s.d., min, max and spread of the members'
  totals) and :func:`ensemble_fields` (the same per cell and month);
- :func:`metrics`: every product and member against the reference (bias, RMSE, centred RMSE,
  correlation, Taylor, seasonal-phase, interannual-variability and bias scores and ILAMB's weighted
  overall score; :mod:`carbonsink.kernels.compare`), for the study area and each region;
- :func:`run_compare` publishes it all through :class:`carbonsink.io.store.Store`.

Totals use true cell areas (``Grid.row_area``, SCIENCE.md §0): Σ amount·A × 10⁻¹⁵ = Pg C; the
annual total of a year is the sum of its twelve monthly totals. Cells without data count as 0
(as :func:`carbonsink.zonal.totals` does) and the valid area is reported beside every total.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import warnings

import numpy as np
import pandas as pd
import xarray as xr

from ..domains import get_domain
from ..grid import grid_of
from ..io.fluxes import FluxManifest, load_fluxes
from ..kernels import compare as k
from ..regions import BUILTIN_SETS, region_masks
from ..regions import names as mask_names
from ..units import G_TO_PG, M2_TO_KM2
from ._attrs import product_attrs

ENSEMBLE_MEAN = "ensemble_mean"
DOMAIN_SET = "domain"
LANDCOVER = "landcover"
DEFAULT_REGIONS = ("division", LANDCOVER)
TOTAL_COLUMNS = ["product", "member", "region", "year", "total_pg", "region_set", "kind",
                 "area_km2", "mean_flux_g_m2_yr"]


def load_products(manifest) -> dict[str, xr.DataArray]:
    """{name: DataArray (member?, time, lat, lon)} of sink-positive g C m-2 month-1 on the
    comparison grid, NaN outside the study area, from a manifest path or dict (see
    :mod:`carbonsink.io.fluxes`). Raises :class:`carbonsink.io.fluxes.FluxInputError` on bad input.
    """
    return load_fluxes(manifest)[0]


# --- series and regions --------------------------------------------------------------------------
def _flux_products(products, monthly: bool = False) -> dict[str, xr.DataArray]:
    """The flux products (not spreads); ``monthly``: only those with real months (carbonsink's own
    annual products are left out of seasonal cycles, zonal means and metrics)."""
    if isinstance(products, xr.DataArray):                 # one product passed on its own
        products = {str(products.name): products}
    return {n: da for n, da in products.items() if da.attrs.get("product_role", "flux") == "flux"
            and not (monthly and da.attrs.get("temporal_resolution") == "annual")}


def series(da: xr.DataArray) -> list[tuple[str, np.ndarray]]:
    """(member, (time, lat, lon) values) of a product: its members and their mean, or ("", values)."""
    if "member" not in da.dims:
        return [("", np.asarray(da.values, dtype="f8"))]
    v = np.asarray(da.transpose("member", "time", "lat", "lon").values, dtype="f8")
    out = [(str(m), v[i]) for i, m in enumerate(da["member"].values)]
    return out + [(ENSEMBLE_MEAN, v.mean(axis=0))]


def _years_months(da: xr.DataArray) -> tuple[np.ndarray, np.ndarray]:
    t = pd.DatetimeIndex(da["time"].values)
    return np.asarray(t.year), np.asarray(t.month)


def _first(products: dict) -> xr.DataArray:
    if not products:
        raise ValueError("no products")
    return next(iter(products.values()))


def domain_mask(da: xr.DataArray) -> np.ndarray:
    """The study area's cells (1/0) on the product's grid, from its ``domain`` attribute."""
    return np.asarray(get_domain(da.attrs.get("domain", "china")).mask(grid_of(da)))


def region_sets(products: dict, regions=None) -> list[tuple[str, np.ndarray, dict[int, str]]]:
    """[(set name, labels (lat, lon), {code: name})]: the study area first, then ``regions``:

    None → none; ``"default"`` → the geographic divisions and the land-cover classes (when the
    products carry a ``landcover`` coordinate); a list of names (:data:`carbonsink.regions.
    BUILTIN_SETS` and ``landcover``); an ``xr.Dataset`` of integer masks with flag attributes (e.g.
    :func:`carbonsink.regions.region_masks`) or a dict {name: mask}."""
    da = _first(products)
    grid = grid_of(da)
    inside = domain_mask(da)
    label = str(da.attrs.get("domain_name", "China"))
    out = [(DOMAIN_SET, inside.astype("i4"), {1: label})]
    if regions is None:
        return out
    if isinstance(regions, str):
        regions = list(DEFAULT_REGIONS) if regions in ("default", "all") else [regions]
    masks: dict[str, xr.DataArray] = {}
    if isinstance(regions, xr.Dataset):
        masks = {str(n): v for n, v in regions.data_vars.items()
                 if "flag_values" in v.attrs and n != "domain_mask"}
    elif isinstance(regions, dict):
        masks = {str(n): v for n, v in regions.items()}
    else:
        builtin = [r for r in regions if r in BUILTIN_SETS]
        unknown = [r for r in regions if r not in BUILTIN_SETS and r != LANDCOVER]
        if unknown:
            raise ValueError(f"unknown region sets {unknown}; use {list(BUILTIN_SETS)} or "
                             f"{LANDCOVER!r}, or pass masks")
        if builtin:
            ds = region_masks(grid, get_domain(da.attrs.get("domain", "china")), builtin)
            masks.update({n: ds[n] for n in builtin if n in ds})
        if LANDCOVER in regions and LANDCOVER in da.coords:
            masks[LANDCOVER] = da.coords[LANDCOVER]
    for name, mask in masks.items():
        codes = mask_names(mask)
        values = np.asarray(mask.values)
        if values.shape != grid.shape:
            raise ValueError(f"region mask {name!r} {values.shape} is not on the grid {grid}")
        values = np.where(inside > 0, values, 0).astype("i4")
        present = {c: n for c, n in codes.items() if (values == c).any()}
        if present:
            out.append((name, values, present))
    return out


def _dense(labels: np.ndarray, codes: dict[int, str]) -> tuple[np.ndarray, list[str]]:
    """Labels renumbered 1..n in code order (0 elsewhere) and their names."""
    order = sorted(codes)
    lut = np.zeros(max(max(order), int(labels.max())) + 1, dtype="i4")
    for i, c in enumerate(order):
        lut[c] = i + 1
    return lut[np.clip(labels, 0, None)], [codes[c] for c in order]


# --- totals ---------------------------------------------------------------------------------------
def _monthly_sums(values: np.ndarray, grid, labels, codes):
    """Σ amount·A (Pg) and valid area (m²) per month and region: two (time, nregion) arrays."""
    dense, names = _dense(labels, codes)
    s, a = k.region_sums(values, grid.row_area, dense, len(names))
    return s * G_TO_PG, a, names


def totals(products: dict, regions=None) -> pd.DataFrame:
    """Annual totals (Pg C a⁻¹) per product, member, region and year.

    Columns ``product, member, region, year, total_pg`` (then ``region_set``, ``kind``,
    ``area_km2`` — the mean valid area — and ``mean_flux_g_m2_yr``). ``member`` is "" for single
    products; ensembles give a row per member and one for ``ensemble_mean`` (the totals of the
    member-mean field). The study area's rows come first, named after the domain (``China``);
    ``regions`` as in :func:`region_sets`. Spread products (``role: spread``) are left out."""
    flux = _flux_products(products)
    sets = region_sets(flux, regions)
    frames = []
    for name, da in flux.items():
        grid = grid_of(da)
        years, _ = _years_months(da)
        uniq = np.unique(years)
        for member, values in series(da):
            for set_name, labels, codes in sets:
                s, a, regs = _monthly_sums(values, grid, labels, codes)
                ann = s.reshape(uniq.size, 12, -1).sum(axis=1)
                area = a.reshape(uniq.size, 12, -1).mean(axis=1) * M2_TO_KM2
                with np.errstate(invalid="ignore", divide="ignore"):
                    mean_flux = np.where(area > 0, ann / G_TO_PG / (area / M2_TO_KM2), np.nan)
                frames.append(pd.DataFrame({
                    "product": name, "member": member,
                    "region": np.tile(regs, uniq.size), "year": np.repeat(uniq, len(regs)),
                    "total_pg": ann.ravel(), "region_set": set_name,
                    "kind": da.attrs.get("product_kind", ""), "area_km2": area.ravel(),
                    "mean_flux_g_m2_yr": mean_flux.ravel()}))
    out = pd.concat(frames, ignore_index=True)[TOTAL_COLUMNS]
    order = {s: i for i, (s, _, _) in enumerate(sets)}
    out["_o"] = out["region_set"].map(order)
    return (out.sort_values(["_o"], kind="stable").drop(columns="_o").reset_index(drop=True))


def period_totals(table: pd.DataFrame, other: str = "other") -> pd.DataFrame:
    """Period mean ± s.d. (ddof 1, across years) of each product/member/region total, with
    ``share_of_total_pct`` (of the study area's mean total) and, for land-cover classes,
    ``share_of_classes_pct`` (of the sum of the classes other than ``other`` — seed 001's shares)."""
    keys = ["product", "member", "region_set", "region"]
    g = table.groupby(keys, sort=False)
    out = g.agg(kind=("kind", "first"), mean_pg=("total_pg", "mean"), sd_pg=("total_pg", "std"),
                n_years=("year", "nunique"), area_km2=("area_km2", "mean")).reset_index()
    nat = out[out.region_set == DOMAIN_SET].set_index(["product", "member"])["mean_pg"]
    idx = pd.MultiIndex.from_frame(out[["product", "member"]])
    with np.errstate(invalid="ignore", divide="ignore"):
        out["share_of_total_pct"] = 100.0 * out["mean_pg"].to_numpy() / nat.reindex(idx).to_numpy()
    lc = (out.region_set == LANDCOVER) & (out.region != other)
    class_sum = out[lc].groupby(["product", "member"])["mean_pg"].sum()
    share = np.full(len(out), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        share[lc.to_numpy()] = 100.0 * out.loc[lc, "mean_pg"].to_numpy() / class_sum.reindex(
            pd.MultiIndex.from_frame(out.loc[lc, ["product", "member"]])).to_numpy()
    out["share_of_classes_pct"] = share
    return out


def seasonal_cycle(products: dict, regions=None) -> pd.DataFrame:
    """Mean seasonal cycle: per product, member, region and calendar month, the mean over years
    of the monthly total (``total_pg``, Pg C month⁻¹; ``sd_pg`` across years) and of the
    area-mean flux (``mean_flux_g_m2``, g C m⁻² month⁻¹)."""
    flux = _flux_products(products, monthly=True)
    sets = region_sets(flux, regions)
    frames = []
    for name, da in flux.items():
        grid = grid_of(da)
        ny = da.sizes["time"] // 12
        for member, values in series(da):
            for set_name, labels, codes in sets:
                s, a, regs = _monthly_sums(values, grid, labels, codes)
                s, a = s.reshape(ny, 12, -1), a.reshape(ny, 12, -1)
                sd = s.std(axis=0, ddof=1) if ny > 1 else np.full(s.shape[1:], np.nan)
                with np.errstate(invalid="ignore", divide="ignore"):
                    flux_mean = np.where(a > 0, s / G_TO_PG / a, np.nan).mean(axis=0)
                frames.append(pd.DataFrame({
                    "product": name, "member": member, "region_set": set_name,
                    "region": np.tile(regs, 12), "month": np.repeat(np.arange(1, 13), len(regs)),
                    "total_pg": s.mean(axis=0).ravel(), "sd_pg": sd.ravel(),
                    "mean_flux_g_m2": flux_mean.ravel()}))
    return pd.concat(frames, ignore_index=True)


def zonal_means(products: dict) -> pd.DataFrame:
    """Area-mean flux (g C m⁻² month⁻¹) of the study area's cells in each latitude row, for every
    month of the period (seed 001 fig. 4: latitude × time); cells of a row share one area, so
    this is the row's mean over valid cells."""
    frames = []
    for name, da in _flux_products(products, monthly=True).items():
        years, months = _years_months(da)
        lat = da["lat"].values
        for member, values in series(da):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)   # all-NaN rows outside the area
                zm = np.nanmean(values, axis=2)                   # (time, lat)
            frames.append(pd.DataFrame({
                "product": name, "member": member, "lat": np.tile(lat, len(years)),
                "year": np.repeat(years, lat.size), "month": np.repeat(months, lat.size),
                "mean_flux_g_m2": zm.ravel()}))
    out = pd.concat(frames, ignore_index=True)
    return out[out["mean_flux_g_m2"].notna()].reset_index(drop=True)


def ensemble_table(table: pd.DataFrame) -> pd.DataFrame:
    """Mean, s.d. (ddof 1), min, max and spread (max − min) of the members' totals of each
    ensemble product per region and year (from a :func:`totals` table)."""
    mem = table[(table.member != "") & (table.member != ENSEMBLE_MEAN)]
    if mem.empty:
        return pd.DataFrame(columns=["product", "region_set", "region", "year", "n_members",
                                     "mean_pg", "sd_pg", "min_pg", "max_pg", "spread_pg"])
    g = mem.groupby(["product", "region_set", "region", "year"], sort=False)["total_pg"]
    out = g.agg(n_members="count", mean_pg="mean", sd_pg="std", min_pg="min",
                max_pg="max").reset_index()
    out["spread_pg"] = out["max_pg"] - out["min_pg"]
    return out


def ensemble_fields(da: xr.DataArray) -> xr.Dataset:
    """Per cell and month: ensemble mean, s.d. (ddof 1), min, max and spread of the members."""
    stats = k.ensemble_statistics(da.transpose("member", "time", "lat", "lon").values, axis=0)
    coords = {c: da.coords[c] for c in ("time", "lat", "lon")}
    long = {"mean": "mean", "sd": "standard deviation (ddof 1)", "min": "minimum",
            "max": "maximum", "spread": "spread (maximum − minimum)"}
    return xr.Dataset({f"ensemble_{s}": xr.DataArray(
        v, dims=("time", "lat", "lon"), coords=coords,
        attrs={"units": da.attrs.get("units"), "long_name": f"{long[s]} of the "
               f"{da.sizes['member']} members of {da.name} (sink-positive)"})
        for s, v in stats.items()})


# --- metrics ----------------------------------------------------------------------------------------
def metrics(products: dict, reference: str | None = None, regions=None) -> pd.DataFrame:
    """ILAMB metrics and scores (:func:`carbonsink.kernels.compare.compare_metrics`) of every
    product and member (and ensemble mean) against ``reference`` (default: the manifest's; an
    ensemble reference is its member mean), for the study area and each region of ``regions``.
    Bias, RMSE and centred RMSE are in g C m⁻² month⁻¹. Annual-only products are not scored."""
    flux = _flux_products(products, monthly=True)
    reference = reference or _first(flux).attrs.get("reference_product") or None
    if reference is None or reference not in flux:
        raise ValueError(f"reference product {reference!r} is not among {list(flux)}")
    ref_da = flux[reference]
    ref_values = series(ref_da)[-1][1]
    grid = grid_of(ref_da)
    area = np.broadcast_to(grid.row_area[:, None], grid.shape)
    sets = region_sets(flux, regions)
    rows = []
    for name, da in flux.items():
        for member, values in series(da):
            if name == reference and member in ("", ENSEMBLE_MEAN):
                continue
            for set_name, labels, codes in sets:
                for code, region in sorted(codes.items()):
                    cells = labels == code
                    m = k.compare_metrics(ref_values[:, cells], values[:, cells], area[cells])
                    rows.append({"product": name, "member": member,
                                 "kind": da.attrs.get("product_kind", ""),
                                 "reference": reference, "region_set": set_name,
                                 "region": region, **m})
    return pd.DataFrame(rows)


# --- publishing -----------------------------------------------------------------------------------
def _csv(table: pd.DataFrame) -> bytes:
    buf = io.StringIO()
    table.to_csv(buf, index=False, float_format="%.10g")
    return buf.getvalue().encode()


def _manifest_hash(m: FluxManifest) -> str:
    data = m.model_dump(mode="json")
    data.pop("root", None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _record(m: FluxManifest, da: xr.DataArray, description: str, **extra) -> dict:
    return {"description": description, "units": {"sink": da.attrs.get("units")},
            "grid": da.attrs.get("grid"), "grid_bbox": da.attrs.get("grid_bbox"),
            "domain": da.attrs.get("domain"), "domain_name": da.attrs.get("domain_name"),
            "years": list(m.years), "reference": m.reference, "manifest_sha256": _manifest_hash(m),
            "manifest_title": m.title or "", "ilamb_weights": dict(k.ILAMB_WEIGHTS), **extra}


def _product_dataset(da: xr.DataArray) -> xr.Dataset:
    base = da.drop_vars([c for c in (LANDCOVER,) if c in da.coords])
    sink = base.rename("sink")
    ds = xr.Dataset({"sink": sink})
    if "member" in da.dims:
        ds = ds.merge(ensemble_fields(base))
    inputs = xr.Dataset(attrs={kk: v for kk, v in da.attrs.items()
                               if kk in ("grid", "grid_resolution_deg", "grid_bbox", "crs",
                                         "domain", "domain_name", "domain_source")})
    ds.attrs = product_attrs(inputs, title=f"{da.name}: normalised land sink for comparison",
                             extra={"product": str(da.name),
                                    "product_kind": da.attrs.get("product_kind", ""),
                                    "product_role": da.attrs.get("product_role", "flux")})
    return ds


def _summary_dataset(products: dict, zonal: pd.DataFrame) -> xr.Dataset:
    da = _first(products)
    grid = grid_of(da)
    inside = domain_mask(da)
    coords = {kk: xr.Variable(*v) for kk, v in grid.coords().items()}
    data = {"domain_mask": (("lat", "lon"), inside.astype("u1"),
                            {"long_name": "cell in the study area (1) or not (0)", "units": "1"}),
            "cell_area": (("lat", "lon"), grid.cell_area(),
                          {"long_name": "cell area on the sphere", "units": "m2"})}
    if LANDCOVER in da.coords:
        lc = da.coords[LANDCOVER]
        data[LANDCOVER] = (("lat", "lon"), np.asarray(lc.values), dict(lc.attrs))
    ds = xr.Dataset(data, coords=coords)
    if not zonal.empty:
        key = zonal["product"] + np.where(zonal["member"] != "", "/" + zonal["member"], "")
        z = zonal.assign(series=key, time=pd.to_datetime(
            {"year": zonal.year, "month": zonal.month, "day": 1}))
        zm = z.set_index(["series", "time", "lat"])["mean_flux_g_m2"].to_xarray()
        zm = zm.reindex(lat=grid.lat)
        labels = zm["series"].values.astype(str)
        zm = zm.assign_coords(series=("series", labels), product=("series", np.array(
            [x.split("/")[0] for x in labels])), member=("series", np.array(
                [x.split("/")[1] if "/" in x else "" for x in labels])))
        zm.attrs = {"units": "g m-2 month-1", "long_name": "zonal mean of the land sink over "
                    "the study area's cells (sink-positive)"}
        ds["zonal_mean"] = zm.astype("f8")
    inputs = xr.Dataset(attrs={kk: v for kk, v in da.attrs.items()
                               if kk in ("grid", "grid_resolution_deg", "grid_bbox", "crs",
                                         "domain", "domain_name", "domain_source")})
    ds.attrs = product_attrs(inputs, title="bottom-up vs top-down comparison: regions, zonal "
                             "means and tables", extra={"products": ", ".join(products)})
    return ds


def compare_tables(products: dict, reference: str | None = None,
                   regions="default") -> dict[str, pd.DataFrame]:
    """Every table of the comparison, keyed by its attachment name (``totals.csv`` …)."""
    tot = totals(products, regions)
    tables = {"totals.csv": tot, "period_totals.csv": period_totals(tot),
              "seasonal_cycle.csv": seasonal_cycle(products, regions),
              "zonal_means.csv": zonal_means(products),
              "ensemble.csv": ensemble_table(tot)}
    ref = reference or _first(products).attrs.get("reference_product") or None
    if ref:
        tables["metrics.csv"] = metrics(products, ref, regions)
    return tables


def run_compare(store, manifest, *, prefix: str = "compare_", regions="default",
                compute=None) -> dict:
    """Load, analyse and publish a comparison: every product as ``products/<prefix><name>``
    (variable ``sink`` (member?, time, lat, lon) and, for ensembles, ``ensemble_mean/sd/min/max/
    spread``) and ``products/<prefix>summary`` (study-area mask, cell areas, land cover, zonal
    means) carrying the tables as CSV attachments (totals, period_totals, seasonal_cycle,
    zonal_means, ensemble, metrics). All inputs are read and checked, and all tables computed,
    before the first write, so bad input publishes nothing. Returns {name: Published}."""
    from ..io.names import validate_prefix
    from ..io.store import Store

    validate_prefix(prefix)
    products, m = load_fluxes(manifest)
    tables = compare_tables(products, m.reference, regions)
    store = store if isinstance(store, Store) else Store(os.fspath(store))
    first = _first(products)
    sources = [{"name": s.name, "kind": s.kind, "role": s.role, "files": s.files,
                "variable": s.variable, "units": products[s.name].attrs.get("declared_units"),
                "sign": s.sign, "time": s.time} for s in m.products]
    published = {}
    for name, da in products.items():
        ds = _product_dataset(da)
        pub_name = f"{prefix}{name}"
        published[pub_name] = store.publish(
            ds.chunk(), "products", pub_name, compute=compute,
            record=_record(m, da, f"{name} ({da.attrs.get('product_kind')}) as sink-positive "
                           "g C m-2 month-1 on the comparison grid", product=name,
                           source=next(s for s in sources if s["name"] == name),
                           conversion=da.attrs.get("conversion")))
    summary = _summary_dataset(products, tables["zonal_means.csv"])
    published[f"{prefix}summary"] = store.publish(
        summary.chunk(), "products", f"{prefix}summary", compute=compute,
        attachments={n: _csv(t) for n, t in tables.items()},
        record=_record(m, first, "bottom-up vs top-down comparison: regions, zonal means and "
                       "tables (totals, period totals, seasonal cycle, zonal means, ensemble "
                       "statistics, ILAMB metrics)", products=sources,
                       tables=sorted(tables)))
    return published


def read_table(store, published, name: str) -> pd.DataFrame:
    """A CSV table attached to a published comparison summary, as a DataFrame (``member`` ""
    for single products)."""
    data = store.read_bytes(published.record["attachments"][name])
    df = pd.read_csv(io.BytesIO(data))
    if "member" in df.columns:
        df["member"] = df["member"].fillna("").astype(str)
    return df
