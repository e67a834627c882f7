"""Heterotrophic soil respiration (Rh) models — SCIENCE.md §1. Pure NumPy, no I/O.

Array layout: the time axis is the **last** axis (the layout ``xarray.apply_ufunc`` hands kernels),
monthly steps in whole years, January first. Outputs are annual sums with a last axis of years.

Units are part of the call: each kernel takes its inputs in the units the caller declares and converts
them through :mod:`carbonsink.units` to the units the published equation needs (P in **cm** for
``soil_tps``, **mm** for ``pei``). Precipitation in mm fed as if it were cm would push both saturating
fractions to ≈ 1 without any error, so there is no default that silently guesses.
"""
from __future__ import annotations

import numpy as np

from .. import units as u

RH_MODELS = ("soil_tps", "pei", "bond_lamberty")
DEFAULT_RH_MODEL = "soil_tps"


def rs_daily_soil_tps(t_c, p_cm, soc_kg_m2):
    """Daily soil respiration Rs_d [g C m⁻² d⁻¹] (seed 000 eq. 2, SCIENCE.md §1).

    Rs_d = 1.55·e^(0.031·T)·P/(P+0.68)·SOC/(SOC+2.23), T monthly mean °C, P monthly precipitation
    in cm, SOC 0–30 cm in kg C m⁻².
    """
    t_c = np.asarray(t_c, dtype="f8")
    p_cm = np.asarray(p_cm, dtype="f8")
    soc = np.asarray(soc_kg_m2, dtype="f8")
    return 1.55 * np.exp(0.031 * t_c) * (p_cm / (p_cm + 0.68)) * (soc / (soc + 2.23))


def rh_daily_from_rs(rs_daily):
    """Rh_d = 0.6163·Rs_d^0.7918, the Rs→Rh power law of seed 000 on the daily rate."""
    return 0.6163 * np.power(np.asarray(rs_daily, dtype="f8"), 0.7918)


def rh_bond_lamberty(rs_annual):
    """ln Rh = 1.22 + 0.73·ln Rs on annual totals (g C m⁻² a⁻¹), Bond-Lamberty et al. 2004."""
    return np.exp(1.22 + 0.73 * np.log(np.asarray(rs_annual, dtype="f8")))


def rh_monthly_pei(t_c, r_mm):
    """Monthly Rh [g C m⁻² month⁻¹] (seed 004 eq. 2): 0.22·[e^(0.0913·T) + ln(0.3145·R + 1)]·30·0.465.

    T monthly mean °C, R monthly precipitation in mm. Never fed annual T and R.
    """
    t_c = np.asarray(t_c, dtype="f8")
    r_mm = np.asarray(r_mm, dtype="f8")
    return 0.22 * (np.exp(0.0913 * t_c) + np.log(0.3145 * r_mm + 1.0)) * 30.0 * 0.465


def days_in_month(years, months_per_year: int = 12) -> np.ndarray:
    """Days of each month (Gregorian, leap years counted) for consecutive whole ``years``."""
    years = np.asarray(years, dtype="i8")
    base = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype="f8")
    leap = ((years % 4 == 0) & (years % 100 != 0)) | (years % 400 == 0)
    out = np.tile(base, (years.size, 1))
    out[:, 1] += leap
    return out.reshape(-1)


def rh_annual(tas, pr, soc=None, days=None, *, model: str = DEFAULT_RH_MODEL,
              tas_units: str = "degC", pr_units: str | None = None,
              soc_units: str | None = None, out_dtype="f4") -> np.ndarray:
    """Annual Rh [g C m⁻² a⁻¹] from monthly climate (SCIENCE.md §1).

    tas, pr: (..., 12·nyears) monthly mean temperature and monthly precipitation, time last.
    soc: (...) topsoil organic carbon density (``soil_tps``/``bond_lamberty`` only).
    days: (12·nyears,) days in each month (``soil_tps``/``bond_lamberty``: Rh_m = Rh_d × days).
    Units must be declared for pr (and soc); they are converted, never guessed.
    Returns (..., nyears).
    """
    if model not in RH_MODELS:
        raise ValueError(f"unknown Rh model {model!r}; choose one of {RH_MODELS}")
    if pr_units is None:
        raise u.UnitError("pr_units must be declared (e.g. 'mm month-1'); P in mm vs cm changes Rh")
    tas = np.asarray(tas)
    pr = np.asarray(pr)
    ntime = tas.shape[-1]
    if pr.shape != tas.shape:
        raise ValueError(f"tas {tas.shape} and pr {pr.shape} differ in shape")
    if ntime == 0 or ntime % 12:
        raise ValueError(f"monthly series of {ntime} steps is not a whole number of years")
    nyears = ntime // 12
    t_factor, t_offset = u.conversion(tas_units, "degC")

    if model == "pei":
        p_factor, _ = u.conversion(pr_units, "mm month-1")
    else:
        p_factor, _ = u.conversion(pr_units, "cm month-1")
        if soc is None:
            raise ValueError(f"Rh model {model!r} needs soil organic carbon (soc)")
        if soc_units is None:
            raise u.UnitError("soc_units must be declared (e.g. 'kg m-2')")
        soc_kg = u.convert(np.asarray(soc, dtype="f8"), soc_units, "kg m-2")[..., None]
        if days is None:
            raise ValueError(f"Rh model {model!r} needs the days in each month")
        days = np.asarray(days, dtype="f8")
        if days.shape != (ntime,):
            raise ValueError(f"days has shape {days.shape}, expected ({ntime},)")

    out = np.zeros(tas.shape[:-1] + (nyears,), dtype="f8")
    # Loop over the 12 calendar months (not pixels): each step works on a (..., nyears) slab, so
    # temporaries stay at 1/12 of the chunk instead of a float64 copy of the whole monthly cube.
    for m in range(12):
        t_m = tas[..., m::12] * t_factor + t_offset
        p_m = pr[..., m::12] * p_factor
        if model == "pei":
            out += rh_monthly_pei(t_m, p_m)
        else:
            rs_d = rs_daily_soil_tps(t_m, p_m, soc_kg)
            d = days[m::12]
            # soil_tps: Σ months Rh_d·days; bond_lamberty: Σ months Rs_d·days, converted annually
            out += (rh_daily_from_rs(rs_d) if model == "soil_tps" else rs_d) * d
    if model == "bond_lamberty":
        out = rh_bond_lamberty(out)
    return out.astype(out_dtype, copy=False)


def nep(npp, rh):
    """NEP = NPP − Rh (SCIENCE.md §1); positive = sink."""
    return np.asarray(npp) - np.asarray(rh)
