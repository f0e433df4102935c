"""Image grids for people to look at: rows of [-1, 1] NCHW batches -> one uint8 picture."""
import numpy as np


def to_uint8(batch):
    """[B, 3, H, W] in [-1, 1] -> [B, H, W, 3] uint8."""
    arr = np.asarray(batch, np.float32)
    return np.clip((arr.transpose(0, 2, 3, 1) + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)


def make_grid(rows, pad=2):
    """``rows``: list of [B, 3, H, W] arrays (same H, W); each becomes one row of the grid."""
    rows = [to_uint8(r) for r in rows]
    h, w = rows[0].shape[1:3]
    ncol = max(len(r) for r in rows)
    grid = np.full((len(rows) * (h + pad) + pad, ncol * (w + pad) + pad, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            grid[y:y + h, x:x + w] = img
    return grid
