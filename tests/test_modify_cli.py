"""MODIFY end to end through the command lines, on a tiny configuration.

Stage 1 (killed after 4 steps with --max-steps, then --resume to the end), then the online and
offline stage-2 modes with tools/stylize.py on real bundled photos (GRAPH_MODE, as users run
them); the test-time mode's single photo, its variants and their layout are
test_hostile_stylize's same-command-twice test.
"""
import json
import os

import pytest

from tiny_run import overrides, run_tool


def test_stage1_cli_writes_a_resumable_run(stage1_run):
    with open(os.path.join(stage1_run, "metrics.jsonl")) as fh:
        lines = [json.loads(line) for line in fh]
    assert [m["step"] for m in lines if "loss" in m] == [1, 2, 3, 4, 5, 6]
    # a sample grid every 3 steps and at the end of each invocation (--max-steps 4, then the resumed run)
    assert [m["step"] for m in lines if "specificity" in m] == [3, 4, 6]
    assert os.path.isfile(os.path.join(stage1_run, "config.yaml"))
    assert os.path.isfile(os.path.join(stage1_run, "samples", "step_00000006.png"))
    latest = json.load(open(os.path.join(stage1_run, "checkpoints", "latest.json")))
    assert latest["step"] == 6


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
                     "--output-dir", str(out), "--align", "none", "--work-dir", str(tmp_path / "work_online")])
    assert sorted(os.listdir(out)) == ["a.png", "b.png"]
    assert proc.stdout.split() == [str(out / "a.png"), str(out / "b.png")]
    assert os.path.isfile(tmp_path / "work_online" / "stylize_checkpoints" / "latest.json")  # online state
    out = tmp_path / "offline"
    run_tool(["tools/stylize.py", "--stage1", stage1_run, "--mode", "offline", "--input", str(photos),
              "--output-dir", str(out), "--align", "none", "--ext", ".jpg", "--work-dir", str(tmp_path / "work")]
             + overrides([f"data.path={photos}", "data.batch_size=1", "data.num_workers=1",
                          "data.multiprocessing=false", "offline_steps=2"]))
    assert sorted(os.listdir(out)) == ["a.jpg", "b.jpg"]
    assert (out / "a.jpg").read_bytes()[:3] == b"\xff\xd8\xff"  # the extension picks the format: JPEG bytes
    assert os.path.isfile(tmp_path / "work" / "stylize_checkpoints" / "latest.json")


def test_stylize_bad_input_is_one_line(stage1_run, tmp_path):
    proc = run_tool(["tools/stylize.py", "--stage1", stage1_run, "--input", str(tmp_path / "missing.jpg"),
                     "--output", str(tmp_path / "o.png")], check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "missing.jpg" in proc.stderr


@pytest.mark.parametrize("args, fragment", [
    (["--method", "nope", "--run", "r"], "unknown stylizer 'nope'"),
    (["--method", "psp-unpaired", "--run", "r", "--steps", "2"], "--steps: MODIFY's stage-2 option"),
    (["--method", "psp-unpaired", "--run", "r", "--opt", "bogus=1"], "takes no option 'bogus'"),
    (["--method", "psp-unpaired", "--run", "r", "--variants", "2"], "not multi-modal"),
    (["--method", "psp-unpaired"], "needs --run"),
    (["--method", "modify-online", "--mode", "offline", "--run", "r"], "contradicts --method modify-online")])
def test_stylize_method_refusals_are_one_line(tmp_path, args, fragment):
    """--method: what a method cannot take is refused in one line before anything is built or written."""
    proc = run_tool(["tools/stylize.py", "--input", "builtin:astronaut", "--output", str(tmp_path / "o.png")] + args,
                    check=False)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and fragment in proc.stderr, proc.stderr
    assert os.listdir(tmp_path) == []


def test_stylize_lists_the_methods():
    names = [line.split("\t")[0] for line in run_tool(["tools/stylize.py", "--list-methods"]).stdout.splitlines()]
    assert {"modify", "modify-online", "modify-offline", "psp-unpaired"} <= set(names)
