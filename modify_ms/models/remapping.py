"""MODIFY's remapping network M: z ~ N(0, I) -> w_z, the last xi rows of a W+ code.

PixelNorm, ``n_layers`` EqualLinear(S, S) with scaled leaky ReLU, then
EqualLinear(S, xi * S) with scaled leaky ReLU, reshaped to [B, xi, S] (the authors'
structure). Parameter names: ``layers.{1..n}.{weight,bias}``, ``to_style_rows.*``.
"""
from mindspore import nn

from ..nn import EqualLinear, PixelNorm


class RemapNet(nn.Cell):
    def __init__(self, xi, style_dim=512, z_dim=None, n_layers=8, lr_mul=1.0):
        super().__init__()
        z_dim = z_dim or style_dim
        dims = [z_dim] + [style_dim] * n_layers
        self.layers = nn.SequentialCell([PixelNorm()] + [
            EqualLinear(dims[i], dims[i + 1], lr_mul=lr_mul, activation="fused_lrelu") for i in range(n_layers)])
        self.to_style_rows = EqualLinear(dims[-1], xi * style_dim, lr_mul=lr_mul, activation="fused_lrelu")
        self.xi, self.style_dim, self.z_dim = xi, style_dim, z_dim

    def construct(self, z):
        """z [B, Z] -> style_rows [B, xi, S]."""
        rows = self.to_style_rows(self.layers(z))
        return rows.reshape(rows.shape[0], self.xi, self.style_dim)
