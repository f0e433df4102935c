"""MindSpore checkpoint files, the one home for every ``.ckpt`` the project writes or reads:
atomic writes, strict loads, one-line errors naming the file.

A run checkpoint is one ``.ckpt`` holding every network and optimizer state under
``<group>/<parameter name>`` (e.g. ``encoder/styles.0.linear.weight``,
``optim.encoder/moment1.styles...``) plus a JSON sidecar with the loop state. A converted
weight file (``python -m weights_convert ...``) is the same kind of file: parameter names as
they are, the sidecar describing the source and the architecture.

Public API: ``CheckpointFileError``, ``atomic_write_json(path, data)``, ``named_arrays(groups)``,
``save_arrays(arrays, path, meta=None)``, ``read_arrays(path) -> (arrays, meta)``,
``fill_cell(cell, arrays, source, prefix='', allow_missing=())``, ``load_groups(groups, arrays, source)``.
"""
import json
import os
import tempfile

import numpy as np


class CheckpointFileError(ValueError):
    """A checkpoint that is missing, unreadable or does not fit the networks.

    ``str()`` is one line that starts with the file (or what stands for it)."""

    def __init__(self, message):
        super().__init__(" ".join(str(message).split()))


def _first_line(exc, limit=200):
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__


def atomic_write_json(path, data):
    from ..data.imageio import write_bytes_atomic

    # default=str: a value JSON cannot hold (a pSp option object) is kept as its text
    write_bytes_atomic(path, json.dumps(data, indent=1, default=str).encode("utf-8"))


def named_arrays(groups):
    """{group: cell} -> {'group/param': ndarray} using traversal (relative) names."""
    out = {}
    for group, cell in groups.items():
        for name, param in cell.parameters_and_names():
            out[f"{group}/{name}"] = param.asnumpy()
    return out


def _output_folder(path):
    """The folder the checkpoint goes to, created if missing: the temporary file must live in
    it, so that the final os.replace is a rename on one file system."""
    if os.path.isdir(path):
        raise CheckpointFileError(f"{path}: is a folder; give a file name")
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise CheckpointFileError(f"{path}: cannot create the output folder {folder} ({exc.strerror or exc})") from None
    return folder


def save_arrays(arrays, path, meta=None):
    """Write {name: ndarray} as a MindSpore checkpoint (+ JSON sidecar), each atomically.

    The list-of-{name, data} form keeps every entry and each array's dtype."""
    import mindspore as ms

    path = os.fspath(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=".ckpt", dir=_output_folder(path))  # unpredictable
    os.close(fd)
    try:
        ms.save_checkpoint([{"name": k, "data": ms.Tensor(np.ascontiguousarray(v))} for k, v in arrays.items()], tmp)
        os.chmod(tmp, 0o644)  # MindSpore leaves it owner-read-only
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    if meta is not None:
        atomic_write_json(path + ".json", meta)


def _read_sidecar(path):
    sidecar = path + ".json"
    if not os.path.isfile(sidecar):
        return {}
    try:
        with open(sidecar, encoding="utf-8") as fh:
            meta = json.load(fh)
    except (OSError, ValueError):
        raise CheckpointFileError(f"{sidecar}: unreadable JSON sidecar") from None
    if not isinstance(meta, dict):
        raise CheckpointFileError(f"{sidecar}: JSON sidecar is not an object")
    return meta


def read_arrays(path):
    """{name: ndarray}, meta of a checkpoint written by ``save_arrays`` (meta is {} without a sidecar)."""
    import mindspore as ms

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointFileError(f"{path}: no such checkpoint file")
    if os.path.getsize(path) == 0:
        raise CheckpointFileError(f"{path}: not a readable MindSpore checkpoint (empty file)")
    try:
        loaded = ms.load_checkpoint(path)
    except Exception as exc:  # MindSpore raises several types for corrupt files
        raise CheckpointFileError(f"{path}: not a readable MindSpore checkpoint ({_first_line(exc)})") from None
    if not loaded:
        raise CheckpointFileError(f"{path}: not a readable MindSpore checkpoint (no parameters)")
    return {k: v.asnumpy() for k, v in loaded.items()}, _read_sidecar(path)


def fill_cell(cell, arrays, source, prefix="", allow_missing=()):
    """Set every parameter of ``cell`` from ``arrays[prefix + name]``; strict both ways.

    ``allow_missing``: parameter-name prefixes that may stay as initialised (e.g. the
    encoder's style heads when only the IR-SE50 body is pretrained)."""
    import mindspore as ms

    params = dict(cell.parameters_and_names())
    used, missing, bad = set(), [], []
    for name, param in params.items():
        key = prefix + name
        if key not in arrays:
            if not any(name.startswith(p) for p in allow_missing):
                missing.append(name)
            continue
        value = arrays[key]
        if value.size == 1 and int(np.prod(param.shape)) == 1:
            value = value.reshape(param.shape)  # MindSpore stores 0-d values (Adam's beta powers) as (1,)
        if tuple(value.shape) != tuple(param.shape):
            bad.append(f"{name} {tuple(value.shape)} vs {tuple(param.shape)}")
            continue
        # assign in place: set_data swaps the storage, and a compiled optimizer update that already
        # holds the old one (Adam's beta powers, global_step) would keep counting from it
        param.assign_value(ms.Tensor(value, dtype=param.dtype))
        used.add(key)
    unused = sorted(k for k in arrays if k.startswith(prefix) and k not in used)
    problems = []
    if missing:
        problems.append(f"{len(missing)} parameters not in the file (e.g. {', '.join(missing[:3])})")
    if unused:
        problems.append(f"{len(unused)} file entries unused (e.g. {', '.join(unused[:3])})")
    if bad:
        problems.append(f"shape mismatch: {'; '.join(bad[:3])}")
    if problems:
        raise CheckpointFileError(f"{source}: does not fit the network: " + "; ".join(problems))


def load_groups(groups, arrays, source):
    for group, cell in groups.items():
        fill_cell(cell, arrays, source, prefix=f"{group}/")
    known = {f"{g}/" for g in groups}
    extra = [k for k in arrays if not any(k.startswith(p) for p in known)]
    if extra:
        raise CheckpointFileError(f"{source}: unexpected entries (e.g. {', '.join(extra[:3])})")
