"""The NEP memory benchmark runs end to end and prints its figures (benchmarks/bench_nep_memory.py).

Both tests start a real 2-process LocalCluster (127.0.0.1); the fast one runs at 1° for 2 years, the
slow one (``pytest -m slow``) at 0.25° for 3 years. The full-size figures (0.05°, 2000–2020) come
from running the script itself.
"""
from __future__ import annotations

import re
import time

import pytest

from carbonsink.io.store import Store
from _bench import benchmark_module

pytestmark = pytest.mark.integration



@pytest.fixture(scope="module")
def bench():
    with benchmark_module("bench_nep_memory") as mod:
        yield mod


def _check_report(out: str, *, grid: str, nyears: int):
    assert f"grid {grid}" in out and f"({nyears}), Rh model" in out
    assert "chunks: inputs tas/pr (time=" in out
    assert re.search(r"full-resolution monthly cube tas .* = [\d,.]+ MiB", out)
    rows, stage = {}, None
    for line in out.splitlines():
        m = re.match(r"^(inputs|nep)?\s+(?:[\d.]+\s+[\d,]+\s+)?(worker-\d|client)\s+\d+\s+\d+\s+"
                     r"(\d+)\s+\d+\s+(?:\d+|—)\s+[\d.]+\s+[\d.]+\+[\d.]+\s+(.*)$", line)
        if m:
            stage = m.group(1) or stage  # continuation rows belong to the stage above
            rows[(stage, m.group(2))] = (int(m.group(3)), m.group(4))
    # two workers and the client, in both stages, each with a peak RSS
    for stage in ("inputs", "nep"):
        for proc in ("worker-0", "worker-1", "client"):
            peak, status = rows[(stage, proc)]
            assert peak > 0
            if proc != "client":
                assert status == "PASS", (stage, proc, status)
    m = re.search(r"^nep\s+([\d.]+)\s+([\d,]+)\s", out, re.M)
    assert m and float(m.group(1)) > 0 and int(m.group(2).replace(",", "")) > 0
    assert re.search(r"check: published nep holds ([\d,]+) values = land pixels × years \1$", out,
                     re.M)
    assert "RESULT: PASS" in out


@pytest.mark.timeout(90)
def test_benchmark_1deg_two_years(bench, tmp_path, capsys):
    t0 = time.perf_counter()
    code = bench.main(["--resolution", "1", "--years", "2000-2001", "--store", str(tmp_path)])
    elapsed = time.perf_counter() - t0
    out = capsys.readouterr().out
    assert code == 0, out
    _check_report(out, grid="1deg", nyears=2)
    # the store given with --store is kept and holds both published versions
    assert Store(str(tmp_path)).latest("inputs", "synthetic") is not None
    assert Store(str(tmp_path)).latest("products", "nep") is not None
    print(f"benchmark at 1° for 2 years: {elapsed:.1f} s")  # ~15 s on 2 idle cores


def test_exit_code_fails_over_the_limit(bench):
    """A worker over the limit in the NEP stage means exit status 1 (checked on figures, no run)."""
    P = bench.ProcPeak
    ok = bench.Stage("nep", 1.0, {"worker-0": P("worker-0", 1, 0, 500 * bench.MIB, None)})
    over = bench.Stage("nep", 1.0, {"worker-0": P("worker-0", 1, 0, 0, 1100 * bench.MIB)})
    died = bench.Stage("nep", 1.0, {"worker-0": P("worker-0", 1, died=True)})
    client = bench.Stage("nep", 1.0, {"client": P("client", 2, 0, 5000 * bench.MIB, None)})
    failed = bench.Stage("nep", 0.0, {}, "not run: publishing the inputs failed")

    def result(stage):
        return bench.BenchResult("1deg", (37, 63), (2000, 2001), "soil_tps", 2, "2GB", 1024.0,
                                 965, 1, {}, 1, 1, stages=[stage])
    assert result(ok).exit_code == 0
    assert result(over).exit_code == 1
    assert result(died).exit_code == 1
    assert result(client).exit_code == 0   # the client is reported, the limit is per worker
    assert result(failed).exit_code == 1
    report = bench.format_report(result(over))
    assert re.search(r"^nep .*worker-0 .* 1100 .* FAIL$", report, re.M)
    assert "RESULT: FAIL — worker-0 peak 1100 MiB > 1024 MiB" in report
    assert "RESULT: FAIL — stage failed: not run" in bench.format_report(result(failed))


@pytest.mark.slow
def test_benchmark_quarter_degree_three_years(bench, capsys):
    code = bench.main(["--resolution", "0.25", "--years", "2000-2002"])
    out = capsys.readouterr().out
    assert code == 0, out
    _check_report(out, grid="0.25deg", nyears=3)
