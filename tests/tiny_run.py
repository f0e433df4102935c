"""The tiny stage-1 run the command-line tests stylize with (see conftest's ``stage1_run``)."""
import os
import subprocess
import sys

from test_modify_train import REPO, TINY

CLI_STAGE1 = [s for s in TINY if not s.startswith("phases=")] + [
    "phases=[{steps: 6, weights: {lpips: 0.8, adv_r: 0.1, l2: 0.8, id: 1.0, swap: 1.0, adv_z: 0.1},"
    " train: [encoder, decoder, remap]}]", "run.ckpt_every=2", "run.sample_every=3"]


def run_tool(args, check=True, cwd=REPO):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable] + args, cwd=cwd, capture_output=True, text=True, env=env, timeout=900)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "Exception ignored" not in proc.stderr
    return proc


def overrides(items):
    return [a for item in items for a in ("--set", item)]


def make_stage1_run(run_dir):
    base = ["tools/train_modify.py", "--config", "yaml/quickstart.yaml"] + overrides(
        CLI_STAGE1 + [f"run.out_dir={run_dir}", "run.compile_cache=false"])
    first = run_tool(base + ["--max-steps", "4"])
    assert "finished at step 4" in first.stdout
    resumed = run_tool(["tools/train_modify.py", "--resume", run_dir])
    assert "finished at step 6" in resumed.stdout
    return run_dir
