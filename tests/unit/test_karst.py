"""Karst MPD kernels pinned to every SCIENCE.md §2 reference value; shapes, NaN, bad inputs."""
import numpy as np
import pytest

from carbonsink.kernels import karst as k

pytestmark = pytest.mark.unit


def sf4(x) -> float:
    """x rounded to 4 significant figures, the precision SCIENCE.md quotes its references to."""
    return float(f"{float(x):.3e}")


# ---- Plummer & Busenberg (1982) constants: the table's log K at 10 and 25 °C (4 decimals) ----
@pytest.mark.parametrize("func, t, log_k", [
    (k.log10_k1, 10.0, -6.4633), (k.log10_k1, 25.0, -6.3519),
    (k.log10_k2, 10.0, -10.4879), (k.log10_k2, 25.0, -10.3289),
    (k.log10_kc, 10.0, -8.4105), (k.log10_kc, 25.0, -8.4798),
    (k.log10_kh, 10.0, -1.2694), (k.log10_kh, 25.0, -1.4679),
])
def test_log_k_table(func, t, log_k):
    # The table quotes 4 decimals (5 s.f.), stricter than 4 s.f.; re-rounding the table's own
    # rounded value to 4 s.f. would double-round (−8.41048 → −8.4105 → −8.411), so compare here.
    assert round(float(func(t)), 4) == log_k


# ---- Debye–Hückel ----
def test_activity_coefficients_reference():
    assert sf4(k.activity_coefficient(0.005, 25.0, 2, k.SIZE_CA)) == 0.7477
    assert sf4(k.activity_coefficient(0.005, 25.0, 1, k.SIZE_HCO3)) == 0.9270


def test_activity_coefficient_is_one_at_zero_ionic_strength():
    assert k.activity_coefficient(0.0, 10.0, 2, k.SIZE_CA) == 1.0


# ---- Brook soil pCO₂ ----
@pytest.mark.parametrize("aet, pco2", [(300, 2.358e-3), (500, 5.440e-3), (800, 1.236e-2),
                                       (1200, 2.263e-2)])
def test_brook_pco2_reference(aet, pco2):
    assert sf4(k.soil_pco2_brook(aet)) == pco2


# ---- Worked examples (I iterated as 3[Ca]) ----
def test_worked_example_25c():
    ca = k.ca_equilibrium(25.0, 1e-2)
    assert sf4(ca * 1e3) == 1.604
    assert sf4(k.ca_equilibrium(25.0, 1e-2, activity=False) * 1e3) == 1.388
    d = k.dmax(500.0, 0.0, ca)  # P − E = 500 mm
    assert sf4(d) == 8.022e5
    assert sf4(k.ccs(d, 1.0)) == 9.636


def test_worked_example_10c():
    ca = k.ca_equilibrium(10.0, 10 ** -2.5)
    assert sf4(ca * 1e3) == 1.375
    d = k.dmax(800.0, 500.0, ca)  # P − E = 300 mm
    assert sf4(d) == 4.125e5
    assert sf4(k.ccs(d, 1.0)) == 4.954


def test_worked_example_15c_brook_chain():
    out = k.karst_sink(15.0, 1200.0, 600.0, 1.0)  # AET 600 is both Brook's input and E
    assert sf4(out["pco2"]) == 7.505e-3
    assert sf4(out["ca_eq"] * 1e3) == 1.716
    assert sf4(out["dmax"]) == 1.030e6
    assert sf4(out["ccs"]) == 12.37
    # the chain is exactly the individual kernels
    ca = k.ca_equilibrium(15.0, k.soil_pco2_brook(600.0))
    assert out["ca_eq"] == ca
    assert out["ccs"] == k.ccs(k.dmax(1200.0, 600.0, ca), 1.0)


def test_iterated_ionic_strength_is_a_fixed_point():
    out = k.karst_sink(25.0, 1000.0, 500.0, 1.0)
    assert out["ionic_strength"] == pytest.approx(3 * out["ca_eq"], rel=1e-15)
    again = k.ca_equilibrium(25.0, out["pco2"], out["ionic_strength"])
    assert again == pytest.approx(out["ca_eq"], rel=1e-11)


def test_given_ionic_strength_matches_hand_formula():
    t, pco2, i = 25.0, 1e-2, 0.005
    g_ca = k.activity_coefficient(i, t, 2, k.SIZE_CA)
    g_hco3 = k.activity_coefficient(i, t, 1, k.SIZE_HCO3)
    kk = 10 ** np.array([k.log10_k1(t), k.log10_k2(t), k.log10_kc(t), k.log10_kh(t)])
    want = (pco2 * kk[0] * kk[2] * kk[3] / (4 * kk[1] * g_ca * g_hco3 ** 2)) ** (1 / 3)
    assert k.ca_equilibrium(t, pco2, i) == pytest.approx(want, rel=1e-13)


def test_ccs_formula():
    assert k.ccs(1e6, 0.5) == pytest.approx(1e6 * 12.011e-6 * 0.5, rel=1e-15)


# ---- zeros ----
def test_ccs_zero_without_drainage_or_carbonate():
    ca = k.ca_equilibrium(20.0, 5e-3)
    p = np.array([400.0, 500.0, 900.0, 900.0])
    e = np.array([600.0, 500.0, 300.0, 300.0])
    f = np.array([1.0, 1.0, 0.0, 0.4])
    d = k.dmax(p, e, ca)
    c = k.ccs(d, f)
    assert d[:2].tolist() == [0.0, 0.0]
    assert c[:3].tolist() == [0.0, 0.0, 0.0]
    assert c[3] > 0
    # no carbonate rock (f = 0) or no drainage is a definite zero, even if [Ca] is unknown
    assert k.ccs(np.nan, 0.0) == 0.0
    assert k.dmax(300.0, 400.0, np.nan) == 0.0


# ---- broadcasting ----
def test_broadcasting_2d_3d_equals_scalars():
    t = np.array([0.0, 10.0, 25.0]).reshape(3, 1, 1)
    p = np.array([[700.0, 1500.0]])                                      # (1, 2)
    aet = np.array([300.0, 500.0, 800.0, 1200.0]).reshape(4, 1)            # (4, 1)
    f = np.array([[[0.0, 0.3]], [[1.0, 0.7]], [[0.5, 1.0]]])             # (3, 1, 2)
    out = k.karst_sink(t, p, aet, f)
    for name, v in out.items():
        assert v.shape == (3, 4, 2), name
        assert v.dtype == np.float64, name
    for i in range(3):
        for j in range(4):
            for m in range(2):
                one = k.karst_sink(t[i, 0, 0], p[0, m], aet[j, 0], f[i, 0, m])
                for name, v in out.items():
                    # elementwise identical to the scalar call (iteration count may differ by one)
                    assert v[i, j, m] == pytest.approx(float(one[name]), rel=1e-12, abs=0), name
    # CCS zero where P − E ≤ 0 (P 700 < AET 800, 1200) and where f = 0
    assert np.all(out["ccs"][:, 2:, 0] == 0)
    assert np.all(out["ccs"][0, :, 0] == 0)


def test_ca_equilibrium_broadcasts_with_given_ionic_strength():
    t = np.array([5.0, 15.0, 25.0])[:, None]
    i = np.array([0.0, 0.002, 0.01])[None, :]
    got = k.ca_equilibrium(t, 1e-2, i)
    assert got.shape == (3, 3)
    for a in range(3):
        for b in range(3):
            assert got[a, b] == k.ca_equilibrium(t[a, 0], 1e-2, i[0, b])
    # more salt → lower activity coefficients → more calcite dissolves
    assert np.all(np.diff(got, axis=1) > 0)


def test_float32_inputs_computed_in_float64():
    out = k.karst_sink(np.float32(15.0), np.float32(1200.0), np.float32(600.0), np.float32(1.0))
    assert all(v.dtype == np.float64 for v in out.values())
    assert sf4(out["ccs"]) == 12.37


# ---- NaN ----
def test_nan_propagates_and_leaves_neighbours_alone():
    t = np.array([np.nan, 15.0, 15.0, 15.0, 15.0])
    p = np.array([1200.0, np.nan, 1200.0, 1200.0, 1200.0])
    aet = np.array([600.0, 600.0, np.nan, 600.0, 600.0])
    f = np.array([1.0, 1.0, 1.0, np.nan, 1.0])
    out = k.karst_sink(t, p, aet, f)
    assert np.isnan(out["ca_eq"][[0, 2]]).all()
    assert np.isnan(out["dmax"][:3]).all()
    assert np.isnan(out["ccs"][:4]).all()
    assert sf4(out["ccs"][4]) == 12.37
    assert sf4(out["ca_eq"][1] * 1e3) == 1.716
    assert np.isnan(k.ca_equilibrium(25.0, 1e-2, np.nan))
    assert np.isnan(k.ca_equilibrium(25.0, np.nan, activity=False))
    assert np.isnan(k.soil_pco2_brook(np.nan))
    assert np.isnan(k.activity_coefficient(np.nan, 25.0, 2, k.SIZE_CA))
    assert np.isnan(k.log10_k1(np.nan))
    assert np.isnan(k.ionic_strength(np.nan, 0, 0, 0, 0, 0, 0))


# ---- ionic strength ----
def test_ionic_strength_by_hand():
    ca, mg, na, kk, hco3, so4, cl = 1.2e-3, 0.4e-3, 0.3e-3, 0.05e-3, 2.8e-3, 0.2e-3, 0.25e-3
    want = 0.5 * (4 * ca + 4 * mg + na + kk + hco3 + 4 * so4 + cl)
    assert k.ionic_strength(ca, mg, na, kk, hco3, so4, cl) == pytest.approx(want, rel=1e-15)
    mmol = [1.2, 0.4, 0.3, 0.05, 2.8, 0.2, 0.25]
    assert k.ionic_strength(*mmol, units="mmol L-1") == pytest.approx(want, rel=1e-14)
    assert k.ionic_strength(*mmol, units="mmol/L") == pytest.approx(want, rel=1e-14)


def test_ionic_strength_of_pure_calcium_bicarbonate_is_three_ca():
    ca = np.array([[0.5e-3, 1.6e-3], [2.0e-3, 0.0]])
    assert np.allclose(k.ionic_strength(ca, 0, 0, 0, 2 * ca, 0, 0), 3 * ca, rtol=1e-15, atol=0)


def test_ionic_strength_broadcasts():
    got = k.ionic_strength(np.ones((2, 3)), 0, 0, 0, np.ones(3), 0, 0, units="mmol L-1")
    assert got.shape == (2, 3)
    assert np.all(got == pytest.approx(2.5e-3, rel=1e-15))


# ---- bad inputs ----
@pytest.mark.parametrize("ion, pos", [("Ca", 0), ("Mg", 1), ("Na", 2), ("K", 3), ("HCO3", 4),
                                      ("SO4", 5), ("Cl", 6)])
def test_ionic_strength_rejects_negative_concentration(ion, pos):
    args = [np.array([1.0, 0.5])] * 7
    args[pos] = np.array([1.0, -0.5])
    with pytest.raises(ValueError, match=rf"negative {ion} concentration"):
        k.ionic_strength(*args, units="mmol L-1")


@pytest.mark.parametrize("units", ["g L-1", "mg/L", "meq L-1", "", "mmol"])
def test_ionic_strength_rejects_unknown_units(units):
    with pytest.raises(ValueError, match="unknown concentration units"):
        k.ionic_strength(1, 1, 1, 1, 1, 1, 1, units=units)


@pytest.mark.parametrize("f", [1.5, -0.1, 30.0])
def test_ccs_rejects_fraction_outside_unit_interval(f):
    with pytest.raises(ValueError, match=r"carbonate_fraction must lie in \[0, 1\]"):
        k.ccs(np.array([1e5, 1e5]), np.array([0.5, f]))
    with pytest.raises(ValueError, match="carbonate_fraction"):
        k.karst_sink(15.0, 1200.0, 600.0, f)


def test_ca_equilibrium_rejects_negative_pco2_and_ionic_strength():
    with pytest.raises(ValueError, match="negative pCO₂"):
        k.ca_equilibrium(25.0, np.array([1e-2, -1e-3]))
    with pytest.raises(ValueError, match="negative ionic strength"):
        k.ca_equilibrium(25.0, 1e-2, np.array([0.005, -0.001]))


def test_non_convergence_is_reported():
    with pytest.raises(k.ConvergenceError, match=r"did not converge in 1 iterations for 2 of 2"):
        k.ca_equilibrium(np.array([10.0, 25.0]), 1e-2, max_iter=1)
    assert issubclass(k.ConvergenceError, RuntimeError)
