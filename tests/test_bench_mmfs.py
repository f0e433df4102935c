"""Smoke tests of tools/bench_mmfs.py (MMFS's one-shot fine-tuning step and inference benchmark): the
host inputs both workers share, the PyTorch worker on the small preset, and (slow: MindSpore compiles
the step for ~20 s) the whole driver with both frameworks and both workloads. No timing is asserted:
the figures only have to be there and finite."""
import json
import math
import subprocess
import sys

import numpy as np
import pytest

from baselines_ms.commands import bench_mmfs as bench
from modify_ms.commands import REPO_ROOT


def small_config(steps=1):
    args = bench.parse_args(["--preset", "small", "--steps", str(steps)])
    phase = bench.few_shot_phase()
    return dict(bench.PRESETS["small"], preset="small", batch=args.batch, steps=args.steps, threads=1, seed=0,
                onednn_isa="AVX2", pin_core=-1, lr=phase.lr, betas=list(phase.betas),
                weights=[phase.lambda_st, phase.lambda_clip, phase.lambda_proj])


def test_host_inputs_are_the_official_shapes():
    cfg = dict(bench.PRESETS["real"], seed=0, batch=2)
    assert [s[-1] for s in bench.noise_shapes(cfg, 2)] == [32, 64, 64, 128, 128, 256, 256, 512, 512]
    basis = bench.host_basis(cfg)  # ViT-B/32 at 224: 49 tokens of width 768
    assert basis.shape == (768, 49)
    np.testing.assert_allclose(basis.T @ basis, np.eye(49), atol=1e-5)
    prompt = bench.host_prompt(cfg)
    assert prompt.shape == (1, 512) and abs(np.linalg.norm(prompt) - 1) < 1e-5


def test_phase4_values_come_from_the_config():
    phase = bench.few_shot_phase()
    assert (phase.lr, tuple(phase.betas)) == (2e-4, (0.9, 0.999))
    assert (phase.lambda_st, phase.lambda_clip, phase.lambda_proj) == (0.5, 1.0, 100.0)


@pytest.mark.parametrize("workload", bench.WORKLOADS)
def test_torch_worker_reports_finite_figures(workload):
    proc = subprocess.run([sys.executable, "-m", "tests.reference.bench_mmfs_torch", workload,
                           json.dumps(small_config())], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, proc.stderr[-2000:]
    result = json.loads(lines[-1][len("RESULT "):])
    assert result["framework"] == "torch" and result["workload"] == workload
    assert all(math.isfinite(result[k]) for k in ("first_s", "step_s", "cpu_s", "peak_mib", "loss_first"))
    assert result["params"] == 65  # decoder0, to_rgb0, decoder1..4 a/b, to_rgb1..4 of the small Stylizer


def test_unknown_workload_is_one_line_and_exit_2(capsys):
    assert bench.main(["--workloads", "step,train"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'train'" in err[0]


@pytest.mark.slow
def test_driver_table_has_both_frameworks_with_finite_numbers(capsys):
    assert bench.main(["--preset", "small", "--steps", "1", "--markdown"]) == 0
    out = capsys.readouterr().out
    for workload in bench.WORKLOADS:
        assert f"# mmfs {workload} mindspore" in out and f"# mmfs {workload} torch" in out
    rows = [line for line in out.splitlines() if line.startswith("| 64 px")]
    assert len(rows) == len(bench.WORKLOADS)
    for row in rows:
        numbers = [float(c.strip().split()[0]) for c in row.strip("|").split("|")[1:]]
        assert all(math.isfinite(v) and v >= 0 for v in numbers)
