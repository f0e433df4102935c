"""pSp GradualStyleEncoder (Richardson et al. 2021): a feature pyramid over an IR-SE body, one style head per W+ row.

Parameter names are the PyTorch ``encoder.*`` keys of ``psp_ffhq_encode.pt`` without
the ``encoder.`` prefix (BatchNorm/PReLU renamed as in ``irse.py``):
``input_layer.*``, ``body.N.*``, ``styles.K.convs.{0,2,..}.{weight,bias}``,
``styles.K.linear.{weight,bias}``, ``latlayer1.*``, ``latlayer2.*``.

Shapes: input (B, 3, S, S) in [-1, 1] (S = 256 in pSp/MODIFY); the body's last three
blocks give c1 (S/4), c2 (S/8), c3 (S/16); output (B, n_styles, style_dim).
Rows 0-2 come from c3, rows 3-6 from p2 = up(c3) + lat1(c2), the rest from
p1 = up(p2) + lat2(c1). ``n_styles`` = 2*log2(generator size) - 2.
"""
import math

import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from ..nn import EqualLinear
from .irse import CHANNELS, input_layer, ir_body, units_for

COARSE_END = 3  # rows [0, 3) from the 16x16 map
MIDDLE_END = 7  # rows [3, 7) from 32x32, [7, n_styles) from 64x64
HEAD_SLOPE = 0.01  # torch nn.LeakyReLU() default, which pSp's style heads use


class GradualStyleBlock(nn.Cell):
    """Stride-2 conv3x3 + LeakyReLU(0.01) repeated log2(spatial) times down to 1x1, then EqualLinear."""

    def __init__(self, in_c, out_c, spatial):
        super().__init__()
        num_pools = int(round(math.log2(spatial)))
        if num_pools < 1 or 2 ** num_pools != spatial:
            raise ValueError(f"GradualStyleBlock: spatial size must be a power of two >= 2, got {spatial}")
        layers = []
        for i in range(num_pools):
            layers += [nn.Conv2d(in_c if i == 0 else out_c, out_c, 3, stride=2, pad_mode="pad", padding=1,
                                 has_bias=True), nn.LeakyReLU(HEAD_SLOPE)]
        self.convs = nn.SequentialCell(layers)
        self.linear = EqualLinear(out_c, out_c, lr_mul=1.0)
        self.out_c = out_c

    def construct(self, x):
        x = self.convs(x)
        return self.linear(x.reshape(x.shape[0], self.out_c))


def upsample_add(x, y):
    """Bilinear resize of x to y's size with align_corners=True (pSp's _upsample_add), plus y."""
    return ops.interpolate(x, size=y.shape[2:], mode="bilinear", align_corners=True) + y


class GradualStyleEncoder(nn.Cell):
    """pSp encoder. Defaults are the real one: IR-SE50, input 256, 18 rows of 512.

    Args:
        n_styles: W+ rows (18 for a 1024 generator, 14 for 256: ``layout.n_latent_for``).
        input_size: encoder input resolution (the style heads' depths follow from it).
        num_layers / units / channels: body depth and widths (tiny test encoders).
        style_dim: output width (the generator's style_dim); defaults to channels[-1].
        latent_avg: optional (n_styles, style_dim) or (style_dim,) array; when given it is
            stored as the frozen Parameter ``latent_avg`` and added to every output
            (pSp's ``start_from_latent_avg``).
    """

    def __init__(self, n_styles=18, input_size=256, num_layers=50, mode="ir_se", units=None, channels=CHANNELS,
                 style_dim=None, latent_avg=None):
        super().__init__()
        if input_size % 64:
            raise ValueError(f"GradualStyleEncoder: input_size must be a multiple of 64, got {input_size}")
        if len(channels) != 4:
            raise ValueError(f"GradualStyleEncoder needs 4 body blocks, got channels {channels}")
        units = tuple(units) if units is not None else units_for(num_layers)
        style_dim = style_dim or channels[-1]
        self.input_layer = input_layer(channels[0])
        self.body, ends = ir_body(units, channels, mode)
        self.tap_c1, self.tap_c2, self.tap_c3 = ends[1], ends[2], ends[3]  # 6, 20, 23 for IR-SE50
        styles = []
        for i in range(n_styles):
            spatial = input_size // (16 if i < COARSE_END else 8 if i < MIDDLE_END else 4)
            styles.append(GradualStyleBlock(channels[3], style_dim, spatial))
        self.styles = nn.CellList(styles)
        self.latlayer1 = nn.Conv2d(channels[2], channels[3], 1, pad_mode="pad", padding=0, has_bias=True)
        self.latlayer2 = nn.Conv2d(channels[1], channels[3], 1, pad_mode="pad", padding=0, has_bias=True)
        self.n_styles = n_styles
        self.style_dim = style_dim
        self.add_latent_avg = latent_avg is not None
        if self.add_latent_avg:
            avg = np.asarray(latent_avg, np.float32)
            avg = np.broadcast_to(avg.reshape(-1, style_dim), (n_styles, style_dim)).copy()
            self.latent_avg = Parameter(Tensor(avg), name="latent_avg", requires_grad=False)

    def pyramid(self, x):
        """(c1, c2, c3): the body's outputs at S/4, S/8 and S/16."""
        x = self.input_layer(x)
        c1, c2, c3 = x, x, x
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i == self.tap_c1:
                c1 = x
            elif i == self.tap_c2:
                c2 = x
            elif i == self.tap_c3:
                c3 = x
        return c1, c2, c3

    def construct(self, x):
        c1, c2, c3 = self.pyramid(x)
        latents = []
        for j in range(min(COARSE_END, self.n_styles)):
            latents.append(self.styles[j](c3))
        p2 = upsample_add(c3, self.latlayer1(c2))
        for j in range(COARSE_END, min(MIDDLE_END, self.n_styles)):
            latents.append(self.styles[j](p2))
        p1 = upsample_add(p2, self.latlayer2(c1))
        for j in range(MIDDLE_END, self.n_styles):
            latents.append(self.styles[j](p1))
        codes = ops.stack(latents, axis=1)
        if self.add_latent_avg:
            codes = codes + self.latent_avg
        return codes
