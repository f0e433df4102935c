"""LPIPS (Zhang et al. 2018), v0.1: learned perceptual distance over AlexNet or VGG16 features.

d(x, y) = sum_l mean_hw( w_l . (n(f_l(x)) - n(f_l(y)))^2 ), with f_l the ReLU outputs of
five feature stages of the ImageNet network applied to ScalingLayer(x) = (x - shift)/scale,
n() the unit normalisation over channels (eps 1e-10, as the lpips package), and w_l the
non-negative 1x1 "linear" layers. Inputs in [-1, 1].

Parameter names: ``net.features.N.{weight,bias}`` = torchvision's ``features.N.*`` keys;
``linK.model.1.weight`` (1, C_K, 1, 1) = the lpips package's keys. Frozen like the identity
loss (no parameter takes gradients; there is no BatchNorm or active dropout).

The authors' v0.1 linear layers ship with the package (``packaged_linear_layers``), so
they are used whenever no converted LPIPS file is given: they are non-negative by
definition, and random ones would make the "distance" meaningless.
"""
import os

import numpy as np
from mindspore import Tensor, nn, ops

from ..models.irse import freeze
from ..nn import expand_as

SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
NORM_EPS = 1e-10

# torchvision feature stacks: ("C", in, out, kernel, stride, padding) | ("R",) | ("M", kernel, stride)
ALEXNET = [("C", 3, 64, 11, 4, 2), ("R",), ("M", 3, 2), ("C", 64, 192, 5, 1, 2), ("R",), ("M", 3, 2),
           ("C", 192, 384, 3, 1, 1), ("R",), ("C", 384, 256, 3, 1, 1), ("R",), ("C", 256, 256, 3, 1, 1), ("R",)]
ALEXNET_TAPS = (1, 4, 7, 9, 11)  # relu1 .. relu5


def _vgg16():
    layers, cin = [], 3
    for stage, (cout, n) in enumerate([(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)]):
        if stage:
            layers.append(("M", 2, 2))
        for _ in range(n):
            layers += [("C", cin, cout, 3, 1, 1), ("R",)]
            cin = cout
    return layers


VGG16 = _vgg16()
VGG16_TAPS = (3, 8, 15, 22, 29)  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
NETWORKS = {"alex": (ALEXNET, ALEXNET_TAPS), "vgg": (VGG16, VGG16_TAPS)}


def build_layer(spec):
    if spec[0] == "C":
        _, cin, cout, k, s, p = spec
        return nn.Conv2d(cin, cout, k, stride=s, pad_mode="pad", padding=p, has_bias=True)
    if spec[0] == "R":
        return nn.ReLU()
    return nn.MaxPool2d(kernel_size=spec[1], stride=spec[2], pad_mode="valid")


class FeatureStack(nn.Cell):
    """torchvision ``features`` Sequential up to the last tapped ReLU; returns the tapped outputs."""

    def __init__(self, net="alex"):
        super().__init__()
        if net not in NETWORKS:
            raise ValueError(f"LPIPS network must be one of {sorted(NETWORKS)}, got {net!r}")
        specs, self.taps = NETWORKS[net]
        self.features = nn.CellList([build_layer(s) for s in specs[:self.taps[-1] + 1]])
        self.channels = tuple(specs[t - 1][2] for t in self.taps)

    def construct(self, x):
        outs = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                outs.append(x)
        return outs


class NetLinLayer(nn.Cell):
    """lpips' ``model = Sequential(Dropout, Conv1x1(C, 1, bias=False))``; dropout is inactive at inference."""

    def __init__(self, channels):
        super().__init__()
        self.model = nn.SequentialCell([nn.Identity(), nn.Conv2d(channels, 1, 1, pad_mode="pad", padding=0,
                                                                  has_bias=False)])

    def construct(self, x):
        return self.model(x)


def unit_normalize(x, eps=NORM_EPS):
    return x / expand_as(ops.sqrt((x * x).sum(axis=1, keepdims=True)) + eps, x)


class LPIPS(nn.Cell):
    """construct(x, y) -> LPIPS distance; ``reduction`` 'mean' (over the batch, scalar) or 'none' (B,)."""

    def __init__(self, net="alex", reduction="mean"):
        super().__init__()
        if reduction not in ("mean", "none"):
            raise ValueError(f"LPIPS reduction must be 'mean' or 'none', got {reduction!r}")
        self.net = FeatureStack(net)
        c = self.net.channels
        # five named attributes, not a CellList, so the names are lpips' lin0 .. lin4
        self.lin0, self.lin1, self.lin2, self.lin3, self.lin4 = (NetLinLayer(ch) for ch in c)
        self.shift = Tensor(np.array(SHIFT, np.float32).reshape(1, 3, 1, 1))
        self.scale = Tensor(np.array(SCALE, np.float32).reshape(1, 3, 1, 1))
        self.reduction = reduction
        freeze(self)

    def construct(self, x, y):
        fx = self.net((x - expand_as(self.shift, x)) / expand_as(self.scale, x))
        fy = self.net((y - expand_as(self.shift, y)) / expand_as(self.scale, y))
        lins = (self.lin0, self.lin1, self.lin2, self.lin3, self.lin4)
        total = 0.0
        for k in range(5):
            diff = unit_normalize(fx[k]) - unit_normalize(fy[k])
            total = total + lins[k](diff * diff).mean(axis=(1, 2, 3))
        if self.reduction == "mean":
            return total.mean()
        return total


PACKAGED_LINEAR_NETS = ("alex", "vgg")


def packaged_linear_path(net, must_exist=True):
    """``modify_ms/assets/lpips_v0.1/<net>_linear.npz`` (made by tools/export_lpips_linear.py)."""
    from ..assets import HERE, asset_path

    if net not in PACKAGED_LINEAR_NETS:
        raise ValueError(f"LPIPS network must be one of {PACKAGED_LINEAR_NETS}, got {net!r}")
    name = f"{net}_linear.npz"
    return asset_path("lpips_v0.1", name) if must_exist else os.path.join(HERE, "lpips_v0.1", name)


def packaged_linear_layers(net):
    """{``linK.model.1.weight``: float32 array} of the authors' v0.1 linear layers of ``net``."""
    with np.load(packaged_linear_path(net), allow_pickle=False) as arrays:
        return {name: arrays[name] for name in arrays.files}
