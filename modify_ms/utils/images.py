"""Network images (NCHW floats in [-1, 1]) -> uint8 pictures and grids for saving.

Writing files goes through ``modify_ms.data.imageio.save_image_atomic`` (the one
place that writes images); this module only arranges pixels.
"""
import math

import numpy as np


def to_uint8(images):
    """[N, C, H, W] (or [C, H, W]) floats in [-1, 1] -> [N, H, W, C] (or [H, W, C]) uint8.

    Values outside [-1, 1] are clipped; x -> round((x + 1) * 127.5). One-channel
    images stay one channel; NaN becomes 0 (black) rather than an arbitrary value.
    """
    array = np.asarray(images.asnumpy() if hasattr(images, "asnumpy") else images, dtype=np.float32)
    if array.ndim not in (3, 4):
        raise ValueError(f"expected CHW or NCHW images, got shape {array.shape}")
    array = np.nan_to_num(array, nan=-1.0, posinf=1.0, neginf=-1.0)
    pixels = np.rint((np.clip(array, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)
    return np.moveaxis(pixels, -3, -1)


def make_grid(images, nrow=8, padding=2, pad_value=255):
    """[N, C, H, W] in [-1, 1] -> one HWC uint8 grid, ``nrow`` images per row.

    Cells are separated (and framed) by ``padding`` pixels of ``pad_value``;
    a short last row is filled with ``pad_value``. C is 1 or 3; a 1-channel grid
    is returned as [H, W].
    """
    tiles = to_uint8(images)
    if tiles.ndim != 4:
        tiles = tiles[None]
    n, h, w, c = tiles.shape
    if n == 0:
        raise ValueError("make_grid: no images")
    if c not in (1, 3):
        raise ValueError(f"make_grid: images need 1 or 3 channels, got {c}")
    ncol = max(1, min(int(nrow), n))
    nrows = math.ceil(n / ncol)
    grid = np.full((padding + nrows * (h + padding), padding + ncol * (w + padding), c), pad_value, np.uint8)
    for i in range(n):
        y = padding + (i // ncol) * (h + padding)
        x = padding + (i % ncol) * (w + padding)
        grid[y:y + h, x:x + w] = tiles[i]
    return grid[:, :, 0] if c == 1 else grid
