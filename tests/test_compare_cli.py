"""tools/compare.py end to end through the real command line, on the tiny stage-1 run.

One comparison (module fixture) of three methods on two photos: MODIFY (test-time, 1 step,
PYNATIVE, no discriminator term), unpaired pSp (a run folder holding the tiny stage-1 run's E and D
under a psp-unpaired config: what is compared here is the tool's wiring, not pSp's training) and
modify-online given a broken run (it must fail alone). Metric weights are the stage-1 run's own
tiny loss networks written as evaluate's converted files (ArcFace IR-SE with one unit per stage,
LPIPS alex), so identity and diversity run on real files; FID needs a 299 px Inception and is
left out here (n/a; evaluate's FID path is tests/test_eval_tool.py's).

Then tools/evaluate.py --method psp-unpaired: the outputs made by stylize's code into a new
folder and scored there (identity on one output per photo); a folder that already holds images
is refused in one line.

Checks: the grid is rows = photos x columns = input | each method that ran, at the cells' size;
table.json has one row per method with every metric key (diversity for MODIFY with --variants,
null for pSp; the broken method 'failed'); exit 1 for the failure, the others written; the
per-method folders hold stylize's layout; the output folder sits beside the photos and no photo
changed; a bad --method spec is one line, exit 2, nothing written.
"""
import dataclasses
import json
import os
import shutil

import numpy as np
import pytest

from cli_harness import assert_one_line_error, tree
from tiny_run import run_tool
from modify_ms.commands.compare import TABLE_KEYS, grid_size
from modify_ms.data.builtin import single_photo
from modify_ms.data.imageio import read_image, save_image_atomic

SIZE = 64  # the tiny stage-1 run's model.loss_size


def _psp_run_from(stage1_run, run_dir):
    """A psp-unpaired run folder (config.yaml + checkpoints/) whose E and D are the stage-1 run's."""
    from modify_ms.config import load_config
    from modify_ms.train.common import write_resolved_config
    from modify_ms.train.config import Stage1Config

    from baselines_ms.psp_unpaired.config import UnpairedPSPConfig

    stage1 = load_config(os.path.join(stage1_run, "config.yaml"), Stage1Config)
    base, size = UnpairedPSPConfig(), stage1.model.loss_size
    cfg = dataclasses.replace(base, model=stage1.model, run=stage1.run, data=dataclasses.replace(base.data, size=size),
                              target=dataclasses.replace(base.target, size=size))
    os.makedirs(run_dir)
    write_resolved_config(cfg, run_dir)
    shutil.copytree(os.path.join(stage1_run, "checkpoints"), os.path.join(run_dir, "checkpoints"))
    return run_dir


def _metric_weights(stage1_run, folder):
    """The run's loss networks as tools/evaluate.py's converted files (arcface.ckpt, lpips.ckpt)."""
    from modify_ms.utils.checkpoint import read_arrays, save_arrays

    arrays, meta = read_arrays(os.path.join(stage1_run, "loss_nets.ckpt"))
    nets = meta["loss_nets"]
    identity = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("identity/")}
    lpips = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("lpips/")}
    save_arrays(identity, os.path.join(folder, "arcface.ckpt"),
                {"format": "modify_ms.identity_loss",
                 "kwargs": {"num_layers": nets["identity_num_layers"], "units": nets["identity_units"],
                            "channels": nets["identity_channels"]}})
    save_arrays(lpips, os.path.join(folder, "lpips.ckpt"),
                {"format": "modify_ms.lpips", "kwargs": {"net": nets["lpips_net"]}, "net": nets["lpips_net"]})
    return os.path.join(folder, "arcface.ckpt"), os.path.join(folder, "lpips.ckpt")


def _broken_run(folder):
    os.makedirs(os.path.join(folder, "checkpoints"))
    with open(os.path.join(folder, "checkpoints", "latest.json"), "w") as fh:
        fh.write("{not json")
    open(os.path.join(folder, "config.yaml"), "w").close()
    return folder


@pytest.fixture(scope="module")
def compared(stage1_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    photos = root / "photos"
    photos.mkdir()
    for name, which in (("a.png", "builtin:astronaut"), ("b.jpg", "builtin:grace_hopper")):
        from PIL import Image

        save_image_atomic(str(photos / name), np.asarray(Image.fromarray(single_photo(which)).resize((80, 80))))
    psp = _psp_run_from(stage1_run, str(root / "psp_run"))
    arcface, lpips = _metric_weights(stage1_run, str(root))
    before = tree(str(photos))
    out = root / "compared"  # beside the photos' folder
    argv = ["tools/compare.py", "--photos", str(photos), "--out", str(out), "--variants", "2", "--align", "none",
            "--method", f"modify={stage1_run}", "--method", f"psp-unpaired={psp}",
            "--method", f"modify-online={_broken_run(str(root / 'broken_run'))}",
            "--set", "modify:test_time_steps=1", "--set", "modify:run.mode=pynative", "--set", "modify:weights.adv=0",
            "--set", "psp-unpaired:run_mode=pynative",
            "--arcface", arcface, "--lpips", lpips, "--metric-size", "64", "--quiet"]
    proc = run_tool(argv, check=False)
    return dict(proc=proc, out=out, photos=photos, before=before, root=root, stage1=stage1_run, psp=psp,
                arcface=arcface, lpips=lpips)


def test_one_failing_method_is_reported_and_the_others_written(compared):
    proc = compared["proc"]
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    failed = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(failed) == 1 and "modify-online" in failed[0] and "latest.json" in failed[0], proc.stderr[-3000:]
    assert "| modify |" in proc.stdout and "| psp-unpaired |" in proc.stdout  # the table is printed


def test_grid_is_photos_by_input_and_each_method(compared):
    grid = read_image(str(compared["out"] / "grid.png"))
    assert grid.shape[:2] == grid_size(2, 3, SIZE)  # 2 photos; input | modify | psp-unpaired
    # the input column is the photo as the methods saw it (not blank), the label band is drawn on
    from modify_ms.commands.compare import LABEL_HEIGHT, PAD

    cell = grid[LABEL_HEIGHT + PAD:LABEL_HEIGHT + PAD + SIZE, PAD:PAD + SIZE]
    np.testing.assert_array_equal(cell, read_image(str(compared["out"] / "input" / "a.png")))
    assert (grid[:LABEL_HEIGHT] < 128).any(), "no label text above the columns"


def test_table_has_one_row_per_method_with_the_metric_keys(compared):
    doc = json.loads((compared["out"] / "table.json").read_text())
    rows = {row["method"]: row for row in doc["rows"]}
    assert list(rows) == ["modify", "psp-unpaired", "modify-online"]
    for row in rows.values():
        assert set(TABLE_KEYS) <= set(row)
    modify, psp, broken = rows["modify"], rows["psp-unpaired"], rows["modify-online"]
    assert modify["status"] == psp["status"] == "ok" and broken["status"] == "failed"
    assert modify["photos"] == psp["photos"] == 2 and modify["identity_pairs"] == 2
    for row in (modify, psp):
        assert -1.0 <= row["identity_similarity"] <= 1.0
        assert abs(row["identity_similarity"] - (1.0 - row["identity_distance"])) < 1e-9
        assert row["fid"] is None  # no --reference
    assert modify["lpips_diversity"] > 0 and modify["variants_per_input"] == "2"
    assert psp["lpips_diversity"] is None and broken["identity_similarity"] is None  # n/a
    md = (compared["out"] / "table.md").read_text()
    assert "| psp-unpaired |" in md and "n/a" in md


def test_outputs_have_stylizes_layout_and_inputs_are_unchanged(compared):
    out = compared["out"]
    assert sorted(os.listdir(out / "modify")) == ["a.png", "a_k0.png", "a_k1.png", "a_variants.png",
                                                  "b.png", "b_k0.png", "b_k1.png", "b_variants.png"]
    assert sorted(os.listdir(out / "psp-unpaired")) == ["a.png", "b.png"]  # not multi-modal: no variants
    assert not (out / "modify-online").exists()
    assert read_image(str(out / "psp-unpaired" / "a.png")).shape == (SIZE, SIZE, 3)
    assert tree(str(compared["photos"])) == compared["before"]


@pytest.mark.parametrize("spec, fragment", [("nope={run}", "unknown stylizer 'nope'"),
                                            ("modify", "expected NAME=RUN"),
                                            ("modify={root}/missing", "no such run")])
def test_bad_method_spec_is_one_line_exit_2(compared, spec, fragment):
    out = compared["root"] / "refused"
    proc = run_tool(["tools/compare.py", "--photos", str(compared["photos"]), "--out", str(out),
                     "--method", spec.format(run=compared["stage1"], root=compared["root"])], check=False)
    assert_one_line_error(proc, fragment)
    assert len([line for line in proc.stderr.splitlines() if line.strip()]) == 1
    assert not out.exists()


def test_evaluate_method_stylizes_then_scores(compared):
    out = compared["root"] / "evaluated"
    argv = ["tools/evaluate.py", "--method", "psp-unpaired", "--run", compared["psp"], "--opt", "run_mode=pynative",
            "--inputs", str(compared["photos"]), "--outputs", str(out), "--align", "none",
            "--arcface", compared["arcface"], "--quiet"]
    proc = run_tool(argv)
    assert sorted(os.listdir(out)) == ["a.png", "b.png", "evaluation.csv", "evaluation.md"]
    header, row = (out / "evaluation.csv").read_text().splitlines()
    values = dict(zip(header.split(","), row.split(",")))
    assert values["run"] == "psp-unpaired" and values["identity_pairs"] == "2"
    # stylize's code wrote them: the same run, photo and noise seed as compare's psp-unpaired column
    np.testing.assert_array_equal(read_image(str(out / "a.png")),
                                  read_image(str(compared["out"] / "psp-unpaired" / "a.png")))
    again = run_tool(argv, check=False)  # the folder now holds images: they would be scored too
    assert_one_line_error(again, "already holds images")
    assert "| psp-unpaired |" in proc.stdout
