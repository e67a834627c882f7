"""The regridding benchmark runs end to end and prints its table (benchmarks/bench_regrid.py).

Fast: a 0.5° × 0.3° box at 0.01° from a ~0.2 M-pixel sinusoidal source, each run in its own process
as in the full benchmark. The full-size figures (all of China at 0.01° from a MODIS-like 463 m
source) come from running the script itself.
"""
from __future__ import annotations

import io
import re

import pytest
from _bench import benchmark_module

pytestmark = pytest.mark.integration

LABELS = ("read + decode", "GDAL average", "exact average", "exact mode")
# wall, CPU, Mcells/s, MB/s, peak, +MiB, polled, × read, × GDAL
ROW = (r"\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(\d+|n/a)\s+-?\d+\s+\d+\s+([\d.]+)"
       r"\s+([\d.]+)$")


@pytest.fixture(scope="module")
def bench():
    with benchmark_module("bench_regrid") as mod:
        yield mod


def test_bench_regrid_prints_throughput_and_memory(bench, tmp_path):
    buf = io.StringIO()
    result = bench.run(0.01, (100.0, 30.0, 100.5, 30.3), workdir=str(tmp_path), out=buf)
    out = buf.getvalue()
    assert "grid 0.01deg 100–100.5°E 30–30.3°N (30×50 = 1,500 cells)" in out, out
    assert re.search(r"source: MODIS-like sinusoidal NPP year, 463\.313 m pixels, \d+×\d+ = "
                     r"[\d,]+ int16 pixels", out), out
    for label in LABELS:
        m = re.search("^" + re.escape(label) + ROW, out, re.M)
        assert m, (label, out)
    assert re.search(r"^read \+ decode" + ROW, out, re.M).group(6) == "1.00"
    assert re.search(r"^GDAL average" + ROW, out, re.M).group(7) == "1.00"
    assert re.search(r"exact vs GDAL average: mean [\d.]+ vs [\d.]+ kg C m-2", out), out
    assert [r["label"] for r in result["rows"]] == list(LABELS)
    assert all(r["wall"] > 0 and r["cells"] == 1500 for r in result["rows"])
    assert not list(tmp_path.iterdir()), "the benchmark cleans up after itself"


def test_box_for_a_fraction_of_china(bench):
    assert bench.box_for(1.0, 0.01) == bench.CHINA
    w, s, e, n = bench.box_for(0.25, 0.01)
    assert (e - w) == pytest.approx(31.5) and (n - s) == pytest.approx(18.5)
    assert (w + e) / 2 == pytest.approx(104.5) and (s + n) / 2 == pytest.approx(35.5)
