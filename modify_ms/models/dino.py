"""DINO ViT (Caron et al. 2021; ``dino_vitb8`` = ViT-B/8) as a configuration of :mod:`modify_ms.models.vit`,
and the input pipeline MMFS feeds it.

DINO's ViT: exact (erf) GELU, LayerNorm eps 1e-6, qkv bias, patch conv with bias, no ``ln_pre``,
head = Identity (``construct`` returns the normalised class token). Parameter names are the keys
of ``dino_vitbase8_pretrain.pth`` (LayerNorm weight/bias -> gamma/beta); convert that file with
``python -m weights_convert dino``.

:class:`DinoInput` maps generator images in [-1, 1] to what MMFS's structure loss gives DINO:
[0, 1], torchvision ``Resize(224, max_size=480)`` (bilinear; antialiased as torchvision >= 0.17
does on tensors, ``antialias=False`` for the older default), ImageNet mean/std.
"""
from dataclasses import asdict, dataclass

import numpy as np
import mindspore as ms
from mindspore import nn

from ..nn.resample import Resize, short_side_size
from .vit import VisionTransformer

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DINO_RESIZE = 224
DINO_MAX_SIZE = 480


@dataclass(frozen=True)
class DinoConfig:
    """``dino_vitb8`` by default; tests use tiny widths of the same architecture."""

    image_size: int = 224
    patch_size: int = 8
    width: int = 768
    layers: int = 12
    heads: int = 12
    mlp_ratio: float = 4.0


def dino_vit(config=DinoConfig(), input_size=None):
    """The DINO ViT of ``config`` fed ``input_size`` images (rows, cols; default its training size)."""
    return VisionTransformer(image_size=config.image_size, patch_size=config.patch_size, width=config.width,
                             layers=config.layers, heads=config.heads, mlp_ratio=config.mlp_ratio, act="gelu",
                             eps=1e-6, qkv_bias=True, patch_bias=True, pre_norm=False, input_size=input_size)


def dino_kwargs(config):
    return asdict(config)


class Normalize(nn.Cell):
    """(x - mean) / std per channel of [B, 3, H, W]."""

    def __init__(self, mean, std):
        super().__init__()
        self.mean = ms.Tensor(np.array(mean, np.float32).reshape(1, 3, 1, 1))
        self.std = ms.Tensor(np.array(std, np.float32).reshape(1, 3, 1, 1))

    def construct(self, x):
        return (x - self.mean) / self.std


class DinoInput(nn.Cell):
    """[-1, 1] images of ``in_size`` -> DINO input (see module docstring); ``out_size`` says its size."""

    def __init__(self, in_size, size=DINO_RESIZE, max_size=DINO_MAX_SIZE, antialias=True):
        super().__init__()
        self.out_size = short_side_size(in_size, size, max_size)
        self.resize = Resize(in_size, self.out_size, antialias)
        self.normalize = Normalize(IMAGENET_MEAN, IMAGENET_STD)

    def construct(self, x):
        return self.normalize(self.resize(x * 0.5 + 0.5))


def load_dino(path, input_size=None):
    """The DINO ViT of a ``python -m weights_convert dino`` checkpoint, frozen-ready, fed ``input_size``."""
    from ..utils.checkpoint import CheckpointFileError, fill_cell, read_arrays

    arrays, meta = read_arrays(path)
    if meta.get("format") != "modify_ms.dino":
        raise CheckpointFileError(f"{path}: not a converted DINO checkpoint (convert it with "
                                  "'python -m weights_convert dino')")
    network = dino_vit(DinoConfig(**meta["kwargs"]), input_size=input_size)
    fill_cell(network, arrays, path)
    return network
