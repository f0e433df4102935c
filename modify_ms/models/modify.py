"""The MODIFY composition: encoder E, decoder D (StyleGAN2), remapping net M, discriminator Dis.

Shapes: B batch, L = W+ rows of the decoder, S = style_dim, xi = fused style rows,
R = decoder resolution, P = loss resolution (256 in the paper; the decoder output
is average-pooled from R to P, and images go back up to R for the discriminator,
nearest-neighbour as the authors' code or bilinear: ``model.disc_upsample``).

Latent space (the authors' ``pSp.forward``): E and M both produce OFFSETS from the
decoder's mean latent. The fused code replaces the last xi rows of E(x) by M(z) and
only then adds ``latent_avg`` to all L rows, so the swap loss compares offsets.
"""
import numpy as np
from mindspore import Tensor, nn, ops

from .psp_encoder import GradualStyleEncoder
from .remapping import RemapNet
from .stylegan2 import Discriminator, Generator, n_latent_for


def build_encoder(cfg, n_styles, style_dim, input_size):
    """``cfg``: EncoderConfig. Outputs offsets [B, L, S] from the decoder's mean latent (``ModifyNets.w_plus``)."""
    return GradualStyleEncoder(n_styles=n_styles, input_size=input_size, num_layers=cfg.num_layers,
                               units=cfg.units, channels=tuple(cfg.channels), style_dim=style_dim)


def build_decoder(cfg):
    """``cfg``: GeneratorConfig."""
    return Generator(cfg.size, cfg.style_dim, cfg.n_mlp, cfg.channel_multiplier, cfg.channel_max)


def interpolation_matrix(size_in, size_out, mode):
    """[size_out, size_in] weights of 1-D resampling as torch's F.interpolate computes it.

    nearest: output i copies input floor(i * size_in / size_out);
    bilinear (align_corners=False): half-pixel centres, source (i + 0.5) * size_in / size_out - 0.5
    clamped at the edges, weights 1 - frac and frac on its two neighbours."""
    rows = np.arange(size_out)
    mat = np.zeros((size_out, size_in), np.float32)
    if mode == "nearest":
        mat[rows, np.minimum(rows * size_in // size_out, size_in - 1)] = 1.0
        return mat
    src = np.maximum((rows + 0.5) * size_in / size_out - 0.5, 0.0)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, size_in - 1)
    frac = (src - lo).astype(np.float32)
    np.add.at(mat, (rows, lo), 1.0 - frac)
    np.add.at(mat, (rows, hi), frac)
    return mat


class CriticUpsample(nn.Cell):
    """[B, C, P, P] -> [B, C, R, R]: the images the discriminator sees, ``nearest`` (the authors'
    F.interpolate default) or ``bilinear``, as two products with fixed interpolation matrices.

    Not ops.interpolate: the Lipschitz penalty differentiates this twice, and MindSpore 2.10 has
    no gradient of the resize gradients (ResizeNearestNeighborV2Grad, ResizeBilinearGrad); a
    reshape + broadcast_to repeat gives a zero double backward in PYNATIVE."""

    def __init__(self, size_in, size_out, mode):
        super().__init__()
        if mode not in ("nearest", "bilinear"):
            raise ValueError(f"discriminator upsampling must be 'nearest' or 'bilinear', got {mode!r}")
        mat = interpolation_matrix(size_in, size_out, mode)
        self.mat, self.mat_t = Tensor(mat), Tensor(np.ascontiguousarray(mat.T))  # constants, not parameters

    def construct(self, img):
        img = ops.matmul(img, self.mat_t)           # along width:  [B, C, P, R]
        return ops.matmul(self.mat, img)            # along height: [B, C, R, R]


def fuse_codes(offsets, style_rows):
    """{w_l, w_z}: the first L - xi rows of the encoder's offsets (content), then the xi style rows of M."""
    xi = style_rows.shape[1]
    return ops.concat((offsets[:, :offsets.shape[1] - xi], style_rows), axis=1)


def style_part(offsets, xi):
    """The last xi rows of a code [B, L, S]: what M's output replaces and the swap loss compares."""
    return offsets[:, offsets.shape[1] - xi:]


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
        d = cfg.discriminator
        self.discriminator = Discriminator(g.size, d.channel_multiplier, d.channel_max,
                                           stddev_group=d.group, stddev_feat=d.stddev_feat)
        self.gen_size, self.loss_size = g.size, cfg.loss_size
        factor = g.size // cfg.loss_size
        self.pool = nn.AvgPool2d(kernel_size=factor, stride=factor) if factor > 1 else None
        self.to_critic = CriticUpsample(cfg.loss_size, g.size, cfg.disc_upsample) if factor > 1 else None

    def groups(self):
        """The four networks under their checkpoint group names (a run checkpoint's ``<group>/<param>``)."""
        return {"encoder": self.encoder, "decoder": self.decoder, "remap_net": self.remap_net,
                "discriminator": self.discriminator}

    def w_plus(self, offsets, style_rows=None):
        """The decoder's input: offsets [B, L, S] (with their last xi rows replaced by ``style_rows``
        [B, xi, S] when given) plus the decoder's mean latent on every row."""
        if style_rows is not None:
            offsets = fuse_codes(offsets, style_rows)
        return offsets + self.decoder.latent_avg

    def render(self, w_plus, noise):
        """W+ [B, L, S] -> image [B, 3, P, P] at the loss resolution."""
        img = self.decoder(w_plus, noise)
        if self.pool is not None:
            img = self.pool(img)
        return img

    def critic(self, img):
        """Discriminator logits [B, 1] of loss-resolution images, upsampled to the decoder's size."""
        if self.to_critic is not None:
            img = self.to_critic(img)
        return self.discriminator(img)



class Stylizer(nn.Cell):
    """x [B, 3, P, P] -> D(encoder(x)), or D({w_l, M(z)}) when style samples z [B, Z] are given; no
    gradients. ``encoder``: E (stage-1 samples, stage 2's teacher "real") or stage 2's E'."""

    def __init__(self, nets, encoder):
        super().__init__(auto_prefix=False)  # shared networks keep their parameter names
        self.nets, self.encoder = nets, encoder

    def construct(self, x, noise, z=None):
        rows = None if z is None else self.nets.remap_net(z)
        return ops.stop_gradient(self.nets.render(self.nets.w_plus(self.encoder(x), rows), noise))
