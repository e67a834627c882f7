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
from .grid import CHINA_BBOX, Grid, get_grid
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
     "national_p", "basin_site", "ion_basin", "ion_year", "ion_mix", "ion_gap",
     # services inputs (carbonsink.synthetic_services); appended so the numbers above never change
     "relief", "lulc_field", "lulc_cell", "lulc_sub", "water", "glacier", "urban", "construction",
     "settlement", "grain_for_green", "wind_month", "wind_cell", "stat_rate", "stat_year"])}


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
        return self._aet(pr_annual)

    def _aet(self, pr_annual):
        ratio = self.aet_clim / self.pr_clim
        cap = 300.0 + 30.0 * np.maximum(self.tas_clim, 0.0) + 100.0
        return np.minimum(pr_annual * ratio, cap)

    def npp(self, years):
        shape = (len(years), 12) + self.lat.shape
        t_annual = self.tas_monthly(years).reshape(shape).mean(axis=1)
        p_annual = self.pr_monthly(years).reshape(shape).sum(axis=1)
        return self._npp(years, t_annual, p_annual, self.rsds(years))

    def fields(self, years) -> dict[str, np.ndarray]:
        """Every time-varying field of ``years``, the monthly climate generated once (NPP and AET
        are functions of its annual totals/means, not a second draw)."""
        shape = (len(years), 12) + self.lat.shape
        tas, pr, sr = self.tas_monthly(years), self.pr_monthly(years), self.rsds(years)
        p_annual = pr.reshape(shape).sum(axis=1)
        return {"tas": tas, "pr": pr, "rsds": sr, "aet": self._aet(p_annual),
                "npp": self._npp(years, tas.reshape(shape).mean(axis=1), p_annual, sr)}

    def _npp(self, years, t_annual, p_annual, sr):
        t = np.asarray(years)[:, None, None]
        value = (self.npp_clim
                 + self.beta_pr * (p_annual - self.pr_clim)
                 + self.beta_tas * (t_annual - self.tas_clim)
                 + self.beta_rsds * (sr - self.rsds_clim)
                 + self.human_trend * (t - REFERENCE_YEAR)
                 + SIGMA_NPP * _normal(self.seed, "npp", t, self.i, self.j))
        return np.maximum(value, 0.0)


# --- dask assembly ----------------------------------------------------------------------------
def _offsets(grid: Grid) -> tuple[int, int]:
    """Row and column of ``grid``'s first cell on the China-box grid of its resolution: noise is
    keyed by those absolute cell indices, so a domain's cells get exactly the values the same
    cells have in the whole-China inputs."""
    n = grid.per_degree
    return (int(round((CHINA_BBOX[3] - grid.north) * n)),
            int(round((grid.west - CHINA_BBOX[0]) * n)))


TIME_VARYING = {"tas": 12, "pr": 12, "npp": 1, "rsds": 1, "aet": 1}   # steps per year
STATIC = ("soc", "carbonate_fraction")


def _tile_fields(grid: Grid, rows: tuple[int, int], cols: tuple[int, int], years, seed: int,
                 land, services: bool = False) -> dict[str, np.ndarray]:
    """All synthetic fields of one spatial tile (float32, NaN off land; ``land_mask`` uint8), with
    ``services`` the six services inputs too (:mod:`carbonsink.synthetic_services`).

    ``land``: the tile's mask, or a Domain whose mask is rasterised for the tile here (no
    full-grid array travels in the task graph). One year at a time into float32 outputs: every
    field is keyed by absolute year and month, so a year generated alone is bit-identical, and the
    uint64/float64 temporaries of the noise stay at 1/nyears of the tile (measured: +420 MiB per
    30 MiB chunk when all years were drawn at once)."""
    (i0, i1), (j0, j1) = rows, cols
    if not isinstance(land, np.ndarray):
        land = land.mask(grid.window(rows, cols), require=False)
    on = land > 0
    di, dj = _offsets(grid)
    tile = _Tile(grid.lat[i0:i1], grid.lon[j0:j1], seed, i0 + di, j0 + dj)
    out = {"land_mask": land.astype("u1")}
    for kind in STATIC:
        out[kind] = np.where(on, getattr(tile, kind), np.nan).astype("f4")
    for kind, steps in TIME_VARYING.items():
        out[kind] = np.empty((len(years) * steps,) + on.shape, dtype="f4")
    for k in range(len(years)):
        for kind, values in tile.fields(years[k:k + 1]).items():
            steps = TIME_VARYING[kind]
            out[kind][k * steps:(k + 1) * steps] = np.where(on, values, np.nan)
    if services:
        from .synthetic_services import tile_services
        out.update(tile_services(tile, years, on, grid.res))
    return out


def _land(grid: Grid, land) -> np.ndarray:
    """The land mask of a synthetic field: ``land`` (a domain mask on ``grid``, or a Domain) or
    China's land."""
    if land is None or not isinstance(land, np.ndarray):
        from .domains import get_domain
        return get_domain(land).mask(grid)
    land = np.asarray(land)
    if land.shape != grid.shape:
        raise ValueError(f"land mask of shape {land.shape} is not on {grid}")
    return land.astype("u1")


def make_inputs(grid: Grid | str = "0.1", years=(2000, 2020), seed: int = 0,
                target_mb: float = 32.0, land=None, services: bool = True) -> xr.Dataset:
    """The synthetic canonical inputs (lazy, dask-backed) for a grid and a year range.

    ``land``: a Domain or domain spelling (:mod:`carbonsink.domains`; default all China), whose mask
    each tile rasterises itself, or a (lat, lon) mask array on ``grid``. Every field is a function
    of the cell's position, so a domain's inputs are exactly the same cells cut out of the
    China-box inputs. One task per tile draws all fields (the monthly climate once).
    ``services``: add the services inputs lulc, population, gdp, elevation, uas, vas
    (:mod:`carbonsink.synthetic_services`); the other fields are the same with or without them."""
    import dask

    from .domains import get_domain

    grid = get_grid(grid)
    y0, y1 = int(years[0]), int(years[-1])
    yrs = np.arange(y0, y1 + 1)
    ny, nt = yrs.size, yrs.size * 12
    chunks = grid.chunks(nt, itemsize=4, target_mb=target_mb)
    if isinstance(land, np.ndarray):
        _land(grid, land)            # shape check
        land_of = lambda r, c: np.ascontiguousarray(land[r[0]:r[1], c[0]:c[1]])  # noqa: E731
    else:
        domain = get_domain(land)
        land_of = lambda r, c: domain  # noqa: E731
    edges = grid.tile_edges(chunks)
    tasks = [[dask.delayed(_tile_fields, pure=True)(
        grid, (int(r0), int(r1)), (int(c0), int(c1)), yrs, seed, land_of((r0, r1), (c0, c1)),
        bool(services))
        for c0, c1 in zip(edges[1][:-1], edges[1][1:])]
        for r0, r1 in zip(edges[0][:-1], edges[0][1:])]

    def assemble(kind, steps=None, dtype="f4"):
        blocks = []
        for i, row in enumerate(tasks):
            blocks.append([])
            for j, task in enumerate(row):
                shape = (int(edges[0][i + 1] - edges[0][i]), int(edges[1][j + 1] - edges[1][j]))
                if steps is not None:
                    shape = (len(yrs) * steps,) + shape
                blocks[-1].append(da.from_delayed(task[kind], shape, dtype=dtype))
        return da.block(blocks if steps is None else [blocks])

    def var(kind, ntime=None):
        return assemble(kind, None if ntime is None else ntime // ny)

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
        "land_mask": (("lat", "lon"), assemble("land_mask", dtype="u1")),
    }
    if services:
        from .synthetic_services import SERVICES_STEPS
        data["elevation"] = (("lat", "lon"), var("elevation"))
        for kind, steps in SERVICES_STEPS.items():
            data[kind] = (("year" if steps == 1 else "time", "lat", "lon"), var(kind, ny * steps))
    ds = xr.Dataset({k: xr.Variable(d, v) for k, (d, v) in data.items()}, coords=coords)
    for name, spec in SCHEMA.items():
        if name not in ds:          # optional layers (basin) are published with the regions
            continue
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
    if services:
        from .synthetic_services import annotate
        annotate(ds)
    ds.attrs.update({
        "title": "carbonsink synthetic China (demo inputs)",
        "Conventions": "CF-1.10",
        "source": f"carbonsink.synthetic seed={seed}",
        "synthetic_seed": seed,
        "carbonsink_version": __version__,
        "history": f"{pd.Timestamp.now('UTC'):%Y-%m-%dT%H:%M:%SZ} generated by "
                   f"carbonsink.synthetic.make_inputs(grid={grid.name!r}, years=({y0}, {y1}), "
                   f"seed={seed}{'' if services else ', services=False'})",
        **grid.attrs(),
    })
    return ds


def truth(grid: Grid | str = "0.1", years=(2000, 2020), seed: int = 0, land=None) -> xr.Dataset:
    """The planted per-pixel truth: sensitivities of NPP, driver trends, human trend, NPP trend."""
    grid = get_grid(grid)
    tile = _Tile(grid.lat, grid.lon, seed, *_offsets(grid))
    land = _land(grid, land) > 0
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


# --- river basins and their ion table (the ionic-strength model's training data, SCIENCE.md §3) ---
def _uniform(seed, stream, t, i, j):
    """Uniform (0, 1) noise from the counter-based normal stream (Φ of a standard normal)."""
    from math import erf

    z = np.asarray(_normal(seed, stream, t, i, j), dtype="f8")
    return 0.5 * (1.0 + np.vectorize(erf, otypes=["f8"])(z / np.sqrt(2.0)))


def _unit_vectors(lon, lat):
    """Points on the unit sphere of (warped) lon/lat in degrees; the warp bends the straight
    Voronoi edges of nearest-site basins into curved divides."""
    lon = np.asarray(lon, dtype="f8")
    lat = np.asarray(lat, dtype="f8")
    lon_w = lon + 1.2 * np.sin(np.deg2rad(lat) * 9.0) + 0.6 * np.sin(np.deg2rad(lon) * 13.0)
    lat_w = lat + 0.9 * np.sin(np.deg2rad(lon) * 7.0) + 0.4 * np.cos(np.deg2rad(lat) * 17.0)
    lam, phi = np.deg2rad(lon_w), np.deg2rad(lat_w)
    return np.stack([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)], axis=-1)


def _basin_sites(n_basins: int, seed: int, coarse: Grid | None = None,
                 land: np.ndarray | None = None) -> np.ndarray:
    """(n, 2) lon/lat of the basin sites: seeded candidates (counter-based, so the same on every
    grid) kept when they fall in an interior land cell of ``coarse`` (default: 1° China) and are far
    enough from the sites already kept (Poisson-disk spacing, relaxed when the land runs out of
    room). A domain passes its own grid and mask, so its basins lie inside it."""
    from .grid import EARTH_RADIUS_M

    if coarse is None:
        coarse = get_grid("1")
        land = _land(coarse, None) > 0
    else:
        land = np.asarray(land) > 0
    interior = land.copy()
    interior[1:] &= land[:-1]
    interior[:-1] &= land[1:]
    interior[:, 1:] &= land[:, :-1]
    interior[:, :-1] &= land[:, 1:]
    # a small domain (a province at 1°) has few interior cells: sites go on any of its land cells,
    # one per cell, so that every basin keeps at least its site's cell
    small = int(interior.sum()) < 3 * n_basins
    if small:
        interior = land.copy()
        if int(interior.sum()) < n_basins:
            raise RuntimeError(f"{n_basins} basins do not fit in the {int(interior.sum())} land "
                               f"cells of {coarse}")
    taken = set()
    area_km2 = float((coarse.cell_area() * interior).sum()) / 1e6
    spacing = 0.7 * np.sqrt(area_km2 / n_basins) / (EARTH_RADIUS_M / 1e3)  # radians
    sites, vecs, misses, k = [], [], 0, 0
    while len(sites) < n_basins:
        if k > 1_000_000:
            raise RuntimeError(f"could not place {n_basins} basin sites on the land of {coarse}")
        lon = coarse.west + (coarse.east - coarse.west) * _uniform(seed, "basin_site", k, 0, 0)
        lat = coarse.south + (coarse.north - coarse.south) * _uniform(seed, "basin_site", k, 1, 0)
        k += 1
        i = min(int((coarse.north - lat) // coarse.res), coarse.nlat - 1)
        j = min(int((lon - coarse.west) // coarse.res), coarse.nlon - 1)
        if not interior[i, j] or (small and (i, j) in taken):
            continue
        v = _unit_vectors(lon, lat)
        if vecs and np.arccos(np.clip(np.max(np.asarray(vecs) @ v), -1, 1)) < spacing:
            misses += 1
            if misses >= 300:  # crowded: relax the spacing a little and carry on
                spacing *= 0.95
                misses = 0
            continue
        sites.append((float(lon), float(lat)))
        vecs.append(v)
        taken.add((i, j))
        misses = 0
    return np.asarray(sites)


def _basin_tile(grid: Grid, rows, cols, site_vecs) -> np.ndarray:
    """int32 basin ids of one tile of all-China ``grid`` (nearest site on China's land)."""
    from .domains import get_domain

    (i0, i1), (j0, j1) = rows, cols
    land = get_domain(None).mask(grid.window(rows, cols), require=False) > 0
    lon2, lat2 = np.meshgrid(grid.lon[j0:j1], grid.lat[i0:i1])
    near = np.argmax(_unit_vectors(lon2, lat2) @ site_vecs.T, axis=-1) + 1
    return np.where(land, near, 0).astype("int32")


def _eager_basins(grid: Grid, sites, land, n_basins: int) -> np.ndarray:
    site_vecs = _unit_vectors(sites[:, 0], sites[:, 1])                  # (n, 3)
    ids = np.zeros(grid.shape, dtype="int32")
    step = max(1, 2_000_000 // grid.nlon)  # rows per block: bounded memory at 1 km
    for r0 in range(0, grid.nlat, step):
        r1 = min(r0 + step, grid.nlat)
        lon2, lat2 = np.meshgrid(grid.lon, grid.lat[r0:r1])
        near = np.argmax(_unit_vectors(lon2, lat2) @ site_vecs.T, axis=-1) + 1
        ids[r0:r1] = np.where(land[r0:r1], near, 0)
    empty = sorted(set(range(1, n_basins + 1)) - set(np.unique(ids).tolist()))
    if empty and land is not None:
        # on a small domain a basin's site cell can lie nearer another site (the warped
        # distance): it keeps that one cell (the sites lie in distinct cells there)
        for b in empty:
            i = min(int((grid.north - sites[b - 1, 1]) // grid.res), grid.nlat - 1)
            j = min(int((sites[b - 1, 0] - grid.west) // grid.res), grid.nlon - 1)
            if land[i, j]:
                ids[i, j] = b
        empty = sorted(set(range(1, n_basins + 1)) - set(np.unique(ids).tolist()))
    if empty:
        raise RuntimeError(f"basins {empty} have no cell on grid {grid.name}")
    return ids


def _ids_present(block) -> set:
    return set(np.unique(block).tolist())


def _tiled_basins(grid: Grid, site_vecs, chunks: dict, n_basins: int):
    import dask
    import dask.array as da

    edges = grid.tile_edges(chunks)
    ids = da.block([[da.from_delayed(dask.delayed(_basin_tile, pure=True)(
        grid, (int(r0), int(r1)), (int(c0), int(c1)), site_vecs),
        (int(r1 - r0), int(c1 - c0)), dtype="int32")
        for c0, c1 in zip(edges[1][:-1], edges[1][1:])]
        for r0, r1 in zip(edges[0][:-1], edges[0][1:])])
    (ids,) = dask.persist(ids)
    found = set().union(*dask.compute(*[dask.delayed(_ids_present)(b)
                                        for b in ids.to_delayed().ravel()]))
    empty = sorted(set(range(1, n_basins + 1)) - found)
    if empty:
        raise RuntimeError(f"basins {empty} have no cell on grid {grid.name}")
    return ids


def make_basins(grid: Grid | str = "0.1", n_basins: int = 40, seed: int = 0,
                land=None, chunks: dict | None = None) -> xr.DataArray:
    """Synthetic river basins: int32 (lat, lon) ids 1..n on China land (or the domain's mask
    ``land`` on ``grid``, with sites inside it), 0 elsewhere.

    Each land cell belongs to the nearest of ``n_basins`` seeded sites (great-circle distance on a
    gently warped sphere, so the divides curve). The sites are drawn from the counter-based noise
    independently of the grid, so a seed gives the same basins on every grid preset; every basin
    has at least one cell (its site's cell) on any preset.
    ``chunks`` ({"lat": n, "lon": m}, all China only): dask-backed, one task per tile (at 1 km
    the ids of China are 23 M cells, which then stay out of the client and of task graphs).
    """
    grid = get_grid(grid)
    if n_basins < 1:
        raise ValueError(f"n_basins must be ≥ 1, got {n_basins}")
    if land is None and chunks:
        sites = _basin_sites(int(n_basins), int(seed))
        ids = _tiled_basins(grid, _unit_vectors(sites[:, 0], sites[:, 1]), chunks, n_basins)
    elif land is None:
        sites = _basin_sites(int(n_basins), int(seed))
        land = _land(grid, None) > 0
    else:
        land = _land(grid, land) > 0
        sites = _basin_sites(int(n_basins), int(seed), grid, land)
    if land is not None:
        ids = _eager_basins(grid, sites, land, n_basins)
    names = [f"basin_{b:02d}" for b in range(1, n_basins + 1)]
    coords = {k: xr.Variable(*v) for k, v in grid.coords().items()}
    return xr.DataArray(ids, dims=("lat", "lon"), coords=coords, name="basin", attrs={
        "long_name": "synthetic river basin (nearest seeded site on China land)",
        "units": "1",
        "flag_values": list(range(1, n_basins + 1)),
        "flag_meanings": " ".join(names),
        "region_names": names,
        "site_lon": [round(x, 4) for x in sites[:, 0].tolist()],
        "site_lat": [round(x, 4) for x in sites[:, 1].tolist()],
        "_note": "0 = outside every basin",
        "source": f"carbonsink.synthetic.make_basins(n_basins={n_basins}, seed={seed})",
    })


# Planted ionic-strength relation of the synthetic ion table (log10 I, I in mol L-1), from the
# basin-year means P [mm a-1], T [degC], ET [mm a-1], NPP [g C m-2 a-1]: dilute where wet,
# concentrated where dry, more so where dry and warm (evaporative concentration), a little higher
# under productive vegetation (soil CO2 drives carbonate weathering).
ION_LOG10_I0 = -2.62     # log10 I of a wet, unproductive basin at the reference values
ION_B_DRY = 1.35         # × dryness d = 1 / (1 + (P/500)^1.5)
ION_B_DRY_T = 0.03       # × (T − 8 °C) × d
ION_B_NPP = 0.10         # × tanh((NPP − 300) / 200)
ION_B_ET = 0.35          # × (ET/P − 0.45)
ION_SIGMA_BASIN = 0.07   # log10, persistent basin effect (lithology)
ION_SIGMA_YEAR = 0.10    # log10, basin-year noise (sampling, discharge)
ION_SIGMA_ION = 0.10     # ln, ion-by-ion jitter of the composition (I itself is kept exact)
ION_GAP_Z = 1.75         # a basin-year is missing where its gap noise exceeds this (~4 %)
ION_RELATION = ("log10 I = {i0} + {bd}*d + {bdt}*(T - 8)*d + {bn}*tanh((NPP - 300)/200) "
                "+ {be}*(ET/P - 0.45) + {sb}*z_basin + {sy}*z_basin_year, "
                "d = 1/(1 + (P/500)^1.5); I in mol L-1; P, ET mm a-1, T degC, NPP g C m-2 a-1 "
                "area-weighted basin-year means (carbonsink.ml.basin_predictors)")
# composition per unit of I: carbonate-weathering water and evaporite-influenced water (mmol L-1,
# roughly charge balanced), mixed by the evaporite share e = d^1.5
_IONS = ("ca", "mg", "na", "k", "hco3", "so4", "cl")
_CARBONATE_WATER = np.array([1.0, 0.3, 0.15, 0.04, 2.4, 0.12, 0.12])
_EVAPORITE_WATER = np.array([0.5, 0.4, 1.6, 0.08, 1.0, 0.7, 1.1])
_Z2 = np.array([4.0, 4.0, 1.0, 1.0, 1.0, 4.0, 1.0])


def ionic_strength_relation(pr, tas, aet, npp):
    """The planted log10 I [mol L-1] of :func:`make_ion_table` without its noise terms."""
    pr, tas, aet, npp = (np.asarray(v, dtype="f8") for v in (pr, tas, aet, npp))
    d = 1.0 / (1.0 + (np.maximum(pr, 0.0) / 500.0) ** 1.5)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(pr > 0, aet / pr, 1.0)
    return (ION_LOG10_I0 + ION_B_DRY * d + ION_B_DRY_T * (tas - 8.0) * d
            + ION_B_NPP * np.tanh((npp - 300.0) / 200.0) + ION_B_ET * (ratio - 0.45))


def make_ion_table(inputs: xr.Dataset, basins: xr.DataArray, seed: int = 0, *,
                   predictors: pd.DataFrame | None = None) -> pd.DataFrame:
    """Synthetic river chemistry: one row per basin-year (a few dropped as gaps), columns basin_id,
    year, ca, mg, na, k, hco3, so4, cl in mmol L-1.

    The ionic strength follows the planted relation :data:`ION_RELATION` of the basin-year mean
    predictors (computed with :func:`carbonsink.ml.basin_predictors`, on the active dask scheduler)
    plus a basin and a basin-year noise; the seven ions are a wet-carbonate / dry-evaporite mix
    with an ion-by-ion jitter, scaled so that ½Σcz² equals that I exactly. Noise is counter-based
    (seed, basin id, year), so rows do not depend on which other basins or years are generated.
    ``predictors``: the output of ``basin_predictors(inputs, basins)`` if already computed (the
    reduction is the expensive part on fine grids).
    """
    from .ml import basin_predictors

    pred = basin_predictors(inputs, basins) if predictors is None else predictors
    pred = pred.dropna().reset_index(drop=True)
    b = pred["basin_id"].to_numpy("i8")
    y = pred["year"].to_numpy("i8")
    log_i = (ionic_strength_relation(pred["pr"], pred["tas"], pred["aet"], pred["npp"])
             + ION_SIGMA_BASIN * _normal(seed, "ion_basin", 0, b, 0)
             + ION_SIGMA_YEAR * _normal(seed, "ion_year", y, b, 0))
    i_mmol = 1e3 * 10.0 ** log_i
    d = 1.0 / (1.0 + (pred["pr"].to_numpy() / 500.0) ** 1.5)
    e = (d**1.5)[:, None]
    mix = (1.0 - e) * _CARBONATE_WATER / (0.5 * _Z2 @ _CARBONATE_WATER) \
        + e * _EVAPORITE_WATER / (0.5 * _Z2 @ _EVAPORITE_WATER)
    jitter = np.exp(ION_SIGMA_ION * _normal(seed, "ion_mix", y[:, None], b[:, None],
                                            np.arange(len(_IONS))[None, :]))
    comp = mix * jitter
    comp /= (0.5 * comp @ _Z2)[:, None]                   # ½Σcz² = 1 mmol L-1 per unit
    conc = comp * i_mmol[:, None]
    keep = _normal(seed, "ion_gap", y, b, 0) <= ION_GAP_Z
    df = pd.DataFrame({"basin_id": b, "year": y,
                       **{ion: conc[:, k] for k, ion in enumerate(_IONS)}})[keep]
    df = df.reset_index(drop=True)
    df.attrs.update({
        "units": "mmol L-1",
        "source": f"carbonsink.synthetic.make_ion_table(seed={seed}) on "
                  f"{inputs.attrs.get('grid', 'unknown grid')}",
        "generating_relation": ION_RELATION.format(
            i0=ION_LOG10_I0, bd=ION_B_DRY, bdt=ION_B_DRY_T, bn=ION_B_NPP, be=ION_B_ET,
            sb=ION_SIGMA_BASIN, sy=ION_SIGMA_YEAR),
        "composition": "ions = I * [(1-e)*carbonate + e*evaporite water] * exp("
                       f"{ION_SIGMA_ION}*z_ion), renormalised so 1/2 sum(c z^2) = I; "
                       "e = d^1.5",
        "gaps": f"{int((~keep).sum())} of {len(keep)} basin-years dropped (gap noise > "
                f"{ION_GAP_Z})",
        "seed": seed,
    })
    return df
