"""The ingest benchmark runs end to end and prints its table (benchmarks/bench_ingest.py).

Fast: 1° grid, 2 years, 1° sources. The full-size figures (0.05°, 2000–2020, CMFD-like 0.1° sources)
come from running the script itself.
"""
from __future__ import annotations

import io
import re

import pytest
from _bench import benchmark_module

pytestmark = pytest.mark.integration



@pytest.fixture(scope="module")
def bench():
    with benchmark_module("bench_ingest") as mod:
        yield mod


def test_bench_ingest_prints_throughput_and_memory(bench, tmp_path):
    buf = io.StringIO()
    result = bench.run("1", (2000, 2001), 1.0, str(tmp_path), out=buf)
    out = buf.getvalue()
    assert "grid 1deg (37×63), years 2000–2001 (2)" in out
    row = r"\s+[\d.]+\s+\d+\s+[\d.]+\s+(\d+|n/a)\s+\d+\s+\d+$"
    assert re.search(r"^ingest\s+created\s+2000–2001" + row, out, re.M), out
    assert re.search(r"^re-run\s+unchanged\s+—" + row, out, re.M), out
    assert re.search(r"^append\s+appended\s+2002–2002" + row, out, re.M), out
    assert re.search(r"full ingest: [\d.]+ MB/s of sources \([\d.]+ MB/s of monthly climate\), "
                     r"peak [\d,]+ MiB \(\+[\d,]+ MiB over", out), out
    actions = [r.action for _, r, _, _ in result["rows"]]
    assert actions == ["created", "unchanged", "appended"]
    assert not list(tmp_path.iterdir()), "the benchmark cleans up after itself"
