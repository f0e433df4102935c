"""Files for evaluation: image listing, pairing outputs with inputs by stem, atomic writes.

Output folder layouts understood by ``group_outputs``:
* ``<stem>.png``                       one output per input
* ``<stem>_k0.png ... <stem>_k{K-1}.png`` K stylizations of one input
* ``<stem>/<anything>.png``            a folder per input holding its K stylizations

tools/stylize.py --variants K writes ``<stem>.png``, ``<stem>_k*.png`` and the grid
``<stem>_variants.png`` together: there the K variants are the stem's outputs, and the grid
and the single output are left out (evaluate --method scores the single output for FID and
identity and the variants for diversity).
"""
import os
import re

import numpy as np

from modify_ms.data.imageio import IMAGE_EXTENSIONS, ImageReadError, is_image_name, write_bytes_atomic
from modify_ms.data.imageio import read_image as _read_rgb_uint8

_VARIANT = re.compile(r"^(?P<stem>.+)_k(?P<k>\d+)$")


class EvalInputError(ValueError):
    """A missing or unusable evaluation folder or file (the message names it)."""


def atomic_write_bytes(path, data):
    """Readers never see half a file (modify_ms.data's writer: temp file in the folder + os.replace)."""
    write_bytes_atomic(path, data)


def atomic_write_text(path, text):
    atomic_write_bytes(path, text.encode("utf-8"))


def list_images(folder, recursive=False):
    """Sorted image paths in ``folder`` (one-line EvalInputError if it is missing or holds none)."""
    if not os.path.isdir(folder):
        raise EvalInputError(f"{folder}: no such folder")
    paths = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if recursive else []
        paths += [os.path.join(root, n) for n in names
                  if is_image_name(n) and not n.startswith(".")]
    if not paths:
        raise EvalInputError(f"{folder}: holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    return sorted(paths)


def stem_of(path):
    return os.path.splitext(os.path.basename(path))[0]


def group_outputs(folder):
    """{input stem: [output paths, in variant order]} for the three layouts above."""
    if not os.path.isdir(folder):
        raise EvalInputError(f"{folder}: no such folder")
    groups = {}
    for entry in sorted(os.listdir(folder)):
        full = os.path.join(folder, entry)
        if entry.startswith("."):
            continue
        if os.path.isdir(full):
            inner = [os.path.join(full, n) for n in sorted(os.listdir(full))
                     if is_image_name(n) and not n.startswith(".")]
            if inner:
                groups.setdefault(entry, []).extend(inner)
        elif is_image_name(entry):
            match = _VARIANT.match(stem_of(entry))
            stem, k = (match.group("stem"), int(match.group("k"))) if match else (stem_of(entry), -1)
            groups.setdefault(stem, []).append((k, full))
    result = {}
    for stem, items in groups.items():
        if stem.endswith("_variants") and stem[:-len("_variants")] in groups:
            continue  # stylize's grid of <stem>'s variants, not an output
        if items and isinstance(items[0], tuple):
            if any(k >= 0 for k, _ in items):
                items = [(k, p) for k, p in items if k >= 0]  # stylize's layout: the variants
            items = [p for _, p in sorted(items)]
        result[stem] = items
    if not result:
        raise EvalInputError(f"{folder}: holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    return result


def pair_by_stem(input_paths, output_groups):
    """(pairs [(input path, [output paths])], unmatched input stems, unmatched output stems)."""
    inputs = {stem_of(p): p for p in input_paths}
    pairs = [(inputs[s], output_groups[s]) for s in sorted(inputs) if s in output_groups]
    return pairs, sorted(set(inputs) - set(output_groups)), sorted(set(output_groups) - set(inputs))


def read_image(path):
    """RGB float32 HWC in [0, 1] through modify_ms.data's one image reader (raises ImageReadError)."""
    return _read_rgb_uint8(path).astype(np.float32) / 255.0


class SkippingReader:
    """``read_image`` that returns None for an unusable file and records why, so one corrupt
    image costs the evaluation that image, not the run (``skipped``: {path: reason})."""

    def __init__(self):
        self.skipped = {}

    def __call__(self, path):
        try:
            return read_image(path)
        except ImageReadError as exc:
            self.skipped.setdefault(path, exc.reason)
            return None

    def note(self, limit=10):
        items = sorted(self.skipped.items())
        text = "; ".join(f"{p} ({r})" for p, r in items[:limit]) + (" ..." if len(items) > limit else "")
        return f"{len(items)} unreadable images skipped: {text}"
