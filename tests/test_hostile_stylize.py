"""tools/stylize.py and tools/evaluate.py on hostile and broken inputs, through the real command lines.

Each case: exit code 2, one ``error:`` line and no traceback, no input file changed (hashes),
nothing new anywhere under the scratch folder (which is also the current directory). Then the
paths that succeed: an output beside its input leaves the input alone and writes nothing else,
a folder with a corrupt photo and two photos of one stem is stylized with the bad one skipped
and the names made unique, and the same command twice gives the same bytes.
"""
import hashlib
import os

import numpy as np
import pytest

from cli_harness import Case, check_case, run_tool, tree
from modify_ms.data.builtin import single_photo
from modify_ms.data.imageio import save_image_atomic

STAGE1 = "{stage1}"  # replaced by the shared tiny stage-1 run


def _photo(path, which="builtin:astronaut", size=96):
    from PIL import Image

    os.makedirs(os.path.dirname(path), exist_ok=True)
    image = np.asarray(Image.fromarray(single_photo(which)).resize((size, size)))
    save_image_atomic(path, image)
    return path


def _truncated(path):
    _photo(path)
    data = open(path, "rb").read()
    with open(path, "wb") as fh:
        fh.write(data[: len(data) // 3])
    return path


def _stylize(*args):
    return ["tools/stylize.py", "--stage1", STAGE1, "--align", "none", "--steps", "1", *args]


def _photos_dir(tmp):
    _photo(os.path.join(tmp, "in", "a.jpg"))
    _photo(os.path.join(tmp, "in", "b.png"), "builtin:grace_hopper")
    return os.path.join(tmp, "in")


def _not_a_run(tmp):
    with open(os.path.join(tmp, "model.ckpt"), "wb") as fh:
        fh.write(b"\x00" * 64)
    return os.path.join(tmp, "model.ckpt")


def _broken_run(tmp):
    os.makedirs(os.path.join(tmp, "run", "checkpoints"))
    with open(os.path.join(tmp, "run", "checkpoints", "latest.json"), "w") as fh:
        fh.write("{not json")
    open(os.path.join(tmp, "run", "config.yaml"), "w").close()
    return os.path.join(tmp, "run")


STYLIZE_CASES = [
    Case("output-is-the-input", lambda t: _stylize("--input", _photo(f"{t}/p.jpg"), "--output", f"{t}/p.jpg"),
         ["p.jpg", "is an input"]),
    Case("output-is-the-input-by-another-path",
         lambda t: _stylize("--input", _photo(f"{t}/p.png"), "--output", f"{t}/./sub/../p.png"), ["is an input"]),
    Case("output-dir-is-the-input-folder", lambda t: _stylize("--input", _photos_dir(t), "--output-dir", f"{t}/in"),
         ["inside the input folder"]),
    Case("output-dir-inside-the-input-folder",
         lambda t: _stylize("--input", _photos_dir(t), "--output-dir", f"{t}/in/out"), ["inside the input folder"]),
    Case("output-is-a-folder", lambda t: (os.makedirs(f"{t}/o"), _stylize("--input", _photo(f"{t}/p.png"),
                                                                          "--output", f"{t}/o"))[1], ["is a folder"]),
    Case("output-extension-unknown", lambda t: _stylize("--input", _photo(f"{t}/p.png"), "--output", f"{t}/o.gif"),
         ["cannot write images with extension '.gif'"]),
    Case("output-without-extension", lambda t: _stylize("--input", _photo(f"{t}/p.png"), "--output", f"{t}/out"),
         ["extension"]),
    Case("output-under-a-file", lambda t: _stylize("--input", _photo(f"{t}/p.png"), "--output", f"{t}/p.png/o.png"),
         ["is a file"]),
    Case("variant-name-is-the-input",
         lambda t: _stylize("--input", _photo(f"{t}/o_k0.png"), "--output", f"{t}/o.png", "--variants", "2"),
         ["o_k0.png", "is an input"]),
    Case("steps-zero", lambda t: _stylize("--input", "builtin:astronaut", "--output", f"{t}/o.png", "--steps", "0"),
         ["--steps must be >= 1"]),
    Case("steps-negative", lambda t: _stylize("--input", "builtin:astronaut", "--output", f"{t}/o.png", "--steps",
                                              "-3"), ["--steps"]),
    Case("variants-negative", lambda t: _stylize("--input", "builtin:astronaut", "--output", f"{t}/o.png",
                                                 "--variants", "-1"), ["--variants"]),
    Case("interpolate-negative", lambda t: _stylize("--input", "builtin:astronaut", "--output", f"{t}/o.png",
                                                    "--interpolate", "-2"), ["--interpolate"]),
    Case("interpolate-one-frame", lambda t: _stylize("--input", "builtin:astronaut", "--output", f"{t}/o.png",
                                                     "--interpolate", "1"), ["--interpolate"]),
    Case("poll-nan", lambda t: _stylize("--input", "builtin:astronaut", "--output", f"{t}/o.png", "--poll", "nan"),
         ["--poll"]),
    Case("output-and-output-dir", lambda t: _stylize("--input", "builtin:astronaut", "--output", f"{t}/o.png",
                                                     "--output-dir", f"{t}/d"), ["exactly one"]),
    Case("no-output", lambda t: _stylize("--input", "builtin:astronaut"), ["--output"]),
    Case("folder-with-output-file", lambda t: _stylize("--input", _photos_dir(t), "--output", f"{t}/o.png"),
         ["--output-dir"]),
    Case("watch-without-online", lambda t: _stylize("--input", _photos_dir(t), "--output-dir", f"{t}/o", "--watch"),
         ["--watch"]),
    Case("input-missing", lambda t: _stylize("--input", f"{t}/nope.jpg", "--output", f"{t}/o.png"), ["nope.jpg"]),
    Case("input-truncated-photo", lambda t: _stylize("--input", _truncated(f"{t}/bad.jpg"), "--output", f"{t}/o.png"),
         ["bad.jpg", "truncated"]),
    Case("input-not-an-image", lambda t: (open(f"{t}/x.jpg", "w").write("hello"),
                                          _stylize("--input", f"{t}/x.jpg", "--output", f"{t}/o.png"))[1],
         ["x.jpg", "not an image"]),
    Case("no-stage1", lambda t: ["tools/stylize.py", "--input", "builtin:astronaut", "--output", f"{t}/o.png"],
         ["stage1 is empty"]),
    Case("stage1-is-not-a-run", lambda t: ["tools/stylize.py", "--stage1", _not_a_run(t), "--input",
                                           "builtin:astronaut", "--output", f"{t}/o.png"],
         ["model.ckpt", "not a stage-1 run"]),
    Case("stage1-missing", lambda t: ["tools/stylize.py", "--stage1", f"{t}/norun", "--input", "builtin:astronaut",
                                      "--output", f"{t}/o.png"], ["norun"]),
    Case("stage1-latest-json-corrupt", lambda t: ["tools/stylize.py", "--stage1", _broken_run(t), "--input",
                                                  "builtin:astronaut", "--output", f"{t}/o.png"], ["latest.json"]),
    Case("config-missing", lambda t: _stylize("--config", f"{t}/none.yaml", "--input", "builtin:astronaut",
                                              "--output", f"{t}/o.png"), ["none.yaml"]),
    Case("unknown-set-key", lambda t: _stylize("--set", "run.sede=3", "--input", "builtin:astronaut", "--output",
                                               f"{t}/o.png"), ["run.sede"]),
]


@pytest.mark.parametrize("case", STYLIZE_CASES, ids=str)
def test_stylize_refuses(case, stage1_run, tmp_path):
    make = case.make
    case.make = lambda t: [a.replace(STAGE1, stage1_run) for a in make(t)]
    try:
        check_case(case, str(tmp_path), extra_roots=[stage1_run])
    finally:
        case.make = make


EVALUATE_CASES = [
    Case("metric-size-zero", lambda t: ["tools/evaluate.py", "--outputs", _photos_dir(t), "--metric-size", "0"],
         ["--metric-size"]),
    Case("metric-size-huge", lambda t: ["tools/evaluate.py", "--outputs", _photos_dir(t), "--metric-size", "99999"],
         ["--metric-size"]),
    Case("batch-size-zero", lambda t: ["tools/evaluate.py", "--outputs", _photos_dir(t), "--batch-size", "0"],
         ["--batch-size"]),
    Case("outputs-missing", lambda t: ["tools/evaluate.py", "--outputs", f"{t}/none"], ["no such folder"]),
    Case("outputs-empty", lambda t: (os.makedirs(f"{t}/empty"), ["tools/evaluate.py", "--outputs", f"{t}/empty"])[1],
         ["holds no images"]),
    Case("report-is-a-folder", lambda t: (os.makedirs(f"{t}/r.md"), ["tools/evaluate.py", "--outputs", _photos_dir(t),
                                                                     "--report", f"{t}/r"])[1], ["is a folder"]),
    Case("lpips-weights-missing", lambda t: ["tools/evaluate.py", "--outputs", _photos_dir(t), "--lpips",
                                             f"{t}/lp.ckpt"], ["lp.ckpt"]),
    Case("style-without-inception", lambda t: ["tools/evaluate.py", "--outputs", _photos_dir(t), "--style",
                                               _photos_dir(t)], ["--inception"]),
]


@pytest.mark.parametrize("case", EVALUATE_CASES, ids=str)
def test_evaluate_refuses(case, tmp_path):
    check_case(case, str(tmp_path))


# ------------------------------------------------------------------ what works, works safely
def test_output_beside_its_input_touches_nothing_else(stage1_run, tmp_path):
    """--input D/photo.png --output D/result.png: the photo stays, only result.png appears
    (the old tool wrote D/photo.png first and renamed it, deleting the photo)."""
    photo = _photo(str(tmp_path / "D" / "photo.png"))
    _photo(str(tmp_path / "D" / "photo.jpg"), "builtin:grace_hopper")  # an unrelated file of the same stem
    before = tree(str(tmp_path))
    args = [a.replace(STAGE1, stage1_run) for a in _stylize("--input", photo, "--output",
                                                            str(tmp_path / "D" / "result.png"))]
    proc = run_tool(args, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    after = tree(str(tmp_path))
    assert {k: v for k, v in after.items() if k in before} == before
    assert sorted(set(after) - set(before)) == [os.path.join("D", "result.png")]


def test_folder_skips_a_bad_photo_and_makes_names_unique(stage1_run, tmp_path):
    src = tmp_path / "in"
    _photo(str(src / "a.jpg"))
    _photo(str(src / "a.png"), "builtin:grace_hopper")
    _truncated(str(src / "c.jpg"))
    out = tmp_path / "out"
    args = [a.replace(STAGE1, stage1_run) for a in _stylize("--input", str(src), "--output-dir", str(out))]
    proc = run_tool(args, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(os.listdir(out)) == ["a.png", "a_png.png"]
    assert "written as a_png.png" in proc.stderr
    assert "skipped" in proc.stderr and "c.jpg" in proc.stderr and "1 photos skipped" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_all_photos_bad_is_one_line(stage1_run, tmp_path):
    src = tmp_path / "in"
    _truncated(str(src / "a.jpg"))
    (src / "b.png").write_bytes(b"\x89PNG broken")
    args = [a.replace(STAGE1, stage1_run) for a in _stylize("--input", str(src), "--output-dir", str(tmp_path / "o"))]
    proc = run_tool(args, cwd=str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error:") and "no photo could be stylized" in proc.stderr
    assert not (tmp_path / "o").exists() or not os.listdir(tmp_path / "o")


def test_same_command_twice_gives_the_same_bytes(stage1_run, tmp_path):
    """Seeded host noise, loss networks from the stage-1 run, per-photo seeds: the same command
    gives the same files and the same objective (the second run also reuses the compile cache).
    Each run writes exactly the output, its variants and their grid, and prints their paths
    (work files go to the cache folder)."""
    outs = []
    names = ("astronaut.png", "astronaut_k0.png", "astronaut_k1.png", "astronaut_variants.png")
    for run in ("first", "second"):
        out = tmp_path / run / "astronaut.png"
        args = [a.replace(STAGE1, stage1_run) for a in _stylize(
            "--input", "builtin:astronaut", "--output", str(out), "--steps", "2", "--variants", "2",
            "--interpolate", "2")]
        proc = run_tool(args, cwd=str(tmp_path))
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert proc.stdout.split() == [str(tmp_path / run / n) for n in names]
        assert sorted(os.listdir(tmp_path / run)) == sorted(names)
        files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (tmp_path / run).iterdir()}
        objective = [line.split(": ", 1)[1].split("; wrote")[0] for line in proc.stderr.splitlines() if "objective" in line]
        outs.append((files, objective))
    assert outs[0] == outs[1]
    assert len(outs[0][0]) == 4 and len(outs[0][1]) == 1  # main, 2 variants, grid; one objective line
    # other loss weights are other graph constants: the shared compile cache must not serve the
    # first command's graphs (it did: the objective came out unchanged)
    args = [a.replace(STAGE1, stage1_run) for a in _stylize(
        "--input", "builtin:astronaut", "--output", str(tmp_path / "l2" / "astronaut.png"), "--steps", "2",
        "--variants", "2", "--interpolate", "2", "--set", "weights.lpips=0", "--set", "weights.id=0")]
    proc = run_tool(args, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    objective = [line.split(": ", 1)[1].split("; wrote")[0] for line in proc.stderr.splitlines() if "objective" in line]
    assert len(objective) == 1 and objective != outs[0][1], (objective, outs[0][1])
