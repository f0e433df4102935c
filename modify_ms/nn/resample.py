"""Image resizing as two constant matrices, y = R_rows @ x @ R_cols^T, matching torch's
``F.interpolate(mode='bilinear', align_corners=False[, antialias=True])`` for a fixed input size.

Why matrices: the sizes are known when the cell is built (CLIP and DINO take 224 x 224), so the
resampling is exact, static for GRAPH_MODE, differentiable, and antialiased downscaling (what
CLIP's and torchvision's tensor resizes do; MindSpore has no such CPU kernel) costs two matmuls.

* ``antialias=True``: torch's separable AA filter (the PIL algorithm): triangle filter stretched
  by the scale when shrinking, weights normalised over the taps inside the image.
* ``antialias=False``: plain bilinear, source x = (i + 0.5) * in/out - 0.5 clamped at 0.
"""
import numpy as np
import mindspore as ms
from mindspore import nn, ops


def bilinear_matrix(in_size, out_size, antialias=True):
    """[out_size, in_size] resampling matrix along one axis."""
    scale = in_size / out_size
    m = np.zeros((out_size, in_size), np.float64)
    if antialias:
        support = scale if scale >= 1.0 else 1.0
        invscale = 1.0 / scale if scale >= 1.0 else 1.0
        for i in range(out_size):
            center = scale * (i + 0.5)
            lo = max(int(center - support + 0.5), 0)
            hi = min(int(center + support + 0.5), in_size)
            taps = np.arange(lo, hi)
            w = np.clip(1.0 - np.abs((taps - center + 0.5) * invscale), 0.0, None)
            m[i, lo:hi] = w / w.sum()
        return m
    for i in range(out_size):
        src = max(scale * (i + 0.5) - 0.5, 0.0)
        i0 = int(src)
        i1 = i0 + 1 if i0 < in_size - 1 else i0
        frac = src - i0
        m[i, i0] += 1.0 - frac
        m[i, i1] += frac
    return m


class Resize(nn.Cell):
    """[B, C, H, W] -> [B, C, out_h, out_w] for the ``in_size`` given at construction."""

    def __init__(self, in_size, out_size, antialias=True):
        super().__init__()
        self.in_size = tuple(int(s) for s in in_size)
        self.out_size = tuple(int(s) for s in out_size)
        self.identity = self.in_size == self.out_size
        self.rows = ms.Tensor(bilinear_matrix(self.in_size[0], self.out_size[0], antialias).astype(np.float32))
        self.cols_t = ms.Tensor(bilinear_matrix(self.in_size[1], self.out_size[1], antialias).T.astype(np.float32))

    def construct(self, x):
        if self.identity:
            return x
        return ops.matmul(ops.matmul(self.rows, x), self.cols_t)


def short_side_size(in_size, size, max_size=None):
    """(rows, cols) of torchvision's ``Resize(size, max_size=...)`` with an int ``size``: the short side
    becomes ``size`` and the long one keeps the aspect (truncated), capped at ``max_size``."""
    h, w = (int(s) for s in in_size)
    short, long = min(h, w), max(h, w)
    new_short, new_long = size, int(size * long / short)
    if max_size is not None and new_long > max_size:
        new_short, new_long = int(max_size * new_short / new_long), max_size
    return (new_short, new_long) if h <= w else (new_long, new_short)
