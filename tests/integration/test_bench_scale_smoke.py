"""The scale benchmark runs end to end and prints its table (benchmarks/bench_scale.py): all China
at 1° for two years, every product family, with the I/O floor. The 0.05° and 0.01° figures in the
README come from running the script itself."""
from __future__ import annotations

import re

import pytest

from _bench import benchmark_module

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.timeout(900)
def test_bench_scale_small(capsys, tmp_path):
    with benchmark_module("bench_scale") as bench:
        code = bench.main(["--grid", "1", "--years", "2000-2001", "--store", str(tmp_path / "s")])
    out = capsys.readouterr().out
    assert code == 0, out
    rows = dict(re.findall(r"^\| (\w+) \| ([\d.]+) \|", out, re.M))
    for stage in ("inputs", "nep", "karst", "sink", "trends_nep", "attribution_sink",
                  "services_flow", "scenarios"):
        assert float(rows[stage]) > 0, (stage, out)
    m = re.search(r"products: ([\d.]+) s against a floor of ([\d.]+) s = ([\d.]+)× the I/O floor",
                  out)
    assert m and float(m.group(2)) > 0 and float(m.group(3)) > 0, out
    assert re.search(r"peak worker memory \d+ MiB in \w+ \(limit 2048 MiB\)", out), out
