"""LPIPS diversity (BlendGAN / StarGAN v2 / MMFS protocol).

For each input, K stylizations from K style samples (for MODIFY: K draws of
z through the remapping network); the diversity of that input is the mean
LPIPS distance over all K(K-1)/2 unordered pairs; the reported number is the
mean over inputs. ``lpips(x, y)`` is any callable giving one distance per
pair for batches in [-1, 1], NCHW (the project's LPIPS from
``modify_ms.losses.lpips``).
"""
import numpy as np
from mindspore import nn

from .resize import fit_square


def _as_numpy(value):
    return value.asnumpy() if hasattr(value, "asnumpy") else np.asarray(value)


def pair_indices(k):
    """(i, j) index arrays of all unordered pairs i < j of k items."""
    i, j = np.triu_indices(k, k=1)
    return i, j


def mean_pairwise_lpips(variants, lpips):
    """Mean LPIPS over all unordered pairs of K >= 2 images [K, 3, H, W] in [-1, 1]."""
    variants = np.asarray(variants, np.float32)
    if variants.ndim != 4 or variants.shape[0] < 2:
        raise ValueError(f"mean_pairwise_lpips: need [K>=2, C, H, W] variants, got shape {variants.shape}")
    i, j = pair_indices(variants.shape[0])
    distances = _as_numpy(lpips(variants[i], variants[j])).reshape(-1)
    if distances.shape[0] != i.shape[0]:
        raise ValueError(f"mean_pairwise_lpips: lpips returned {distances.shape[0]} values for {i.shape[0]} pairs")
    return float(np.mean(distances, dtype=np.float64))


def lpips_diversity(stylize_k, images, lpips, progress=None):
    """(mean over inputs, per-input array) of mean pairwise LPIPS among ``stylize_k(image)``'s K outputs.

    ``stylize_k``: callable(image [3, H, W]) -> [K, 3, H', W'] in [-1, 1].
    ``images``: an iterable of input images; ``progress``: optional wrapper (e.g. tqdm).
    """
    iterable = progress(images) if progress is not None else images
    per_input = np.array([mean_pairwise_lpips(stylize_k(image), lpips) for image in iterable], np.float64)
    if per_input.size == 0:
        from .files import EvalInputError

        raise EvalInputError("diversity: no input has 2 or more readable stylizations")
    return float(per_input.mean()), per_input


class LPIPSDistance(nn.Cell):
    """(x, y) in [-1, 1] (any size) -> per-pair LPIPS at ``size`` x ``size`` (StarGAN v2 / BlendGAN use 256)."""

    def __init__(self, lpips, size=256):
        super().__init__()
        self.lpips = lpips  # modify_ms.losses.lpips.LPIPS with reduction="none"
        self.size = size

    def construct(self, x, y):
        return self.lpips(fit_square(x, self.size), fit_square(y, self.size))


def diversity_of_output_groups(groups, lpips, reader, progress=None):
    """lpips_diversity over precomputed stylizations: ``groups`` = [[K >= 2 output paths] per input].
    A ``reader`` returning None drops that file; a group left with fewer than 2 is left out."""
    groups = progress(groups) if progress is not None else groups
    loaded = ([im for im in (reader(p) for p in paths) if im is not None] for paths in groups)

    def stylize_k(images):
        return np.ascontiguousarray(np.stack(images).transpose(0, 3, 1, 2) * 2.0 - 1.0, dtype=np.float32)

    usable = (images for images in loaded if len(images) >= 2)
    return lpips_diversity(stylize_k, usable, lpips)
