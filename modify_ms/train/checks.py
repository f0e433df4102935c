"""Input checks a training command runs first, before it imports MindSpore or builds a network:
the run folder, the weight files, the checkpoint pointer and sidecar to resume from. Each
problem is one line (a user error, exit code 2)."""
import json
import os
import re

import numpy as np

from ..utils.checkpoint import CheckpointFileError
from ..utils.paths import OutputPathError, is_inside

CHECKPOINT_NAME = re.compile(r"step_\d{8}\.ckpt")

WEIGHT_KEYS = ("generator", "discriminator", "encoder_backbone", "encoder", "identity", "lpips")
# keys of which one file is enough: the whole encoder holds its backbone
ALTERNATIVES = {"encoder_backbone": "encoder", "encoder": "encoder_backbone"}


class WeightsMissingError(ValueError):
    """A pretrained weight file named by the config is needed but absent."""


def weight_file(weights, key):
    """The file ``weights.<key>`` names, ``builtin:<name>`` resolved to the packaged file ('' if empty)."""
    from ..assets import resolve_weight_path

    try:
        return resolve_weight_path(getattr(weights, key))
    except ValueError as exc:
        raise WeightsMissingError(f"weights.{key}: {exc}") from None


def check_weight_files(weights):
    """Every weight file the config names exists, and none is left empty unless ``weights.require``
    is false: one line naming all that are empty (an empty config would otherwise build the whole
    1024 model before saying so)."""
    for key in WEIGHT_KEYS:
        path = weight_file(weights, key)
        if path and not os.path.isfile(path):
            raise WeightsMissingError(f"{path}: {key} weights not found (see README, 'Pretrained weights')")
    empty = [f"weights.{key}" for key in WEIGHT_KEYS
             if not getattr(weights, key) and not getattr(weights, ALTERNATIVES.get(key, key))]
    if "weights.encoder" in empty:
        empty.remove("weights.encoder")  # reported as encoder_backbone, the paper's file
    if empty and weights.require:
        raise WeightsMissingError(f"{', '.join(empty)} {'is' if len(empty) == 1 else 'are'} empty: converted "
                                  f"checkpoints are required (see README, 'Pretrained weights'), or set "
                                  f"weights.require=false for a smoke test")


def check_run_dir(run_dir, resume=False, data_path=""):
    """The run folder can be used: not a file (nor below one), not inside the data folder (its
    samples would be read back as training images); for a resume, an existing folder."""
    if not run_dir:
        raise OutputPathError("run.out_dir is empty")
    path = os.path.abspath(run_dir)
    if os.path.exists(path) and not os.path.isdir(path):
        raise OutputPathError(f"{run_dir}: names an existing file, not a run folder")
    parent = os.path.dirname(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise OutputPathError(f"{run_dir}: cannot be created: {parent} is a file")
    if resume and not os.path.isdir(path):
        raise OutputPathError(f"{run_dir}: no such run folder to resume")
    if data_path and os.path.isdir(data_path) and is_inside(path, data_path):
        raise OutputPathError(f"{run_dir}: run.out_dir is inside the data folder {data_path}; its samples would "
                              f"be read back as training images; choose another run.out_dir")


def latest_checkpoint(ckpt_dir):
    """Path of the checkpoint ``ckpt_dir/latest.json`` points at, None without a pointer. A pointer
    that is not JSON, names anything but a ``step_XXXXXXXX.ckpt`` of this folder (no path may
    leave it), or names a missing file is a one-line CheckpointFileError."""
    pointer = os.path.join(ckpt_dir, "latest.json")
    if not os.path.isfile(pointer):
        return None
    try:
        with open(pointer, encoding="utf-8") as fh:
            name = json.load(fh)["checkpoint"]
    except (ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError):
        raise CheckpointFileError(f"{pointer}: corrupt (expected JSON naming the latest checkpoint)") from None
    if not isinstance(name, str) or not CHECKPOINT_NAME.fullmatch(name):
        raise CheckpointFileError(f"{pointer}: names {str(name)[:80]!r}, not a step_XXXXXXXX.ckpt of this run")
    path = os.path.join(ckpt_dir, name)
    if not os.path.isfile(path):
        raise CheckpointFileError(f"{pointer}: names {name}, which is missing")
    return path


def restore_rng(state):
    """A numpy Generator in the saved ``bit_generator.state``."""
    rng = np.random.default_rng()
    rng.bit_generator.state = state
    return rng


def read_sidecar(ckpt_path):
    """(step, host RNG) from a run checkpoint's JSON sidecar, checked."""
    path = ckpt_path + ".json"
    if not os.path.isfile(path):
        raise CheckpointFileError(f"{path}: sidecar missing (it holds the step and the RNG state)")
    try:
        with open(path, encoding="utf-8") as fh:
            meta = json.load(fh)
    except (ValueError, UnicodeDecodeError):
        raise CheckpointFileError(f"{path}: corrupt sidecar (not JSON)") from None
    step = meta.get("step") if isinstance(meta, dict) else None
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise CheckpointFileError(f"{path}: corrupt sidecar (no valid 'step')")
    try:
        rng = restore_rng(meta["rng"])
    except (KeyError, TypeError, ValueError):
        raise CheckpointFileError(f"{path}: corrupt sidecar (no valid 'rng' state)") from None
    return step, rng


def check_resume_point(run_dir):
    """The latest checkpoint of ``run_dir`` and its sidecar, checked before MindSpore is imported."""
    latest = latest_checkpoint(os.path.join(run_dir, "checkpoints"))
    if latest is None:
        raise CheckpointFileError(f"{run_dir}: nothing to resume (no checkpoints/latest.json)")
    read_sidecar(latest)
    return latest
