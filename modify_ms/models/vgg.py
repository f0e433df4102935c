"""VGG-19 feature network in torchvision's layout (Simonyan & Zisserman 2015, configuration "E").

``features.<i>.{weight,bias}`` are torchvision's ``vgg19().features`` keys (conv indices 0, 2, 5,
7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34; ReLU and 2x2 max-pool modules in between keep
their indices), so ``vgg19-dcbe5e1e.pth`` maps by a rule table (weights_convert/blendgan.py). Only
the modules up to the last tapped one are built; the classifier is not part of it. Random weights
follow torchvision's initialisation (kaiming normal, fan_out; numpy's seeded generator), so an
untrained network keeps its activations' scale through the 16 convs.

``widths`` narrows the five stages (64, 128, 256, 512, 512 in the real network) for small CPU
models with the same module indices and taps. Inputs are NOT normalised here: each user decides
(BlendGAN's style encoder feeds [-1, 1] images as they are).
"""
import math

import numpy as np
from mindspore import Tensor, nn

from ..losses.lpips import build_layer
from ..models.irse import freeze

VGG19_WIDTHS = (64, 128, 256, 512, 512)
VGG19_CONVS_PER_STAGE = (2, 2, 4, 4, 4)
# relu1_2, relu2_2, relu3_4, relu4_4, relu5_4 (BlendGAN's taps, paper sec. 3.1)
VGG19_STYLE_TAPS = (3, 8, 17, 26, 35)


def vgg19_specs(widths=VGG19_WIDTHS):
    """The 37 modules of ``features`` as lpips.build_layer specs: ("C", in, out, 3, 1, 1) | ("R",) | ("M", 2, 2)."""
    if len(widths) != 5 or any(int(w) < 1 for w in widths):
        raise ValueError(f"VGG-19 needs 5 positive stage widths, got {widths}")
    layers, cin = [], 3
    for width, n in zip(widths, VGG19_CONVS_PER_STAGE):
        for _ in range(n):
            layers += [("C", cin, int(width), 3, 1, 1), ("R",)]
            cin = int(width)
        layers.append(("M", 2, 2))
    return layers


def tap_channels(widths=VGG19_WIDTHS, taps=VGG19_STYLE_TAPS):
    """The channel count of each tapped output: that of the last conv at or before the tap."""
    specs = vgg19_specs(widths)
    return tuple(next(specs[j][2] for j in range(int(t), -1, -1) if specs[j][0] == "C") for t in taps)


class VGG19Features(nn.Cell):
    """``construct(x)`` -> tuple of the outputs of the modules in ``taps`` (ReLU outputs for the defaults)."""

    def __init__(self, widths=VGG19_WIDTHS, taps=VGG19_STYLE_TAPS):
        super().__init__()
        specs = vgg19_specs(widths)
        taps = tuple(sorted(int(t) for t in taps))
        if not taps or taps[0] < 0 or taps[-1] >= len(specs):
            raise ValueError(f"VGG-19 taps must be module indices 0..{len(specs) - 1}, got {taps}")
        self.features = nn.CellList([build_layer(s) for s in specs[:taps[-1] + 1]])
        for layer, spec in zip(self.features, specs):
            if spec[0] == "C":  # torchvision's init: kaiming normal (fan_out, ReLU gain), bias 0
                std = math.sqrt(2.0 / (spec[2] * spec[3] * spec[3]))
                layer.weight.set_data(Tensor((np.random.randn(*layer.weight.shape) * std).astype(np.float32)))
                layer.bias.set_data(Tensor(np.zeros(spec[2], np.float32)))
        self.taps = taps
        self.widths = tuple(int(w) for w in widths)
        self.tap_channels = tap_channels(widths, taps)

    def construct(self, x):
        outs = ()
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                outs = outs + (x,)
        return outs


def frozen_vgg19(widths=VGG19_WIDTHS, taps=VGG19_STYLE_TAPS):
    """A VGG19Features whose parameters take no gradients (a fixed feature extractor)."""
    return freeze(VGG19Features(widths, taps))
