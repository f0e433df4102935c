"""Equalized-learning-rate layers (Karras et al.): weights are stored raw and scaled at run time.

Stored ~N(0, 1/lr_mul); the forward multiplies by lr_mul / sqrt(fan_in). This is
the rosinality storage convention, so converted checkpoints load without rescaling.
"""
import math

import numpy as np
import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops

from .activation import scaled_leaky_relu


class EqualLinear(nn.Cell):
    """y = x @ (W * lr_mul / sqrt(in)).T + b * lr_mul, optionally with fused leaky ReLU.

    Parameters: ``weight`` [out, in], ``bias`` [out] (absent when ``bias=False``).
    """

    def __init__(self, in_dim, out_dim, bias=True, bias_init=0.0, lr_mul=1.0, activation=None):
        super().__init__()
        if activation not in (None, "fused_lrelu"):
            raise ValueError(f"EqualLinear: unknown activation {activation!r}")
        self.weight = Parameter(Tensor(np.random.randn(out_dim, in_dim).astype(np.float32) / lr_mul), name="weight")
        self.has_bias = bias
        if bias:
            self.bias = Parameter(Tensor(np.full(out_dim, bias_init, np.float32)), name="bias")
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activation = activation

    def construct(self, x):
        out = ops.matmul(x, (self.weight * self.scale).T)
        if self.has_bias:
            out = out + self.bias * self.lr_mul
        if self.activation == "fused_lrelu":
            out = scaled_leaky_relu(out)
        return out


class EqualConv2d(nn.Cell):
    """Conv with weight [out, in, k, k] scaled by 1/sqrt(in*k*k); explicit (possibly 4-sided) padding."""

    def __init__(self, in_channel, out_channel, kernel_size, stride=1, padding=0, bias=True):
        super().__init__()
        shape = (out_channel, in_channel, kernel_size, kernel_size)
        self.weight = Parameter(Tensor(np.random.randn(*shape).astype(np.float32)), name="weight")
        self.scale = 1.0 / math.sqrt(in_channel * kernel_size * kernel_size)
        self.stride = stride
        self.padding = padding
        self.has_bias = bias
        if bias:
            self.bias = Parameter(Tensor(np.zeros(out_channel, np.float32)), name="bias")

    def construct(self, x):
        out = ops.conv2d(x, self.weight * self.scale, stride=self.stride, pad_mode="pad", padding=self.padding)
        if self.has_bias:
            out = ops.bias_add(out, self.bias)  # not a broadcasting add (nn/broadcast.py)
        return out
