"""Karst inorganic sink: maximum potential dissolution (MPD) — SCIENCE.md §2. Pure NumPy, no I/O.

Chain per pixel and year (seed 000, eqs. 3–4):

    AET ──Brook 1983──▶ soil pCO₂ ─┐
    T ──Plummer–Busenberg 1982──▶ K1, K2, Kc, KH ─┼─▶ [Ca²⁺]eq ──(P − E)──▶ Dmax ──f──▶ CCS
    I (random forest, §3, or 3[Ca²⁺] iterated) ─▶ γCa, γHCO3 ─┘

Every kernel broadcasts its array arguments against each other (any shapes NumPy can broadcast),
computes in float64, and lets NaN pass through, so a chunk with ocean or missing climate needs no
masking before the call. There are no loops over elements; the only loop is the fixed-point
iteration of the ionic strength, and each pass of it works on whole arrays.

Units: temperature °C, pCO₂ atm, concentrations and ionic strength mol L⁻¹ (ion tables in
mmol L⁻¹ are converted by :func:`ionic_strength` when declared), water depths mm a⁻¹,
Dmax mol km⁻² a⁻¹, CCS t C km⁻² a⁻¹ (= g C m⁻² a⁻¹, SCIENCE.md "Sign").
"""
from __future__ import annotations

import numpy as np

from .. import units as u

# --- Plummer & Busenberg (1982) coefficients, SCIENCE.md §2 table --------------------------------
# log₁₀K = a + b·T + c/T + d·log₁₀T + e/T², T in K. "K0" in seed 000 is Henry's KH.
PB1982 = {
    #        a            b              c          d            e
    "k1": (-356.3094, -0.06091964, 21834.37, 126.8339, -1684915.0),
    "k2": (-107.8871, -0.03252849, 5151.79, 38.92561, -563713.9),
    "kc": (-171.9065, -0.077993, 2839.319, 71.595, 0.0),
    "kh": (108.3865, 0.01985076, -6919.53, -40.45154, 669365.0),
}
# °C → K for the fits. units.py keeps the same offset in its temperature table ("k" alias); it is
# read from there so that the package has one 273.15.
_DEGC_TO_K = -u.conversion("K", "degC")[1]  # 273.15

# --- Extended Debye–Hückel, SCIENCE.md §2 --------------------------------------------------------
# A and B are linear in t (°C) around 25 °C; ion size parameters a in ångström.
DH_A0, DH_A1 = 0.4883, 8.074e-4
DH_B0, DH_B1 = 0.3241, 1.600e-4
SIZE_CA = 6.0
SIZE_HCO3 = 4.0
CHARGE_CA = 2
CHARGE_HCO3 = 1
# Ca(HCO₃)₂ solution: I = ½(4·[Ca] + 1·2[Ca]) = 3[Ca] (SCIENCE.md §2, "Without an I field").
IONIC_STRENGTH_PER_CA = 3.0

# --- Brook et al. (1983) soil pCO₂, SCIENCE.md §2 ------------------------------------------------
BROOK_LOG_PCO2_0 = -3.47
BROOK_LOG_PCO2_RANGE = 2.09
BROOK_AET_SCALE = 0.00172  # mm⁻¹ a

# --- Units of the MPD equations ------------------------------------------------------------------
# 1 mm of water over 1 km² = 10⁻³ m × 10⁶ m² = 10³ m³ = 10⁶ L, so (P − E)[mm a⁻¹] · [Ca][mol L⁻¹]
# · 10⁶ is mol km⁻² a⁻¹ (SCIENCE.md §2, Dmax).
MM_KM2_TO_L = 1e6
# Dmax [mol km⁻² a⁻¹] · 12.011 g mol⁻¹ · 10⁻⁶ t g⁻¹ → t C km⁻² a⁻¹; one mol CO₂ (one C) is consumed
# per mol of carbonate dissolved (SCIENCE.md §2, CCS).
G_TO_T = 1e-6

# Ion concentration units accepted by ionic_strength(), as factors into mol L⁻¹. River chemistry
# tables (SCIENCE.md §3) are in mmol L⁻¹; a wrong guess is a factor 1000 in I, so it is declared.
_CONC_UNITS = {
    "mol l-1": 1.0, "mol/l": 1.0, "mol dm-3": 1.0,
    "mmol l-1": 1e-3, "mmol/l": 1e-3, "mmol dm-3": 1e-3,
}


# ================================================================================================
# Equilibrium constants
# ================================================================================================
def _log10_k(name: str, t_c):
    """Plummer & Busenberg (1982) fit: log₁₀K = a + b·T + c/T + d·log₁₀T + e/T², T = t + 273.15."""
    a, b, c, d, e = PB1982[name]
    t_k = np.asarray(t_c, dtype="f8") + _DEGC_TO_K
    return a + b * t_k + c / t_k + d * np.log10(t_k) + e / (t_k * t_k)


def log10_k1(t_c):
    """log₁₀K1 of CO₂(aq) + H₂O ⇌ H⁺ + HCO₃⁻ (SCIENCE.md §2 table; −6.3519 at 25 °C).

    The fit is published for 0–90 °C; outside it the values are extrapolation.
    """
    return _log10_k("k1", t_c)


def log10_k2(t_c):
    """log₁₀K2 of HCO₃⁻ ⇌ H⁺ + CO₃²⁻ (SCIENCE.md §2 table; −10.3289 at 25 °C)."""
    return _log10_k("k2", t_c)


def log10_kc(t_c):
    """log₁₀Kc of calcite CaCO₃ ⇌ Ca²⁺ + CO₃²⁻ (SCIENCE.md §2 table; −8.4798 at 25 °C)."""
    return _log10_k("kc", t_c)


def log10_kh(t_c):
    """log₁₀KH, Henry's constant of CO₂(g) ⇌ CO₂(aq) (seed 000 "K0"; SCIENCE.md §2).

    −1.4679 at 25 °C.
    """
    return _log10_k("kh", t_c)


# ================================================================================================
# Activities and ionic strength
# ================================================================================================
def activity_coefficient(ionic_strength, t_c, charge, size_angstrom):
    """Activity coefficient γ from the extended Debye–Hückel equation (SCIENCE.md §2).

    log₁₀γ = −A·z²·√I / (1 + B·a·√I), A = 0.4883 + 8.074e-4·t, B = 0.3241 + 1.600e-4·t,
    t in °C, I in mol L⁻¹, a in Å (``SIZE_CA`` = 6, ``SIZE_HCO3`` = 4).
    Reference: I = 0.005, 25 °C → γCa = 0.7477, γHCO3 = 0.9270.
    """
    t_c = np.asarray(t_c, dtype="f8")
    sqrt_i = np.sqrt(np.asarray(ionic_strength, dtype="f8"))
    z = np.asarray(charge, dtype="f8")
    a = np.asarray(size_angstrom, dtype="f8")
    dh_a = DH_A0 + DH_A1 * t_c
    dh_b = DH_B0 + DH_B1 * t_c
    return 10.0 ** (-dh_a * z * z * sqrt_i / (1.0 + dh_b * a * sqrt_i))


def ionic_strength(ca, mg, na, k, hco3, so4, cl, *, units: str = "mol L-1"):
    """Ionic strength I = ½(4Ca + 4Mg + Na + K + HCO₃ + 4SO₄ + Cl) [mol L⁻¹] (SCIENCE.md §2).

    The seven major ions of the river tables (§3), all in the declared ``units``: ``"mol L-1"``
    (default) or ``"mmol L-1"`` (the tables' unit), converted here. The result is always mol L⁻¹.
    Negative concentrations raise ValueError naming the ion; NaN passes through.
    """
    key = " ".join(str(units).strip().lower().replace("⁻¹", "-1").split())
    if key not in _CONC_UNITS:
        raise u.UnitError(
            f"unknown concentration units {units!r}; use 'mol L-1' or 'mmol L-1'")
    factor = _CONC_UNITS[key]
    ions = {"Ca": ca, "Mg": mg, "Na": na, "K": k, "HCO3": hco3, "SO4": so4, "Cl": cl}
    conc = {}
    for name, value in ions.items():  # seven ions, not elements: each check is one array reduction
        value = np.asarray(value, dtype="f8")
        if np.any(value < 0):
            raise ValueError(f"negative {name} concentration ({np.nanmin(value)!r} {units}); "
                             "concentrations must be ≥ 0")
        conc[name] = value
    # ½ Σ cᵢ zᵢ²: z² = 4 for Ca²⁺, Mg²⁺, SO₄²⁻, 1 for the monovalent ions
    total = (4.0 * (conc["Ca"] + conc["Mg"] + conc["SO4"])
             + conc["Na"] + conc["K"] + conc["HCO3"] + conc["Cl"])
    return 0.5 * factor * total


# ================================================================================================
# Soil CO₂
# ================================================================================================
def soil_pco2_brook(aet_mm):
    """Soil pCO₂ [atm] from actual evapotranspiration [mm a⁻¹] (Brook et al. 1983; SCIENCE.md §2).

    log₁₀pCO₂ = −3.47 + 2.09·(1 − e^(−0.00172·AET)).
    Reference: AET 300 → 2.358e-3, 500 → 5.440e-3, 800 → 1.236e-2, 1200 → 2.263e-2 atm.
    """
    aet = np.asarray(aet_mm, dtype="f8")
    return 10.0 ** (BROOK_LOG_PCO2_0
                    + BROOK_LOG_PCO2_RANGE * (1.0 - np.exp(-BROOK_AET_SCALE * aet)))


# ================================================================================================
# Equilibrium calcium and MPD
# ================================================================================================
class ConvergenceError(RuntimeError):
    """The ionic-strength fixed point did not converge within ``max_iter`` passes."""


def ca_equilibrium(t_c, pco2_atm, ionic_strength=None, *, activity: bool = True,
                   tol: float = 1e-12, max_iter: int = 100):
    """Equilibrium [Ca²⁺] [mol L⁻¹] of calcite with soil CO₂ (seed 000 eq. 3; SCIENCE.md §2).

    [Ca²⁺]eq = ( pCO₂·K1·Kc·KH / (4·K2·γCa·γHCO3²) )^(1/3), constants at ``t_c`` (°C), pCO₂ in atm.

    ionic_strength: I [mol L⁻¹] (e.g. the random-forest field of §3), broadcast with the other
        inputs. If None, I = 3[Ca²⁺]eq (a pure Ca(HCO₃)₂ solution) is iterated to a fixed point,
        all elements at once, until every finite element changes by ≤ ``tol`` relative; if any
        has not after ``max_iter`` passes, :class:`ConvergenceError` says how many and by how much.
    activity: False sets γ = 1 (ideal solution; I is then unused).

    Reference (I iterated): 25 °C, pCO₂ 1e-2 → 1.604 mmol L⁻¹ (γ = 1: 1.388); 10 °C, 10^−2.5
    → 1.375. Full speciation (PHREEQC, with ion pairs) gives 2.5–3 % more: that is expected.
    """
    t_c = np.asarray(t_c, dtype="f8")
    pco2 = np.asarray(pco2_atm, dtype="f8")
    if np.any(pco2 < 0):
        raise ValueError(f"negative pCO₂ ({np.nanmin(pco2)!r} atm); pCO₂ must be ≥ 0")
    # Numerator over 4·K2 in log space: the four constants span 10⁻¹⁰…10⁻¹, their ratio is ~10⁻⁶.
    k_ratio = 10.0 ** (log10_k1(t_c) + log10_kc(t_c) + log10_kh(t_c) - log10_k2(t_c))
    ideal = pco2 * k_ratio / 4.0  # [Ca]³ with γ = 1

    if not activity:
        return np.cbrt(ideal)

    def solve(i):
        gamma_ca = activity_coefficient(i, t_c, CHARGE_CA, SIZE_CA)
        gamma_hco3 = activity_coefficient(i, t_c, CHARGE_HCO3, SIZE_HCO3)
        return np.cbrt(ideal / (gamma_ca * gamma_hco3 * gamma_hco3))

    if ionic_strength is not None:
        i = np.asarray(ionic_strength, dtype="f8")
        if np.any(i < 0):
            raise ValueError(f"negative ionic strength ({np.nanmin(i)!r} mol L-1); I must be ≥ 0")
        return solve(i)

    # Fixed point of Ca = f(3·Ca). γ falls slowly with I, so the map is a strong contraction
    # (about a dozen passes to 1e-12 over −10…30 °C and pCO₂ 1e-4…1e-1 atm); the start, the ideal
    # Ca (γ = 1), is 10–15 % low, and the first pass already removes most of that.
    ca = np.cbrt(ideal)
    for _ in range(max_iter):
        new = solve(IONIC_STRENGTH_PER_CA * ca)
        change = np.abs(new - ca)
        ca = new
        # NaN/inf elements (missing inputs) have no fixed point to reach; they pass through.
        pending = np.isfinite(ca) & ~(change <= tol * np.abs(ca))
        if not pending.any():
            return ca
    worst = float(np.max(change[pending] / np.abs(ca[pending])))
    raise ConvergenceError(
        f"ionic strength I = 3[Ca²⁺] did not converge in {max_iter} iterations for "
        f"{int(pending.sum())} of {ca.size} elements (largest relative change {worst:.3g} > "
        f"tol {tol:g}); pass ionic_strength explicitly or raise max_iter")


def dmax(p_mm, e_mm, ca_eq):
    """Maximum potential dissolution Dmax [mol km⁻² a⁻¹] (seed 000 eq. 4; SCIENCE.md §2).

    Dmax = 10⁶ · max(P − E, 0) · [Ca²⁺]eq, P precipitation and E actual evapotranspiration in
    mm a⁻¹, [Ca²⁺]eq in mol L⁻¹. 10⁶: 1 mm over 1 km² is 10³ m³ = 10⁶ L.
    Where no water drains (P − E ≤ 0) nothing is dissolved: Dmax = 0 even if [Ca²⁺]eq is NaN.
    """
    drainage = np.maximum(np.asarray(p_mm, dtype="f8") - np.asarray(e_mm, dtype="f8"), 0.0)
    ca_eq = np.asarray(ca_eq, dtype="f8")
    # np.maximum keeps NaN, and NaN == 0 is False, so missing P or E still gives NaN
    return np.where(drainage == 0.0, 0.0, MM_KM2_TO_L * drainage * ca_eq)


def ccs(dmax, carbonate_fraction):
    """Carbonate carbon sink CCS [t C km⁻² a⁻¹] (seed 000 eq. 4; SCIENCE.md §2).

    CCS = Dmax · 12.011 · 10⁻⁶ · f: one mol of CO₂ taken up per mol of carbonate dissolved, on the
    carbonate fraction f ∈ [0, 1] of the cell. CCS = 0 where f = 0 (no carbonate rock, whatever
    Dmax is) and where Dmax = 0 (P − E ≤ 0). f outside [0, 1] raises ValueError; NaN passes through.
    """
    f = np.asarray(carbonate_fraction, dtype="f8")
    bad = (f < 0.0) | (f > 1.0)  # NaN compares False: missing f is allowed and stays NaN
    if np.any(bad):
        raise ValueError(
            f"carbonate_fraction must lie in [0, 1] (a fraction, not a percentage); got values "
            f"from {np.min(f[bad])!r} to {np.max(f[bad])!r} in {int(bad.sum())} element(s)")
    d = np.asarray(dmax, dtype="f8")
    return np.where(f == 0.0, 0.0, d * (u.C_MOLAR_MASS * G_TO_T) * f)


def karst_sink(t_c, p_mm, aet_mm, carbonate_fraction, ionic_strength=None):
    """The SCIENCE.md §2 chain in one call: pCO₂ (Brook, from AET) → [Ca²⁺]eq → Dmax → CCS.

    t_c annual mean temperature °C; p_mm, aet_mm annual precipitation and actual
    evapotranspiration mm a⁻¹ (AET is both Brook's input and E in P − E); carbonate_fraction f;
    ionic_strength I mol L⁻¹ or None to iterate I = 3[Ca²⁺]eq.
    Returns a dict of arrays, all broadcast to the common shape: ``pco2`` atm, ``ionic_strength``
    mol L⁻¹ (the I used), ``ca_eq`` mol L⁻¹, ``dmax`` mol km⁻² a⁻¹, ``ccs`` t C km⁻² a⁻¹.
    Reference: 15 °C, P 1200, AET 600 → pCO₂ 7.505e-3, [Ca] 1.716 mmol L⁻¹, Dmax 1.030e6,
    CCS (f = 1) 12.37.
    """
    pco2 = soil_pco2_brook(aet_mm)
    ca_eq = ca_equilibrium(t_c, pco2, ionic_strength)
    i_used = IONIC_STRENGTH_PER_CA * ca_eq if ionic_strength is None else ionic_strength
    d = dmax(p_mm, aet_mm, ca_eq)
    c = ccs(d, carbonate_fraction)
    shape = np.broadcast_shapes(np.shape(t_c), np.shape(p_mm), np.shape(aet_mm),
                                np.shape(carbonate_fraction), np.shape(i_used))
    out = {"pco2": pco2, "ionic_strength": np.asarray(i_used, dtype="f8"), "ca_eq": ca_eq,
           "dmax": d, "ccs": c}
    return {name: np.broadcast_to(value, shape).copy() for name, value in out.items()}
