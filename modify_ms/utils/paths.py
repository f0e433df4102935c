"""Where outputs may go: the checks every command line runs before it writes anything.

The rules (README, "Your files"): an output is written to exactly the path asked for
(through a temporary name in the same folder, see ``imageio.write_bytes_atomic``);
it never replaces an input; an output folder is never an input folder or inside one
unless the user says so; names taken from inputs or archives are sanitised and made
unique predictably; work files (metrics, compile caches, online state) go to a work
folder, by default a per-user cache folder, never beside a single-photo output.
"""
from __future__ import annotations

import hashlib
import os
import posixpath
from typing import Iterable, List, Optional, Sequence, Tuple

from .cache import cache_root


class OutputPathError(ValueError):
    """An output path that would lose or overwrite a user's file (one line, names the path)."""


def _real(path: str) -> str:
    return os.path.realpath(os.path.abspath(path))


def is_inside(path: str, folder: str) -> bool:
    """``path`` is ``folder`` or lies under it (symlinks resolved)."""
    path, folder = _real(path), _real(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return _real(a) == _real(b)


def _refuse_under_a_file(path: str) -> None:
    """The nearest existing folder above ``path`` must be a folder, not a file."""
    parent = os.path.dirname(os.path.abspath(path))
    while parent and not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if parent and not os.path.isdir(parent):
        raise OutputPathError(f"{path}: {parent} is a file, not a folder")


def check_output_file(path: str, inputs: Iterable[str] = (), image: bool = True,
                      allow_input: bool = False) -> str:
    """Refuse an output file path that is a folder, has no image extension we can write,
    sits under an existing file, or names one of the ``inputs``; returns the path."""
    if not path:
        raise OutputPathError("empty output path")
    if os.path.isdir(path):
        raise OutputPathError(f"{path}: is a folder; give a file name")
    if image:
        from ..data.imageio import WRITABLE_EXTENSIONS  # lazily: modify_ms.data imports this module

        ext = os.path.splitext(path)[1].lower()
        if ext not in WRITABLE_EXTENSIONS:
            raise OutputPathError(f"{path}: cannot write images with extension '{ext or '(none)'}' "
                                  f"(use one of {', '.join(WRITABLE_EXTENSIONS)})")
    _refuse_under_a_file(path)
    if not allow_input:
        for source in inputs:
            if source and os.path.exists(source) and same_file(path, source):
                raise OutputPathError(f"{path}: is an input file; choose another output name")
    return path


def check_output_dir(path: str, input_dirs: Iterable[str] = (), allow_inside: bool = False,
                     flag: str = "--allow-output-in-input", input_files: Iterable[str] = ()) -> str:
    """Refuse an output folder that is a file (or lies under one), is equal to / inside an
    input folder (its outputs would be read back as inputs and could replace them), or is
    the folder that directly holds one of ``input_files`` (an archive, a file list, a
    photo: outputs named after inputs would land beside, and could replace, the user's
    files) unless allowed."""
    if not path:
        raise OutputPathError("empty output folder")
    if os.path.exists(path) and not os.path.isdir(path):
        raise OutputPathError(f"{path}: is a file, not a folder")
    _refuse_under_a_file(path)
    if not allow_inside:
        for folder in input_dirs:
            if folder and os.path.isdir(folder) and is_inside(path, folder):
                raise OutputPathError(f"{path}: is inside the input folder {folder}; outputs would mix with "
                                      f"(and be read back as) inputs; choose another folder or pass {flag}")
        holders = {_real(os.path.dirname(os.path.abspath(f))) for f in input_files if f}
        if _real(path) in holders:
            raise OutputPathError(f"{path}: holds input files; outputs would sit beside (and could replace) "
                                  f"them; choose another folder or pass {flag}")
    return path


def safe_relative_name(name: str) -> Tuple[Optional[str], Optional[str]]:
    """A name read from an archive or a file -> (clean relative POSIX path, None), or
    (None, reason) when it is absolute, climbs out with '..', or is empty."""
    raw = name.replace("\\", "/")
    if "\x00" in raw:
        return None, "name contains a NUL byte"
    if raw.startswith("/") or (len(raw) > 1 and raw[1] == ":"):
        return None, "absolute path in the archive"
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        return None, "path climbs out of the archive ('..')"
    if not parts:
        return None, "empty name"
    return posixpath.join(*parts), None


def unique_stems(names: Sequence[str], stem_of=None, taken: Optional[set] = None
                 ) -> Tuple[List[str], List[Tuple[str, str]]]:
    """One output stem per input, unique whatever the inputs' extensions or folders.

    The first input (in the given order) keeps its stem; a later input whose stem is
    taken gets ``<stem>_<ext>`` (``a.png`` beside ``a.jpg`` -> ``a_png``), then
    ``<stem>_<ext>_2``... ``taken`` (lower-case stems already used, updated in place)
    lets names arriving later continue the same plan. Returns the stems and the renames
    as (input, stem) pairs."""
    stem_of = stem_of or (lambda n: os.path.splitext(os.path.basename(n))[0])
    taken = set() if taken is None else taken
    stems, renamed = [], []
    for name in names:
        stem = stem_of(name)
        candidate = stem
        if candidate.lower() in taken:
            ext = os.path.splitext(name)[1].lstrip(".").lower() or "file"
            candidate, k = f"{stem}_{ext}", 2
            while candidate.lower() in taken:
                candidate, k = f"{stem}_{ext}_{k}", k + 1
            renamed.append((name, candidate))
        taken.add(candidate.lower())  # case-insensitive: macOS and Windows folders
        stems.append(candidate)
    return stems, renamed


def default_work_dir(kind: str, key: str) -> str:
    """``<cache_root()>/<kind>/<digest of key>``: e.g. one work folder per stage-1 run, mode
    and output, reused by reruns of the same command."""
    digest = hashlib.sha1(key.encode("utf-8")).hexdigest()[:12]
    return os.path.join(cache_root(), kind, digest)
