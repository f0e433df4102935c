"""Scaled leaky ReLU, as StyleGAN2 uses it everywhere: leaky_relu(x + b, 0.2) * sqrt(2).

Written as relu(x) * (1 - slope) + x * slope, and the bias as ``bias_add``: MindSpore 2.10's CPU
LeakyReLU and broadcasting-add kernels keep buffers of about 4x their output for the life of a
compiled graph; ReLU, BiasAdd and same-shape arithmetic keep none (docs/memory.md).
"""
import math

import numpy as np
import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops

SQRT2 = math.sqrt(2.0)


def scaled_leaky_relu(x, negative_slope=0.2, scale=SQRT2):
    """leaky_relu(x) * scale; the sqrt(2) gain keeps the activation variance at 1."""
    return ops.relu(x) * ((1.0 - negative_slope) * scale) + x * (negative_slope * scale)


class FusedLeakyReLU(nn.Cell):
    """Per-channel bias, then scaled leaky ReLU. Parameter ``bias`` [C] (rosinality ``activate.bias``)."""

    def __init__(self, channels, negative_slope=0.2, scale=SQRT2):
        super().__init__()
        self.bias = Parameter(Tensor(np.zeros(channels, np.float32)), name="bias")
        self.negative_slope = negative_slope
        self.scale = scale

    def construct(self, x):
        return scaled_leaky_relu(ops.bias_add(x, self.bias), self.negative_slope, self.scale)
