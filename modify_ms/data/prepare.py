"""Turning raw photos into model inputs: the single-photo path and folder alignment.

* ``load_photo(path, size, align)``: one photo -> float32 (3, size, size) in [-1, 1];
  every problem is one ``InputError`` line naming the file (test-time / online modes).
* ``align_source(...)``: align every image of a source with worker processes, a
  progress bar and a summary of skipped files and why (tools/align_faces.py and the
  dataset's align pre-pass). Outputs are written atomically, so an interrupted run
  leaves only complete images and a rerun continues where it stopped.
"""
from __future__ import annotations

import hashlib
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from .align import Aligner, AlignResult, center_crop, resize_image
from .imageio import InputError, read_image, save_image_atomic
from .sources import ImageSource


def to_model_array(image: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> float32 (3, H, W) in [-1, 1]."""
    return (np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 127.5 - 1.0).astype(np.float32)


def from_model_array(array: np.ndarray) -> np.ndarray:
    """float32 (3, H, W) in [-1, 1] -> RGB uint8 (H, W, 3) (values outside are clipped)."""
    chw = np.asarray(array, dtype=np.float32)
    return np.clip(np.rint((chw.transpose(1, 2, 0) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def fit_square(image: np.ndarray, size: int, crop: str = "center") -> np.ndarray:
    """An already-aligned (or any) image -> size x size: centre crop or plain resize."""
    if crop == "stretch":
        return resize_image(image, size, size)
    return center_crop(image, size)


def load_photo(path: str, size: int, align: str = "auto", aligner: Optional[Aligner] = None,
               min_score: float = 0.0, no_face: str = "error") -> np.ndarray:
    """One photo -> float32 (3, size, size) in [-1, 1], FFHQ-aligned unless align='none'.
    ``no_face='center'`` centre-crops photos where no face is found instead of raising."""
    image = read_image(path)
    aligner = aligner or Aligner(size, align, min_score=min_score, no_face=no_face)
    return to_model_array(aligner(image, path).image)


# ----------------------------------------------------------------------------- folders

@dataclass
class AlignSummary:
    total: int = 0
    aligned: int = 0
    existing: int = 0  # outputs already present and kept (resumed run)
    no_face: int = 0  # centre-cropped because no face was found (no_face='center')
    skipped: List[Tuple[str, str]] = field(default_factory=list)  # (input name, reason)
    seconds: float = 0.0
    method: str = "ffhq"

    def text(self, limit: int = 20) -> str:
        no_face = f" ({self.no_face} without a face: centre-cropped)" if self.no_face else ""
        lines = [f"{self.aligned} aligned ({self.method}){no_face}, {self.existing} already done, "
                 f"{len(self.skipped)} skipped of {self.total} in {self.seconds:.1f} s"]
        lines += [f"  skipped {name}: {reason}" for name, reason in self.skipped[:limit]]
        if len(self.skipped) > limit:
            lines.append(f"  ... and {len(self.skipped) - limit} more skipped")
        return "\n".join(lines)


_WORKER = {}


def _init_worker(source: ImageSource, size: int, mode: str, min_score: float, out_paths, overwrite: bool,
                 no_face: str = "error"):
    _WORKER.update(source=source, aligner=Aligner(size, mode, min_score=min_score, notice=lambda _t: None,
                                                  no_face=no_face),
                   out_paths=out_paths, overwrite=overwrite)


def _align_one(index: int):
    """-> (index, 'ok' | 'existing' | 'skip', payload: output path, image or reason)."""
    source, aligner = _WORKER["source"], _WORKER["aligner"]
    out_paths, overwrite = _WORKER["out_paths"], _WORKER["overwrite"]
    out_path = out_paths[index] if out_paths is not None else None
    if out_path is not None and not overwrite and os.path.isfile(out_path):
        return index, "existing", out_path
    try:
        result: AlignResult = aligner(source.read(index), source.names[index])
    except InputError as exc:
        return index, "skip", exc.reason
    status = "ok" if result.method != "center-no-face" else "ok-no-face"
    if out_path is None:
        return index, status, result.image
    save_image_atomic(out_path, result.image)
    return index, status, out_path


def align_source(source: ImageSource, size: int, mode: str = "auto", out_paths: Optional[Sequence[str]] = None,
                 workers: int = 1, min_score: float = 0.0, overwrite: bool = False, progress: bool = True,
                 notice: Callable[[str], None] = None, no_face: str = "error") -> Tuple[AlignSummary, list]:
    """Align every image of ``source``.

    With ``out_paths`` (one output file per image) images are written there and the
    returned list holds the paths of the usable outputs; without, it holds the aligned
    uint8 arrays. Either list is in source order; failures are in the summary.
    ``no_face='center'`` keeps photos without a detected face as centre crops (counted
    in ``summary.no_face``) instead of skipping them.
    """
    start = time.time()
    probe = Aligner(size, mode, min_score=min_score, notice=notice)  # resolves 'auto', prints the notice once
    resolved = probe.mode
    summary = AlignSummary(total=len(source), method="ffhq" if probe.uses_dlib else "center-crop")
    if out_paths is not None and len(out_paths) != len(source):
        raise ValueError("align_source: one output path per image is needed")
    results = {}
    indices = range(len(source))
    bar = _progress(len(source), progress)
    if workers <= 1 or len(source) <= 1:
        _init_worker(source, size, resolved, min_score, out_paths, overwrite, no_face)
        for index in indices:
            results[index] = _align_one(index)[1:]
            bar.update(1)
    else:
        # spawn: a forked copy of a process that already runs MindSpore threads can deadlock
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(workers, initializer=_init_worker,
                      initargs=(source, size, resolved, min_score, out_paths, overwrite, no_face)) as pool:
            for index, status, payload in pool.imap_unordered(_align_one, indices, chunksize=1):
                results[index] = (status, payload)
                bar.update(1)
    bar.close()
    outputs = []
    for index in indices:
        status, payload = results[index]
        if status == "skip":
            summary.skipped.append((source.names[index], payload))
            continue
        summary.aligned += status in ("ok", "ok-no-face")
        summary.no_face += status == "ok-no-face"
        summary.existing += status == "existing"
        outputs.append(payload)
    summary.skipped.extend(source.skipped)
    summary.seconds = time.time() - start
    return summary, outputs


def cache_paths(source: ImageSource, cache_dir: str, size: int, mode: str, min_score: float) -> List[str]:
    """Content-keyed cache file per image: a changed file or setting gets a new name."""
    folder = os.path.join(cache_dir, f"aligned_{mode}_{size}")
    names = []
    for index in range(len(source)):
        key = f"{source.fingerprint(index)}|{size}|{mode}|{min_score}"
        names.append(os.path.join(folder, hashlib.sha1(key.encode()).hexdigest()[:20] + ".png"))
    return names


class _NoBar:
    def update(self, _n):
        pass

    def close(self):
        pass


def _progress(total: int, enabled: bool):
    if not enabled:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, unit="img", file=sys.stderr, dynamic_ncols=True, mininterval=0.5)
