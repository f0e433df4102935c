"""Smoke tests of tools/bench_baselines.py (the baselines' step benchmark): the JoJoGAN rows and
taps it gives both workers, the PyTorch JoJoGAN worker at a tiny size, and (slow: MindSpore
compiles each step for a minute) the whole driver with both frameworks and both workloads. No
timing is asserted: the figures only have to be there and finite."""
import json
import math
import subprocess
import sys

import pytest

from baselines_ms.commands import bench_baselines as bench
from modify_ms.commands import REPO_ROOT

TINY = ["--size", "32", "--steps", "1", "--jojo-steps", "1"]
SMALLEST = ["--size", "64", "--steps", "1", "--jojo-steps", "1"]  # unpaired pSp's loss_size is a multiple of 64


def test_jojogan_rows_and_taps_are_the_notebooks_clipped_to_the_network():
    # 1024 px: the notebook's id_swap 7..17 and taps (1, 3, 4, 5); smaller networks drop what they lack
    assert bench.jojo_rows_and_taps(1024) == (tuple(range(7, 18)), (1, 3, 4, 5))
    assert bench.jojo_rows_and_taps(256) == (tuple(range(7, 14)), (1, 3, 4, 5))
    assert bench.jojo_rows_and_taps(64) == ((7, 8, 9), (1, 3, 4))


def figures(result):
    return [result[k] for k in ("first_s", "step_s", "cpu_s", "peak_mib", "baseline_mib", "loss_first", "loss_last")]


def test_torch_jojogan_worker_reports_finite_figures():
    workload = "jojogan"  # the cheap one; the slow test runs both workers of both workloads
    cfg = bench.bench_config(bench.parse_args(TINY))
    proc = subprocess.run([sys.executable, "-m", "tests.reference.bench_baselines_torch", workload, json.dumps(cfg)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, proc.stderr[-2000:]
    result = json.loads(lines[-1][len("RESULT "):])
    assert result["framework"] == "torch" and result["workload"] == workload
    assert all(math.isfinite(v) for v in figures(result)) and result["params"] > 0


@pytest.mark.slow
def test_driver_table_has_both_frameworks_with_finite_numbers(capsys):
    assert bench.main(SMALLEST + ["--markdown"]) == 0
    out = capsys.readouterr().out
    for workload in bench.WORKLOADS:
        assert f"# {workload} mindspore" in out and f"# {workload} torch" in out
    rows = [line for line in out.splitlines() if line.startswith("| 64 px")]
    assert len(rows) == len(bench.WORKLOADS)
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")][1:]
        numbers = [float(c.split()[0]) for c in cells]
        assert len(numbers) == len(bench.HEADER) + len(bench.CPU_HEADER) - 1
        assert all(math.isfinite(v) and v >= 0 for v in numbers)
