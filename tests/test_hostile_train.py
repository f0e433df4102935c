"""tools/train_modify.py on hostile and broken inputs, through the real command line.

Each case (tests/cli_harness.py): exit code 2, one ``error:`` line and no traceback, no input
file changed (hashes), nothing new under the scratch folder, which is also the current
directory, so a failed start leaves no ``runs/quickstart/config.yaml`` behind. Classes: bad
numbers, bad types and keys, files that are not UTF-8 YAML, YAML alias tricks, missing inputs,
run folders that cannot be used, data with no readable image, broken checkpoints to resume.
The config cases fail before MindSpore is imported (under a second each); the data and
resume cases before any network is built.
"""
import os
import time
import tracemalloc

import numpy as np
import pytest

from cli_harness import REPO, Case, check_case
from modify_ms.config import ConfigError, MAX_YAML_VALUES, load_config
from modify_ms.train.config import Stage1Config

QUICKSTART = os.path.join(REPO, "yaml", "quickstart.yaml")
TOOL = "tools/train_modify.py"
BOMB = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, 10))
BOMB = "l0: &l0 [x]\n" + BOMB + "phases: *l9\n"  # 10**9 values once expanded


def _quickstart(*sets):
    """The quickstart config (out_dir runs/quickstart, relative to the scratch cwd) with overrides."""
    return [TOOL, "--config", QUICKSTART] + [a for s in sets for a in ("--set", s)]


def _write(tmp, name, data):
    path = os.path.join(tmp, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb" if isinstance(data, bytes) else "w") as fh:
        fh.write(data)
    return path


def _config_file(text, name="cfg.yaml"):
    return lambda tmp: [TOOL, "--config", _write(tmp, name, text)]


def _jpeg(path, level, truncate=False):
    from PIL import Image

    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = np.random.default_rng(level)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path, quality=90)
    if truncate:
        data = open(path, "rb").read()
        with open(path, "wb") as fh:
            fh.write(data[: len(data) // 2])


def _data(tmp, kind):
    folder = os.path.join(tmp, "data")
    for i in range(3):
        path = os.path.join(folder, f"img_{i}.jpg")
        if kind == "truncated":
            _jpeg(path, i, truncate=True)
        elif kind == "text":
            _write(tmp, os.path.join("data", f"img_{i}.jpg"), "not an image\n")
        elif kind == "empty":
            _write(tmp, os.path.join("data", f"img_{i}.jpg"), b"")
    os.makedirs(folder, exist_ok=True)
    return folder


def _with_data(kind, *sets):
    return lambda tmp: _quickstart(f"data.path={_data(tmp, kind)}", *sets)


# ------------------------------------------------------------------ a run folder to resume
def _run_folder(tmp, ckpt=b"", sidecar=None, latest=None):
    """A stage-1 run folder as train_modify leaves it (config.yaml, checkpoints/), with the given
    corruption; the checkpoint holds a real MindSpore file unless ``ckpt`` bytes replace it."""
    from modify_ms.config import save_resolved
    from modify_ms.utils.checkpoint import save_arrays

    run = os.path.join(tmp, "run")
    cfg = load_config(QUICKSTART, Stage1Config, [f"run.out_dir={run}"])
    os.makedirs(os.path.join(run, "checkpoints"))
    save_resolved(cfg, os.path.join(run, "config.yaml"))
    path = os.path.join(run, "checkpoints", "step_00000040.ckpt")
    rng_state = np.random.default_rng(0).bit_generator.state
    save_arrays({"encoder/w": np.ones(3, np.float32)}, path, {"step": 40, "rng": rng_state, "stage": 1})
    if ckpt:
        data = open(path, "rb").read()
        _write(tmp, path, ckpt if ckpt != b"half" else data[: len(data) // 2])
    if sidecar is not None:
        _write(tmp, path + ".json", sidecar) if sidecar != "delete" else os.remove(path + ".json")
    _write(tmp, os.path.join(run, "checkpoints", "latest.json"),
           latest if latest is not None else '{"checkpoint": "step_00000040.ckpt", "step": 40}')
    return [TOOL, "--resume", run]


def _resume(**corruption):
    return lambda tmp: _run_folder(tmp, **corruption)


CASES = [
    # numbers: finite, positive where it matters
    Case("lr-nan", lambda t: _quickstart("optim.lr=.nan"), ["optim.lr", "finite"]),
    Case("lr-inf", lambda t: _quickstart("optim.lr=.inf"), ["optim.lr", "finite"]),
    Case("lr-negative", lambda t: _quickstart("optim.lr=-0.001"), ["lr > 0"]),
    Case("lr-zero", lambda t: _quickstart("optim.lr=0"), ["lr > 0"]),
    Case("lr-nan-in-file", _config_file("optim: {lr: .NaN}\n"), ["cfg.yaml", "optim.lr", "finite"]),
    Case("gp-weight-negative", lambda t: _quickstart("adversarial.gp_weight=-1"), ["gp_weight"]),
    Case("loss-weight-inf", lambda t: _quickstart("phases=[{steps: 2, weights: {l2: .inf}}]"), ["l2", "finite"]),
    Case("steps-negative", lambda t: _quickstart("phases=[{steps: -3}]"), ["steps", ">= 1"]),
    Case("steps-zero", lambda t: _quickstart("phases=[{steps: 0}]"), ["steps"]),
    Case("batch-negative", lambda t: _quickstart("data.batch_size=-4"), ["batch_size"]),
    Case("batch-zero", lambda t: _quickstart("data.batch_size=0"), ["batch_size"]),
    Case("max-images-negative", lambda t: _quickstart("data.max_images=-1"), ["max_images"]),
    Case("seed-negative", lambda t: _quickstart("run.seed=-1"), ["run.seed"]),
    Case("seed-too-large", lambda t: _quickstart("run.seed=99999999999"), ["run.seed"]),
    Case("seed-option-negative", lambda t: [TOOL, "--config", QUICKSTART, "--seed", "-5"], ["--seed"]),
    Case("max-steps-zero", lambda t: [TOOL, "--config", QUICKSTART, "--max-steps", "0"], ["--max-steps"]),
    Case("loss-size-zero", lambda t: _quickstart("model.loss_size=0", "data.size=0"), ["size"]),
    Case("loss-size-negative", lambda t: _quickstart("model.loss_size=-64"), ["model.loss_size"]),
    Case("huge-channels", lambda t: _quickstart("model.generator.channel_max=1000000000"), ["channel_max"]),
    # types and keys
    Case("unknown-key", lambda t: _quickstart("optim.lrate=0.1"), ["unknown key", "optim.lrate"]),
    Case("unknown-section", _config_file("optimiser: {lr: 0.1}\n"), ["cfg.yaml", "optimiser"]),
    Case("wrong-type-int", lambda t: _quickstart("data.batch_size=four"), ["data.batch_size", "integer"]),
    Case("wrong-type-bool-for-int", lambda t: _quickstart("data.batch_size=true"), ["data.batch_size"]),
    Case("wrong-type-list", lambda t: _quickstart("phases=5"), ["phases", "list"]),
    Case("wrong-type-section", _config_file("optim: 0.1\n"), ["cfg.yaml", "optim"]),
    Case("date-for-seed", _config_file("run: {seed: 2024-01-01}\n"), ["run.seed", "integer"]),
    Case("non-string-key", _config_file("1: {lr: 0.1}\n"), ["cfg.yaml", "not a name"]),
    Case("top-level-list", _config_file("- optim\n- run\n"), ["cfg.yaml", "mapping"]),
    Case("not-one-of", lambda t: _quickstart("run.mode=fast"), ["run.mode", "one of"]),
    Case("override-without-value", lambda t: _quickstart("optim.lr"), ["key=value"]),
    Case("override-empty-key", lambda t: _quickstart("=3"), ["empty key"]),
    # files that are not UTF-8 YAML
    Case("binary-config", _config_file(bytes(range(256)) * 4), ["cfg.yaml", "binary"]),
    Case("latin1-config", _config_file("data: {path: caf\u00e9}\n".encode("latin-1")), ["cfg.yaml", "UTF-8"]),
    Case("utf16-config", _config_file("optim: {lr: 0.1}\n".encode("utf-16")), ["cfg.yaml"]),
    Case("torch-file-as-config", lambda t: [TOOL, "--config", os.path.join(REPO, "modify_ms", "assets", "lpips_v0.1",
                                                                    "alex.pth")], ["alex.pth"]),
    Case("invalid-yaml", _config_file("optim: {lr: [0.1\n"), ["cfg.yaml", "not valid YAML"]),
    Case("tab-indented", _config_file("optim:\n\tlr: 0.1\n"), ["cfg.yaml", "YAML"]),
    Case("too-large", _config_file("# " + "x" * (2 << 20) + "\n"), ["cfg.yaml", "too large"]),
    Case("deeply-nested", _config_file("phases: " + "[" * 20000 + "]" * 20000 + "\n"), ["cfg.yaml"]),
    # YAML aliases
    Case("recursive-alias", _config_file("phases: &p [*p]\n"), ["cfg.yaml", "recursive"]),
    Case("recursive-alias-mapping", _config_file("optim: &o {lr: 0.1, self: *o}\n"), ["cfg.yaml", "recursive"]),
    Case("recursive-alias-override", lambda t: _quickstart("phases=&p [*p]"), ["recursive"]),
    Case("alias-bomb", _config_file(BOMB), ["cfg.yaml", "alias bomb"]),
    Case("merge-key-bomb", _config_file(BOMB.replace("phases: *l9", "run: {<<: {x: *l9}}")), ["alias bomb"]),
    # missing things and what is missing
    Case("empty-config", _config_file(""), ["cfg.yaml", "weights.generator", "empty"]),
    Case("null-config", _config_file("~\n"), ["cfg.yaml", "weights.generator", "empty"]),
    Case("comment-only-config", _config_file("# nothing here\n"), ["weights.encoder_backbone", "empty"]),
    Case("missing-config", lambda t: [TOOL, "--config", os.path.join(t, "nope.yaml")], ["nope.yaml", "not found"]),
    Case("config-is-a-folder", lambda t: [TOOL, "--config", t], ["not a regular file"]),
    Case("missing-weight-file", lambda t: _quickstart("weights.generator=/nowhere/g.ckpt"), ["/nowhere/g.ckpt"]),
    Case("corrupt-weight-file", lambda t: _quickstart(f"weights.generator={_write(t, 'g.ckpt', b'PK' * 99)}"),
         ["g.ckpt", "not a readable"], strict_stderr=False),  # after the smoke-test notes
    Case("weights-required", lambda t: _quickstart("weights.require=true"), ["weights.discriminator", "empty"]),
    Case("missing-data", lambda t: _quickstart(f"data.path={os.path.join(t, 'no_data')}"), ["no_data"]),
    Case("empty-data-folder", _with_data("none"), ["data"]),
    # run folders that cannot be used
    Case("out-dir-is-a-file", lambda t: _quickstart(f"run.out_dir={_write(t, 'taken', 'mine')}"),
         ["taken", "existing file"]),
    Case("out-dir-below-a-file", lambda t: _quickstart(f"run.out_dir={_write(t, 'taken', 'mine')}/run"),
         ["is a file"]),
    Case("out-dir-empty", lambda t: _quickstart("run.out_dir="), ["run.out_dir"]),
    Case("out-dir-inside-data", lambda t: _quickstart(f"data.path={_data(t, 'none')}",
                                                      f"run.out_dir={os.path.join(t, 'data', 'run')}"),
         ["inside the data folder"]),
    # data with no readable image (found before any network is built)
    Case("all-truncated", _with_data("truncated", "data.batch_size=1"), ["none of the 3 images can be decoded"]),
    Case("all-not-images", _with_data("text", "data.batch_size=1"), ["usable images"], strict_stderr=False),
    Case("all-empty-files", _with_data("empty", "data.batch_size=1"), ["usable images"], strict_stderr=False),
    # broken checkpoints to resume
    Case("resume-missing-folder", lambda t: [TOOL, "--resume", os.path.join(t, "gone")], ["gone", "no such run"]),
    Case("resume-with-config", lambda t: [TOOL, "--resume", os.path.join(t, "run"), "--config", "yaml/quickstart.yaml"],
         ["--resume", "--config would be ignored"]),
    Case("resume-no-config", lambda t: [TOOL, "--resume", os.path.dirname(_write(t, "run/x.txt", "x"))],
         ["config.yaml", "not found"]),
    Case("resume-latest-not-json", _resume(latest="{not json"), ["latest.json", "corrupt"]),
    Case("resume-latest-binary", _resume(latest=b"\xff\xfe\x00\x01"), ["latest.json", "corrupt"]),
    Case("resume-latest-escapes", _resume(latest='{"checkpoint": "../../config.yaml"}'), ["latest.json", "not a step"]),
    Case("resume-latest-names-missing", _resume(latest='{"checkpoint": "step_00000099.ckpt"}'),
         ["latest.json", "missing"]),
    Case("resume-latest-wrong-type", _resume(latest='["step_00000040.ckpt"]'), ["latest.json", "corrupt"]),
    Case("resume-sidecar-not-json", _resume(sidecar="{oops"), ["step_00000040.ckpt.json", "sidecar"]),
    Case("resume-sidecar-no-step", _resume(sidecar='{"rng": {}}'), ["step_00000040.ckpt.json", "step"]),
    Case("resume-sidecar-bad-rng", _resume(sidecar='{"step": 40, "rng": {"state": 1}}'), ["rng"]),
    Case("resume-sidecar-missing", _resume(sidecar="delete"), ["sidecar missing"]),
    Case("resume-ckpt-truncated", _resume(ckpt=b"half"), ["step_00000040.ckpt", "not a readable"]),
    Case("resume-ckpt-garbage", _resume(ckpt=b"\x00garbage" * 50), ["step_00000040.ckpt", "not a readable"]),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_hostile_input(case, tmp_path):
    start = time.perf_counter()
    check_case(case, str(tmp_path))
    # every case fails before any network is built: seconds, not the minutes of building the 1024 model
    assert time.perf_counter() - start < 60, case.name


def test_alias_bomb_fails_fast_without_the_memory(tmp_path):
    """In-process: the bomb (10**9 values once expanded) is refused within a few MB and well
    under a second, before construction."""
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    tracemalloc.start()
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="alias bomb"):
        load_config(str(path), Stage1Config)
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 50e6 and elapsed < 5, (peak, elapsed)


def test_ordinary_aliases_still_work(tmp_path):
    """Aliases are fine below the limit: a shared loss-weights block used by two phases."""
    path = tmp_path / "aliases.yaml"
    path.write_text("shared: &w {l2: 0.5, lpips: 0.8}\n")
    text = ("phases:\n  - {steps: 2, weights: &w {l2: 0.5, lpips: 0.8}}\n"
            "  - {steps: 3, weights: *w, train: [encoder, decoder, remap]}\n")
    path.write_text(text)
    cfg = load_config(str(path), Stage1Config)
    assert cfg.phases[0].weights == cfg.phases[1].weights and cfg.phases[1].weights.l2 == 0.5
    assert MAX_YAML_VALUES >= 10_000  # a config with a few hundred values is far below it
