"""Turning raw photos into model inputs: the single-photo path and folder alignment.

* ``load_photo(path, size, align)``: one photo -> float32 (3, size, size) in [-1, 1];
  every problem is one ``InputError`` line naming the file (test-time / online modes).
* ``align_source(...)``: align every image of a source with worker processes, a
  progress bar and a summary of skipped files and why, and of which face was kept where
  a photo had several (tools/align_faces.py and the dataset's align pre-pass). Outputs
  are written atomically, so an interrupted run leaves only complete images and a rerun
  continues where it stopped; an output that would replace an input is never written.
"""
from __future__ import annotations

import hashlib
import multiprocessing
import os
import re
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
    crops: int = 0  # images written (several per photo with face='all')
    skipped: List[Tuple[str, str]] = field(default_factory=list)  # (input name, reason)
    notes: List[Tuple[str, str]] = field(default_factory=list)  # (input name, which face(s) and why)
    seconds: float = 0.0
    method: str = "ffhq"

    def text(self, limit: int = 20) -> str:
        no_face = f" ({self.no_face} without a face: centre-cropped)" if self.no_face else ""
        crops = f" ({self.crops} face crops)" if self.crops > self.aligned else ""
        lines = [f"{self.aligned} aligned ({self.method}){crops}{no_face}, {self.existing} already done, "
                 f"{len(self.skipped)} skipped of {self.total} in {self.seconds:.1f} s"]
        lines += _limited([f"  skipped {printable(name)}: {printable(reason)}" for name, reason in self.skipped],
                          limit, "skipped")
        lines += _limited([f"  {printable(name)}: {note}" for name, note in self.notes], limit,
                          "with several faces or a retry")
        return "\n".join(lines)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def printable(text: str) -> str:
    """A name from the user's files as one printable line: bytes that are not UTF-8 and
    control characters (tabs, newlines, terminal escapes) are shown escaped."""
    try:
        text = os.fsencode(text).decode("utf-8", "backslashreplace")  # undecodable name bytes -> \xe9
    except UnicodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return _CONTROL.sub(_escape, text)


def _escape(match) -> str:
    char = match.group()
    return {"\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(char, f"\\x{ord(char):02x}")


def _limited(lines: List[str], limit: int, what: str) -> List[str]:
    if len(lines) <= limit:
        return lines
    return lines[:limit] + [f"  ... and {len(lines) - limit} more {what}"]


def face_output_path(path: str, rank: int) -> str:
    """``<stem>_face<rank><ext>``: the output of face number ``rank`` with face='all'."""
    root, ext = os.path.splitext(path)
    return f"{root}_face{rank}{ext}"


def face_note(results: List[AlignResult], choice) -> str:
    """One line saying which face(s) were kept and their scores, or '' when there was no
    choice to make (one face, found by the first detection pass)."""
    faces = [r for r in results if r.face is not None]
    if not faces or (faces[0].faces_found == 1 and not faces[0].face.found_by):
        return ""
    found = faces[0].faces_found
    if choice == "all":
        return f"{found} faces written: " + "; ".join(f"face{r.rank} {r.face.describe()}" for r in faces)
    kept = faces[0]
    why = {"largest": "the main face: largest, most central", "best": "highest score"}.get(choice, "asked for")
    others = f" of {found} (--face all or --face N for the others)" if found > 1 else ""
    return f"kept face {kept.rank}{others}: {kept.face.describe()} ({why})"


@dataclass
class _Job:
    """What every worker needs; sent once per worker process."""
    source: ImageSource
    aligner: Aligner
    out_paths: Optional[Sequence[str]]
    overwrite: bool
    protect: frozenset  # real paths of the inputs: never written, whatever the flags


_WORKER = {}


def _init_worker(source: ImageSource, size: int, mode: str, min_score: float, out_paths, overwrite: bool,
                 no_face: str = "error", face="largest", protect=frozenset()):
    aligner = Aligner(size, mode, min_score=min_score, notice=lambda _t: None, no_face=no_face, face=face)
    _WORKER["job"] = _Job(source, aligner, out_paths, overwrite, frozenset(protect))


def _real(path: str) -> str:
    return os.path.realpath(os.path.abspath(path))


def _targets(out_path: str, results: List[AlignResult], choice) -> List[str]:
    if choice != "all":
        return [out_path]
    return [face_output_path(out_path, r.rank if r.face is not None else 0) for r in results]


def _align_one(index: int):
    """-> (index, 'ok' | 'ok-no-face' | 'existing' | 'skip', payload, note); the payload is
    the output paths, the images (no out_paths) or the reason."""
    job: _Job = _WORKER["job"]
    name = job.source.names[index]
    out_path = job.out_paths[index] if job.out_paths is not None else None
    choice = job.aligner.face_choice
    if out_path is not None:
        first = face_output_path(out_path, 0) if choice == "all" else out_path
        if _real(first) in job.protect:  # checked before 'existing': an input is not a finished output
            return index, "skip", f"output {first} would replace an input file", ""
        if not job.overwrite and os.path.isfile(first):
            return index, "existing", [first], ""
    try:
        results = job.aligner.align_all(job.source.read(index), name)
    except InputError as exc:
        return index, "skip", exc.reason, ""
    except Exception as exc:  # noqa: BLE001  one odd photo must not end a long run; the reason names the error
        return index, "skip", f"unexpected {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", ""
    status = "ok" if results[0].method != "center-no-face" else "ok-no-face"
    note = face_note(results, choice)
    if out_path is None:
        return index, status, [r.image for r in results], note
    targets = _targets(out_path, results, choice)
    clash = next((t for t in targets if _real(t) in job.protect), None)
    if clash is not None:
        return index, "skip", f"output {clash} would replace an input file", note
    try:
        for target, result in zip(targets, results):
            save_image_atomic(target, result.image)
    except OSError as exc:
        return index, "skip", f"cannot write {exc.filename or out_path}: {exc.strerror or exc}", note
    return index, status, targets, note


def align_source(source: ImageSource, size: int, mode: str = "auto", out_paths: Optional[Sequence[str]] = None,
                 workers: int = 1, min_score: float = 0.0, overwrite: bool = False, progress: bool = True,
                 notice: Callable[[str], None] = None, no_face: str = "error", face="largest",
                 protect: Sequence[str] = ()) -> Tuple[AlignSummary, list]:
    """Align every image of ``source``.

    With ``out_paths`` (one output file per image) images are written there and the
    returned list holds the paths of the usable outputs; without, it holds the aligned
    uint8 arrays. Either list is in source order; failures are in the summary.
    ``no_face='center'`` keeps photos without a detected face as centre crops (counted
    in ``summary.no_face``) instead of skipping them. ``face``: see ``Aligner``; with
    'all' each photo gives one output per face, ``<stem>_face<k><ext>`` (k = 0 for the
    main face), and the returned list holds every crop. ``protect``: paths that are
    never written (the inputs); an image whose output is one of them is skipped.
    """
    start = time.time()
    probe = Aligner(size, mode, min_score=min_score, notice=notice, face=face)  # resolves 'auto', checks face
    resolved = probe.mode
    # entries the source skipped already (unsafe archive names, missing list entries) count too:
    # 'N skipped of TOTAL' covers every entry the user gave
    summary = AlignSummary(total=len(source) + len(source.skipped), method="ffhq" if probe.uses_dlib else "center-crop")
    if out_paths is not None and len(out_paths) != len(source):
        raise ValueError("align_source: one output path per image is needed")
    initargs = (source, size, resolved, min_score, out_paths, overwrite, no_face, face,
                frozenset(_real(p) for p in protect))
    results = {}
    indices = range(len(source))
    bar = _progress(len(source), progress)
    if workers <= 1 or len(source) <= 1:
        _init_worker(*initargs)
        for index in indices:
            results[index] = _align_one(index)[1:]
            bar.update(1)
    else:
        # spawn: a forked copy of a process that already runs MindSpore threads can deadlock
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(workers, initializer=_init_worker, initargs=initargs) as pool:
            for index, *rest in pool.imap_unordered(_align_one, indices, chunksize=1):
                results[index] = tuple(rest)
                bar.update(1)
    bar.close()
    outputs = []
    for index in indices:
        status, payload, note = results[index]
        if note:
            summary.notes.append((source.names[index], note))
        if status == "skip":
            summary.skipped.append((source.names[index], payload))
            continue
        summary.aligned += status in ("ok", "ok-no-face")
        summary.crops += len(payload) if status != "existing" else 0
        summary.no_face += status == "ok-no-face"
        summary.existing += status == "existing"
        outputs.extend(payload)
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
