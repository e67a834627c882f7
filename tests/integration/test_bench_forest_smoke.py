"""The forest-predictor benchmark runs end to end and prints its figures (benchmarks/bench_forest.py):
the demo forest at 1° for three years, 20,000 rows, one run of each predictor. The full figures
(2 M rows, 2000–2020) come from running the script itself."""
from __future__ import annotations

import re

import pytest

from _bench import benchmark_module

# a benchmark smoke test: `pytest -m slow`, like the others, to keep CI under 30 min
pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.timeout(120)
def test_bench_forest_small(capsys):
    with benchmark_module("bench_forest") as bench:
        code = bench.main(["--resolution", "1", "--years", "2000-2002", "--rows", "20000",
                           "--repeat", "1"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert re.search(r"\d+ trees \(chosen by 10-fold CV\)", out), out
    assert re.search(r"pooled out-of-fold R² by size: 10:[\d.-]+ .* 300:[\d.-]+", out), out
    rates = dict(re.findall(r"^(sklearn|compiled)\s+[\d.]+\s+([\d,]+)\s", out, re.M))
    assert set(rates) == {"sklearn", "compiled"} and all(int(r.replace(",", "")) > 0
                                                         for r in rates.values())
    assert re.search(r"ratio compiled / sklearn: [\d.]+×; outputs identical bit for bit", out)
