"""The trend/attribution throughput benchmark runs end to end and prints its figures
(benchmarks/bench_trends.py).

The fast test starts a real 2-process LocalCluster (127.0.0.1) at 1° for 6 years (the
attribution's default min_valid is k + 3 = 6 years, so fewer would leave nothing to compare) with
the speed targets off: at 2,331 cells every method takes milliseconds and the ratios measure
overheads. The slow one (``pytest -m slow``) runs 0.25° for 21 years. The full-size figures (0.05°,
2000–2020) come from running the script itself.
"""
from __future__ import annotations

import math
import re
import time

import numpy as np
import pytest
from _bench import benchmark_module

# the benchmark script end to end at 1° (about 20 s): `pytest -m slow`, to keep CI under 30 min
pytestmark = [pytest.mark.integration, pytest.mark.slow]


TREND_ROWS = ("carbonsink compute_trends", "carbonsink ols_trend kernel",
              "xarray polyfit", "xarray polyfit skipna=False",
              "scipy linregress (vectorize) *")
ATTR_ROWS = ("carbonsink compute_attribution", "per-pixel lstsq loop (vectorize) *")
ROW = re.compile(r"^(?P<label>.+?)\s{2,}(?P<outputs>\S.*?)\s+(?P<sec>[\d.]+)\s+(?P<grid>[\d.]+)\s+"
                 r"(?P<rate>[\d,]+)\s+(?P<xp>[\d,.]+×|—)\s+(?P<xk>[\d,.]+×|—)\s+(?P<peak>\d+)\s+"
                 r"(?P<dpeak>-?\d+)\s+(?P<out>[\d.]+)\s+(?P<work>[\d.]+)$")


@pytest.fixture(scope="module")
def bench():
    with benchmark_module("bench_trends") as mod:
        yield mod


def _rows(out: str) -> dict[str, dict]:
    rows = {}
    for line in out.splitlines():
        m = ROW.match(line)
        if m:
            rows[m.group("label").strip()] = m.groupdict()
    return rows


def _ratio(text: str) -> float:
    return float(text.rstrip("×").replace(",", "")) if text != "—" else math.nan


def _check_report(out: str, *, grid: str, nyears: int) -> dict[str, dict]:
    assert f"grid {grid}" in out
    assert f"({nyears}); " in out
    assert re.search(r"y: synthetic NPP float32 \(year=\d+, lat=\d+, lon=\d+\) chunks = [\d.]+ MiB",
                     out)
    rows = _rows(out)
    for label in TREND_ROWS + ATTR_ROWS:
        assert label in rows, (label, out)
        r = rows[label]
        assert float(r["sec"]) > 0 and int(r["rate"].replace(",", "")) > 0, (label, r)
        assert int(r["peak"]) > 0, (label, r)
    # the carbonsink rows are the 1.0× reference of their groups
    assert _ratio(rows["carbonsink compute_trends"]["xp"]) == 1.0
    assert _ratio(rows["carbonsink ols_trend kernel"]["xk"]) == 1.0
    assert _ratio(rows["carbonsink compute_attribution"]["xp"]) == 1.0
    # agreement: every method's slope (and p) with linregress, the attribution with the lstsq loop
    checks = re.findall(r"^  (ok  |FAIL) (.+?)\s{2,}(max rel (\S+) over ([\d,]+) pixels|all NaN)",
                        out, re.M)
    names = [c[1] for c in checks]
    for label in ("carbonsink compute_trends", "carbonsink ols_trend kernel", "xarray polyfit",
                  "xarray polyfit skipna=False"):
        assert f"slope {label} vs linregress" in names
    assert "p-value carbonsink compute_trends vs linregress" in names
    for f in ("beta_pr", "beta_tas", "beta_rsds", "r_pr", "r_tas", "r_rsds", "C_ha"):
        assert f"{f} compute_attribution vs lstsq loop" in names
    for status, name, _, rel, n in checks:
        assert status == "ok  ", (name, out)
        assert float(rel) <= 1e-4 and int(n.replace(",", "")) > 0, (name, rel, n)
    for label in ("carbonsink compute_trends", "carbonsink ols_trend kernel"):
        for ref in ("scipy linregress", "xarray polyfit"):
            assert re.search(rf"^(PASS|FAIL|skip): {label} vs {ref}", out, re.M), (label, ref)
    # the side-by-side table: full product and kernel only, against both references
    assert "speed vs the references (targets ≥ 100× linregress and ≥ 3× polyfit" in out
    for what in ("full product: compute_trends, 9 outputs", "kernel only: ols_trend"):
        assert re.search(rf"^  {what}.*?\s[\d,.]+×\s+[\d,.]+×\s+(met|NOT met)", out, re.M), what
    assert "info: carbonsink compute_attribution vs per-pixel lstsq loop:" in out
    assert re.search(r"^memory: largest working set \d+ MiB \(.+: Δpeak -?\d+ MiB − outputs \d+ "
                     r"MiB per worker\) = [\d.]+× one [\d.]+ MiB chunk", out, re.M)
    return rows


@pytest.mark.timeout(120)
def test_bench_trends_1deg_six_years(bench, capsys):
    t0 = time.perf_counter()
    code = bench.main(["--resolution", "1", "--years", "2000-2005", "--no-thresholds",
                       "--repeat", "1"])
    elapsed = time.perf_counter() - t0
    out = capsys.readouterr().out
    assert code == 0, out
    _check_report(out, grid="1deg", nyears=6)
    assert "RESULT: PASS (speed thresholds not applied" in out
    assert out.count("skip: ") == 4            # both rows are gated (default), not applied
    print(f"trend benchmark at 1° for 6 years: {elapsed:.1f} s")  # ~12 s on 2 idle cores


def _result(bench, *, ols=1.0, trends=10.0, polyfit=20.0, linregress=500.0, checks_ok=True,
            gate="kernel", thresholds=True):
    """A BenchResult from figures (seconds for 1,000 land pixels × 10 years), no cluster."""
    M = bench.Method
    full = dict(pixels=1000, cells=2000)
    methods = [M("cs_trends", "trends", "carbonsink compute_trends", "", seconds=trends, **full),
               M("cs_ols", "trends", "carbonsink ols_trend kernel", "", seconds=ols, **full),
               M("polyfit", "trends", "xarray polyfit", "", seconds=polyfit, **full),
               M("linregress", "trends", "scipy linregress (vectorize)", "", pixels=10, cells=20,
                 seconds=linregress / 100, subset=True),
               M("cs_attr", "attribution", "carbonsink compute_attribution", "", seconds=5.0,
                 **full),
               M("attr_ref", "attribution", "per-pixel lstsq loop (vectorize)", "", pixels=10,
                 cells=20, seconds=1.0, subset=True)]
    checks = [bench.Check("slope", 1e-7 if checks_ok else 1e-2, 10, 0)]
    return bench.BenchResult("1deg", (37, 63), (2000, 2009), 2, "2GB", 1000, {}, 1, 1, 1,
                             methods=methods, checks=checks, gate=gate, thresholds=thresholds)


def test_exit_code_and_ratios(bench):
    """Ratios, extrapolation and the exit status from figures (no run)."""
    ok = _result(bench)
    assert ok.ratio("cs_ols", "linregress") == pytest.approx(500.0)
    assert ok.ratio("cs_ols", "polyfit") == pytest.approx(20.0)
    # the subset row's whole-grid seconds are extrapolated at its rate
    assert ok.method("linregress").full_seconds(1000, 10) == pytest.approx(500.0)
    assert ok.exit_code == 0
    assert _result(bench, linregress=50.0).exit_code == 1          # 50× < 100×
    assert _result(bench, polyfit=2.0).exit_code == 1              # 2× < 3×
    assert _result(bench, polyfit=2.0, thresholds=False).exit_code == 0
    assert _result(bench, checks_ok=False, thresholds=False).exit_code == 1
    # the product is 2× polyfit: reported only, unless it is gated
    assert _result(bench).ratio("cs_trends", "polyfit") == pytest.approx(2.0)
    assert _result(bench, gate="product").exit_code == 1
    assert _result(bench, gate="both").exit_code == 1
    # the table puts both carbonsink rows against both references; gated rows say met / NOT met
    table = "\n".join(bench.ratio_table(_result(bench)))
    assert re.search(r"full product: compute_trends, 9 outputs\s+50\.0×\s+2\.0×\s+NOT met \(info\)",
                     table), table
    assert re.search(r"kernel only: ols_trend, slope/intercept/p\s+500\.0×\s+20\.0×\s+met$",
                     table, re.M), table
    # the full product is gated too unless asked otherwise
    assert bench.parse_args([]).gate == "both"
    assert bench.BenchResult("1deg", (37, 63), (2000, 2009), 2, "2GB", 1000, {}, 1, 1, 1).gate == \
        "both"
    report = bench.format_report(_result(bench))
    assert "PASS: carbonsink ols_trend kernel vs scipy linregress (vectorize): 500.0×" in report
    assert "info: carbonsink compute_trends vs xarray polyfit: 2.0×" in report
    assert report.rstrip().endswith("RESULT: PASS")


def test_choose_window_whole_chunks_near_grid_land_fraction(bench):
    land = np.zeros((40, 60), bool)
    land[:20, :30] = True                 # a quarter of the grid; chunks 10×10 → 4×6 chunks
    chunks = ((10,) * 4, (10,) * 6)
    la, lo, n = bench.choose_window(land, chunks, 2 / 24)
    assert n == 2
    assert (la.start % 10, lo.start % 10, la.stop - la.start, lo.stop - lo.start) == (0, 0, 10, 20)
    # the window straddling the land edge has land fraction 0.5, nearest the grid's 0.25
    assert land[la, lo].mean() == pytest.approx(0.5)
    la, lo, n = bench.choose_window(land, chunks, 1.0)
    assert (la, lo, n) == (slice(0, 40), slice(0, 60), 24)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_bench_trends_quarter_degree(bench, capsys):
    code = bench.main(["--resolution", "0.25", "--years", "2000-2020", "--no-thresholds"])
    out = capsys.readouterr().out
    assert code == 0, out
    rows = _check_report(out, grid="0.25deg", nyears=21)
    # at 37k cells the timings are still overhead-heavy, so only the orders of magnitude are held:
    # the kernel well ahead of per-pixel linregress and of the NaN-aware polyfit
    assert _ratio(rows["scipy linregress (vectorize) *"]["xk"]) > 10
    assert _ratio(rows["xarray polyfit"]["xk"]) > 1
