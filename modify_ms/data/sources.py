"""Image sources: random access to the decoded images of a folder, zip, file list,
single image or built-in set. No MindSpore here, so worker processes stay light.

Every source lists its images in a fixed sorted order, skips unusable entries with a
reason (``skipped``: list of (name, reason)) and is picklable (zip archives are
opened lazily in each process).
"""
from __future__ import annotations

import os
import zipfile
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from .builtin import builtin_images, is_builtin
from .imageio import ImageReadError, decode_image, is_image_name, probe_image

Skipped = List[Tuple[str, str]]


class DataSourceError(ValueError):
    """A data path that cannot be used at all (missing, empty, unreadable archive)."""


class ImageSource:
    """Base: ``names``, ``skipped``, ``ignored`` (count of non-image files), ``read(i)``."""

    def __init__(self, names: Sequence[str], skipped: Optional[Skipped] = None, ignored: int = 0):
        self.names = list(names)
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

    def __init__(self, paths: Sequence[str], skipped: Optional[Skipped] = None, ignored: int = 0):
        super().__init__(paths, skipped, ignored)

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
        return FileSource([self.names[i] for i in keep], self.skipped + list(skipped), self.ignored)


class ZipSource(ImageSource):
    """Images inside a zip archive (the MetFaces / FFHQ distribution format)."""

    def __init__(self, archive: str, members: Sequence[str], skipped: Optional[Skipped] = None, ignored: int = 0):
        super().__init__(members, skipped, ignored)
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
        except (zipfile.BadZipFile, OSError, KeyError) as exc:
            raise ImageReadError(self.label(index), f"cannot read from the archive ({exc})") from None
        return decode_image(data, name=self.label(index), reduce_to=reduce_to)

    def fingerprint(self, index: int) -> str:
        info = self._open().getinfo(self.names[index])
        return f"{os.path.abspath(self.archive)}:{info.filename}|{info.file_size}|{info.CRC}"

    def subset(self, keep, skipped=()):
        return ZipSource(self.archive, [self.names[i] for i in keep], self.skipped + list(skipped), self.ignored)


class ArraySource(ImageSource):
    """Images already in memory (built-in sets, aligned images without a cache folder)."""

    def __init__(self, images: Sequence[np.ndarray], names: Sequence[str], skipped: Optional[Skipped] = None,
                 ignored: int = 0):
        super().__init__(names, skipped, ignored)
        self.images = list(images)

    def read(self, index: int, reduce_to: int = 0) -> np.ndarray:
        return self.images[index]

    def subset(self, keep, skipped=()):
        return ArraySource([self.images[i] for i in keep], [self.names[i] for i in keep],
                           self.skipped + list(skipped), self.ignored)


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


def _read_list(list_path: str) -> Tuple[List[str], Skipped]:
    base = os.path.dirname(os.path.abspath(list_path))
    paths, skipped = [], []
    with open(list_path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            entry = line.strip()
            if not entry or entry.startswith("#"):
                continue
            path = entry if os.path.isabs(entry) else os.path.join(base, entry)
            if os.path.isfile(path):
                paths.append(path)
            else:
                skipped.append((path, f"file not found (listed at {list_path}:{line_no})"))
    return paths, skipped


def _zip_members(archive: str) -> Tuple[List[str], int]:
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataSourceError(f"{archive}: not a readable zip archive ({exc})") from None
    members, ignored = [], 0
    for info in infos:
        if info.is_dir() or any(_hidden(part) for part in info.filename.split("/")):
            continue
        if is_image_name(info.filename):
            members.append(info.filename)
        else:
            ignored += 1
    return sorted(members), ignored


def open_source(path: str, size: int = 256) -> ImageSource:
    """An unverified source for a data path (see DataConfig.path); ``size`` is used by
    built-in sets only."""
    if is_builtin(path):
        try:
            images = builtin_images(path, size)
        except ValueError as exc:
            raise DataSourceError(str(exc)) from None
        return ArraySource(images, [f"{path}/{i:04d}" for i in range(len(images))])
    if not os.path.exists(path):
        raise DataSourceError(f"{path}: data path not found")
    if os.path.isdir(path):
        files, ignored = scan_folder(path)
        return FileSource(files, [], ignored)
    lower = path.lower()
    if lower.endswith(".zip"):
        members, ignored = _zip_members(path)
        return ZipSource(path, members, [], ignored)
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
