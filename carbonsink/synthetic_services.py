"""Synthetic services inputs of the demo China (land use, population, GDP, elevation, 10 m wind) and
its province statistics table (SCIENCE.md §7).

Fields are drawn per tile from the climatology of :class:`carbonsink.synthetic._Tile` plus noise
keyed by the absolute cell (China grid of the same resolution), year and month: a sub-domain or a
single year is bit-identical to the same cells of the whole-China inputs, on any chunking.

Planted facts (also in the variables' ``truth_*`` attrs):

* ``elevation`` = 1000·elevation_km + uplands + relief ∝ a ruggedness index r (plateau margins,
  south China hills, Hengduan, Qinling, Loess, Tianshan, Khingan, Changbai) + cell noise.
* ``lulc``: a static base map (cropland / forest / grassland / unused from smooth suitabilities of
  wetness, temperature, elevation and r, patchy through lattice noise), glaciers on the coldest
  plateau cells, water from noise, rural settlements (52) on densely settled cropland; each year
  urban (51) and other construction (53) where u < p(city density), and Grain for Green (sloping
  cropland → woodland from 2000 on). Draws u are static and p grows with the year: monotonic.
* ``population`` = rural background R0·s·f(class)·0.995^(y−2000) + Σ cities pop_c·(1+g_c)^(y−2000)
  spread by two Gaussians (sizes in km) averaged exactly over each cell (erf), so totals do not
  depend on the resolution; ``gdp`` = population × per-capita GDP (east > west, cities × m_c)
  growing GDP_GROWTH a⁻¹ (current prices).
* ``uas``/``vas``: westerlies north of ~35°N (strongest in winter), the East Asian monsoon in the
  south-east (Oct–Mar north-easterly, Jun–Aug south-westerly), winter trade easterlies in the far
  south, plus month and cell noise.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr
from scipy.special import erf

from .grid import CHINA_BBOX, EARTH_RADIUS_M
from .synthetic import _STREAMS, _mix, _normal

KM_PER_DEG = np.pi * EARTH_RADIUS_M / 180e3

LULC_CLASSES = {                # CNLUCC secondary codes of the synthetic land use
    11: "paddy_field", 12: "dry_farmland", 21: "forest", 22: "shrubland", 23: "sparse_forest",
    24: "other_woodland", 31: "high_cover_grassland", 32: "medium_cover_grassland",
    33: "low_cover_grassland", 41: "river", 42: "lake", 43: "reservoir_pond",
    44: "glacier_permanent_snow", 46: "beach_shoal", 51: "urban", 52: "rural_settlement",
    53: "other_construction", 61: "sand", 62: "gobi", 63: "saline_alkaline", 64: "swamp",
    65: "bare_soil", 66: "bare_rock"}

# --- cities: name, lon, lat, population 2000 (millions), growth a-1, GDP per capita relative to the
# rural per capita of the place. Spread by a core Gaussian (CITY_CORE × population, σ = 6 + 2·√(core
# millions) km) and a metropolitan halo (CITY_HALO ×, σ = 3.5 σ_core + 10 km: satellite towns)
CITIES = (
    ("Shanghai", 121.47, 31.23, 16.0, 0.025, 3.6), ("Beijing", 116.40, 39.90, 13.0, 0.027, 3.4),
    ("Guangzhou", 113.26, 23.13, 9.0, 0.027, 3.4), ("Shenzhen", 114.06, 22.54, 7.0, 0.030, 4.0),
    ("Tianjin", 117.20, 39.13, 8.0, 0.024, 3.0), ("Chongqing", 106.55, 29.56, 8.0, 0.026, 2.4),
    ("Chengdu", 104.07, 30.67, 8.0, 0.027, 2.6), ("Wuhan", 114.30, 30.59, 7.5, 0.024, 2.8),
    ("Xi'an", 108.94, 34.34, 6.0, 0.025, 2.5), ("Nanjing", 118.80, 32.06, 6.0, 0.026, 3.0),
    ("Hangzhou", 120.16, 30.27, 6.0, 0.028, 3.2), ("Shenyang", 123.43, 41.80, 6.0, 0.020, 2.6),
    ("Harbin", 126.64, 45.76, 5.5, 0.020, 2.3), ("Zhengzhou", 113.62, 34.75, 5.0, 0.029, 2.5),
    ("Changsha", 112.94, 28.23, 4.5, 0.027, 2.6), ("Kunming", 102.83, 24.88, 4.0, 0.024, 2.4),
    ("Urumqi", 87.62, 43.83, 2.5, 0.025, 2.5), ("Lanzhou", 103.83, 36.06, 3.0, 0.021, 2.2),
    ("Lhasa", 91.13, 29.65, 0.4, 0.028, 2.2), ("Xining", 101.78, 36.62, 1.5, 0.023, 2.2),
    ("Hohhot", 111.75, 40.84, 2.0, 0.026, 2.6), ("Guiyang", 106.63, 26.65, 3.0, 0.026, 2.3),
    ("Nanning", 108.37, 22.82, 3.0, 0.025, 2.3), ("Fuzhou", 119.30, 26.08, 4.0, 0.025, 2.8),
    ("Jinan", 117.00, 36.67, 4.5, 0.024, 2.7), ("Hefei", 117.23, 31.82, 4.0, 0.029, 2.6),
    ("Nanchang", 115.86, 28.68, 3.5, 0.025, 2.4), ("Taiyuan", 112.55, 37.87, 3.5, 0.021, 2.3),
    ("Shijiazhuang", 114.51, 38.04, 4.0, 0.023, 2.3), ("Haikou", 110.20, 20.04, 1.5, 0.025, 2.3),
    ("Changchun", 125.32, 43.82, 4.5, 0.020, 2.4), ("Dalian", 121.61, 38.91, 4.5, 0.022, 3.0),
    ("Qingdao", 120.38, 36.07, 5.0, 0.025, 3.0), ("Xiamen", 118.09, 24.48, 2.5, 0.029, 3.2),
    ("Suzhou", 120.62, 31.30, 5.0, 0.028, 3.4), ("Dongguan", 113.75, 23.02, 5.0, 0.028, 3.0),
    ("Foshan", 113.12, 23.02, 4.5, 0.027, 3.2), ("Ningbo", 121.55, 29.87, 4.0, 0.026, 3.2),
    ("Yinchuan", 106.23, 38.49, 1.2, 0.026, 2.2), ("Tangshan", 118.18, 39.63, 3.5, 0.021, 2.5),
    ("Xuzhou", 117.28, 34.20, 4.0, 0.022, 2.2), ("Wenzhou", 120.70, 28.00, 4.0, 0.024, 2.8),
    ("Shantou", 116.68, 23.35, 4.0, 0.022, 2.2), ("Luoyang", 112.45, 34.62, 3.5, 0.022, 2.2),
)
CITY_CORE, CITY_HALO = 0.75, 0.9
RURAL_DENSITY = 455.0           # persons km-2: R0 of the rural background (2000)
RURAL_GROWTH = -0.005           # a-1
RURAL_CLASS_FACTOR = {"crop": 1.0, "settlement": 3.0, "forest": 0.3, "grass": 0.08,
                      "unused": 0.02, "water": 0.05, "glacier": 0.0}
GDP_PER_CAPITA_2000 = 2570.0    # CNY person-1 a-1, rural per capita at east factor 1
GDP_GROWTH = 0.088              # per capita a-1, current prices
RURAL_GDP_SHARE = 0.35          # rural output per person relative to the place's per capita
BUILT_GDP_FACTOR = 6.0          # GDP density multiplier of urban and construction land
URBAN_DENSITY_0, URBAN_DENSITY_SAT = 350.0, 2500.0   # p(urban) = clip((D_city − D0)/Dsat, 0, 1)
# monsoon index by month (Jan..Dec): > 0 winter (north-easterly in the south-east), < 0 summer
MONSOON = np.array([1.0, 1.0, 0.7, 0.25, -0.3, -0.8, -1.0, -0.9, 0.1, 0.5, 0.8, 1.0])
BASE_YEAR = 2000


def _hash(seed, stream, t, i, j):
    """uint64 hash of (seed, stream, t, i, j), keyed like :func:`synthetic._normal`."""
    with np.errstate(over="ignore"):
        key = np.uint64(seed & 0xFFFFFFFF) * np.uint64(1_000_003) + np.uint64(_STREAMS[stream])
        key = _mix(key)
        key = _mix(key ^ np.asarray(t, dtype=np.uint64))
        key = _mix(key ^ (np.asarray(i, dtype=np.uint64) << np.uint64(20)))
        return _mix(key ^ np.asarray(j, dtype=np.uint64))


def _u01(seed, stream, t, i, j):
    """Uniform (0, 1) noise of (seed, stream, t, i, j)."""
    return ((_hash(seed, stream, t, i, j) >> np.uint64(11)).astype("f8") + 0.5) / 2.0**53


def _value_noise(seed, stream, t, lat, lon, spacing):
    """Smooth noise of position (1-D ``lat`` rows × ``lon`` columns): standard normals on a lattice
    of ``spacing`` degrees anchored at the China box's corner, smoothstep-interpolated (patches have
    the same shape on every grid)."""
    y = (CHINA_BBOX[3] - np.asarray(lat, "f8")) / spacing + 4096.0
    x = (np.asarray(lon, "f8") - CHINA_BBOX[0]) / spacing + 4096.0
    iy, ix = np.floor(y).astype("i8"), np.floor(x).astype("i8")
    fy, fx = y - iy, x - ix
    fy, fx = fy * fy * (3 - 2 * fy), fx * fx * (3 - 2 * fx)
    i0, j0 = iy.min(), ix.min()
    lattice = _normal(seed, stream, t, np.arange(i0, iy.max() + 2)[:, None],
                      np.arange(j0, ix.max() + 2)[None, :])
    r, c = (iy - i0)[:, None], (ix - j0)[None, :]
    wy, wx = fy[:, None], fx[None, :]
    return ((1 - wy) * ((1 - wx) * lattice[r, c] + wx * lattice[r, c + 1])
            + wy * ((1 - wx) * lattice[r + 1, c] + wx * lattice[r + 1, c + 1]))


def _bumps(lat, lon, *specs, combine=np.add):
    """Gaussian bumps (amplitude, lon0, lat0, lon scale, lat scale) on 1-D ``lat`` × ``lon``,
    combined (summed, or their maximum)."""
    out = None
    for a, x0, y0, sx, sy in specs:
        b = a * np.outer(np.exp(-((lat - y0) / sy) ** 2), np.exp(-((lon - x0) / sx) ** 2))
        out = b if out is None else combine(out, b)
    return out


def _pick(u, weights, codes):
    """The code whose cumulative share of ``weights`` (stacked on axis 0) first exceeds ``u``."""
    w = np.maximum(np.stack(np.broadcast_arrays(u, *weights)[1:]), 0.0)
    cum = np.cumsum(w, axis=0) / np.maximum(w.sum(axis=0), 1e-12)
    k = np.minimum((u[None] >= cum).sum(axis=0), len(codes) - 1)
    return np.asarray(codes, dtype="f8")[k]


class _Services:
    """The static part of the services fields on one tile (drawn once, reused for every year)."""

    def __init__(self, tile, res: float):
        self.tile, self.res, seed = tile, float(res), tile.seed
        lat, lon, i, j = tile.lat, tile.lon, tile.i, tile.j
        self.lat1, self.lon1 = la, lo = lat[:, 0], lon[0, :]
        w, ek, tas = tile.wetness, tile.elevation_km, tile.tas_clim
        P = ek / 4.5
        # ruggedness (a slope proxy, 0..1): plateau margins and the main mountain regions
        r = 4.0 * P * (1.0 - P) + _bumps(
            la, lo, (0.75, 113, 26, 6, 3), (0.8, 101, 27, 3, 4), (0.7, 108, 33, 4, 1.2),
            (0.6, 111, 37, 3, 2), (0.9, 85, 43, 7, 1), (0.6, 121, 48, 2, 4), (0.6, 128, 42, 2, 2),
            (0.5, 118, 26, 3, 2))
        self.rugged = r = np.clip(r, 0.0, 1.0)
        relief = _value_noise(seed, "relief", 0, la, lo, 0.5)
        uplands = _bumps(la, lo, (1000, 83, 39.5, 7, 2), (900, 112, 43, 8, 3), (700, 110, 37, 5, 3))
        self.elevation = np.clip(1000.0 * ek + 40.0 + uplands + r * (1400.0 + 450.0 * relief)
                                 + 20.0 * _normal(seed, "relief", 1, i, j), -150.0, 8800.0)
        # base land cover: cropland / forest / grassland / unused suitabilities
        plains = _bumps(la, lo, (1, 116, 36, 3.5, 3.5), (1, 125.5, 46, 2.5, 3.5),
                        (1, 105, 30, 2, 1.5), (1, 116, 30.5, 4, 2), (0.8, 108.5, 34.5, 1.5, 0.6),
                        (0.7, 107, 40.5, 2, 0.6), (0.5, 82, 41.3, 5, 0.5), (0.5, 87, 44.3, 4, 0.5),
                        combine=np.maximum)
        cold = np.clip((tas + 2.0) / 10.0, 0.0, 1.0)
        W = {"crop": 2.2 * np.clip((w - 0.5) / 0.3, 0, 1) * (1 - r) * cold * (1 - P) + 2.5 * plains,
             "forest": (2.0 * np.clip((w - 0.6) / 0.25, 0, 1) * (0.5 + r) * (1 - P) + r * (1 - P)
                        + _bumps(la, lo, (2.0, 124, 49, 3, 3), (1.5, 128, 43, 2, 2))),
             "grass": (0.3 + 2.0 * np.exp(-((w - 0.47) / 0.15) ** 2) + 2.2 * P * (1 - 0.5 * P)
                       + 1.2 * r * (1 - w)),
             "unused": 2.4 * np.clip((0.42 - w) / 0.15, 0, 1) * (1 - 0.7 * P) + 1.2 * P ** 5}
        vn = (0.75 * _value_noise(seed, "lulc_field", 0, la, lo, 0.4)
              + 0.45 * _value_noise(seed, "lulc_field", 1, la, lo, 0.1)
              + 0.5 * _normal(seed, "lulc_cell", 0, i, j))
        u = 0.5 * (1.0 + erf(vn / np.sqrt(2.0 * 0.9)))
        names = ("crop", "forest", "grass", "unused")
        kind = _pick(u, [W[k] for k in names], range(4)).astype("i1")
        # sub-classes
        us = _u01(seed, "lulc_sub", 0, i, j)
        warm_wet = np.clip((tas - 13.0) / 5.0, 0, 1) * np.clip((w - 0.8) / 0.1, 0, 1)
        crop = np.where(us < 0.8 * warm_wet, 11.0, 12.0)
        dry = np.clip((0.75 - w) / 0.2, 0, 1)
        forest = _pick(us, [0.55 + 0.3 * w, 0.15 + 0.5 * tile.carbonate_fraction + 0.3 * dry,
                            0.12 + 0.25 * P + 0.2 * dry, 0.08 + 0.1 * warm_wet], (21, 22, 23, 24))
        cover = np.clip((w - 0.4) / 0.35, 0, 1) + 0.4 * P * np.clip((lon - 90.0) / 8.0, 0, 1)
        grass = _pick(us, [cover ** 2, 0.35, (1 - np.clip(cover, 0, 1)) ** 1.5], (31, 32, 33))
        sand = _bumps(la, lo, (2.5, 83, 39, 5, 1.5), (2.0, 102, 40.5, 3, 1.2),
                      (1.25, 92, 40.5, 3, 1), (0.75, 109, 39, 2, 1), (0.75, 121, 43.5, 2.5, 1))
        gobi = _bumps(la, lo, (1.5, 98, 41.5, 8, 2.5), (1.2, 88.5, 45.5, 3, 1.5))
        saline = 0.1 + _bumps(la, lo, (0.4, 94, 37, 4, 1.5))
        swamp = 0.02 + 0.1 * w + _bumps(la, lo, (2, 133, 47.5, 2, 1.2), (1, 102.5, 33.5, 1.5, 1))
        rock = 0.05 + 1.2 * P ** 3 + 0.6 * r * (1 - w)
        unused = _pick(us, [sand, gobi, saline, swamp, 0.3, rock], (61, 62, 63, 64, 65, 66))
        code = np.choose(kind, [crop, forest, grass, unused])
        # glaciers and water (static)
        p_glacier = (0.25 * np.clip((-tas - 9.5) / 3.0, 0, 1) * np.clip((ek - 4.0) / 0.4, 0, 1)
                     + _bumps(la, lo, (0.05, 84, 43, 5, 0.6)))
        glacier = _u01(seed, "glacier", 0, i, j) < p_glacier
        lakes = (_value_noise(seed, "water", 0, la, lo, 0.5) + 0.2 * _normal(seed, "water", 1, i, j)
                 + 0.7 * P + _bumps(la, lo, (1.0, 116, 30, 3, 1.5)) + 0.4 * w) > 2.2
        uw = _u01(seed, "water", 2, i, j)
        p41, p43, p46 = 0.003 + 0.006 * w, 0.014 * w ** 2 * (1 - P), 0.004 * w ** 3
        water = np.where(uw < p41, 41.0, np.where(uw < p41 + p43, 43.0,
                                                  np.where(uw < p41 + p43 + p46, 46.0, np.nan)))
        water = np.where(lakes, 42.0, water)
        code = np.where(glacier, 44.0, np.where(np.isfinite(water), water, code))
        # rural background density (2000) and rural settlements on cropland
        suit = (w ** 2 * (0.25 + 0.75 * (1 - r)) * np.exp(-1.2 * ek)
                * np.clip((tas + 4) / 20, 0.02, 1) * (1 + 0.8 * plains))
        settle = (code < 20) & (_u01(seed, "settlement", 0, i, j) < np.clip(0.1 * suit, 0, 0.3))
        f = RURAL_CLASS_FACTOR
        factor = np.choose(kind, [f[k] for k in names])
        factor = np.where(glacier, f["glacier"], np.where(np.isfinite(water), f["water"], factor))
        self.rural0 = RURAL_DENSITY * suit * np.where(settle, f["settlement"], factor)
        self.code = code = np.where(settle, 52.0, code)
        self.is_crop = code < 20
        self.buildable = (code < 40) | (code > 60) | settle   # not water, glacier
        # Grain for Green: the woodland a converted cropland cell becomes, and its draw
        self.u_gfg = _u01(seed, "grain_for_green", 0, i, j)
        self.gfg_code = _pick(_u01(seed, "grain_for_green", 1, i, j), [0.6, 0.25, 0.15],
                              (21, 22, 24))
        self.p_gfg = 0.5 * np.clip((r - 0.25) / 0.35, 0, 1)
        self.u_urban, self.u_construction = (_u01(seed, k, 0, i, j)
                                             for k in ("urban", "construction"))
        east = 1.0 / (1.0 + np.exp(-(lon - 112.0) / 3.0))
        self.pc_factor = 0.45 + 1.1 * east * (1.0 - 0.3 / (1.0 + np.exp(-(lat - 40.0) / 2.0)))

    # --- cities ---------------------------------------------------------------------------------
    def cities(self, year: int):
        """Cell-mean city population density and GDP-per-capita-weighted density (km-2)."""
        shape, half = self.tile.lat.shape, self.res / 2.0
        dens, rich = np.zeros(shape), np.zeros(shape)
        for _name, lon0, lat0, pop, g, m in CITIES:
            kx = KM_PER_DEG * np.cos(np.deg2rad(lat0))        # cell edges in km from the centre
            x0, x1 = (self.lon1 - half - lon0) * kx, (self.lon1 + half - lon0) * kx
            y0, y1 = (self.lat1 - half - lat0) * KM_PER_DEG, (self.lat1 + half - lat0) * KM_PER_DEG
            n = pop * 1e6 * (1.0 + g) ** (year - BASE_YEAR)
            core = 6.0 + 2.0 * np.sqrt(CITY_CORE * pop)
            for share, sigma in ((CITY_CORE, core), (CITY_HALO, 3.5 * core + 10.0)):
                s = sigma * np.sqrt(2.0)      # cell means of exp(-x²/2σ²)/(2πσ²), separable
                ax = (erf(x1 / s) - erf(x0 / s)) / (2.0 * (x1 - x0))
                ay = (erf(y1 / s) - erf(y0 / s)) / (2.0 * (y1 - y0))
                if ax.any() and ay.any():     # skipping exact zeros changes no value
                    d = (share * n) * np.outer(ay, ax)
                    dens += d
                    rich += m * d
        return dens, rich

    def year_fields(self, year: int) -> dict[str, np.ndarray]:
        """lulc, population and gdp of one year (float64; the caller masks the land)."""
        city, rich = self.cities(year)
        rural = self.rural0 * (1.0 + RURAL_GROWTH) ** (year - BASE_YEAR)
        p_urban = np.clip((city - URBAN_DENSITY_0) / URBAN_DENSITY_SAT, 0.0, 1.0)
        p_constr = 0.004 * self.tile.wetness + 0.25 * np.clip(city / URBAN_DENSITY_SAT, 0, 1)
        grown = np.clip((year - 1999) / 15.0, 0.0, 1.0)
        code = np.where(self.is_crop & (self.u_gfg < self.p_gfg * grown), self.gfg_code, self.code)
        build = self.buildable & (code != 52) & (self.u_construction < p_constr)
        code = np.where(build, 53.0, code)
        code = np.where(self.buildable & (self.u_urban < p_urban), 51.0, code)
        pc = GDP_PER_CAPITA_2000 * self.pc_factor * (1.0 + GDP_GROWTH) ** (year - BASE_YEAR)
        # GDP sits in towns and industrial land: farm output per person is a fraction of the
        # place's per capita, built-up cells (urban, construction) carry the industry
        built = (code == 51.0) | (code == 53.0)
        gdp = pc * (RURAL_GDP_SHARE * rural + rich) * np.where(built, BUILT_GDP_FACTOR, 1.0)
        return {"lulc": code, "population": rural + city, "gdp": gdp}

    def wind(self, year: int) -> tuple[np.ndarray, np.ndarray]:
        """Monthly uas, vas (12, lat, lon) of one year, m s-1: regime weights north (westerlies),
        monsoon (south-east), south-west and tropic (winter trade easterlies)."""
        t = self.tile
        seed, i, j, lat, lon = t.seed, t.i, t.j, t.lat, t.lon
        n = 1.0 / (1.0 + np.exp(-(lat - 35.0) / 2.0))
        mo = (1.0 - n) / (1.0 + np.exp(-(lon - 104.0) / 2.5))
        sw, tr = 1.0 - n - mo, 1.0 / (1.0 + np.exp(-(23.5 - lat) / 1.0))
        east = 1.0 / (1.0 + np.exp(-(lon - 105.0) / 3.0))
        a = MONSOON[:, None, None]
        aw, asu = np.maximum(a, 0.0), np.maximum(-a, 0.0)
        u = (n * (2.6 + 1.8 * a + 2.0 * t.elevation_km / 4.5 * aw)
             + mo * (-0.8 - 2.2 * aw + 2.2 * asu) + sw * (1.5 + 1.2 * a) - 1.5 * tr * aw * (1 - n))
        v = (n * (-1.2 * aw + 1.2 * asu * east) + mo * (-0.3 - 2.8 * aw + 2.6 * asu)
             + sw * (-0.8 * aw + 1.5 * asu))
        tm = year * 12 + np.arange(12)[:, None, None]
        # cell noise: two uniforms (upper and lower 32 bits of one hash), sd 0.25 m s-1
        h = _hash(seed, "wind_cell", tm, i, j)
        cell = 0.25 * np.sqrt(12.0) / 2.0**32
        u = u + 0.35 * _normal(seed, "wind_month", tm, 0, 0) \
            + cell * ((h >> np.uint64(32)).astype("f8") - 2.0**31)
        v = v + 0.35 * _normal(seed, "wind_month", tm, 1, 0) \
            + cell * ((h & np.uint64(0xFFFFFFFF)).astype("f8") - 2.0**31)
        return u, v


SERVICES_STEPS = {"lulc": 1, "population": 1, "gdp": 1, "uas": 12, "vas": 12}


def tile_services(tile, years, on: np.ndarray, res: float) -> dict[str, np.ndarray]:
    """The six services fields of a tile (float32, NaN off ``on``), one year at a time."""
    s = _Services(tile, res)
    out = {"elevation": np.where(on, s.elevation, np.nan).astype("f4")}
    for kind, steps in SERVICES_STEPS.items():
        out[kind] = np.empty((len(years) * steps,) + on.shape, dtype="f4")
    for k, year in enumerate(np.asarray(years).tolist()):
        fields = s.year_fields(int(year))
        fields["uas"], fields["vas"] = s.wind(int(year))
        for kind, values in fields.items():
            steps = SERVICES_STEPS[kind]
            out[kind][k * steps:(k + 1) * steps] = np.where(on, values, np.nan)
    return out


def annotate(ds: xr.Dataset) -> None:
    """Add the class flags and the planted facts to the services variables of ``ds`` (in place)."""
    codes = sorted(LULC_CLASSES)
    ds["lulc"].attrs.update({
        "flag_values": codes, "flag_meanings": " ".join(LULC_CLASSES[c] for c in codes),
        "truth_rules": "static base map + glaciers and water from noise; yearly: urban 51 where "
                       f"u < clip((D_city - {URBAN_DENSITY_0:g})/{URBAN_DENSITY_SAT:g}, 0, 1), "
                       "53 where u < 0.004 w + 0.25 clip(D_city/2500, 0, 1), Grain for Green "
                       "(cropland -> 21/22/24) where u < 0.5 clip((r - 0.25)/0.35, 0, 1) "
                       "clip((year - 1999)/15, 0, 1); static per-cell u: changes are monotonic"})
    ds["population"].attrs.update({
        "truth_rural": f"{RURAL_DENSITY:g} * suitability * class factor {RURAL_CLASS_FACTOR} "
                       f"* (1 + {RURAL_GROWTH:g})^(year - {BASE_YEAR})",
        "truth_cities": "; ".join(f"{c[0]} {c[1]:g}E {c[2]:g}N {c[3]:g}M +{100 * c[4]:g}%/a"
                                  for c in CITIES),
        "truth_city_profile": f"{CITY_CORE:g} pop in sigma = 6 + 2 sqrt(core M) km, {CITY_HALO:g}"
                              " pop in 3.5 sigma + 10 km; Gaussians averaged exactly over cells"})
    ds["gdp"].attrs.update({"truth_per_capita_growth": GDP_GROWTH, "truth_per_capita_2000":
                            f"{GDP_PER_CAPITA_2000:g} CNY * east factor (0.45..1.55), x the "
                            "city's multiplier for city people"})
    for v in ("uas", "vas"):
        ds[v].attrs.update({"cell_methods": "time: mean", "truth_monsoon_index": MONSOON.tolist(),
                            "truth_regime": "westerlies north of ~35N (winter max), monsoon "
                                            "south-east of ~104E (Oct-Mar NE, Jun-Aug SW), "
                                            "winter trade easterlies south of ~23.5N"})
    ds["elevation"].attrs["truth_rule"] = ("1000 elevation_km + 40 + uplands + ruggedness * "
                                           "(1400 + 450 lattice noise) + 20 cell noise m")


# --- province statistics ----------------------------------------------------------------------
FUELS = ("coal", "oil", "natural_gas", "other")
ENERGY_INTENSITY = (1.47e-4, 4.9e-5)        # tce CNY-1 in 2000 and 2020 (log-linear)
FUEL_SHARES = {"coal": (0.69, 0.59), "oil": (0.22, 0.19), "natural_gas": (0.02, 0.08),
               "other": (0.07, 0.14)}      # national mix 2000 → 2020 before province factors
CEMENT_INTENSITY = (5.3e-5, 2.1e-5)         # t CNY-1 in 2000 and 2020
PIG_RATE, LIVESTOCK_RATE = 205.0, 19.0      # head km-2 of (crop + 0.1 grass), (0.3 crop + grass)
WOOD_FOREST, WOOD_RURAL = 45.0, 0.1         # t km-2 of forest a-1, t person-1 a-1 (rural)
# province groups of the planted rates (English names of carbonsink.regions)
_HEAVY = {"Shanxi", "Inner Mongolia", "Hebei", "Ningxia", "Xinjiang", "Liaoning", "Guizhou",
          "Qinghai", "Gansu", "Heilongjiang", "Jilin"}
_HYDRO = {"Sichuan", "Yunnan", "Hubei", "Guizhou", "Qinghai", "Xizang", "Guangxi"}
_GAS = {"Sichuan", "Chongqing", "Xinjiang", "Shaanxi", "Qinghai", "Beijing", "Hainan"}
_PASTORAL = {"Xizang", "Qinghai", "Inner Mongolia", "Xinjiang", "Gansu", "Ningxia", "Sichuan"}
_PIGS = {"Sichuan", "Chongqing", "Hunan", "Guangxi", "Guangdong", "Jiangxi", "Hubei", "Yunnan",
         "Guizhou", "Fujian", "Henan", "Shandong", "Hebei"}


def _ramp(pair, year, log=False):
    """The 2000 → 2020 interpolation of ``pair`` at ``year`` (log-linear with ``log``)."""
    f, (a, b) = (np.asarray(year, "f8") - 2000.0) / 20.0, pair
    return a * (b / a) ** f if log else np.clip(a + (b - a) * f, 0.0, None)


def _province_sums(inputs: xr.Dataset, province: xr.DataArray, codes) -> xr.Dataset:
    """Per (year, province) sums in one dask pass (flox, a bincount per block): people, GDP (CNY),
    people off urban cells, areas (km²) of cropland, forest, grassland, built-up, land, all."""
    from flox.xarray import xarray_reduce

    from .zonal import cell_area_da

    spatial = {d: c for d, c in (inputs["population"].chunksizes or {}).items()
               if d in ("lat", "lon")}
    area = cell_area_da(inputs, chunks=spatial) / 1e6
    prov = province.astype("int32").rename("__province")
    prov = prov.chunk(spatial) if spatial else prov
    people = inputs["population"] * area
    prim = np.floor(inputs["lulc"] / 10.0)
    q = xr.Dataset({
        "population": people.fillna(0.0),
        "gdp": (inputs["gdp"] * area).fillna(0.0),
        "rural_population": people.where(inputs["lulc"] != 51).fillna(0.0),
        "cropland": area.where(prim == 1, 0.0), "forest": area.where(prim == 2, 0.0),
        "grassland": area.where(prim == 3, 0.0), "built_up": area.where(prim == 5, 0.0),
        "land": area.where(inputs["lulc"].notnull(), 0.0),
        "area": area})
    return xarray_reduce(q, prov, func="sum", expected_groups=np.asarray(codes, "int32"),
                         dim=("lat", "lon"), fill_value=0.0)


def make_province_statistics(inputs: xr.Dataset, province: xr.DataArray,
                             seed: int = 0) -> pd.DataFrame:
    """The synthetic province statistics (canonical columns of :func:`carbonsink.io.services_tables.
    read_province_statistics`): one row per (year, province present in ``province``), population
    (persons), pigs and large_livestock (head), energy_<fuel> (tce), wood and cement (t).

    ``population`` is exactly Σ density × true cell area (km²) over the province's cells; the other
    columns follow fixed rules (``df.attrs``) of the province's sums, with noise keyed by (seed,
    year, province code). ``province``: integer (lat, lon) codes on the grid of ``inputs`` with
    ``flag_values``/``region_names`` (0 = none). The sums are one dask pass over the chunks."""
    import dask

    from .regions import names

    codes = sorted(code_names := names(province))
    (s,) = dask.compute(_province_sums(inputs, province, codes))
    s = s.transpose("year", "__province")
    years = s["year"].values.astype("i8")
    y, c = years[:, None].astype("f8"), np.asarray(codes, "i8")[None, :]
    provs = [code_names[k] for k in codes]
    isin = lambda group: np.array([[p in group for p in provs]], dtype="f8")  # noqa: E731

    def rate(k, sigma):            # static province-level factor
        return np.exp(sigma * _normal(seed, "stat_rate", k, c, 0))

    def jitter(k, sigma):          # province-year noise
        return np.maximum(1.0 + sigma * _normal(seed, "stat_year", years[:, None], c, k), 0.2)

    v = {k: np.asarray(s[k].values, "f8") for k in s.data_vars}
    crop, grass, forest = v["cropland"], v["grassland"], v["forest"]
    out = {"population": v["population"],
           "pigs": PIG_RATE * (0.7 + 0.6 * isin(_PIGS)) * (1 - 0.6 * isin(_PASTORAL))
           * rate(1, 0.2) * jitter(1, 0.04) * (crop + 0.1 * grass),
           "large_livestock": LIVESTOCK_RATE * (1 + 0.8 * isin(_PASTORAL)) * rate(2, 0.2)
           * jitter(2, 0.04) * (0.3 * crop + grass)}
    energy = (_ramp(ENERGY_INTENSITY, y, log=True) * v["gdp"] * (1 + 0.6 * isin(_HEAVY))
              * rate(3, 0.15) * jitter(3, 0.03) / 1.18)
    weights = {"coal": (1 + 0.3 * isin(_HEAVY)) * rate(4, 0.1),
               "oil": rate(5, 0.2), "natural_gas": (1 + 1.5 * isin(_GAS)) * rate(6, 0.4),
               "other": (1 + 1.5 * isin(_HYDRO)) * rate(7, 0.3)}
    mix = {f: _ramp(FUEL_SHARES[f], y) * weights[f] for f in FUELS}
    out.update({f"energy_{f}": energy * mix[f] / sum(mix.values()) for f in FUELS})
    out["wood"] = (WOOD_FOREST * forest * rate(8, 0.2) + WOOD_RURAL * v["rural_population"]) \
        * jitter(8, 0.05)
    built = np.minimum(v["built_up"] / np.maximum(v["land"], 1e-9) / 0.05, 1.0)
    out["cement"] = (_ramp(CEMENT_INTENSITY, y, log=True) * v["gdp"] * (0.8 + 0.4 * built)
                     * rate(9, 0.1) * jitter(9, 0.03))
    cols = list(out)                  # population, pigs, large_livestock, energy_*, wood, cement
    df = pd.DataFrame({
        "year": np.repeat(years, len(codes)), "province": np.tile(provs, len(years)),
        **{k: np.maximum(np.broadcast_to(out[k], (len(years), len(codes))), 0.0).ravel()
           for k in cols}})
    df = df[np.tile(v["area"] > 0, len(years))].reset_index(drop=True)
    df.attrs.update({
        "units": {"population": "persons", "pigs": "head", "large_livestock": "head",
                  "energy": "tce", "wood": "t", "cement": "t"},
        "source": f"carbonsink.synthetic_services.make_province_statistics(seed={seed})",
        "truth_population": "sum of density x true cell area (km2) over the province's cells",
        "truth_pigs": f"{PIG_RATE:g} x south/pastoral factor x exp(0.2 z_p) x (1 + 0.04 z_py) "
                      "x (cropland + 0.1 grassland km2)",
        "truth_large_livestock": f"{LIVESTOCK_RATE:g} x pastoral factor x exp(0.2 z_p) x "
                                 "(1 + 0.04 z_py) x (0.3 cropland + grassland km2)",
        "truth_energy": f"GDP x {ENERGY_INTENSITY} tce CNY-1 (2000, 2020; log-linear) x "
                        f"industry and province factors; fuel mix {FUEL_SHARES} x province "
                        "factors, renormalised",
        "truth_wood": f"{WOOD_FOREST:g} t km-2 forest + {WOOD_RURAL:g} t per rural person",
        "truth_cement": f"GDP x {CEMENT_INTENSITY} t CNY-1 (log-linear) x (0.8 + 0.4 "
                        "min(built-up share / 5 %, 1))"})
    return df
