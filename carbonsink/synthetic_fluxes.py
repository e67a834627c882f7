"""Synthetic flux products for the bottom-up vs top-down demo, with planted truth (seed 001).

:func:`make_flux_products` writes, into a directory, real NetCDF files in the layouts SCIENCE.md §8
describes, a land-cover map and a manifest (:mod:`carbonsink.io.fluxes`) naming them:

==================  ============  ===============  ==================  ==========================
product             grid          variable, units  sign                time axis
==================  ============  ===============  ==================  ==========================
BEPS                0.0727°       nep, g C m-2 d-1  uptake-positive     CF + time_bnds, a file
                    (360°/4950)                      (NEP)               per year
VEGAS               0.5°          nbp,              uptake-positive     "months since", mid-month
                                  kg C m-2 s-1      (NBP)
OCO2_MIP (14)       1°            land, ocean, net  emission-positive   start_date(time,
                                  g C m-2 yr-1                          date_component); EnsMean,
                                                                        EnsStd files
CarbonTracker       1°            bio_flux_opt,     source-positive     CF, a file per month
                                  mol m-2 s-1
==================  ============  ===============  ==================  ==========================

How the truth is planted so it can be recovered exactly. Every product is first defined on the 1°
comparison grid as sink-positive g C m⁻² month⁻¹:

    F(y, m, cell) = B(cell)·(1 + δ_y)/12 + A(cell)·h_m(cell)

``B`` spreads a table T[division, class] (Pg C a⁻¹) over the cells of each (division, land-cover
class) group with positive noisy weights normalised per group, so every group sums to its entry
exactly; T = outer(division totals, class totals)/national has the seed's division totals as row
sums and the seed's four class totals plus an "other" class (national − four-class sum, the seed's
totals of the four classes exceed the national one) as column sums. δ_y has mean 0 over the years
and the seed's s.d.; h_m(cell) sums to 0 over the months (so seasonality never changes an annual
total) and peaks in July, broader south of 35°N (uptake from spring to autumn) and narrow in the
north; its amplitude A follows zonal bands at 25–35°N and 40–50°N and is scaled per product so
winter is a source for VEGAS, near neutral for BEPS and a weak source for the inversions. The 14
members scale T by (1 + ε_k) with Σε_k = 0, so their mean is the OCO-2 row of the seed's table.

A finer file must regrid back to F exactly: with the separable conservative operator
W = Wy ⊗ Wx of :mod:`carbonsink.kernels.compare`, the fine field is a textured nearest-neighbour
upsampling f₀ of F corrected by the minimum-norm solution of W f = F,
f = f₀ + Wyᵀ(WyWyᵀ)⁻¹ (F − Wy f₀ Wxᵀ) (WxWxᵀ)⁻¹ Wx, so W f = F to rounding. Fine cells that only
touch 1° cells outside the study area are stored as missing values, as a land-only model would.

The planted totals (per product, member, region and year) and national mean seasonal cycles are
computed from F with true cell areas and written to ``truth.json``; files store float32, so a
loader recovers them to ~1e-7 relative.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
import xarray as xr
import yaml

from .domains import get_domain
from .io.fluxes import grid_edges
from .kernels import compare as k
from .kernels.respiration import days_in_month
from .regions import DIVISIONS, division_mask
from .synthetic import _mix
from .units import C_MOLAR_MASS, G_TO_PG

#: seed 001's table (Pg C a⁻¹, 2015–2019 mean; national ± s.d. across years)
SEED_001 = {
    "BEPS": {"national": 0.38, "sd": 0.04,
             "divisions": (0.093, 0.241, 0.011, 0.039),
             "landcover": (0.206, 0.086, 0.050, 0.094)},
    "VEGAS": {"national": 0.22, "sd": 0.03,
              "divisions": (0.123, 0.050, 0.013, 0.031),
              "landcover": (0.060, 0.027, 0.044, 0.119)},
    "OCO2_MIP": {"national": 0.54, "sd": 0.05,
                 "divisions": (0.183, 0.376, 0.019, -0.037),
                 "landcover": (0.257, 0.082, 0.006, 0.214)},
}
CLASSES = ("forest", "shrub", "grassland", "cropland", "other")
#: seed 001 table 1: the 14 OCO-2 v10 MIP inversions
MIP_MODELS = ("Ames", "Baker", "CAMS", "CMS-Flux", "COLA", "CSU", "CT", "JHU", "LoFi", "NIES",
              "OU", "TM5-4DVAR", "UT", "WOMBAT")
#: winter depth of each product's seasonal cycle: national January ≈ N/12·(1 − α)
ALPHA = {"BEPS": 0.95, "VEGAS": 3.5, "OCO2_MIP": 1.4}
#: centre (month) of the growing-season uptake: VEGAS peaks a little earlier (June)
PEAK = {"BEPS": 7.0, "VEGAS": 6.4, "OCO2_MIP": 7.0}
BEPS_CELLS = 4950                  # 360°/4950 = 0.0727…°, the BEPS grid of seed 001
INVERSION_BOX = (70.0, 14.0, 140.0, 58.0)  # window of the 1° inversion files (W, S, E, N)
_STREAM = {"lc": 1, "w": 2, "year": 3, "member": 4, "amp": 5, "outside": 6, "mw": 7, "my": 8,
           "ocean": 9, "mamp": 10}


def _normal(seed: int, stream: str, i, j=0):
    """Counter-based standard normal noise of (seed, stream, i, j) (splitmix64 + Box-Muller)."""
    with np.errstate(over="ignore"):
        key = _mix(np.uint64(seed & 0xFFFFFFFF) * np.uint64(1_000_003)
                   + np.uint64(1000 + _STREAM[stream]))
        key = _mix(key ^ np.asarray(i, dtype=np.uint64))
        h1 = _mix(key ^ (np.asarray(j, dtype=np.uint64) << np.uint64(20)))
        h2 = _mix(h1 ^ np.uint64(0x9E3779B97F4A7C15))
    u1 = ((h1 >> np.uint64(11)).astype("f8") + 0.5) / 2.0**53
    u2 = (h2 >> np.uint64(11)).astype("f8") / 2.0**53
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def _standardised(x) -> np.ndarray:
    """Mean 0 and s.d. 1 (ddof 1); zeros for fewer than two values."""
    x = np.asarray(x, dtype="f8")
    if x.size < 2:
        return np.zeros_like(x)
    x = x - x.mean()
    return x / x.std(ddof=1)


@dataclass
class FluxDemo:
    """What :func:`make_flux_products` wrote: the directory, the manifest path and the truth."""

    directory: str
    manifest: str
    truth: dict


# --- the 1° world -------------------------------------------------------------------------------------
def _cell_ids(grid):
    """Absolute 1°-cell keys (row from 90°N, column from 180°W) so noise is a property of the cell,
    not of the box it is generated in."""
    rows = np.floor((90.0 - grid.lat) * grid.per_degree).astype("i8")
    cols = np.floor((grid.lon + 180.0) * grid.per_degree).astype("i8")
    return rows[:, None] + 0 * cols[None, :], cols[None, :] + 0 * rows[:, None]


def make_landcover(grid, inside, divisions, seed: int = 0) -> np.ndarray:
    """A synthetic land-cover map (1..5 = forest, shrub, grassland, cropland, other; 0 outside):
    forests and shrubs in the south and north-east, grassland on the plateau and the steppe,
    cropland in the plains, other (desert, water, built-up) in the north-west; every division
    holds every class so every planted (division, class) group has cells."""
    ri, cj = _cell_ids(grid)
    lat2d = np.broadcast_to(grid.lat[:, None], grid.shape)
    lon2d = np.broadcast_to(grid.lon[None, :], grid.shape)
    # affinity of each class for each cell: geography + noise
    base = np.stack([
        1.2 * (lat2d < 30) + 0.9 * ((lat2d > 42) & (lon2d > 120)) + 0.3,      # forest
        0.9 * (lat2d < 32) + 0.2,                                              # shrub
        1.3 * (divisions == 4) + 0.8 * ((lat2d > 40) & (lon2d < 120)) + 0.1,   # grassland
        1.0 * ((lon2d > 105) & (lat2d > 28) & (lat2d < 42)) + 0.3,             # cropland
        1.4 * (divisions == 3) + 0.1,                                          # other
    ])
    noise = np.stack([_normal(seed, "lc", ri, cj * 8 + c) for c in range(5)])
    classes = np.argmax(base + 0.6 * noise, axis=0) + 1
    classes = np.where(inside > 0, classes, 0)
    # every division holds every class: take the cells with the highest affinity for a missing one
    for d in np.unique(divisions[inside > 0]):
        for c in range(1, 6):
            in_d = (divisions == d) & (inside > 0)
            if ((classes == c) & in_d).any():
                continue
            score = np.where(in_d, base[c - 1] + 0.6 * noise[c - 1], -np.inf)
            counts = np.bincount(classes[in_d], minlength=6)
            score = np.where(counts[classes] > 1, score, -np.inf)   # never empty another class
            classes.flat[int(np.argmax(score))] = c
    return classes.astype("i1")


def _group_weights(grid, groups, area, seed, stream, j_offset=0):
    """Positive weights normalised so Σ w·A = 1 within each group label (> 0)."""
    ri, cj = _cell_ids(grid)
    w = np.exp(0.45 * _normal(seed, stream, ri, cj + j_offset))
    w *= 1.0 + 0.5 * np.cos(np.deg2rad(grid.lat))[:, None]
    sums = np.bincount(groups.ravel(), weights=(w * area).ravel(), minlength=groups.max() + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(groups > 0, w / sums[groups], 0.0)


def _seasonal_shape(lat, peak: float = 7.0) -> np.ndarray:
    """(12, nlat) zero-sum shapes centred on month ``peak``, min −1: broad south of 35°N (uptake
    from spring to autumn), narrow in the north (June–August)."""
    width = 1.2 + 1.8 * np.clip((35.0 - lat) / 15.0, 0.0, 1.0)
    m = np.arange(1, 13)[:, None]
    g = np.exp(-0.5 * ((m - peak) / width[None, :]) ** 2)
    h = g - g.mean(axis=0)
    return h / -h.min(axis=0)


def _amplitude_pattern(lat) -> np.ndarray:
    """Zonal pattern of seasonal amplitude: bands at 25–35°N and 40–50°N, weak south of 25°N."""
    return 0.15 + np.exp(-((lat - 30.0) / 4.0) ** 2) + 1.2 * np.exp(-((lat - 45.0) / 4.0) ** 2)


def planted_field(grid, inside, divisions, classes, area, targets, years, *, alpha, seed,
                  peak: float = 7.0, member: int = -1, eps: float = 0.0, eta: float = 0.0,
                  member_dev: float = 0.0) -> np.ndarray:
    """F (12·nyears, nlat, nlon): sink-positive g C m-2 month-1 on the 1° grid (module docstring).

    ``targets``: division totals (4,) and four class totals (Pg C a⁻¹), national sd; ``member`` ≥ 0
    adds a member's spatial pattern, ε (totals × (1 + ε)), η (amplitude × (1 + η)) and a
    year-to-year deviation ``member_dev`` × z_y (z: a fixed standardised series over the years).
    """
    div_t = np.asarray(targets["divisions"], dtype="f8")
    national = div_t.sum()
    lc4 = np.asarray(targets["landcover"], dtype="f8")
    lc_t = np.append(lc4, national - lc4.sum())
    table = np.outer(div_t, lc_t) / national                     # (4, 5) Pg C a-1
    groups = np.where(inside > 0, (divisions - 1) * 5 + classes, 0).astype("i8")
    w = _group_weights(grid, groups, area, seed, "w")
    if member >= 0:
        ri, cj = _cell_ids(grid)
        w = w * np.exp(0.25 * _normal(seed, "mw", ri, cj * 32 + member))
        w = np.where(groups > 0, w, 0.0)
        sums = np.bincount(groups.ravel(), weights=(w * area).ravel(), minlength=21)
        w = np.where(groups > 0, w / np.where(sums[groups] > 0, sums[groups], 1.0), 0.0)
    t_cell = np.zeros(grid.shape)
    t_cell[groups > 0] = table.ravel()[groups[groups > 0] - 1]
    base = t_cell * (1.0 + eps) / G_TO_PG * w                    # g C m-2 yr-1
    ny = len(years)
    sd_rel = targets["sd"] / targets["national"]
    delta = sd_rel * _standardised(_normal(seed, "year", np.arange(ny)))
    if member >= 0 and member_dev != 0:
        delta = delta + member_dev * _standardised(_normal(seed, "my", np.arange(ny)))
    shape = _seasonal_shape(grid.lat, peak)                      # (12, nlat)
    pattern = np.where(inside > 0, _amplitude_pattern(grid.lat)[:, None], 0.0)
    amp = alpha * (1.0 + eta) * (national * (1.0 + eps) / G_TO_PG / 12.0) \
        * pattern / (pattern * area).sum()
    field = (base[None, None] * (1.0 + delta)[:, None, None, None] / 12.0
             + amp[None, None] * shape[None, :, :, None])
    field = field.reshape((ny * 12,) + grid.shape)
    # outside the study area: neighbours' fluxes (masked by the loader)
    ri, cj = _cell_ids(grid)
    outside = 15.0 * _normal(seed, "outside", ri, cj + 64 * max(member, 0))
    return np.where(inside[None] > 0, field, outside[None] / 12.0)


# --- finer grids that regrid back exactly ------------------------------------------------------------
def fine_axis(res_span: float, n_global: int, lo: float, hi: float, start: float,
              descending: bool, margin: int = 1):
    """Centres (float64) of the cells of a global axis of ``n_global`` cells over
    ``res_span`` degrees starting at ``start`` that cover [lo, hi] plus ``margin`` cells."""
    res = res_span / n_global
    i0 = max(int(np.floor((lo - start) / res)) - margin, 0)
    i1 = min(int(np.ceil((hi - start) / res)) + margin, n_global)
    idx = np.arange(i0, i1)
    centres = start + (idx + 0.5) * res_span / n_global
    return (centres[::-1] if descending else centres)


def plant_fine(F, wy, wx, texture) -> np.ndarray:
    """A fine field f with ``wy @ f @ wx.T == F`` (to rounding), close to the nearest-neighbour
    upsampling of F times ``texture`` (see the module docstring)."""
    iy = np.argmax(wy, axis=0)          # the coarse row each fine row mostly lies in
    ix = np.argmax(wx, axis=0)
    f0 = F[:, iy][:, :, ix]
    f0 *= texture[None]
    resid = F - k.separable_apply(wy, wx, f0)
    py = wy.T @ np.linalg.inv(wy @ wy.T)
    px = np.linalg.inv(wx @ wx.T) @ wx
    f0 += k.separable_apply(py, px.T, resid)
    return f0


def _touches_inside(wy, wx, inside) -> np.ndarray:
    """Fine cells overlapping at least one 1° cell inside the study area."""
    return ((wy > 0).T.astype("f8") @ inside.astype("f8") @ (wx > 0).astype("f8")) > 0


# --- files ------------------------------------------------------------------------------------------
def _months(years):
    return [(y, m) for y in years for m in range(1, 13)]


def _days(years) -> np.ndarray:
    return days_in_month(list(years))


def _year_days(years) -> np.ndarray:
    return np.repeat([days_in_month([y]).sum() for y in years], 12)


def _time_bounds(years, ref=(2000, 1)):
    """Days since ref of each month's start and end."""
    starts = np.array([np.datetime64(f"{y}-{m:02d}-01") for y, m in _months(years)])
    ends = np.array([np.datetime64(f"{y + m // 12}-{m % 12 + 1:02d}-01")
                     for y, m in _months(years)])
    t0 = np.datetime64(f"{ref[0]}-{ref[1]:02d}-01")
    return ((starts - t0).astype("i8")).astype("f8"), ((ends - t0).astype("i8")).astype("f8")


def _write(ds: xr.Dataset, path: str, encoding=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    ds.to_netcdf(path, encoding=encoding or {}, format="NETCDF4")


def _write_beps(directory, grid, F_years, years, inside, seed) -> str:
    lat = fine_axis(180.0, BEPS_CELLS // 2, grid.south, grid.north, -90.0, True)
    lon = fine_axis(360.0, BEPS_CELLS, grid.west, grid.east, -180.0, False)
    lat32, lon32 = lat.astype("f4"), lon.astype("f4")          # as files store them
    dst_lat, dst_lon = grid_edges(grid)
    wy = k.lat_weights(dst_lat, k.regular_edges(lat32))
    wx = k.lon_weights(dst_lon, k.regular_edges(lon32))
    texture = (1.0 + 0.25 * np.sin(2 * np.pi * lat[:, None] / 1.3)
               * np.cos(2 * np.pi * lon[None, :] / 0.9))
    keep = _touches_inside(wy, wx, inside)
    start, end = _time_bounds(years, (1981, 1))
    days = _days(years)
    for i, y in enumerate(years):           # a year at a time: memory stays ~12 fine months
        sl = slice(12 * i, 12 * i + 12)
        f = plant_fine(F_years[sl], wy, wx, texture)            # g C m-2 month-1
        per_day = np.where(keep[None], f / days[sl, None, None], np.nan).astype("f4")
        ds = xr.Dataset(
            {"nep": (("time", "lat", "lon"), per_day,
                     {"units": "g C m-2 d-1", "long_name": "net ecosystem productivity "
                      "(NPP - Rh), monthly mean daily rate"}),
             "time_bnds": (("time", "nv"), np.stack([start[sl], end[sl]], axis=1))},
            coords={"time": ("time", start[sl], {"units": "days since 1981-01-01 00:00:00",
                                                  "calendar": "standard", "bounds": "time_bnds"}),
                    "lat": ("lat", lat32, {"units": "degrees_north"}),
                    "lon": ("lon", lon32, {"units": "degrees_east"})},
            attrs={"title": "BEPS-like synthetic NEP (carbonsink demo)",
                   "grid": "0.072727 deg (360/4950)"})
        _write(ds, os.path.join(directory, "beps", f"BEPS_NEP_{y}.nc"),
               {"nep": {"_FillValue": np.float32(-9999.0)},
                "time": {"dtype": "f8"}, "time_bnds": {"dtype": "f8"}})
    return "beps/BEPS_NEP_{year}.nc"


def _write_vegas(directory, grid, F_years, years, inside) -> str:
    lat = fine_axis(180.0, 360, grid.south, grid.north, -90.0, False, margin=2)
    lon = fine_axis(360.0, 720, grid.west, grid.east, -180.0, False, margin=2)
    dst_lat, dst_lon = grid_edges(grid)
    wy = k.lat_weights(dst_lat, k.regular_edges(lat))
    wx = k.lon_weights(dst_lon, k.regular_edges(lon))
    texture = 1.0 + 0.3 * np.cos(2 * np.pi * lat[:, None] / 1.0 + 0.7) \
        * np.sin(2 * np.pi * lon[None, :] / 1.0 + 0.2)
    f = plant_fine(F_years, wy, wx, texture)
    f = np.where(_touches_inside(wy, wx, inside)[None], f, np.nan)
    seconds = _days(years) * 86400.0
    kg_per_s = f / 1000.0 / seconds[:, None, None]
    t = np.arange(len(years) * 12) + 0.5
    ds = xr.Dataset(
        {"nbp": (("time", "lat", "lon"), kg_per_s.astype("f4"),
                 {"units": "kg C m-2 s-1", "long_name": "net biome productivity"})},
        coords={"time": ("time", t, {"units": f"months since {years[0]}-01-01 00:00:00",
                                     "calendar": "standard"}),
                "lat": ("lat", lat, {"units": "degrees_north"}),
                "lon": ("lon", lon, {"units": "degrees_east"})},
        attrs={"title": "VEGAS-like synthetic NBP (carbonsink demo)"})
    _write(ds, os.path.join(directory, "vegas", "VEGAS_NBP_monthly.nc"),
           {"nbp": {"_FillValue": np.float32(1e20)}})
    return "vegas/VEGAS_NBP_monthly.nc"


def _inversion_window(grid):
    w, s, e, n = INVERSION_BOX
    w, s = min(w, grid.west - 1), min(s, grid.south - 1)
    e, n = max(e, grid.east + 1), max(n, grid.north + 1)
    lat = np.arange(np.floor(s), np.ceil(n)) + 0.5                    # ascending, like the MIP
    lon = np.arange(np.floor(w), np.ceil(e)) + 0.5
    return lat, lon


def _on_window(F, grid, lat, lon, seed, member):
    """The 1° field F placed on the inversion window (outside the grid box: noise)."""
    ri = np.floor(90.0 - lat).astype("i8")
    cj = np.floor(lon + 180.0).astype("i8")
    out = np.broadcast_to(10.0 * _normal(seed, "ocean", ri[:, None], cj[None, :] + 512 * member),
                          (F.shape[0], lat.size, lon.size)).copy() / 12.0
    li = np.round(grid.north - 0.5 - lat).astype("i8")                # grid row of each lat
    lj = np.round(lon - grid.west - 0.5).astype("i8")
    ok_i, ok_j = (li >= 0) & (li < grid.nlat), (lj >= 0) & (lj < grid.nlon)
    rows, cols = np.flatnonzero(ok_i), np.flatnonzero(ok_j)
    out[:, rows[:, None], cols[None, :]] = F[:, li[ok_i]][:, :, lj[ok_j]]
    return out


def _mip_dataset(land, lat, lon, years, inside_window, name) -> xr.Dataset:
    months = _months(years)
    start = np.array([[y, m, 1] for y, m in months], dtype="i4")
    end = np.array([[y + m // 12, m % 12 + 1, 1] for y, m in months], dtype="i4")
    ocean = np.where(inside_window[None], 0.0, -8.0 + 0.0 * land).astype("f4")
    return xr.Dataset(
        {"land": (("time", "latitude", "longitude"), land.astype("f4"),
                  {"units": "gC/m^2/year", "long_name": "net land flux (NBE), positive = to "
                   "the atmosphere"}),
         "ocean": (("time", "latitude", "longitude"), ocean, {"units": "gC/m^2/year"}),
         "net": (("time", "latitude", "longitude"), (land + ocean).astype("f4"),
                 {"units": "gC/m^2/year"}),
         "start_date": (("time", "date_component"), start,
                        {"long_name": "start date of the month (year, month, day)"}),
         "end_date": (("time", "date_component"), end)},
        coords={"latitude": ("latitude", lat, {"units": "degrees_north"}),
                "longitude": ("longitude", lon, {"units": "degrees_east"})},
        attrs={"title": f"{name} gridded fluxes, experiment LNLGIS (carbonsink synthetic, OCO-2 "
                        "v10 MIP layout)", "experiment": "LNLGIS"})


# --- truth ------------------------------------------------------------------------------------------
def _truth_rows(name, member, F, years, area, inside, divisions, classes, domain_label):
    rows, cycle = [], []
    amounts = np.where(inside[None] > 0, F, 0.0) * area[None] * G_TO_PG    # Pg per cell-month
    per_year = amounts.reshape((len(years), 12) + F.shape[1:]).sum(axis=1)
    sets = [("domain", {domain_label: inside > 0})]
    sets.append(("division", {d: (divisions == i + 1) & (inside > 0)
                              for i, d in enumerate(DIVISIONS) if ((divisions == i + 1)
                                                                    & (inside > 0)).any()}))
    sets.append(("landcover", {c: classes == i + 1 for i, c in enumerate(CLASSES)}))
    for set_name, masks in sets:
        for region, mask in masks.items():
            for y, val in zip(years, per_year[:, mask].sum(axis=1)):
                rows.append({"product": name, "member": member, "region_set": set_name,
                             "region": region, "year": int(y), "total_pg": float(val)})
    monthly = amounts[:, inside > 0].sum(axis=1).reshape(len(years), 12).mean(axis=0)
    for m, val in enumerate(monthly, start=1):
        cycle.append({"product": name, "member": member, "region": domain_label, "month": m,
                      "total_pg": float(val)})
    return rows, cycle


def _ensemble_rows(rows, key="total_pg", group=("product", "region_set", "region", "year")):
    import pandas as pd

    df = pd.DataFrame(rows)
    g = [c for c in group if c in df.columns]
    out = df.groupby(g, sort=False)[key].mean().reset_index()
    out["member"] = "ensemble_mean"
    return out.to_dict("records")


# --- the demo directory ---------------------------------------------------------------------------------
def make_flux_products(directory, years=(2015, 2019), *, domain="china", seed: int = 0,
                       members=MIP_MODELS, reference: str = "OCO2_MIP") -> FluxDemo:
    """Write the synthetic products, the land-cover map, ``manifest.yaml`` and ``truth.json``
    into ``directory`` (see the module docstring); returns where they are and the truth."""
    directory = os.path.abspath(os.fspath(directory))
    os.makedirs(directory, exist_ok=True)
    years = list(range(int(years[0]), int(years[1]) + 1))
    dom = get_domain(domain)
    grid = dom.grid("1")
    inside = dom.mask(grid)
    divisions = np.asarray(division_mask(grid).values)
    area = grid.cell_area()
    classes = make_landcover(grid, inside, divisions, seed)
    targets = {name: _domain_targets(t, dom, grid, inside, divisions) for name, t in
               SEED_001.items()}
    label = dom.label
    truth_rows, cycle_rows = [], []

    fields = {}
    for name in ("BEPS", "VEGAS"):
        fields[name] = planted_field(grid, inside, divisions, classes, area, targets[name], years,
                                     alpha=ALPHA[name], peak=PEAK[name],
                                     seed=seed + (1 if name == "VEGAS" else 0))
        r, c = _truth_rows(name, "", fields[name], years, area, inside, divisions, classes,
                           label)
        truth_rows += r
        cycle_rows += c
    files = {"BEPS": _write_beps(directory, grid, fields["BEPS"], years, inside, seed),
             "VEGAS": _write_vegas(directory, grid, fields["VEGAS"], years, inside)}

    eps = 0.35 * _standardised(_normal(seed, "member", np.arange(len(members))))
    eps -= eps.mean()
    eta = 0.2 * _standardised(_normal(seed, "mamp", np.arange(len(members))))
    # members' own interannual deviations: coefficients with mean 0 and orthogonal to ε, so the
    # ensemble mean's annual series is the seed's exactly (mean_k (1+ε_k)(1+δ_y+c_k z_y) = 1+δ_y)
    coef = _standardised(_normal(seed, "my", np.arange(len(members)), 1))
    if len(members) > 2:
        coef = coef - coef.mean()
        if eps @ eps > 0:
            coef = coef - (coef @ eps) / (eps @ eps) * eps
        coef = _standardised(coef)
    lat_w, lon_w = _inversion_window(grid)
    li = np.round(grid.north - 0.5 - lat_w).astype("i8")
    lj = np.round(lon_w - grid.west - 0.5).astype("i8")
    in_win = np.zeros((lat_w.size, lon_w.size), bool)
    ok_i, ok_j = (li >= 0) & (li < grid.nlat), (lj >= 0) & (lj < grid.nlon)
    in_win[np.ix_(ok_i, ok_j)] = inside[li[ok_i]][:, lj[ok_j]] > 0
    per_year_rate = (_year_days(years) / _days(years))[:, None, None]   # month amount → yr rate
    lands, mip_rows, mip_cycle = [], [], []
    for m_idx, model in enumerate(members):
        F = planted_field(grid, inside, divisions, classes, area, targets["OCO2_MIP"], years,
                          alpha=ALPHA["OCO2_MIP"], seed=seed + 2, member=m_idx,
                          eps=float(eps[m_idx]), eta=float(eta[m_idx]),
                          member_dev=0.04 * float(coef[m_idx]) if len(members) > 2 else 0.0)
        r, c = _truth_rows("OCO2_MIP", model, F, years, area, inside, divisions, classes, label)
        mip_rows += r
        mip_cycle += c
        land = -_on_window(F, grid, lat_w, lon_w, seed, m_idx) * per_year_rate
        lands.append(land.astype("f4"))
        _write(_mip_dataset(land, lat_w, lon_w, years, in_win, model),
               os.path.join(directory, "oco2mip", f"{model}_gridded_fluxes_LNLGIS.nc4"))
        if model == ("CT" if "CT" in members else members[0]):   # CarbonTracker's own layout
            _write_carbontracker(directory, land, lat_w, lon_w, years)
            r, c = _truth_rows("CarbonTracker", "", F, years, area, inside, divisions, classes,
                               label)
            truth_rows += r
            cycle_rows += c
    stack = np.stack(lands).astype("f8")
    for stat, values in (("EnsMean", stack.mean(axis=0)), ("EnsStd", stack.std(axis=0, ddof=1))):
        ds = _mip_dataset(values, lat_w, lon_w, years, in_win, f"OCO-2 v10 MIP {stat}")
        _write(ds, os.path.join(directory, "oco2mip", f"{stat}_gridded_fluxes_LNLGIS.nc4"))
    truth_rows += mip_rows + _ensemble_rows(mip_rows)
    cycle_rows += mip_cycle + _ensemble_rows(mip_cycle, group=("product", "region", "month"))

    lc = xr.Dataset({"landcover": (("lat", "lon"), classes, {
        "long_name": "synthetic land cover (majority at 1°)", "flag_values": [1, 2, 3, 4, 5],
        "flag_meanings": " ".join(CLASSES)})},
        coords={"lat": ("lat", grid.lat, {"units": "degrees_north"}),
                "lon": ("lon", grid.lon, {"units": "degrees_east"})})
    _write(lc, os.path.join(directory, "landcover_1deg.nc"))

    manifest = _manifest(dom, years, files, reference, members)
    path = os.path.join(directory, "manifest.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(manifest, f, sort_keys=False, allow_unicode=True)
    truth = {"years": years, "domain": dom.key, "domain_name": label, "seed": seed,
             "members": list(members), "design": {n: {kk: (list(v) if isinstance(v, tuple)
                                                          else v) for kk, v in t.items()}
                                                  for n, t in targets.items()},
             "totals": truth_rows, "seasonal_cycle": cycle_rows,
             "member_eps": [float(e) for e in eps]}
    with open(os.path.join(directory, "truth.json"), "w") as f:
        json.dump(truth, f, indent=1)
    return FluxDemo(directory, path, truth)


def _write_carbontracker(directory, land_rate, lat, lon, years):
    """Member CT again, in CarbonTracker's own monthly-file layout: bio_flux_opt, mol m-2 s-1,
    source-positive, CF time at mid-month, one file per month."""
    mid = _time_bounds(years)
    mid = (mid[0] + mid[1]) / 2.0
    year_seconds = _year_days(years) * 86400.0
    # g C m-2 yr-1 (emission-positive) → mol m-2 s-1
    mol = land_rate.astype("f8") / year_seconds[:, None, None] / C_MOLAR_MASS
    for t, (y, m) in enumerate(_months(years)):
        ds = xr.Dataset(
            {"bio_flux_opt": (("time", "latitude", "longitude"), mol[t:t + 1].astype("f4"),
                              {"units": "mol m-2 s-1", "long_name": "terrestrial biosphere "
                               "flux, optimized (positive = source)"}),
             "ocn_flux_opt": (("time", "latitude", "longitude"),
                              np.zeros((1, lat.size, lon.size), "f4"), {"units": "mol m-2 s-1"})},
            coords={"time": ("time", mid[t:t + 1], {"units": "days since 2000-01-01 00:00:00",
                                                    "calendar": "standard"}),
                    "latitude": ("latitude", lat, {"units": "degrees_north"}),
                    "longitude": ("longitude", lon, {"units": "degrees_east"})},
            attrs={"title": "CarbonTracker-style monthly flux file (carbonsink synthetic)"})
        _write(ds, os.path.join(directory, "carbontracker", f"CT.flux1x1.{y}{m:02d}.nc"))


def _domain_targets(t, dom, grid, inside, divisions):
    """The seed's targets for the domain: China's as they are; elsewhere each division's share
    scaled by the share of its area inside the domain (classes scaled with the national total)."""
    if dom.kind == "china":
        return {**t, "national": float(np.sum(t["divisions"]))}
    from .domains import get_domain as _gd

    china = _gd("china")
    cgrid = china.grid("1")
    cin, cdiv = china.mask(cgrid), np.asarray(division_mask(cgrid).values)
    carea, area = cgrid.cell_area(), grid.cell_area()
    share = np.array([((divisions == i + 1) & (inside > 0)).astype("f8").ravel()
                      @ area.ravel() / max(((cdiv == i + 1) & (cin > 0)).astype("f8").ravel()
                                           @ carea.ravel(), 1.0) for i in range(4)])
    div = np.asarray(t["divisions"]) * share
    scale = div.sum() / np.sum(t["divisions"])
    return {"divisions": tuple(div), "landcover": tuple(np.asarray(t["landcover"]) * scale),
            "sd": t["sd"] * scale, "national": float(div.sum())}


def _manifest(dom, years, files, reference, members) -> dict:
    return {
        "title": "carbonsink synthetic bottom-up vs top-down products (seed 001 layouts)",
        "grid": "1", "domain": dom.key, "years": f"{years[0]}-{years[-1]}",
        "reference": reference,
        "landcover": {"files": "landcover_1deg.nc", "variable": "landcover",
                      "classes": {i + 1: c for i, c in enumerate(CLASSES[:4])}},
        "products": [
            {"name": "BEPS", "kind": "bottom_up", "files": files["BEPS"], "variable": "nep",
             "units": "g C m-2 d-1", "sign": "NEP", "time": "cf"},
            {"name": "VEGAS", "kind": "bottom_up", "files": files["VEGAS"], "variable": "nbp",
             "units": "kg C m-2 s-1", "sign": "NBP", "time": "mid_month"},
            {"name": "OCO2_MIP", "kind": "top_down",
             "files": "oco2mip/{member}_gridded_fluxes_LNLGIS.nc4", "members": "*",
             "variable": "land", "units": "g C m-2 yr-1", "sign": "emission_positive",
             "time": "start_date"},
            {"name": "OCO2_MIP_EnsMean", "kind": "top_down",
             "files": "oco2mip/EnsMean_gridded_fluxes_LNLGIS.nc4", "variable": "land",
             "units": "g C m-2 yr-1", "sign": "NBE", "time": "start_date"},
            {"name": "OCO2_MIP_EnsStd", "kind": "top_down", "role": "spread",
             "files": "oco2mip/EnsStd_gridded_fluxes_LNLGIS.nc4", "variable": "land",
             "units": "g C m-2 yr-1", "sign": "NBE", "time": "start_date"},
            {"name": "CarbonTracker", "kind": "top_down",
             "files": "carbontracker/CT.flux1x1.{year}{month:02d}.nc",
             "variable": "bio_flux_opt", "units": "mol m-2 s-1", "sign": "emission_positive",
             "time": "cf"},
        ],
    }
