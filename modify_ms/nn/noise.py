"""Per-layer noise injection: x + strength * noise, noise (B, 1, H, W) supplied by the caller.

Noise is drawn on the host (seeded) or taken from fixed buffers by the generator,
never inside compiled code.
"""
import numpy as np
from mindspore import Parameter, Tensor, nn

from .broadcast import expand_as


class NoiseInjection(nn.Cell):
    def __init__(self):
        super().__init__()
        self.weight = Parameter(Tensor(np.zeros(1, np.float32)), name="weight")  # rosinality starts at 0

    def construct(self, x, noise):
        return x + expand_as(self.weight * noise, x)
