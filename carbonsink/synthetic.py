"""The embedded demo: a deterministic, physically plausible China with planted truth.

Every field is an analytic function of latitude, longitude, year and month plus counter-based noise
hashed from (seed, variable, global time index, global row, global column). The same seed gives the
same value at a pixel on any chunking and on any worker, and each chunk is generated where it is
computed, so memory is bounded by the chunk size even for all of China at 1 km.

Geography (schematic, not observed): a wetness index falling from the monsoonal south-east to the arid
north-west; a Tibetan plateau (elevation ≈ 4.5 km) that is cold, sunny and dry; a Sichuan basin that is
dull; a summer monsoon peak in precipitation; a January minimum in temperature with a seasonal range
growing northwards; carbonate rock concentrated in the south-west (Guizhou/Guangxi/Yunnan), in
Shanxi/Hebei and in patches on the plateau.

Planted truth (recorded in the ``npp`` attrs and returned by :func:`truth`):
NPP_y = NPP̄ + β_P·(P_y − P̄) + β_T·(T_y − T̄) + β_SR·(SR_y − SR̄) + h·(y − 2010) + ε, where P_y is the
sum and T_y the mean of the generated monthly series, β_X = b_X·v with v the vegetation index NPP̄/1000
(clipped 0.02–1.2), h = 4·w² − 0.5 g C m⁻² a⁻² the human (non-climatic) trend, and the climate drivers
have trends dT/dt = 0.03 + 0.0008·(φ − 17) °C a⁻¹, dP/dt = 0.004·P̄ mm a⁻², dSR/dt = −3 MJ m⁻² a⁻².
"""
from __future__ import annotations

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from . import __version__
from .grid import Grid, get_grid
from .io.validate import SCHEMA

# planted sensitivities of NPP at full vegetation (v = 1)
B_PR = 0.25     # g C m-2 a-1 per mm a-1
B_TAS = 25.0    # g C m-2 a-1 per degC
B_RSDS = 0.05   # g C m-2 a-1 per MJ m-2 a-1
# interannual variability of the drivers
SIGMA_T = 0.6         # degC, annual anomaly
SIGMA_T_MONTH = 0.4   # degC, month-to-month noise
SIGMA_P_REL = 0.12    # of the annual total
SIGMA_P_MONTH_REL = 0.25
SIGMA_SR = 150.0      # MJ m-2 a-1
SIGMA_NPP = 8.0       # g C m-2 a-1, unexplained
DSR_DT = -3.0         # MJ m-2 a-2
# trends are anchored to a fixed year and noise is keyed by absolute year/month, so a year looks the
# same whatever window is generated (2000–2020 or 2010 alone)
REFERENCE_YEAR = 2010

_STREAMS = {name: i + 1 for i, name in enumerate(
    ["tas_year", "tas_month", "pr_year", "pr_month", "rsds", "npp", "carbonate", "national_t",
     "national_p"])}


# --- counter-based noise ----------------------------------------------------------------------
def _mix(x):
    """splitmix64 finaliser on uint64 arrays (wrapping arithmetic is the point)."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _normal(seed, stream, t, i, j):
    """Standard normal noise, a pure function of (seed, stream, t, i, j); broadcasts t, i, j."""
    with np.errstate(over="ignore"):
        key = np.uint64(seed & 0xFFFFFFFF) * np.uint64(1_000_003) + np.uint64(_STREAMS[stream])
        key = _mix(key)
        key = _mix(key ^ np.asarray(t, dtype=np.uint64))
        key = _mix(key ^ (np.asarray(i, dtype=np.uint64) << np.uint64(20)))
        h1 = _mix(key ^ np.asarray(j, dtype=np.uint64))
        h2 = _mix(h1 ^ np.uint64(0x9E3779B97F4A7C15))
    u1 = ((h1 >> np.uint64(11)).astype("f8") + 0.5) / 2.0**53
    u2 = (h2 >> np.uint64(11)).astype("f8") / 2.0**53
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def _month_index(years):
    """Absolute month counter (year·12 + month) as (nyears, 12)."""
    return np.asarray(years, dtype="i8")[:, None] * 12 + np.arange(12)[None, :]


# --- static geography on a tile ---------------------------------------------------------------
class _Tile:
    """Climatology and planted parameters on the cell centres of one spatial tile."""

    def __init__(self, lat, lon, seed, i0, j0):
        self.lat, self.lon = np.meshgrid(lat, lon, indexing="ij")
        self.i = np.arange(i0, i0 + lat.size)[:, None]
        self.j = np.arange(j0, j0 + lon.size)[None, :]
        self.seed = seed
        lat, lon = self.lat, self.lon
        plateau = np.exp(-((((lon - 89.0) / 13.0) ** 2 + ((lat - 33.0) / 5.0) ** 2) ** 2))
        self.elevation_km = 4.5 * plateau
        w = 1.0 / (1.0 + np.exp(-((lon - 103.0) / 7.0 - (lat - 36.0) / 5.0)))
        self.wetness = w
        basin = np.exp(-(((lon - 105.0) / 3.0) ** 2 + ((lat - 30.0) / 2.5) ** 2))
        self.pr_clim = 30.0 + 2000.0 * w**3                                     # mm a-1
        self.tas_clim = 27.0 - 0.75 * (lat - 18.0) - 6.0 * self.elevation_km    # degC
        self.tas_amp = 4.0 + 0.55 * (lat - 18.0)                                # degC half range
        self.rsds_clim = 4200.0 + 2800.0 * plateau + 1000.0 * (1 - w) - 900.0 * basin
        self.aet_clim = np.minimum(self.pr_clim * (0.3 + 0.35 * w),
                                   300.0 + 30.0 * np.maximum(self.tas_clim, 0.0))
        self.soc = np.clip(0.8 + 7.0 * w + 5.0 * plateau, 0.3, 30.0)            # kg C m-2
        tf = np.clip((self.tas_clim + 5.0) / 25.0, 0.05, 1.0)
        self.npp_clim = 30.0 + 950.0 * w**1.3 * tf                              # g C m-2 a-1
        v = np.clip(self.npp_clim / 1000.0, 0.02, 1.2)
        self.beta_pr, self.beta_tas, self.beta_rsds = B_PR * v, B_TAS * v, B_RSDS * v
        self.human_trend = 4.0 * w**2 - 0.5                                     # g C m-2 a-2
        self.tas_trend = 0.03 + 0.0008 * (lat - 17.0)
        self.pr_trend = 0.004 * self.pr_clim
        blobs = (0.85 * np.exp(-(((lon - 107.0) / 5.0) ** 2 + ((lat - 25.5) / 3.5) ** 2))
                 + 0.55 * np.exp(-(((lon - 113.0) / 3.0) ** 2 + ((lat - 37.0) / 2.5) ** 2))
                 + 0.35 * np.exp(-(((lon - 92.0) / 8.0) ** 2 + ((lat - 31.0) / 3.0) ** 2)))
        patch = _normal(seed, "carbonate", 0, self.i, self.j)
        self.carbonate_fraction = np.clip(blobs * (1.0 + 0.5 * patch) - 0.1, 0.0, 1.0)

    # annual driver anomalies, years as a leading axis
    def _anomaly(self, stream, national, t):
        t = np.asarray(t)[:, None, None]
        nat = _normal(self.seed, national, t, 0, 0)
        return 0.5 * nat + np.sqrt(0.75) * _normal(self.seed, stream, t, self.i, self.j)

    def tas_monthly(self, years):
        ny = len(years)
        annual = (self.tas_clim + self.tas_trend * (np.asarray(years)[:, None, None] - REFERENCE_YEAR)
                  + SIGMA_T * self._anomaly("tas_year", "national_t", years))
        k = np.arange(12)
        season = -self.tas_amp[None] * np.cos(2 * np.pi * (k - 0.5) / 12.0)[:, None, None]
        tm = _month_index(years)
        noise = SIGMA_T_MONTH * _normal(self.seed, "tas_month", tm[:, :, None, None],
                                        self.i, self.j)
        noise -= noise.mean(axis=1, keepdims=True)  # annual mean carries the annual anomaly only
        return (annual[:, None] + season[None] + noise).reshape((ny * 12,) + self.lat.shape)

    def pr_monthly(self, years):
        ny = len(years)
        annual = (self.pr_clim + self.pr_trend * (np.asarray(years)[:, None, None] - REFERENCE_YEAR))
        annual = annual * np.maximum(
            1.0 + SIGMA_P_REL * self._anomaly("pr_year", "national_p", years), 0.2)
        k = np.arange(12)
        weights = (1.0 + 0.85 * np.cos(2 * np.pi * (k - 6.5) / 12.0)) / 12.0   # monsoon in July
        tm = _month_index(years)
        jitter = np.exp(SIGMA_P_MONTH_REL * _normal(self.seed, "pr_month", tm[:, :, None, None],
                                                     self.i, self.j))
        w = weights[None, :, None, None] * jitter
        w /= w.sum(axis=1, keepdims=True)  # monthly amounts add up to the annual total exactly
        return (annual[:, None] * w).reshape((ny * 12,) + self.lat.shape)

    def rsds(self, years):
        t = np.asarray(years)[:, None, None]
        return (self.rsds_clim + DSR_DT * (t - REFERENCE_YEAR)
                + SIGMA_SR * _normal(self.seed, "rsds", t, self.i, self.j))

    def aet(self, years):
        pr_annual = self.pr_monthly(years).reshape((len(years), 12) + self.lat.shape).sum(1)
        ratio = self.aet_clim / self.pr_clim
        cap = 300.0 + 30.0 * np.maximum(self.tas_clim, 0.0) + 100.0
        return np.minimum(pr_annual * ratio, cap)

    def npp(self, years):
        ny = len(years)
        shape = (ny, 12) + self.lat.shape
        t_annual = self.tas_monthly(years).reshape(shape).mean(axis=1)
        p_annual = self.pr_monthly(years).reshape(shape).sum(axis=1)
        sr = self.rsds(years)
        t = np.asarray(years)[:, None, None]
        value = (self.npp_clim
                 + self.beta_pr * (p_annual - self.pr_clim)
                 + self.beta_tas * (t_annual - self.tas_clim)
                 + self.beta_rsds * (sr - self.rsds_clim)
                 + self.human_trend * (t - REFERENCE_YEAR)
                 + SIGMA_NPP * _normal(self.seed, "npp", t, self.i, self.j))
        return np.maximum(value, 0.0)


# --- dask assembly ----------------------------------------------------------------------------
def _block(land, *, kind, grid: Grid, years, seed, block_info=None):
    loc = block_info[None]["array-location"]
    (i0, i1), (j0, j1) = loc[-2], loc[-1]
    tile = _Tile(grid.lat[i0:i1], grid.lon[j0:j1], seed, i0, j0)
    if kind in ("soc", "carbonate_fraction"):
        out = getattr(tile, kind)
    elif kind in ("tas", "pr"):
        out = getattr(tile, f"{kind}_monthly")(years)
    else:
        out = getattr(tile, kind)(years)
    out = np.where(land > 0, out, np.nan)
    return out.astype("f4")


def make_inputs(grid: Grid | str = "0.1", years=(2000, 2020), seed: int = 0,
                target_mb: float = 32.0) -> xr.Dataset:
    """The synthetic canonical inputs (lazy, dask-backed) for a grid preset and a year range."""
    from .regions import china_mask

    grid = get_grid(grid)
    y0, y1 = int(years[0]), int(years[-1])
    yrs = np.arange(y0, y1 + 1)
    ny, nt = yrs.size, yrs.size * 12
    chunks = grid.chunks(nt, itemsize=4, target_mb=target_mb)
    cs = (chunks["lat"], chunks["lon"])
    land_np = china_mask(grid).values
    land = da.from_array(land_np, chunks=cs)

    def var(kind, ntime=None):
        # a time-varying field is one block along time: the land tile gets a leading axis of 1
        arg = land if ntime is None else land[None]
        chunks = land.chunks if ntime is None else ((ntime,),) + land.chunks
        return da.map_blocks(_block, arg, kind=kind, grid=grid, years=yrs, seed=seed,
                             dtype="f4", chunks=chunks)

    time = pd.date_range(f"{y0}-01-01", periods=nt, freq="MS")
    coords = {k: xr.Variable(*v) for k, v in grid.coords().items()}
    coords["year"] = xr.Variable("year", yrs, {"long_name": "calendar year"})
    coords["time"] = xr.Variable("time", time, {"long_name": "month (start of month)",
                                                "standard_name": "time"})
    data = {
        "npp": (("year", "lat", "lon"), var("npp", ny)),
        "tas": (("time", "lat", "lon"), var("tas", nt)),
        "pr": (("time", "lat", "lon"), var("pr", nt)),
        "rsds": (("year", "lat", "lon"), var("rsds", ny)),
        "aet": (("year", "lat", "lon"), var("aet", ny)),
        "soc": (("lat", "lon"), var("soc")),
        "carbonate_fraction": (("lat", "lon"), var("carbonate_fraction")),
        "land_mask": (("lat", "lon"), land.astype("u1")),
    }
    ds = xr.Dataset({k: xr.Variable(d, v) for k, (d, v) in data.items()}, coords=coords)
    for name, spec in SCHEMA.items():
        ds[name].attrs.update({"units": spec.units, "long_name": spec.long_name})
        if spec.standard_name:
            ds[name].attrs["standard_name"] = spec.standard_name
    ds["tas"].attrs["cell_methods"] = "time: mean"
    ds["pr"].attrs["cell_methods"] = "time: sum"
    for v in ("npp", "rsds", "aet"):
        ds[v].attrs["cell_methods"] = "year: sum"
    ds["land_mask"].attrs.update({"flag_values": [0, 1], "flag_meanings": "outside china_land"})
    ds["npp"].attrs.update({
        "truth_sensitivity_pr": B_PR, "truth_sensitivity_tas": B_TAS,
        "truth_sensitivity_rsds": B_RSDS,
        "truth_sensitivity_note": "planted beta_X = b_X * v, v = clip(npp_clim/1000, 0.02, 1.2); "
                                  "per-pixel fields from carbonsink.synthetic.truth()",
        "truth_human_trend": "4*w^2 - 0.5 g C m-2 a-2, w = wetness index",
        "truth_tas_trend": "0.03 + 0.0008*(lat-17) degC a-1",
        "truth_pr_trend": "0.004 * pr_clim mm a-2",
        "truth_rsds_trend": DSR_DT,
    })
    ds.attrs.update({
        "title": "carbonsink synthetic China (demo inputs)",
        "Conventions": "CF-1.10",
        "source": f"carbonsink.synthetic seed={seed}",
        "synthetic_seed": seed,
        "carbonsink_version": __version__,
        "history": f"{pd.Timestamp.now('UTC'):%Y-%m-%dT%H:%M:%SZ} generated by "
                   f"carbonsink.synthetic.make_inputs(grid={grid.name!r}, years=({y0}, {y1}), "
                   f"seed={seed})",
        **grid.attrs(),
    })
    return ds


def truth(grid: Grid | str = "0.1", years=(2000, 2020), seed: int = 0) -> xr.Dataset:
    """The planted per-pixel truth: sensitivities of NPP, driver trends, human trend, NPP trend."""
    from .regions import china_mask

    grid = get_grid(grid)
    tile = _Tile(grid.lat, grid.lon, seed, 0, 0)
    land = china_mask(grid).values > 0
    fields = {
        "sensitivity_pr": (tile.beta_pr, "g m-2 yr-1 mm-1 yr"),
        "sensitivity_tas": (tile.beta_tas, "g m-2 yr-1 degC-1"),
        "sensitivity_rsds": (tile.beta_rsds, "g m-2 yr-1 MJ-1 m2 yr"),
        "trend_pr": (tile.pr_trend, "mm yr-2"),
        "trend_tas": (tile.tas_trend, "degC yr-1"),
        "trend_rsds": (np.full(grid.shape, DSR_DT), "MJ m-2 yr-2"),
        "human_trend": (tile.human_trend, "g m-2 yr-2"),
        "npp_clim": (tile.npp_clim, "g m-2 yr-1"),
    }
    coords = {k: xr.Variable(*v) for k, v in grid.coords().items()}
    ds = xr.Dataset({k: (("lat", "lon"), np.where(land, v, np.nan), {"units": un})
                     for k, (v, un) in fields.items()}, coords=coords)
    ds["npp_trend"] = (ds.sensitivity_pr * ds.trend_pr + ds.sensitivity_tas * ds.trend_tas
                       + ds.sensitivity_rsds * ds.trend_rsds + ds.human_trend)
    ds["npp_trend"].attrs["units"] = "g m-2 yr-2"
    ds.attrs["source"] = f"carbonsink.synthetic planted truth seed={seed}"
    return ds
