"""The MODIFY composition: encoder E, decoder D (StyleGAN2), remapping net M, discriminator Dis.

Shapes: B batch, L = W+ rows of the decoder, S = style_dim, xi = fused style rows,
R = decoder resolution, P = loss resolution (256 in the paper; the decoder output
is average-pooled from R to P, and images go back up to R for the discriminator).
"""
import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from .psp_encoder import GradualStyleEncoder
from .remapping import RemapNet
from .stylegan2 import Discriminator, Generator, n_latent_for


def build_encoder(cfg, n_styles, style_dim, input_size):
    """``cfg``: EncoderConfig. Starts from the decoder's mean latent (set later from its checkpoint)."""
    return GradualStyleEncoder(n_styles=n_styles, input_size=input_size, num_layers=cfg.num_layers,
                               units=cfg.units, channels=tuple(cfg.channels), style_dim=style_dim,
                               latent_avg=np.zeros(style_dim, np.float32))


def build_decoder(cfg):
    """``cfg``: GeneratorConfig."""
    return Generator(cfg.size, cfg.style_dim, cfg.n_mlp, cfg.channel_multiplier, cfg.channel_max)


def fuse_codes(w_plus, style_rows):
    """{w_l, w_z}: the first L - xi rows of w_plus (content) followed by the xi style rows."""
    xi = style_rows.shape[1]
    return ops.concat((w_plus[:, :w_plus.shape[1] - xi], style_rows), axis=1)


class ModifyNets(nn.Cell):
    """Holds the four networks under stable parameter names (``encoder.*``, ``decoder.*``,
    ``remap_net.*``, ``discriminator.*``) and the resampling between decoder and loss resolutions.
    Cells that wrap it are built with ``auto_prefix=False`` so these names never change."""

    def __init__(self, cfg):
        super().__init__()
        g = cfg.generator
        self.n_latent = n_latent_for(g.size)
        self.xi = cfg.remap.xi
        self.encoder = build_encoder(cfg.encoder, self.n_latent, g.style_dim, cfg.loss_size)
        self.decoder = build_decoder(g)
        self.remap_net = RemapNet(cfg.remap.xi, g.style_dim, n_layers=cfg.remap.n_layers, lr_mul=cfg.remap.lr_mul)
        self.discriminator = Discriminator(g.size, cfg.discriminator.channel_multiplier,
                                           cfg.discriminator.channel_max)
        self.gen_size, self.loss_size = g.size, cfg.loss_size
        factor = g.size // cfg.loss_size
        self.pool = nn.AvgPool2d(kernel_size=factor, stride=factor) if factor > 1 else None

    def render(self, w_plus, noise):
        """W+ [B, L, S] -> image [B, 3, P, P] at the loss resolution."""
        img = self.decoder(w_plus, noise)
        if self.pool is not None:
            img = self.pool(img)
        return img

    def critic(self, img):
        """Discriminator logits [B, 1] of loss-resolution images, upsampled to the decoder's size."""
        if self.gen_size != self.loss_size:
            img = ops.interpolate(img, size=(self.gen_size, self.gen_size), mode="bilinear", align_corners=False)
        return self.discriminator(img)

    def stylize(self, x, noise, style_rows=None):
        """x [B, 3, P, P] -> D(E(x)), or D({w_l, style_rows}) when style rows from M are given."""
        w_plus = self.encoder(x)
        if style_rows is not None:
            w_plus = fuse_codes(w_plus, style_rows)
        return self.render(w_plus, noise)
