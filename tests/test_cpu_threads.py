"""run.cpu_threads: MindSpore's CPU kernel threads, set once per process, and what it buys.

With MindSpore's default pool (25 threads) the CPU kernels reduce in varying orders and the same
stage-1 command twice drifts apart within steps; on one thread it gives the same bytes. The
quickstart's real width is needed to see it: the tiny test models are too small for the kernels
to split their work. Measured here (2 shared cores, the quickstart): with run.cpu_threads=0, two
60-step runs ended with 792 of 970 arrays differing (by up to 0.11); with the default 1, identical
(60 steps, and the 3000-step prior, docs/prior.md). STEPS is shorter to keep the suite quick; the
drift starts within the first steps (the earlier prior's L2 parted at step 10).
"""
import os
import subprocess
import sys

import numpy as np
import pytest

from cli_harness import REPO, run_tool

STEPS = 20


def test_set_once_per_process():
    """Same count again: nothing; another count: one ConfigError line; a count the process's owner
    set itself (a benchmark calling threads_num first) is left alone. Fresh processes: MindSpore
    refuses a second threads_num in one process."""
    script = """
import mindspore as ms
from modify_ms.config import ConfigError
from modify_ms.train.common import set_cpu_threads
ms.set_device("CPU")
if OWNER:
    ms.device_context.cpu.op_tuning.threads_num(3)
set_cpu_threads(1)
set_cpu_threads(1)
set_cpu_threads(0)
try:
    set_cpu_threads(2)
    print("no error")
except ConfigError as exc:
    print("error:", exc)
"""
    for owner, expected in ((False, "error: run.cpu_threads 2: this process already runs CPU kernels on 1 threads"),
                            (True, "no error")):
        proc = subprocess.run([sys.executable, "-c", script.replace("OWNER", str(owner))], cwd=REPO,
                              capture_output=True, text=True, env=dict(os.environ, GLOG_v="3"))
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.strip().splitlines()[-1].startswith(expected), proc.stdout


def _final_arrays(run_dir):
    from modify_ms.train.common import RunCheckpoints
    from modify_ms.utils.checkpoint import read_arrays

    return read_arrays(RunCheckpoints(run_dir).latest())[0]


def test_the_quickstart_twice_gives_the_same_bytes(tmp_path):
    """Two quickstart runs of STEPS steps (the real width, from the packaged prior) end with
    bit-identical weights, optimizer states and BatchNorm statistics."""
    arrays = []
    for name in ("first", "second"):
        out = str(tmp_path / name)
        proc = run_tool(["tools/train_modify.py", "--config", os.path.join(REPO, "yaml", "quickstart.yaml"),
                         "--max-steps", str(STEPS),
                         "--set", f"run.out_dir={out}", "--set", "run.compile_cache=false",
                         "--set", "run.sample_every=1000", "--set", "run.ckpt_every=1000"], cwd=str(tmp_path))
        assert proc.returncode == 0, proc.stderr[-3000:]
        arrays.append(_final_arrays(out))
    first, second = arrays
    assert first.keys() == second.keys() and len(first) > 900
    differing = [k for k in first if not np.array_equal(first[k], second[k])]
    assert not differing, f"{len(differing)} of {len(first)} arrays differ, e.g. {differing[:3]}"
