"""Bring images to the fixed square size a metric network is defined at.

Larger images are area-averaged (adaptive average pooling: the 1024 -> 256
face pool MODIFY and pSp use before ArcFace and LPIPS); smaller ones are
upsampled bilinearly. Shapes are static, so this runs inside GRAPH_MODE cells.
"""
from mindspore import ops


def fit_square(x, size):
    """NCHW -> N, C, size, size (identity when already that size)."""
    height, width = x.shape[2], x.shape[3]
    if height == size and width == size:
        return x
    if height >= size and width >= size:
        return ops.adaptive_avg_pool2d(x, (size, size))
    return ops.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
