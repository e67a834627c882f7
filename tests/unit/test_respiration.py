"""Rh kernels pinned to SCIENCE.md §1 reference values (4 s.f.), plus unit handling."""
import numpy as np
import pytest

from carbonsink.kernels import respiration as k
from carbonsink.units import UnitError

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("t, p_cm, soc, rs_d", [
    (20.0, 10.0, 5.0, 1.866), (0.0, 2.0, 2.0, 0.5469), (25.0, 20.0, 10.0, 2.661)])
def test_soil_tps_rs_reference(t, p_cm, soc, rs_d):
    assert k.rs_daily_soil_tps(t, p_cm, soc) == pytest.approx(rs_d, rel=5e-4)


def test_soil_tps_rh_daily_reference():
    assert k.rh_daily_from_rs(k.rs_daily_soil_tps(20, 10, 5)) == pytest.approx(1.010, rel=5e-4)


@pytest.mark.parametrize("rs, rh", [(500.0, 316.3), (1000.0, 524.6)])
def test_bond_lamberty_reference(rs, rh):
    assert k.rh_bond_lamberty(rs) == pytest.approx(rh, rel=5e-4)


@pytest.mark.parametrize("t, r, rh", [(20, 100, 29.73), (0, 10, 7.433), (-10, 0, 1.232),
                                      (25, 250, 43.51)])
def test_pei_reference(t, r, rh):
    assert k.rh_monthly_pei(t, r) == pytest.approx(rh, rel=5e-4)


def test_days_in_month_leap_years():
    d = k.days_in_month([1900, 2000, 2001, 2004])
    assert d.reshape(4, 12)[:, 1].tolist() == [28, 29, 28, 29]
    assert d.reshape(4, 12).sum(1).tolist() == [365, 366, 365, 366]


def _series(nyears=2, npix=3, seed=1):
    rng = np.random.default_rng(seed)
    tas = rng.uniform(-15, 30, (npix, 12 * nyears))
    pr_mm = rng.uniform(0, 400, (npix, 12 * nyears))
    soc = rng.uniform(0.5, 20, npix)
    return tas, pr_mm, soc


def test_rh_annual_soil_tps_equals_hand_sum():
    tas, pr_mm, soc = _series()
    days = k.days_in_month([2000, 2001])
    got = k.rh_annual(tas, pr_mm, soc, days, pr_units="mm month-1", soc_units="kg m-2",
                      out_dtype="f8")
    # Σ months Rh_d·days with P converted to cm (SCIENCE.md §1)
    rh_d = k.rh_daily_from_rs(k.rs_daily_soil_tps(tas, pr_mm / 10, soc[:, None]))
    want = (rh_d * days).reshape(3, 2, 12).sum(-1)
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_rh_annual_pei_equals_hand_sum():
    tas, pr_mm, _ = _series()
    got = k.rh_annual(tas, pr_mm, model="pei", pr_units="mm month-1", out_dtype="f8")
    want = k.rh_monthly_pei(tas, pr_mm).reshape(3, 2, 12).sum(-1)
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_rh_annual_bond_lamberty_is_annual_power_law_of_rs():
    tas, pr_mm, soc = _series(nyears=1)
    days = k.days_in_month([2001])
    got = k.rh_annual(tas, pr_mm, soc, days, model="bond_lamberty", pr_units="mm",
                      soc_units="kg m-2", out_dtype="f8")
    rs = (k.rs_daily_soil_tps(tas, pr_mm / 10, soc[:, None]) * days).sum(-1, keepdims=True)
    np.testing.assert_allclose(got, np.exp(1.22 + 0.73 * np.log(rs)), rtol=1e-12)


def test_declared_units_are_converted_not_guessed():
    tas, pr_mm, soc = _series()
    days = k.days_in_month([2000, 2001])
    base = k.rh_annual(tas, pr_mm, soc, days, pr_units="mm month-1", soc_units="kg m-2")
    # the same precipitation in cm and metres, SOC in g m-2 and t/ha, temperature in K
    same = [
        k.rh_annual(tas, pr_mm / 10, soc, days, pr_units="cm month-1", soc_units="kg m-2"),
        k.rh_annual(tas, pr_mm / 1000, soc, days, pr_units="m", soc_units="kg m-2"),
        k.rh_annual(tas, pr_mm, soc * 1000, days, pr_units="mm", soc_units="g m-2"),
        k.rh_annual(tas, pr_mm, soc * 10, days, pr_units="mm", soc_units="t C ha-1"),
        k.rh_annual(tas + 273.15, pr_mm, soc, days, tas_units="K", pr_units="mm",
                    soc_units="kg m-2"),
    ]
    for s in same:
        np.testing.assert_allclose(s, base, rtol=1e-5)
    # mm passed as if it were cm: both saturating fractions → 1, a large silent error
    wrong = k.rh_annual(tas, pr_mm, soc, days, pr_units="cm month-1", soc_units="kg m-2")
    assert np.nanmax(np.abs(wrong - base) / base) > 0.05


@pytest.mark.parametrize("kwargs, exc", [
    (dict(pr_units=None, soc_units="kg m-2"), UnitError),
    (dict(pr_units="furlongs", soc_units="kg m-2"), UnitError),
    (dict(pr_units="mm", soc_units=None), UnitError),
    (dict(pr_units="degC", soc_units="kg m-2"), UnitError),  # a temperature is not a depth
    (dict(pr_units="mm", soc_units="kg m-2", model="nope"), ValueError),
])
def test_bad_units_or_model_are_rejected(kwargs, exc):
    tas, pr_mm, soc = _series()
    with pytest.raises(exc):
        k.rh_annual(tas, pr_mm, soc, k.days_in_month([2000, 2001]), **kwargs)


def test_shape_checks():
    tas, pr_mm, soc = _series()
    with pytest.raises(ValueError, match="whole number of years"):
        k.rh_annual(tas[:, :13], pr_mm[:, :13], soc, k.days_in_month([2000, 2001])[:13],
                    pr_units="mm", soc_units="kg m-2")
    with pytest.raises(ValueError, match="needs the days"):
        k.rh_annual(tas, pr_mm, soc, None, pr_units="mm", soc_units="kg m-2")
    with pytest.raises(ValueError, match="soil organic carbon"):
        k.rh_annual(tas, pr_mm, None, k.days_in_month([2000, 2001]), pr_units="mm")


def test_nep_sign():
    assert k.nep(500.0, 300.0) == 200.0  # positive = sink
