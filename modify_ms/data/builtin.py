"""Built-in offline data: real face photos shipped inside installed packages, and a
deterministic synthetic "painted" style domain made from them.

* ``builtin_photos(size)``: 102 real faces -- scikit-image's astronaut (Eileen Collins,
  public domain) and matplotlib's grace_hopper.jpg, both FFHQ-aligned with fixed quads
  (measured once with dlib's 68 landmarks, so no dlib is needed here), and the 100 real
  faces of ``skimage.data.lfw_subset()`` (25 x 25 grayscale, upsampled).
* ``builtin_style_images(size)``: the same faces through an edge-preserving
  stylisation, a saturation boost, colour posterisation and dark ink edges.

The painted domain is a smoke-test domain for tiny CPU runs (32-64 px), not a real
artistic style: use MetFaces or your own style set for real training. Everything is
computed with fixed parameters, so the same size gives byte-identical images.

Dataset paths ``builtin:photos`` and ``builtin:painted`` name these sets wherever a data
path is accepted; ``materialize_builtin`` writes them to a folder.
"""
from __future__ import annotations

import functools
import os
from typing import List

import cv2
import numpy as np

from .align import resize_image, warp_quad
from .imageio import ImageReadError, read_image, save_image_atomic, write_bytes_atomic

BUILTIN_SETS = ("photos", "painted")
BUILTIN_PREFIX = "builtin:"
NUM_LFW_FACES = 100  # lfw_subset holds 100 faces followed by 100 non-faces

# FFHQ quads (top-left, bottom-left, bottom-right, top-right) from ffhq_quad() on dlib's
# landmarks of the best-scoring face (tests/test_data_align.py re-measures them).
ASTRONAUT_QUAD = ((142.29, 15.52), (133.67, 188.96), (307.11, 197.58), (315.73, 24.14))
GRACE_HOPPER_QUAD = ((96.35, 41.16), (106.29, 367.92), (433.05, 357.99), (423.11, 31.23))


def grace_hopper_path() -> str:
    import matplotlib

    path = os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")
    if not os.path.isfile(path):
        raise ImageReadError(path, "matplotlib's sample photo grace_hopper.jpg is missing "
                             "(reinstall matplotlib)")
    return path


def astronaut_photo() -> np.ndarray:
    """512 x 512 RGB uint8, unaligned."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut(), dtype=np.uint8)


def grace_hopper_photo() -> np.ndarray:
    """600 x 512 RGB uint8, unaligned."""
    return read_image(grace_hopper_path())


SINGLE_PHOTOS = {"builtin:astronaut": astronaut_photo, "builtin:grace_hopper": grace_hopper_photo}


def single_photo(name: str) -> np.ndarray:
    """A bundled real photo by name ('builtin:astronaut', 'builtin:grace_hopper'), RGB uint8."""
    if name not in SINGLE_PHOTOS:
        raise ImageReadError(name, f"unknown built-in photo (known: {', '.join(sorted(SINGLE_PHOTOS))})")
    return SINGLE_PHOTOS[name]()


def lfw_faces() -> np.ndarray:
    """The 100 real LFW faces of scikit-image, (100, 25, 25) uint8 grayscale."""
    from skimage import data

    faces = data.lfw_subset()[:NUM_LFW_FACES]
    return np.clip(np.rint(faces * 255.0), 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=4)
def _photos(size: int) -> tuple:
    images = [warp_quad(astronaut_photo(), np.array(ASTRONAUT_QUAD), size),
              warp_quad(grace_hopper_photo(), np.array(GRACE_HOPPER_QUAD), size)]
    for face in lfw_faces():
        images.append(resize_image(np.repeat(face[:, :, None], 3, axis=2), size, size))
    for image in images:
        image.setflags(write=False)
    return tuple(images)


def builtin_photos(size: int) -> List[np.ndarray]:
    """102 real face photos, size x size x 3 uint8 (read-only arrays)."""
    _check_size(size)
    return list(_photos(size))


def paint(image: np.ndarray) -> np.ndarray:
    """The synthetic painted style: flat colour regions, vivid posterised colours, ink edges."""
    size = image.shape[0]
    sigma_s = max(10.0, 60.0 * size / 256.0)
    flat = cv2.stylization(image, sigma_s=sigma_s, sigma_r=0.45)
    hsv = cv2.cvtColor(flat, cv2.COLOR_RGB2HSV).astype(np.int32)
    hsv[..., 1] = np.clip(hsv[..., 1] * 3 // 2 + 40, 0, 255)  # vivid, also tints gray LFW faces
    hsv[..., 0] = (hsv[..., 0] + 8) % 180  # warm hue shift
    vivid = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)
    levels = 6
    step = 256 // levels
    poster = (vivid // step) * step + step // 2
    gray = cv2.medianBlur(cv2.cvtColor(flat, cv2.COLOR_RGB2GRAY), 3)
    edges = cv2.adaptiveThreshold(gray, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, 7, 7)
    ink = (edges[..., None] == 0)
    out = np.where(ink, poster // 3, poster)
    return np.ascontiguousarray(out, dtype=np.uint8)


@functools.lru_cache(maxsize=4)
def _painted(size: int) -> tuple:
    images = [paint(np.ascontiguousarray(photo)) for photo in _photos(size)]
    for image in images:
        image.setflags(write=False)
    return tuple(images)


def builtin_style_images(size: int) -> List[np.ndarray]:
    """102 synthetic painted faces, size x size x 3 uint8 (read-only arrays)."""
    _check_size(size)
    return list(_painted(size))


def builtin_images(name: str, size: int) -> List[np.ndarray]:
    """``name`` is 'photos' or 'painted' (with or without the 'builtin:' prefix)."""
    key = name[len(BUILTIN_PREFIX):] if name.startswith(BUILTIN_PREFIX) else name
    if key == "photos":
        return builtin_photos(size)
    if key == "painted":
        return builtin_style_images(size)
    raise ValueError(f"unknown built-in data set '{name}' (have: "
                     + ", ".join(BUILTIN_PREFIX + s for s in BUILTIN_SETS) + ")")


def is_builtin(path: str) -> bool:
    return path.startswith(BUILTIN_PREFIX)


def materialize_builtin(name: str, size: int, cache_dir: str) -> str:
    """Write a built-in set as PNG files under ``cache_dir`` (once) and return the folder.

    Each file is written atomically and a ``COMPLETE`` marker is written last, so an
    interrupted run is redone rather than used half-way.
    """
    images = builtin_images(name, size)
    key = name[len(BUILTIN_PREFIX):] if name.startswith(BUILTIN_PREFIX) else name
    folder = os.path.join(cache_dir, f"builtin_{key}_{size}")
    marker = os.path.join(folder, "COMPLETE")
    expected = f"{len(images)}\n"
    if os.path.isfile(marker):
        with open(marker, encoding="utf-8") as fh:
            if fh.read() == expected:
                return folder
    for i, image in enumerate(images):
        save_image_atomic(os.path.join(folder, f"{key}_{i:04d}.png"), image)
    write_bytes_atomic(marker, expected.encode())
    return folder


def _check_size(size: int) -> None:
    if not isinstance(size, (int, np.integer)) or not 8 <= size <= 4096:
        raise ValueError(f"built-in image size must be an integer in [8, 4096], got {size!r}")
