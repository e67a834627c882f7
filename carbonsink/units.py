"""The one unit table of carbonsink.

Every unit string a user or a file may declare is normalised to a canonical spelling, and every
conversion between two spellings of the same quantity is ``canonical = value * factor + offset``
(SCIENCE.md, "Sign" and "Totals"). Nothing else in the package multiplies by 1000 or adds 273.15.

Unit strings follow UDUNITS where UDUNITS has them: ``yr`` for year (never ``a``, which UDUNITS reads
as *are*), ``degC``, ``m-2``. Carbon is implied by the variable (CF: the standard_name says
"expressed_as_carbon"), so ``g m-2 yr-1`` on ``npp`` means g C m⁻² a⁻¹ — which equals t C km⁻² a⁻¹.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

# SCIENCE.md: CO₂ = C × 44.01/12.011
C_MOLAR_MASS = 12.011
CO2_MOLAR_MASS = 44.01
C_TO_CO2 = CO2_MOLAR_MASS / C_MOLAR_MASS
# g C m⁻² a⁻¹ × m² → Tg C a⁻¹ and Pg C a⁻¹
G_TO_TG = 1e-12
G_TO_PG = 1e-15
M2_TO_KM2 = 1e-6


class UnitError(ValueError):
    """A unit string that carbonsink does not know, or that cannot become the one asked for."""


@dataclass(frozen=True)
class _Unit:
    canonical: str  # the spelling of the quantity's reference unit
    factor: float = 1.0
    offset: float = 0.0


# Quantity → canonical spelling, and each alias as (factor, offset) into it.
_TABLE: dict[str, dict[str, tuple[float, float]]] = {
    # carbon flux density per year; g C m-2 a-1 == t C km-2 a-1
    "g m-2 yr-1": {
        "g m-2 yr-1": (1, 0), "g c m-2 yr-1": (1, 0), "gc m-2 yr-1": (1, 0),
        "g c m-2 a-1": (1, 0), "gc m-2 a-1": (1, 0), "g m-2 a-1": (1, 0),
        "t c km-2 a-1": (1, 0), "t km-2 yr-1": (1, 0), "t c km-2 yr-1": (1, 0),
        "kg m-2 yr-1": (1e3, 0), "kg c m-2 yr-1": (1e3, 0), "kg c m-2 a-1": (1e3, 0),
        "mg c ha-1 yr-1": (100, 0), "mg ha-1 yr-1": (100, 0), "t c ha-1 yr-1": (100, 0),
    },
    # carbon flux density per day (daily respiration rates)
    "g m-2 d-1": {"g m-2 d-1": (1, 0), "g c m-2 d-1": (1, 0), "gc m-2 d-1": (1, 0),
                  "g m-2 day-1": (1, 0)},
    # carbon flux density per month
    "g m-2 month-1": {"g m-2 month-1": (1, 0), "g c m-2 month-1": (1, 0),
                      "gc m-2 month-1": (1, 0), "g m-2 mon-1": (1, 0)},
    # air temperature
    "degC": {"degc": (1, 0), "celsius": (1, 0), "deg_c": (1, 0), "°c": (1, 0),
             "degrees_celsius": (1, 0), "c": (1, 0),
             "k": (1, -273.15), "kelvin": (1, -273.15)},
    # monthly precipitation; plain "mm" on a monthly variable is a monthly accumulation
    "mm month-1": {"mm month-1": (1, 0), "mm/month": (1, 0), "mm mon-1": (1, 0), "mm": (1, 0),
                   "cm month-1": (10, 0), "cm/month": (10, 0), "cm": (10, 0),
                   "m month-1": (1e3, 0), "m": (1e3, 0),
                   "kg m-2 month-1": (1, 0)},
    # annual water depth (precipitation, evapotranspiration)
    "mm yr-1": {"mm yr-1": (1, 0), "mm a-1": (1, 0), "mm/yr": (1, 0), "mm/year": (1, 0),
                "cm yr-1": (10, 0), "m yr-1": (1e3, 0), "kg m-2 yr-1 water": (1, 0)},
    # annual solar radiation
    "MJ m-2 yr-1": {"mj m-2 yr-1": (1, 0), "mj m-2 a-1": (1, 0), "j m-2 yr-1": (1e-6, 0),
                    "gj m-2 yr-1": (1e3, 0), "kwh m-2 yr-1": (3.6, 0)},
    # carbon density (soil organic carbon)
    "kg m-2": {"kg m-2": (1, 0), "kg c m-2": (1, 0), "kgc m-2": (1, 0),
               "g m-2": (1e-3, 0), "g c m-2": (1e-3, 0),
               "t c ha-1": (0.1, 0), "mg c ha-1": (0.1, 0), "t ha-1": (0.1, 0),
               "t c km-2": (1e-3, 0), "t km-2": (1e-3, 0)},
    # dimensionless
    "1": {"1": (1, 0), "": (1, 0), "fraction": (1, 0), "%": (0.01, 0), "percent": (0.01, 0)},
    # solute concentrations of river water (ion tables, SCIENCE.md §2-3). Mass and charge
    # concentrations become molar ones per ion with ION_MOLAR_MASS / ION_CHARGE below.
    "mmol L-1": {"mmol l-1": (1, 0), "mmol/l": (1, 0), "mmol dm-3": (1, 0), "mol l-1": (1e3, 0),
                 "mol/l": (1e3, 0), "umol l-1": (1e-3, 0), "µmol l-1": (1e-3, 0),
                 "μmol l-1": (1e-3, 0), "umol/l": (1e-3, 0)},
    "mg L-1": {"mg l-1": (1, 0), "mg/l": (1, 0), "g l-1": (1e3, 0), "ug l-1": (1e-3, 0),
               "µg l-1": (1e-3, 0), "μg l-1": (1e-3, 0)},
    "meq L-1": {"meq l-1": (1, 0), "meq/l": (1, 0), "ueq l-1": (1e-3, 0), "µeq l-1": (1e-3, 0)},
    # carbon-sequestration services inputs (SCIENCE.md §7): densities, so that area-averaging
    # regridding conserves totals (density × true cell area = persons, CNY per cell)
    "km-2": {"km-2": (1, 0), "persons km-2": (1, 0), "person km-2": (1, 0), "people km-2": (1, 0),
             "inhabitants km-2": (1, 0), "persons/km2": (1, 0), "ha-1": (100, 0),
             "persons ha-1": (100, 0), "m-2": (1e6, 0), "persons m-2": (1e6, 0)},
    "CNY km-2": {"cny km-2": (1, 0), "yuan km-2": (1, 0), "rmb km-2": (1, 0),
                 "1e4 cny km-2": (1e4, 0), "10^4 cny km-2": (1e4, 0), "1e4 yuan km-2": (1e4, 0),
                 "10^4 yuan km-2": (1e4, 0), "1e8 cny km-2": (1e8, 0), "cny ha-1": (100, 0),
                 "cny m-2": (1e6, 0)},
    "m s-1": {"m s-1": (1, 0), "m/s": (1, 0), "m s**-1": (1, 0), "km h-1": (1 / 3.6, 0),
              "km/h": (1 / 3.6, 0), "knots": (0.514444, 0), "kt": (0.514444, 0)},
}

# Extra spellings met in real files (MODIS, ERA5-Land, CMFD, CHIRPS) for quantities above.
_TABLE["g m-2 yr-1"].update({"kgc m-2 yr-1": (1e3, 0), "kg c m-2 year-1": (1e3, 0),
                             "g c m-2 year-1": (1, 0), "gc m-2 year-1": (1, 0)})
_TABLE["MJ m-2 yr-1"].update({"mj m-2 year-1": (1, 0), "j m-2 year-1": (1e-6, 0)})
_TABLE["mm yr-1"].update({"mm year-1": (1, 0), "m year-1": (1e3, 0)})
_TABLE["degC"].update({"degree_celsius": (1, 0), "degrees_kelvin": (1, -273.15),
                       "degk": (1, -273.15), "deg_k": (1, -273.15)})
# Carbon per area as flux products declare it (SCIENCE.md §8; the amount part of a rate such as
# CarbonTracker's mol m-2 s-1 or the OCO-2 MIP's gC/m^2/year): a mole of CO₂ or of C holds one
# mole of carbon, 12.011 g.
_TABLE["kg m-2"].update({
    "gc m-2": (1e-3, 0), "g co2 m-2": (1e-3 / C_TO_CO2, 0),
    "mol m-2": (C_MOLAR_MASS * 1e-3, 0), "mol c m-2": (C_MOLAR_MASS * 1e-3, 0),
    "mol co2 m-2": (C_MOLAR_MASS * 1e-3, 0), "kmol m-2": (C_MOLAR_MASS, 0),
    "mmol m-2": (C_MOLAR_MASS * 1e-6, 0), "umol m-2": (C_MOLAR_MASS * 1e-9, 0),
    "µmol m-2": (C_MOLAR_MASS * 1e-9, 0), "μmol m-2": (C_MOLAR_MASS * 1e-9, 0),
    "umol co2 m-2": (C_MOLAR_MASS * 1e-9, 0)})

# Molar masses (g mol-1) and charges of the seven major ions of river chemistry tables:
# mg L-1 / M = mmol L-1, meq L-1 / |z| = mmol L-1.
ION_MOLAR_MASS = {"ca": 40.078, "mg": 24.305, "na": 22.990, "k": 39.098, "hco3": 61.017,
                  "so4": 96.06, "cl": 35.45}
ION_CHARGE = {"ca": 2, "mg": 2, "na": 1, "k": 1, "hco3": 1, "so4": 2, "cl": 1}

_ALIASES: dict[str, _Unit] = {}
for _canon, _aliases in _TABLE.items():
    for _alias, (_f, _o) in _aliases.items():
        _ALIASES.setdefault(_alias, _Unit(_canon, float(_f), float(_o)))


def _key(units: str) -> str:
    s = str(units).strip().lower()
    s = s.replace("⁻¹", "-1").replace("⁻²", "-2").replace("**", "").replace("^", "")
    s = s.replace("·", " ").replace("*", " ")
    s = re.sub(r"\s+", " ", s)
    return s


# aliases as they arrive after normalisation ("10^4 CNY km-2" → "104 cny km-2"); an alias never
# overrides another one
for _alias, _unit in list(_ALIASES.items()):
    _ALIASES.setdefault(_key(_alias), _unit)


def lookup(units: str) -> _Unit:
    """The canonical unit and conversion of a declared unit string; raises UnitError if unknown."""
    if units is None:
        raise UnitError("no units declared")
    u = _ALIASES.get(_key(units))
    if u is None:
        raise UnitError(f"unknown units {units!r}")
    return u


def canonical(units: str) -> str:
    """Canonical spelling of a declared unit string."""
    return lookup(units).canonical


def conversion(from_units: str, to_units: str) -> tuple[float, float]:
    """(factor, offset) with ``to = from * factor + offset``; UnitError if the quantities differ."""
    a, b = lookup(from_units), lookup(to_units)
    if a.canonical != b.canonical:
        raise UnitError(
            f"cannot convert {from_units!r} ({a.canonical}) to {to_units!r} ({b.canonical})")
    # from → canonical → to
    factor = a.factor / b.factor
    offset = (a.offset - b.offset) / b.factor
    return factor, offset


def convert(values, from_units: str, to_units: str):
    """Convert array-like ``values`` from one unit string to another of the same quantity."""
    factor, offset = conversion(from_units, to_units)
    if factor == 1.0 and offset == 0.0:
        return values
    return values * factor + offset if offset else values * factor


def same_quantity(a: str, b: str) -> bool:
    try:
        return lookup(a).canonical == lookup(b).canonical
    except UnitError:
        return False
