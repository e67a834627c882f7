"""Scenario kernels (SCIENCE.md §9): the ramp profile, projections, bounding sums, the target band —
hand-computed values, edge cases, and an independent loop implementation."""
import numpy as np
import pytest

from carbonsink.kernels import scenarios as sc

pytestmark = pytest.mark.unit

C2CO2 = 44.01 / 12.011


# ---- an independent implementation: the pointwise trapezoid integrated numerically per year ----
def _profile(tau, r, s, d):
    """The continuous effect at τ years after the start (plain Python)."""
    if tau < 0:
        return 0.0
    up = 1.0 if r == 0 else min(tau / r, 1.0)
    if s == np.inf or tau < s:
        down = 1.0
    elif d == 0:
        down = 0.0
    else:
        down = max(0.0, 1.0 - (tau - s) / d)
    return min(up, down)


def _loop_ramp(years, start, r, s, d, steps=4000):
    out = []
    for y in years:
        acc = 0.0
        for k in range(steps):                      # midpoint rule over [y, y+1)
            acc += _profile(y + (k + 0.5) / steps - start, r, s, d)
        out.append(acc / steps)
    return np.array(out)


def _loop_project(years, values, areas, starts, ramps, sats, decls, kinds):
    out = np.zeros((len(years), len(values), 3))
    for j in range(len(values)):
        f = _loop_ramp(years, starts[j], ramps[j], sats[j], decls[j], steps=2000)
        for i in range(len(years)):
            for c in range(3):
                if kinds[j] == "rate":
                    out[i, j, c] = values[j][c] * areas[j] * C2CO2 * 1e-9 * f[i]
                else:
                    out[i, j, c] = values[j][c] * areas[j] * f[i]
    return out


# ---- ramp ----
def test_ramp_hand_values_roll_out_then_saturation():
    years = np.arange(2020, 2050)
    f = sc.ramp(years, 2020, 5, 20, 5)
    expected = np.r_[[0.1, 0.3, 0.5, 0.7, 0.9], np.ones(15), [0.9, 0.7, 0.5, 0.3, 0.1], np.zeros(5)]
    np.testing.assert_allclose(f, expected, atol=1e-12)


def test_ramp_zero_is_full_effect_in_the_start_year_and_ipcc_twenty_years():
    years = np.arange(2015, 2060)
    f = sc.ramp(years, 2025, 0, 20, 0)
    assert np.all(f[years < 2025] == 0)
    assert np.all(f[(years >= 2025) & (years < 2045)] == 1)
    assert np.all(f[years >= 2045] == 0)
    assert f.sum() == 20                             # exactly the IPCC default D = 20 years


def test_ramp_no_saturation_stays_at_one():
    years = np.arange(2020, 2061)
    f = sc.ramp(years, 2030, 10, np.inf)
    assert f[years == 2029][0] == 0
    np.testing.assert_allclose(f[years == 2030], 0.05)          # mean of τ/10 over [0, 1)
    assert np.all(f[years >= 2040] == 1)
    np.testing.assert_allclose(sc.ramp(years, 2030, 10, None), f)
    np.testing.assert_allclose(sc.ramp(years, 2030, 10, np.nan), f)


def test_ramp_start_after_the_last_year_is_zero():
    assert np.all(sc.ramp(np.arange(2020, 2061), 2070, 5, 20, 5) == 0)


def test_ramp_area_is_s_minus_half_ramp_plus_half_decline():
    years = np.arange(1990, 2200)
    for r, s, d in [(0, 20, 0), (5, 20, 5), (3, 7, 11), (10, 10, 0), (0, 0, 4), (2.5, 30, 0.5)]:
        assert sc.ramp(years, 2000, r, s, d).sum() == pytest.approx(s - r / 2 + d / 2, abs=1e-9)


@pytest.mark.parametrize("start, r, s, d", [
    (2020, 0, 20, 0), (2020, 5, 20, 5), (2023, 7, 7, 0), (2025, 3, 12, 9), (2021.5, 2.5, 9.25, 4),
    (2030, 10, np.inf, 0), (2019, 0, 0, 6), (2060, 4, 8, 2), (1990, 5, 20, 5),
])
def test_ramp_matches_the_numerical_loop(start, r, s, d):
    years = np.arange(2015, 2065)
    np.testing.assert_allclose(sc.ramp(years, start, r, s, d), _loop_ramp(years, start, r, s, d),
                               atol=2e-6)


def test_ramp_vectorised_over_measures_equals_one_by_one():
    years = np.arange(2020, 2061)
    starts, rs, ss, ds = [2020, 2025, 2031], [0, 5, 10], [20, np.inf, 40], [0, 0, 30]
    f = sc.ramp(years, starts, rs, ss, ds)
    assert f.shape == (41, 3)
    for j in range(3):
        np.testing.assert_array_equal(f[:, j], sc.ramp(years, starts[j], rs[j], ss[j], ds[j]))


@pytest.mark.parametrize("kw", [{"ramp_years": -1}, {"saturation_years": -1},
                                {"decline_years": -2}, {"ramp_years": 10, "saturation_years": 5},
                                {"ramp_years": np.inf}])
def test_ramp_rejects_bad_durations(kw):
    args = {"ramp_years": 5, "saturation_years": 20, "decline_years": 5}
    args.update(kw)
    with pytest.raises(ValueError):
        sc.ramp(np.arange(2020, 2030), 2020, **args)


# ---- project ----
def _two_measures():
    years = np.arange(2020, 2061)
    values = np.array([[0.2, 0.3, 0.4],              # t C ha-1 a-1 on 1e7 ha, from 2020, at once
                       [0.14, 0.155, 0.17]])         # Gt CO2 a-1, half of it, 2025, 5/20/5
    areas = np.array([1e7, 0.5])
    kw = {"starts": [2020, 2025], "ramps": [0, 5], "saturations": [np.inf, 20], "declines": [0, 5],
              "kind": np.array(["rate", "potential"], dtype=object)}
    return years, values, areas, kw


def test_project_two_measures_hand_values():
    years, values, areas, kw = _two_measures()
    p = sc.project(years, values, areas, **kw)
    assert p.shape == (41, 2, 3)
    a = 0.3 * 1e7 * C2CO2 * 1e-9                         # 0.010992 Gt CO2 a-1
    assert a == pytest.approx(0.01099242, rel=1e-6)
    np.testing.assert_allclose(p[:, 0, 1], a)            # constant from 2020 on
    b = p[:, 1, 1]
    assert b[years == 2024][0] == 0
    assert b[years == 2027][0] == pytest.approx(0.5 * 0.155 * 0.5)        # (2·2+1)/10 of it
    np.testing.assert_allclose(b[(years >= 2030) & (years < 2045)], 0.0775)
    assert b[years == 2046][0] == pytest.approx(0.0775 * 0.7)
    assert np.all(b[years >= 2050] == 0)
    np.testing.assert_allclose(p[years == 2035, :, :][0],
                               [[0.2 * 1e7 * C2CO2 * 1e-9, a, 0.4 * 1e7 * C2CO2 * 1e-9],
                                [0.07, 0.0775, 0.085]])


def test_project_of_two_is_the_sum_of_each_alone():
    years, values, areas, kw = _two_measures()
    both = sc.project(years, values, areas, **kw).sum(axis=1)
    one = sc.project(years, values[:1], areas[:1], starts=[2020], ramps=[0], saturations=[np.inf],
                     kind="rate")[:, 0]
    two = sc.project(years, values[1:], areas[1:], starts=[2025], ramps=[5], saturations=[20],
                     declines=[5], kind="potential")[:, 0]
    np.testing.assert_array_equal(both, one + two)


def test_project_matches_the_loop_implementation():
    rng = np.random.default_rng(2060)
    years = np.arange(2018, 2062)
    m = 6
    lo = rng.uniform(0, 1, m)
    values = np.stack([lo, lo + rng.uniform(0, 0.5, m), lo + rng.uniform(0.5, 1, m)], axis=1)
    kinds = np.array(["rate", "potential"] * 3, dtype=object)
    areas = np.where(kinds == "rate", rng.uniform(1e5, 1e7, m), rng.uniform(0, 1, m))
    starts = rng.integers(2015, 2065, m).astype(float)
    ramps = rng.integers(0, 10, m).astype(float)
    sats = ramps + rng.integers(0, 30, m)
    sats[2] = np.inf
    decls = rng.integers(0, 10, m).astype(float)
    got = sc.project(years, values, areas, starts, ramps, sats, decls, kind=kinds)
    want = _loop_project(years, values, areas, starts, ramps, sats, decls, kinds)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-12)


def test_project_keeps_low_central_high_ordered():
    years, values, areas, kw = _two_measures()
    p = sc.project(years, values, areas, **kw)
    assert np.all(p[..., 0] <= p[..., 1]) and np.all(p[..., 1] <= p[..., 2])


def test_project_potentials_default_to_full_share():
    p = sc.project([2030], [[0.27, 0.285, 0.30]], None, [2020], [0], [np.inf], kind="potential")
    np.testing.assert_allclose(p[0, 0], [0.27, 0.285, 0.30])


@pytest.mark.parametrize("bad", [
    {"values": [[0.3, 0.2, 0.4]]},                  # low > central
    {"values": [[-0.1, 0.2, 0.4]]},                 # negative
    {"values": [0.1, 0.2, 0.3]},                    # not (m, 3)
    {"areas": [-1.0]},
    {"kind": "hectares"},
    {"kind": "potential", "areas": [1.5]},             # share above 1
    {"areas": None},                                # rate rows need areas
])
def test_project_rejects_bad_inputs(bad):
    args = {"values": [[0.1, 0.2, 0.3]], "areas": [1e6], "kind": "rate"}
    args.update(bad)
    with pytest.raises(ValueError):
        sc.project(np.arange(2020, 2030), args["values"], args["areas"], [2020], [0], [np.inf],
                   kind=args["kind"])


# ---- combine ----
def test_combine_is_the_bounding_sum_column_by_column():
    years, values, areas, kw = _two_measures()
    p = sc.project(years, values, areas, **kw)
    tot = sc.combine([1.0, 1.15, 1.3], p)
    assert tot.shape == (41, 3)
    np.testing.assert_allclose(tot, np.array([1.0, 1.15, 1.3]) + p.sum(axis=1))
    i = int(np.flatnonzero(years == 2035)[0])
    assert tot[i, 0] == pytest.approx(1.0 + 0.2e-2 * C2CO2 + 0.07)          # low with low
    assert tot[i, 2] == pytest.approx(1.3 + 0.4e-2 * C2CO2 + 0.085)         # high with high
    np.testing.assert_allclose(sc.combine(1.1, p), 1.1 + p.sum(axis=1))
    np.testing.assert_allclose(sc.combine(np.tile([1.0, 1.1, 1.2], (41, 1)), p.sum(axis=1)),
                               [1.0, 1.1, 1.2] + p.sum(axis=1))


def test_combine_rejects_bad_shapes_and_order():
    with pytest.raises(ValueError):
        sc.combine([1.0, 1.1], np.zeros((3, 2, 3)))
    with pytest.raises(ValueError):
        sc.combine([1.3, 1.1, 1.0], np.zeros((3, 2, 3)))
    with pytest.raises(ValueError):
        sc.combine(1.0, np.zeros((3, 2)))


# ---- target_met ----
def test_target_met_first_years_and_gaps():
    years = np.arange(2040, 2046)
    totals = np.array([[1.5, 1.8, 2.1],
                       [1.7, 2.0, 2.3],
                       [1.9, 2.2, 2.6],
                       [2.0, 2.6, 2.9],
                       [1.8, 1.9, 2.4],              # a saturating measure drops out
                       [1.9, 2.1, 2.5]])
    r = sc.target_met(years, totals, 2.0, 2.5, by_year=2041)
    assert r["central_reaches_lower"] == 2041
    assert r["low_reaches_lower"] == 2043
    assert r["high_reaches_lower"] == 2040
    assert r["central_reaches_upper"] == 2043
    assert r["central_holds_lower_from"] == 2045
    np.testing.assert_allclose(r["gap_to_lower"][0], [0.5, 0.2, -0.1])
    np.testing.assert_allclose(r["gap_to_upper"][3], [0.5, -0.1, -0.4])
    np.testing.assert_array_equal(r["central_in_band"], [False, True, True, False, False, True])
    assert r["met_by"] == {"low": False, "central": True, "high": True}


def test_target_met_none_when_never_reached():
    years = np.arange(2020, 2061)
    totals = np.tile([1.0, 1.1, 1.2], (41, 1))
    r = sc.target_met(years, totals, 2.0, 2.5)
    assert r["central_reaches_lower"] is None and r["low_reaches_lower"] is None
    assert r["high_reaches_lower"] is None and r["central_reaches_upper"] is None
    assert r["central_holds_lower_from"] is None
    np.testing.assert_allclose(r["gap_to_lower"][:, 1], 0.9)
    with pytest.raises(ValueError):
        sc.target_met(years, totals, 2.5, 2.0)
    with pytest.raises(ValueError):
        sc.target_met(years, totals[:5], 2.0, 2.5)


def test_seed_arithmetic_reaches_the_band_with_sustained_potentials():
    """Seed 002: 1.0–1.3 + the quantified routes at full implementation, kept up (no saturation),
    lands on 2.0–2.5 Gt CO2 a-1 (low 2.299, high 2.799)."""
    years = np.arange(2020, 2061)
    pots = np.array([[0.14, 0.155, 0.17], [0.06, 0.07, 0.08], [0.03, 0.055, 0.08],
                     [0.27, 0.285, 0.30], [0.32, 0.32, 0.32], [0.029, 0.029, 0.029],
                     [0.07, 0.08, 0.09], [0.22, 0.23, 0.24], [0.16, 0.175, 0.19]])
    m = len(pots)
    p = sc.project(years, pots, np.ones(m), np.full(m, 2025), np.full(m, 5), np.full(m, np.inf),
                   kind="potential")
    tot = sc.combine([1.0, 1.15, 1.3], p)
    np.testing.assert_allclose(tot[-1], [2.299, 2.549, 2.799])
    r = sc.target_met(years, tot, 2.0, 2.5, by_year=2050)
    assert r["met_by"] == {"low": True, "central": True, "high": True}
    assert r["central_reaches_lower"] == 2028
