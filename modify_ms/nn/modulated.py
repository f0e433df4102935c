"""Modulated convolution (StyleGAN2, Karras et al. 2020, eq. 1-3).

Two formulations, both equal to rosinality's fused path for any batch size.
For styles s [B, in] and weight w [out, in, k, k]:

* plain (stride-1) convs: per-sample weights w_b = w * s_b, demodulated by
  rsqrt(sum_{i,k} w_b^2 + 1e-8), in ONE grouped convolution over (1, B*in, H, W)
  (groups = B). On the MindSpore CPU backend this is as fast as scaling the input,
  and the backward pass keeps no scaled copy of x and no pre-demodulation output:
  a 32-channel 256 px layer's forward+backward needs ~375 MB instead of ~990 MB.
* upsampling convs: scale-input / shared-weight transposed conv / scale-output,
      conv(x, w * s)  == conv(x * s, w)                    (s acts on input channels)
      demod[b, o]     == rsqrt(sum_i s[b,i]^2 * sum_k w[o,i,k]^2 + 1e-8)
  so that one ordinary (ungrouped) Conv2DTranspose does the work.
"""
import math

import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from .equalized import EqualLinear
from .fir import Blur


def demodulation(styles, weight):
    """styles [B, in], weight [out, in, k, k] (already scaled) -> [B, out, 1, 1] demod coefficients."""
    w_sq = (weight * weight).sum(axis=(2, 3))                     # [out, in]
    d = ops.rsqrt(ops.matmul(styles * styles, w_sq.T) + 1e-8)     # [B, out]
    return d.reshape(d.shape[0], d.shape[1], 1, 1)


class ModulatedConv2d(nn.Cell):
    """Parameters: ``weight`` [1, out, in, k, k], ``modulation.{weight,bias}`` (bias init 1).

    With ``upsample`` the conv is a stride-2 transposed convolution followed by a
    [1,3,3,1] blur (gain 4), exactly as rosinality composes it.
    """

    def __init__(self, in_channel, out_channel, kernel_size, style_dim, demodulate=True, upsample=False,
                 blur_kernel=(1, 3, 3, 1)):
        super().__init__()
        self.weight = Parameter(Tensor(np.random.randn(1, out_channel, in_channel, kernel_size, kernel_size)
                                       .astype(np.float32)), name="weight")
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1.0)
        self.scale = 1.0 / math.sqrt(in_channel * kernel_size * kernel_size)
        self.demodulate = demodulate
        self.upsample = upsample
        self.in_channel, self.out_channel, self.kernel_size = in_channel, out_channel, kernel_size
        if upsample:
            p = (len(blur_kernel) - 2) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + 1, p // 2 + 1), upsample_factor=2)
            # Conv2DTranspose's out_channel is the channel count of its input (it is conv2d's backward).
            self.conv_t = ops.Conv2DTranspose(out_channel=in_channel, kernel_size=kernel_size,
                                              pad_mode="valid", stride=2)

    def construct(self, x, style):
        b, _, h, w = x.shape
        styles = self.modulation(style)                              # [B, in]
        weight = self.weight[0] * self.scale                         # [out, in, k, k]
        if not self.upsample:
            return self._grouped_conv(x, styles, weight)
        x = x * styles.reshape(b, self.in_channel, 1, 1)
        out_size = (b, self.out_channel, 2 * h + self.kernel_size - 2, 2 * w + self.kernel_size - 2)
        out = self.conv_t(x, weight.transpose(1, 0, 2, 3), out_size)
        if self.demodulate:
            out = out * demodulation(styles, weight)
        return self.blur(out)

    def _grouped_conv(self, x, styles, weight):
        """Per-sample modulated (and demodulated) weights, one conv with groups = batch."""
        b, _, h, w = x.shape
        k = self.kernel_size
        wgt = weight.expand_dims(0) * styles.reshape(b, 1, self.in_channel, 1, 1)   # [B, out, in, k, k]
        if self.demodulate:
            d = ops.rsqrt((wgt * wgt).sum(axis=(2, 3, 4)) + 1e-8)                    # [B, out]
            wgt = wgt * d.reshape(b, self.out_channel, 1, 1, 1)
        out = ops.conv2d(x.reshape(1, b * self.in_channel, h, w),
                         wgt.reshape(b * self.out_channel, self.in_channel, k, k),
                         pad_mode="pad", padding=k // 2, groups=b)
        return out.reshape(b, self.out_channel, h, w)
