"""PixelNorm: x / sqrt(mean(x^2 over features) + 1e-8), the mapping network's input normalisation."""
from mindspore import nn, ops


class PixelNorm(nn.Cell):
    def __init__(self, eps=1e-8):
        super().__init__()
        self.eps = eps

    def construct(self, x):
        return x * ops.rsqrt(ops.mean(x * x, axis=1, keep_dims=True) + self.eps)
