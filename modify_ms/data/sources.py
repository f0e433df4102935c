"""Image sources: random access to the decoded images of a folder, zip, file list,
single image or built-in set. No MindSpore here, so worker processes stay light.

Every source lists its images in a fixed sorted order, skips unusable entries with a
reason (``skipped``: list of (name, reason)) and is picklable (zip archives are
opened lazily in each process).

Names read from an archive or a file list are never trusted as paths: each entry also
has a clean relative output name (``rel_names``, POSIX, no '..', never absolute) that a
tool may use under its output folder; archive members whose names are absolute, climb
out with '..', repeat an earlier member or declare an oversized payload are skipped with
the reason, never dropped silently.
"""
from __future__ import annotations

import os
import posixpath
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from .builtin import builtin_images, is_builtin
from .imageio import ImageReadError, decode_image, is_image_name, probe_image
from ..utils.paths import safe_relative_name

Skipped = List[Tuple[str, str]]
# An image member whose declared uncompressed size is above this is not read (a zip bomb
# would otherwise be inflated whole in memory); 50 MP of 16-bit RGBA stays well under it.
MAX_MEMBER_BYTES = 512 * 1024 * 1024
# zipfile raises these for damaged, encrypted or oddly compressed members
_ZIP_READ_ERRORS = (zipfile.BadZipFile, zlib.error, OSError, KeyError, RuntimeError, NotImplementedError,
                    EOFError, ValueError)


class DataSourceError(ValueError):
    """A data path that cannot be used at all (missing, empty, unreadable archive)."""


def _default_rel_name(name: str) -> str:
    """The clean base name of ``name`` (output name of a file-list entry or a single image)."""
    clean, _ = safe_relative_name(posixpath.basename(name.replace("\\", "/")))
    return clean or "image"


class ImageSource:
    """Base: ``names``, ``rel_names`` (clean relative output names, parallel to ``names``),
    ``skipped``, ``ignored`` (count of non-image files), ``read(i)``."""

    def __init__(self, names: Sequence[str], skipped: Optional[Skipped] = None, ignored: int = 0,
                 rel_names: Optional[Sequence[str]] = None):
        self.names = list(names)
        self.rel_names = list(rel_names) if rel_names is not None else [_default_rel_name(n) for n in self.names]
        if len(self.rel_names) != len(self.names):
            raise ValueError("one relative name per image is needed")
        self.skipped = list(skipped or [])
        self.ignored = ignored

    def __len__(self) -> int:
        return len(self.names)

    def read(self, index: int, reduce_to: int = 0) -> np.ndarray:
        """RGB uint8 (H, W, 3); ImageReadError naming the file when it cannot be decoded.
        ``reduce_to``: both sides only need to be >= this (see imageio.decode_image)."""
        raise NotImplementedError

    def fingerprint(self, index: int) -> str:
        """Changes when the underlying file changes (used to key caches)."""
        return self.names[index]

    def summary(self) -> str:
        text = f"{len(self)} images"
        if self.skipped:
            text += f", {len(self.skipped)} skipped"
        if self.ignored:
            text += f", {self.ignored} non-image files ignored"
        return text

    def subset(self, keep: Sequence[int], skipped: Skipped = ()) -> "ImageSource":
        raise NotImplementedError


class FileSource(ImageSource):
    """Images stored as files (a folder, a file list or one image)."""

    def __init__(self, paths: Sequence[str], skipped: Optional[Skipped] = None, ignored: int = 0,
                 rel_names: Optional[Sequence[str]] = None):
        super().__init__(paths, skipped, ignored, rel_names)

    def read(self, index: int, reduce_to: int = 0) -> np.ndarray:
        return decode_image(self.names[index], name=self.names[index], reduce_to=reduce_to)

    def fingerprint(self, index: int) -> str:
        path = self.names[index]
        try:
            st = os.stat(path)
            return f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}"
        except OSError:
            return os.path.abspath(path)

    def subset(self, keep, skipped=()):
        keep = list(keep)
        return FileSource([self.names[i] for i in keep], self.skipped + list(skipped), self.ignored,
                          [self.rel_names[i] for i in keep])


class ZipSource(ImageSource):
    """Images inside a zip archive (the MetFaces / FFHQ distribution format)."""

    def __init__(self, archive: str, members: Sequence[str], skipped: Optional[Skipped] = None, ignored: int = 0,
                 rel_names: Optional[Sequence[str]] = None):
        if rel_names is None:  # sanitised member names; unsafe members must be filtered out before
            rel_names = [safe_relative_name(m)[0] or _default_rel_name(m) for m in members]
        super().__init__(members, skipped, ignored, rel_names)
        self.archive = archive
        self._zip = None
        self._pid = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_zip"], state["_pid"] = None, None
        return state

    def _open(self) -> zipfile.ZipFile:
        if self._zip is None or self._pid != os.getpid():
            self._zip = zipfile.ZipFile(self.archive)
            self._pid = os.getpid()
        return self._zip

    def label(self, index: int) -> str:
        return f"{self.archive}:{self.names[index]}"

    def read(self, index: int, reduce_to: int = 0) -> np.ndarray:
        try:
            data = self._open().read(self.names[index])
        except _ZIP_READ_ERRORS as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ImageReadError(self.label(index), f"cannot read from the archive ({reason})") from None
        return decode_image(data, name=self.label(index), reduce_to=reduce_to)

    def fingerprint(self, index: int) -> str:
        info = self._open().getinfo(self.names[index])
        return f"{os.path.abspath(self.archive)}:{info.filename}|{info.file_size}|{info.CRC}"

    def subset(self, keep, skipped=()):
        keep = list(keep)
        return ZipSource(self.archive, [self.names[i] for i in keep], self.skipped + list(skipped), self.ignored,
                         [self.rel_names[i] for i in keep])


class ArraySource(ImageSource):
    """Images already in memory (built-in sets, aligned images without a cache folder)."""

    def __init__(self, images: Sequence[np.ndarray], names: Sequence[str], skipped: Optional[Skipped] = None,
                 ignored: int = 0, rel_names: Optional[Sequence[str]] = None):
        super().__init__(names, skipped, ignored, rel_names)
        self.images = list(images)

    def read(self, index: int, reduce_to: int = 0) -> np.ndarray:
        return self.images[index]

    def subset(self, keep, skipped=()):
        keep = list(keep)
        return ArraySource([self.images[i] for i in keep], [self.names[i] for i in keep],
                           self.skipped + list(skipped), self.ignored, [self.rel_names[i] for i in keep])


# ----------------------------------------------------------------------------- listing

def _hidden(name: str) -> bool:
    return name.startswith(".") or name.startswith("__MACOSX")


def scan_folder(folder: str) -> Tuple[List[str], int]:
    """Image files under ``folder`` (recursive, sorted, hidden entries skipped) and the
    number of non-image files ignored."""
    found, ignored = [], 0
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not _hidden(d))
        for name in sorted(files):
            if _hidden(name):
                continue
            if is_image_name(name):
                found.append(os.path.join(root, name))
            else:
                ignored += 1
    return found, ignored


def _list_lines(list_path: str) -> List[str]:
    try:
        with open(list_path, encoding="utf-8") as fh:
            return fh.read().splitlines()
    except UnicodeDecodeError as exc:
        raise DataSourceError(f"{list_path}: not a UTF-8 text file list (byte {exc.start})") from None
    except OSError as exc:
        raise DataSourceError(f"{list_path}: cannot read the file list ({exc.strerror or exc})") from None


def _list_entry_problem(path: str) -> Optional[str]:
    """Why a listed path cannot be an input, or None. Entries may point anywhere (they
    are inputs, only read); output names derived from them are cleaned separately."""
    if "\x00" in path:
        return "name contains a NUL byte"
    if os.path.isdir(path):
        return "is a folder, not an image file"
    if not os.path.isfile(path):
        return "file not found"
    return None


def _read_list(list_path: str) -> Tuple[List[str], Skipped]:
    base = os.path.dirname(os.path.abspath(list_path))
    paths, skipped = [], []
    for line_no, line in enumerate(_list_lines(list_path), 1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        path = entry if os.path.isabs(entry) else os.path.join(base, entry)
        problem = _list_entry_problem(path)
        if problem is None:
            paths.append(path)
        else:
            skipped.append((path.replace("\x00", "\\0"), f"{problem} (listed at {list_path}:{line_no})"))
    return paths, skipped


def _member_problem(info: zipfile.ZipInfo, seen: set) -> Optional[str]:
    """Why an image member is not used, or None (the name was checked by safe_relative_name)."""
    if info.filename in seen:
        return "duplicate member name in the archive (only one of them can be read)"
    if info.file_size > MAX_MEMBER_BYTES:
        return (f"member declares {info.file_size / 2 ** 20:.0f} MB uncompressed, above the "
                f"{MAX_MEMBER_BYTES // 2 ** 20} MB limit")
    return None


def _zip_members(archive: str) -> Tuple[List[str], List[str], Skipped, int]:
    """(image members, their clean relative names, skipped members with reasons, ignored count)."""
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise DataSourceError(f"{archive}: not a readable zip archive ({exc})") from None
    kept, skipped, ignored, seen = [], [], 0, set()
    for info in sorted(infos, key=lambda i: i.filename):
        raw = info.filename
        if info.is_dir():
            continue
        clean, unsafe = safe_relative_name(raw)
        if unsafe:  # reported whatever the extension: it is what a hostile archive looks like
            skipped.append((raw, f"unsafe member name: {unsafe}"))
            continue
        if any(_hidden(part) for part in clean.split("/")):  # __MACOSX/, .DS_Store: archiver junk
            continue
        if not is_image_name(clean):
            ignored += 1
            continue
        reason = _member_problem(info, seen)
        seen.add(raw)
        if reason:
            skipped.append((raw, reason))
        else:
            kept.append((raw, clean))
    return [raw for raw, _ in kept], [clean for _, clean in kept], skipped, ignored


def open_source(path: str, size: int = 256) -> ImageSource:
    """An unverified source for a data path (see DataConfig.path); ``size`` is used by
    built-in sets only."""
    if is_builtin(path):
        try:
            images = builtin_images(path, size)
        except ValueError as exc:
            raise DataSourceError(str(exc)) from None
        key = path[len("builtin:"):]
        return ArraySource(images, [f"{path}/{i:04d}" for i in range(len(images))],
                           rel_names=[f"{key}_{i:04d}" for i in range(len(images))])
    if not os.path.exists(path):
        raise DataSourceError(f"{path}: data path not found")
    if os.path.isdir(path):
        files, ignored = scan_folder(path)
        rel_names = [os.path.relpath(f, path).replace(os.sep, "/") for f in files]
        return FileSource(files, [], ignored, rel_names)
    lower = path.lower()
    if lower.endswith(".zip"):
        members, rel_names, skipped, ignored = _zip_members(path)
        return ZipSource(path, members, skipped, ignored, rel_names)
    if lower.endswith(".txt"):
        files, skipped = _read_list(path)
        return FileSource(files, skipped)
    if is_image_name(path):
        return FileSource([path])
    raise DataSourceError(f"{path}: not a folder, .zip, .txt file list or image")


def verify_source(source: ImageSource, mode: str = "header", workers: int = 2,
                  progress: Optional[Callable[[int], None]] = None) -> ImageSource:
    """Drop entries that fail the header check ('header') or a full decode ('full'),
    recording each with its reason in ``skipped``."""
    if isinstance(source, ArraySource):
        return source

    def check(index: int) -> Optional[str]:
        try:
            if mode == "full":
                source.read(index)
            elif isinstance(source, ZipSource):
                with source._open().open(source.names[index]) as fh:
                    probe_image(fh, name=source.label(index))
            else:
                probe_image(source.names[index])
        except ImageReadError as exc:
            return exc.reason
        return None

    if isinstance(source, ZipSource):
        workers = 1  # one ZipFile handle is not safe to share between threads
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(check, range(len(source))))
    keep = [i for i, err in enumerate(results) if err is None]
    skipped = [(source.names[i], err) for i, err in enumerate(results) if err is not None]
    return source.subset(keep, skipped)


def format_skipped(skipped: Skipped, limit: int = 20) -> str:
    """A summary block: one 'name: reason' line per skipped file (at most ``limit``)."""
    lines = [f"  {name}: {reason}" for name, reason in skipped[:limit]]
    if len(skipped) > limit:
        lines.append(f"  ... and {len(skipped) - limit} more")
    return "\n".join(lines)
