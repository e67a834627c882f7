"""The ionic-strength benchmark runs end to end and prints its figures (benchmarks/
bench_ionic_strength.py).

Both runs start a real 2-process LocalCluster (127.0.0.1); the fast one at 1° for 3 years, the slow
one (``pytest -m slow``) at 0.25°. The full-size figures (0.05°, 2000–2020) come from running the
script itself.
"""
from __future__ import annotations

import re
import time

import pytest

from carbonsink.io.store import Store
from _bench import benchmark_module

# the benchmark script end to end at 1° (about 20 s): `pytest -m slow`, to keep CI under 30 min
pytestmark = [pytest.mark.integration, pytest.mark.slow]

STAGES = ("inputs", "predictors", "train", "predict")
ROW = re.compile(r"^(inputs|predictors|train|predict)?\s+(?:([\d.]+)\s+([\d,]+|—)\s+)?"
                 r"(worker-\d|client)\s+\d+\s+(\d+)\s+(\d+)\s+(\d+)\s+([+-]\d+)\s+[\d.,]+\s+"
                 r"[\d.]+\+[\d.]+(?:\s+(.*))?$")


@pytest.fixture(scope="module")
def bench():
    with benchmark_module("bench_ionic_strength") as mod:
        yield mod


def _figures(out: str) -> dict:
    """The table rows {(stage, process): (start, peak, status)}, stage seconds and rates."""
    rows, seconds, rates, stage = {}, {}, {}, None
    for line in out.splitlines():
        m = ROW.match(line)
        if not m:
            continue
        if m.group(1):
            stage = m.group(1)
            seconds[stage] = float(m.group(2))
            rates[stage] = m.group(3)
        rows[(stage, m.group(4))] = (int(m.group(5)), int(m.group(6)), (m.group(9) or "").strip())
    return {"rows": rows, "seconds": seconds, "rates": rates}


def _check_report(out: str, *, grid: str, nyears: int) -> dict:
    assert f"grid {grid}" in out and f"({nyears}), 40 basins" in out
    fig = _figures(out)
    assert set(fig["seconds"]) == set(STAGES), out
    for stage in STAGES:
        assert fig["seconds"][stage] > 0
        for proc in ("worker-0", "worker-1", "client"):
            start, peak, status = fig["rows"][(stage, proc)]
            assert peak > 0 and peak >= start
            if proc != "client" and stage in ("predictors", "predict"):
                assert status.startswith("PASS"), (stage, proc, status)
    for stage in ("predictors", "predict"):
        assert int(fig["rates"][stage].replace(",", "")) > 0
    assert re.search(r"reference \(same run\): full I field \(\d+×\d+×\d+ float32\)", out)
    m = re.search(r"10-fold CV R² (-?[\d.]+), RMSE ([\d.e+-]+) mol L-1", out)
    assert m and 0.3 < float(m.group(1)) <= 1 and float(m.group(2)) > 0
    assert re.search(r"check: written I holds ([\d,]+) values = land pixels × years \1;", out)
    assert "cluster result equals the in-process prediction" in out
    assert re.search(r"load average \(1/5/15 min\) [\d.]+ [\d.]+ [\d.]+ at start", out)
    assert "RESULT: PASS" in out
    return fig


@pytest.mark.timeout(120)
def test_benchmark_1deg_three_years(bench, tmp_path, capsys):
    t0 = time.perf_counter()
    code = bench.main(["--resolution", "1", "--years", "2000-2002", "--store", str(tmp_path)])
    elapsed = time.perf_counter() - t0
    out = capsys.readouterr().out
    assert code == 0, out
    _check_report(out, grid="1deg", nyears=3)
    # on a 1° grid the field is far too small to judge the client
    assert "too small to tell a gather" in out
    # the store given with --store is kept: published inputs and the written I field
    assert Store(str(tmp_path)).latest("inputs", "synthetic") is not None
    assert Store(str(tmp_path)).latest("inputs", "regions") is not None
    assert (tmp_path / "products" / "ionic_strength_bench.zarr").is_dir()
    assert elapsed < 40, f"1° × 3 years took {elapsed:.1f} s"   # ~18 s on 2 busy cores


def test_exit_code(bench):
    """Failures are judged on the figures (no cluster): a worker at its limit or dead in a checked
    stage, a client that grew by half the I field, a wrong count of written values."""
    MIB, P, S = bench.MIB, bench.ProcPeak, bench.Stage
    limit = 2_000_000_000

    def result(predict_peaks, *, field=100 * MIB, valid=10, predictors_peaks=None):
        stages = [S("inputs", 1.0, {}), S("predictors", 1.0, predictors_peaks or {}),
                  S("train", 1.0, {}), S("predict", 1.0, predict_peaks)]
        return bench.IonicResult("0.05deg", (740, 1260), (2000, 2000), 2, "2GB", limit, 10,
                                 field, stages=stages, valid=valid)

    ok = {"worker-0": P("worker-0", 1, 0, 500 * MIB), "client": P("client", 2, 400 * MIB,
                                                                   420 * MIB)}
    assert result(ok).exit_code == 0
    assert result({"worker-0": P("worker-0", 1, 0, 0, limit)}).exit_code == 1
    assert result({"worker-0": P("worker-0", 1, died=True)}).exit_code == 1
    assert result(ok, predictors_peaks={"worker-1": P("worker-1", 3, died=True)}).exit_code == 1
    gathered = {"client": P("client", 2, 400 * MIB, 460 * MIB)}            # +60 % of the field
    assert result(gathered).exit_code == 1
    assert result(gathered, field=8 * MIB).exit_code == 0                   # too small to judge
    assert result(ok, valid=9).exit_code == 1
    broken = result(ok)
    broken.stages[3].error = "KilledWorker: ..."
    assert broken.exit_code == 1
    assert "FAIL" in bench.format_report(broken)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_benchmark_quarter_degree(bench, capsys):
    code = bench.main(["--resolution", "0.25", "--years", "2000-2020"])
    out = capsys.readouterr().out
    assert code == 0, out
    _check_report(out, grid="0.25deg", nyears=21)
