"""FIR filtering with the [1, 3, 3, 1] kernel: blur, and 2x upsampling by zero insertion.

Both reduce to one single-channel convolution over (B*C, 1, H, W) planes, so no
grouped convolution is needed. Padding goes through the convolution itself
(four-sided ``pad``): ``ops.pad`` in constant mode can hang a compiled step.
The kernels are constants derived from [1, 3, 3, 1], never learned or saved.
"""
import numpy as np
import mindspore as ms
from mindspore import Tensor, nn, ops


def make_blur_kernel(taps=(1, 3, 3, 1), gain=1.0):
    """Separable 2-D kernel outer(taps, taps) normalised to sum to ``gain``; float32 [k, k]."""
    k = np.asarray(taps, dtype=np.float64)
    k = np.outer(k, k) if k.ndim == 1 else k
    return (k / k.sum() * gain).astype(np.float32)


class Blur(nn.Cell):
    """upfirdn2d with up = down = 1: pad (pad0 before, pad1 after) on H and W, then filter."""

    def __init__(self, taps=(1, 3, 3, 1), pad=(1, 1), upsample_factor=1):
        super().__init__()
        kernel = make_blur_kernel(taps, gain=upsample_factor ** 2)
        self.kernel_size = kernel.shape[0]
        # Convolution flips nothing here: the kernel is symmetric, so correlation == convolution.
        self.kernel = Tensor(kernel[::-1, ::-1].copy().reshape(1, 1, *kernel.shape))
        self.filter = ops.Conv2D(out_channel=1, kernel_size=self.kernel_size, pad_mode="pad",
                                 pad=(pad[0], pad[1], pad[0], pad[1]))

    def construct(self, x):
        b, c, h, w = x.shape
        y = self.filter(x.reshape(b * c, 1, h, w), self.kernel)
        return y.reshape(b, c, y.shape[2], y.shape[3])


def zero_insert_2x(x):
    """(B, C, H, W) -> (B, C, 2H, 2W) with x at even positions and zeros elsewhere."""
    b, c, h, w = x.shape
    zeros = ops.zeros_like(x)
    x = ops.stack((x, zeros), axis=-1).reshape(b, c, h, 2 * w)
    zeros = ops.zeros_like(x)
    return ops.stack((x, zeros), axis=3).reshape(b, c, 2 * h, 2 * w)


class Upsample(nn.Cell):
    """upfirdn2d with up = 2: zero insertion, pad ((k-2+1)//2 + 1, (k-2)//2), filter x 4."""

    def __init__(self, taps=(1, 3, 3, 1), factor=2):
        super().__init__()
        if factor != 2:
            raise ValueError("Upsample supports factor 2 only")
        p = len(taps) - factor
        self.blur = Blur(taps, pad=((p + 1) // 2 + factor - 1, p // 2), upsample_factor=factor)

    def construct(self, x):
        return self.blur(zero_insert_2x(x))
