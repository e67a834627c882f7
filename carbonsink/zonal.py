"""Area-weighted means and totals of a flux by region masks, with true cell areas (SCIENCE.md §0, §4).

mean flux [t C km⁻² a⁻¹ = g C m⁻² a⁻¹] = Σ F·A / Σ A over the region's valid (non-NaN) cells;
total [Tg C a⁻¹] = Σ F·A × 1e-12. One task per variable and block computes every region set's sums
(:func:`carbonsink.kernels.zonal.group_sums`); only the per-region sums come back to the client.

The first rows of every table are the whole domain (``region_set`` "domain", ``region`` the
domain's name: China, Three-River Headwaters, a basin file's name); region sets follow. A region set
mask carries its names in ``region_names`` and, where they are abbreviations (the karst regions SK,
NK, QK), ``region_long_names``: tables spell them out as "Southern karst (SK)".
"""
from __future__ import annotations

import dask
import numpy as np
import pandas as pd
import xarray as xr

from . import units as u
from .grid import grid_of
from .kernels import zonal as kz
from .regions import names as _names

DOMAIN = "domain"   # region_set of the whole-domain rows


def region_names(mask: xr.DataArray) -> dict[int, str]:
    """Code → display name of a region mask: "Long name (ABBR)" where long names are given."""
    codes = _names(mask)
    long_names = mask.attrs.get("region_long_names")
    if long_names and len(long_names) == len(codes):
        return {c: f"{ln} ({codes[c]})" for c, ln in zip(sorted(codes), long_names)}
    return codes

COLUMNS = ["region_set", "region", "year", "area_km2", "mean_flux_t_km2", "total_tg"]


def cell_area_da(obj, chunks: dict | None = None) -> xr.DataArray:
    """True cell areas (m²) of the grid ``obj`` lies on, as a (lat, lon) DataArray.

    With ``chunks`` ({"lat": n, "lon": m}) the array is dask-backed and built from the 1-D row
    areas, so a graph carries a few kB instead of a full-grid numpy array (93 MB at 1 km).
    """
    grid = grid_of(obj)
    attrs = {"units": "m2", "long_name": "cell area on the sphere"}
    coords = {"lat": obj["lat"], "lon": obj["lon"]}
    if not chunks:
        return xr.DataArray(grid.cell_area(), dims=("lat", "lon"), coords=coords, attrs=attrs)
    import dask.array as dsa
    clat, clon = chunks.get("lat", grid.nlat), chunks.get("lon", grid.nlon)
    rows = dsa.from_array(grid.row_area[:, None], chunks=(clat, 1))
    data = dsa.broadcast_to(rows, grid.shape, chunks=(clat, clon))
    return xr.DataArray(data, dims=("lat", "lon"), coords=coords, attrs=attrs)


def _as_mask_sets(regions) -> dict[str, xr.DataArray]:
    if regions is None:
        return {}
    if isinstance(regions, xr.DataArray):
        return {str(regions.name or "region"): regions}
    if isinstance(regions, xr.Dataset):
        return {str(k): regions[k] for k in regions.data_vars}
    return {str(k): v for k, v in dict(regions).items()}


def _labels(mask, codes):
    """Group index of each cell of an integer region mask (−1: no listed region)."""
    m = np.asarray(mask).astype(np.int64, copy=False)
    pos = np.clip(np.searchsorted(codes, m), 0, codes.size - 1)
    return np.where(codes[pos] == m, pos, -1)


def _zonal_block(f, area, *masks, codes):
    """One block's Σ F·A and Σ A per (variable, year) and group: (V, T, 1, 1, 2, G)."""
    f = np.asarray(f)
    labels = [np.zeros(f.shape[-2] * f.shape[-1], np.int64)] if codes[0] is None else []
    labels += [_labels(m, c).ravel() for m, c in zip(masks, codes[len(labels):])]
    n = [1 if c is None else c.size for c in codes]
    out = kz.group_sums(f.reshape(f.shape[:2] + (-1,)), np.asarray(area).ravel(), labels, n)
    return out[:, :, None, None]


def totals(flux: xr.DataArray, regions=None, *, domain: bool = True,
           domain_name: str | None = None) -> pd.DataFrame:
    """Per region and year: valid area (km²), area-weighted mean flux (t C km⁻² a⁻¹), total (Tg C a⁻¹).

    ``flux``: (year, lat, lon) in a unit convertible to g m-2 yr-1. ``regions``: an integer mask
    (0 = none) with flag_values/region_names attrs, a Dataset of such masks, or a dict of them.
    ``domain_name``: the label of the whole-domain rows (default: the flux's ``domain_name`` attr,
    else "China").
    """
    t = totals_many({str(flux.name or "flux"): flux}, regions, domain=domain,
                    domain_name=domain_name)
    return t.drop(columns="variable")


def zonal_sums(fields: dict, masks: dict, *, domain: bool = True) -> np.ndarray:
    """Σ X·A and the valid area Σ A (m²) of each (year, lat, lon) field per year and group, in one
    pass: (n_fields, n_years, 2, n_groups), the groups being the whole grid (``domain``) then
    each mask's codes in the order given. ``masks``: name → (integer mask, codes). Dask-backed
    fields give one task per field and block and a tree sum of the blocks' sums."""
    arrays = [a.transpose("year", "lat", "lon") for a in
              xr.align(*fields.values(), join="exact")]
    first = arrays[0]
    ref = next((a for a in arrays if a.chunks is not None), None)
    codes = ([None] if domain else []) + [np.asarray(c, dtype=np.int64)
                                          for _m, c in masks.values()]
    if not codes:
        raise ValueError("no region set and domain=False: nothing to sum")
    mask_arrays = []
    for set_name, (mask, _c) in masks.items():
        mask = mask.reindex_like(first, method=None)
        if mask.isnull().any():
            raise ValueError(f"region mask {set_name!r} is not on the flux grid")
        mask_arrays.append(mask.transpose("lat", "lon").astype("int32"))
    if ref is None:             # numpy-backed: one block
        data = np.stack([np.asarray(a.values) for a in arrays])
        return _zonal_block(data, grid_of(first).cell_area(), *[m.values for m in mask_arrays],
                            codes=codes)[:, :, 0, 0]
    import dask.array as dsa
    spatial = {"lat": ref.chunks[1], "lon": ref.chunks[2]}
    data = dsa.stack([a.chunk(dict(zip(ref.dims, ref.chunks))).data for a in arrays])
    area = cell_area_da(first, chunks={"lat": ref.chunks[1][0], "lon": ref.chunks[2][0]})
    area = area.chunk(spatial).data
    mdata = [m.chunk(spatial).data for m in mask_arrays]
    g = sum(1 if c is None else c.size for c in codes)
    chunks = data.chunks[:2] + tuple((1,) * len(c) for c in data.chunks[2:]) + ((2,), (g,))
    blocks = dsa.map_blocks(_zonal_block, data, area, *mdata, codes=codes, dtype="f8",
                            chunks=chunks, new_axis=[4, 5])
    (sums,) = dask.compute(blocks.sum(axis=(2, 3)))
    return sums


def totals_many(fluxes, regions=None, *, domain: bool = True, domain_name: str | None = None,
                column: str = "variable") -> pd.DataFrame:
    """:func:`totals` of several fluxes on one grid in one pass over the cells (one task per
    variable and block computes every region set's sums; the blocks' sums are added in a tree):
    one long table with the variable's name in ``column`` first."""
    fluxes = dict(fluxes.data_vars.items() if isinstance(fluxes, xr.Dataset) else fluxes)
    first = next(iter(fluxes.values()))
    domain_name = domain_name or first.attrs.get("domain_name") or "China"
    conv = {}
    for name, flux in fluxes.items():
        if "units" not in flux.attrs:
            raise ValueError(f"flux {name!r} has no units attribute")
        flux = u.convert(flux, flux.attrs["units"], "g m-2 yr-1")
        if "year" not in flux.dims:
            flux = flux.expand_dims(year=[0])
        conv[name] = flux.transpose("year", "lat", "lon")
    sets = _as_mask_sets(regions)
    sums = zonal_sums(conv, {k: (m, sorted(region_names(m))) for k, m in sets.items()},
                      domain=domain)
    years = next(iter(conv.values()))["year"].values
    set_labels = ([(DOMAIN, [domain_name])] if domain else []) + [
        (name, [region_names(m)[c] for c in sorted(region_names(m))]) for name, m in sets.items()]
    frames, off = [], 0
    for set_label, labels in set_labels:
        s, a = sums[:, :, 0, off:off + len(labels)], sums[:, :, 1, off:off + len(labels)]
        off += len(labels)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(a > 0, s / a, np.nan)
        for v, name in enumerate(conv):
            frames.append(pd.DataFrame({
                column: name, "region_set": set_label,
                "region": np.tile(labels, len(years)),
                "year": np.repeat(years, len(labels)),
                "area_km2": (a[v] * u.M2_TO_KM2).ravel(),
                "mean_flux_t_km2": mean[v].ravel(),
                "total_tg": (s[v] * u.G_TO_TG).ravel(),
            }))
    out = pd.concat(frames, ignore_index=True)
    order = {n: i for i, n in enumerate(conv)}
    out = out.sort_values(column, key=lambda c: c.map(order), kind="stable")
    return out.reset_index(drop=True)[[column] + COLUMNS]


def period_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Period means of each region's mean flux and total (the seed papers' headline numbers)."""
    g = table.groupby(["region_set", "region"], sort=False)
    return g.agg(area_km2=("area_km2", "mean"), mean_flux_t_km2=("mean_flux_t_km2", "mean"),
                 total_tg=("total_tg", "mean"), total_tg_sd=("total_tg", "std")).reset_index()


def category_areas(categories: xr.DataArray, regions=None, *, domain: bool = True,
                   domain_name: str | None = None) -> pd.DataFrame:
    """Area (km², true cell areas) of each category of a (lat, lon) class map, per region.

    ``categories``: integer codes with flag_values and flag_meanings (or region_names) attrs, 0 =
    no data — e.g. ``change_class`` or ``dominant_factor``. Returns region_set, region, category,
    area_km2 and share_pct (of the region's classified area). One pass over the cells: the
    region × category pairs are the groups of :func:`zonal_sums`.
    """
    domain_name = domain_name or categories.attrs.get("domain_name") or "China"
    cat_names = region_names(categories)
    cat_codes = np.array(sorted(cat_names), dtype=np.int64)
    k = int(cat_codes.max()) + 1
    cats = categories.fillna(0).astype("int32")
    one = xr.ones_like(cats, dtype="f4").expand_dims(year=[0])
    sets = _as_mask_sets(regions)
    masks = {}
    if domain:
        masks[DOMAIN] = (cats, cat_codes)
    for set_name, mask in sets.items():
        codes = np.array(sorted(region_names(mask)), dtype=np.int64)
        mask = mask.reindex_like(cats, method=None)
        if mask.isnull().any():
            raise ValueError(f"region mask {set_name!r} is not on the class map's grid")
        pair = mask.astype("int64") * k + cats        # region code × category code
        masks[set_name] = (pair, (codes[:, None] * k + cat_codes[None, :]).ravel())
    area = zonal_sums({"one": one}, masks, domain=False)[0, 0, 1]
    rows, off = [], 0
    for set_name in masks:
        if set_name == DOMAIN:
            labels = [domain_name]
        else:
            names_ = region_names(sets[set_name])
            labels = [names_[c] for c in sorted(names_)]
        values = area[off:off + len(labels) * cat_codes.size].reshape(len(labels), -1)
        off += values.size
        for label, row in zip(labels, values):
            total = row.sum()
            for code, a in zip(cat_codes, row):
                rows.append((set_name, label, cat_names[int(code)], a * u.M2_TO_KM2,
                             100.0 * a / total if total > 0 else np.nan))
    return pd.DataFrame(rows, columns=["region_set", "region", "category", "area_km2",
                                       "share_pct"])
