"""MODIFY end to end through the command lines, on a tiny configuration.

Stage 1 (killed after 4 steps with --max-steps, then --resume to the end), then all three
stage-2 modes with tools/stylize.py on real bundled photos (GRAPH_MODE, as users run them).
"""
import json
import os
import subprocess
import sys

import pytest

from test_modify_train import REPO, TINY

CLI_STAGE1 = [s for s in TINY if not s.startswith("phases=")] + [
    "phases=[{steps: 6, weights: {lpips: 0.8, adv_r: 0.1, l2: 0.8, id: 1.0, swap: 1.0, adv_z: 0.1},"
    " train: [encoder, decoder, remap]}]", "run.ckpt_every=2", "run.sample_every=3"]


def run_tool(args, check=True):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable] + args, cwd=REPO, capture_output=True, text=True, env=env, timeout=900)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "Exception ignored" not in proc.stderr
    return proc


def overrides(items):
    return [a for item in items for a in ("--set", item)]


@pytest.fixture(scope="module")
def stage1_run(tmp_path_factory):
    run_dir = str(tmp_path_factory.mktemp("cli_stage1") / "run")
    base = ["tools/train_modify.py", "--config", "yaml/quickstart.yaml"] + overrides(
        CLI_STAGE1 + [f"run.out_dir={run_dir}", "run.compile_cache=false"])
    first = run_tool(base + ["--max-steps", "4"])
    assert "finished at step 4" in first.stdout
    resumed = run_tool(["tools/train_modify.py", "--resume", run_dir])
    assert "finished at step 6" in resumed.stdout
    return run_dir


def test_stage1_cli_writes_a_resumable_run(stage1_run):
    with open(os.path.join(stage1_run, "metrics.jsonl")) as fh:
        steps = [json.loads(line)["step"] for line in fh]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert os.path.isfile(os.path.join(stage1_run, "config.yaml"))
    assert os.path.isfile(os.path.join(stage1_run, "samples", "step_00000006.png"))
    latest = json.load(open(os.path.join(stage1_run, "checkpoints", "latest.json")))
    assert latest["step"] == 6


def test_stylize_test_time_single_photo(stage1_run, tmp_path):
    out = tmp_path / "astronaut.png"
    proc = run_tool(["tools/stylize.py", "--stage1", stage1_run, "--input", "builtin:astronaut", "--output", str(out),
                     "--steps", "3", "--align", "none", "--variants", "2", "--interpolate", "2"]
                    + overrides(["run.compile_cache=false"]))
    assert out.is_file() and str(out) in proc.stdout
    assert (tmp_path / "astronaut_variants.png").is_file()
    assert (tmp_path / "astronaut_k0.png").is_file() and (tmp_path / "astronaut_k1.png").is_file()
    assert "objective" in proc.stderr


def _photo_folder(folder, names):
    from modify_ms.data.builtin import single_photo
    from modify_ms.data.imageio import save_image_atomic

    os.makedirs(folder, exist_ok=True)
    for name, src in names:
        save_image_atomic(os.path.join(folder, name), single_photo(src))


def test_stylize_online_and_offline(stage1_run, tmp_path):
    photos = tmp_path / "in"
    _photo_folder(str(photos), [("a.png", "builtin:astronaut"), ("b.png", "builtin:grace_hopper")])
    out = tmp_path / "online"
    proc = run_tool(["tools/stylize.py", "--stage1", stage1_run, "--mode", "online", "--input", str(photos),
                     "--output-dir", str(out), "--align", "none"] + overrides(["run.compile_cache=false"]))
    assert sorted(p for p in os.listdir(out) if p.endswith(".png")) == ["a.png", "b.png"]
    assert proc.stdout.split() == [str(out / "a.png"), str(out / "b.png")]
    out = tmp_path / "offline"
    run_tool(["tools/stylize.py", "--stage1", stage1_run, "--mode", "offline", "--input", str(photos),
              "--output-dir", str(out), "--align", "none"]
             + overrides(["run.compile_cache=false", f"data.path={photos}", "data.batch_size=1",
                          "data.num_workers=1", "data.multiprocessing=false", "offline_steps=2"]))
    assert sorted(p for p in os.listdir(out) if p.endswith(".png")) == ["a.png", "b.png"]
    assert os.path.isfile(os.path.join(out, "stylize_checkpoints", "latest.json"))


def test_stylize_bad_input_is_one_line(stage1_run, tmp_path):
    proc = run_tool(["tools/stylize.py", "--stage1", stage1_run, "--input", str(tmp_path / "missing.jpg"),
                     "--output", str(tmp_path / "o.png")], check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "missing.jpg" in proc.stderr
