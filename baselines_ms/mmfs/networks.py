"""MMFS's Stylizer (``models/style_based_pix2pixII_model.py:Stylizer``; ../BASELINES 5.2) over the
library's StyleGAN2 layers.

The spatial encoder (rosinality's ConvLayer / ResBlock: blur-downsampling, equalized convs) maps a
face [B, 3, S, S] to a feature map [B, C, S/16, S/16] that *replaces* StyleGAN2's synthesis below
S/16: ``decoder0`` (StyledConv, no upsampling) and ``to_rgb0`` run at S/16, then ``decoder{k}a``
(upsampling) / ``decoder{k}b`` / ``to_rgb{k}`` (upsampled skip) for k = 1..4 up to S, and the image
is clamped to [-1, 1] (hardtanh). Ten style rows drive it (decoder0 <- s0, to_rgb0 <- s1, decoder{k}a
<- s_{2k-1}, decoder{k}b <- s_{2k}, to_rgb{k} <- s_{2k+1}), batch-first [B, 10, D] (the official
code stores them seq-first; same mathematics): ``mapping_z`` broadcast to all rows (random
stylization) or the CLIP mapper's 10 tokens.

Parameter names are the official ``G_ema_model`` keys (``encoder.1.conv2.1.weight``,
``decoder2a.conv.modulation.weight``, ``mapping_z.3.bias`` ...); the blur kernels rosinality keeps
as buffers are constants here. Noise is an input, drawn on the host: ``synthesize`` draws fresh
maps every call, as the official StyledConvs do (they keep no noise buffers).
"""
import math

import numpy as np
import mindspore as ms
from mindspore import Tensor, nn, ops

from modify_ms.models.layout import check_size
from modify_ms.models.stylegan2 import ConvLayer, ResBlock, StyledConv, ToRGB, channel_table
from modify_ms.nn import EqualLinear, PixelNorm

from .config import ENCODER_DOWNSAMPLES, N_STYLES

N_BLOCKS = 4                       # upsampling decoder blocks: S/16 -> S
N_NOISE = 1 + 2 * N_BLOCKS         # decoder0, then a and b of each block
D_FEATURE_TAPS = (1, 3, 4, 5)      # the official D(rtn_feats=True): convs[1, 3, 4, 5] (256, 64, 32, 16 at 512)


def decoder_resolutions(size):
    """Resolutions of decoder0 and decoder1..4: size/16, size/8, size/4, size/2, size."""
    check_size(size)
    return tuple(size // 2 ** (ENCODER_DOWNSAMPLES - k) for k in range(N_BLOCKS + 1))


def decoder_channels(size, channel_multiplier=2, channel_max=512):
    """StyleGAN2's channel table at the decoder's resolutions (512, 512, 256, 128, 64 at 512 px)."""
    table = channel_table(channel_multiplier, channel_max)
    return tuple(table[r] for r in decoder_resolutions(size))


def encoder_widths(ngf):
    """The encoder's ConvLayer and its four ResBlocks: ngf, ngf, 2 ngf, 4 ngf, 8 ngf."""
    return (ngf, ngf, 2 * ngf, 4 * ngf, 8 * ngf)


def spatial_encoder(ngf, out_channels):
    """ConvLayer(3, ngf, 3) @S, ResBlocks to S/16, ConvLayer(8 ngf, out, 3) @S/16 (official: 512 -> 512)."""
    w = encoder_widths(ngf)
    layers = [ConvLayer(3, w[0], 3)] + [ResBlock(w[i], w[i + 1]) for i in range(ENCODER_DOWNSAMPLES)]
    return nn.SequentialCell(layers + [ConvLayer(w[-1], out_channels, 3)])


def mapping_network(style_dim, n_mlp, lr_mlp=0.01):
    """PixelNorm + n_mlp equalized linears with fused leaky ReLU (keys ``mapping_z.1..n_mlp``)."""
    return nn.SequentialCell([PixelNorm()] + [EqualLinear(style_dim, style_dim, lr_mul=lr_mlp,
                                                          activation="fused_lrelu") for _ in range(n_mlp)])


class Stylizer(nn.Cell):
    """``construct(image, styles, noise)`` -> image in [-1, 1]: the compiled pure function
    (``noise`` a tuple of N_NOISE maps [B, 1, r, r], see ``noise_shapes``). Host-side helpers:
    ``styles_from_z``, ``mix_styles``, ``styles_from_clip``, ``synthesize`` (fresh noise)."""

    def __init__(self, cfg, noise_seed=None):
        super().__init__()
        self.cfg = cfg
        self.size, self.style_dim = cfg.size, cfg.style_dim
        self.resolutions = decoder_resolutions(cfg.size)
        ch = decoder_channels(cfg.size, cfg.channel_multiplier, cfg.channel_max)
        self.channels = ch
        sd = cfg.style_dim
        self.encoder = spatial_encoder(cfg.ngf, ch[0])
        self.mapping_z = mapping_network(sd, cfg.n_mlp, cfg.lr_mlp)
        self.decoder0 = StyledConv(ch[0], ch[0], 3, sd)
        self.to_rgb0 = ToRGB(ch[0], sd, upsample=False)
        for k in range(1, N_BLOCKS + 1):
            setattr(self, f"decoder{k}a", StyledConv(ch[k - 1], ch[k], 3, sd, upsample=True))
            setattr(self, f"decoder{k}b", StyledConv(ch[k], ch[k], 3, sd))
            setattr(self, f"to_rgb{k}", ToRGB(ch[k], sd))
        self.blocks = [(getattr(self, f"decoder{k}a"), getattr(self, f"decoder{k}b"), getattr(self, f"to_rgb{k}"))
                       for k in range(1, N_BLOCKS + 1)]
        self.clip_mapper = None
        if cfg.clip_mapper is not None:
            from .clip_mapper import CLIPFeats2Wplus

            m = cfg.clip_mapper
            self.clip_mapper = CLIPFeats2Wplus(m.n_tokens, m.dim, m.n_layers, m.n_heads, m.ff_dim, m.dropout)
        # host stream of the per-call noise; follows the global seed (seed_everything) unless given
        seed = int(np.random.randint(0, 2 ** 31 - 1)) if noise_seed is None else int(noise_seed)
        self.noise_rng = np.random.default_rng(seed)

    # ----------------------------------------------------------------- graph-friendly pieces
    def encode(self, image):
        """[B, 3, S, S] -> [B, C, S/16, S/16]."""
        return self.encoder(image)

    def decode(self, features, styles, noise):
        """The StyleGAN2 layers from S/16 up, skip-summed RGB, then hardtanh."""
        out = self.decoder0(features, styles[:, 0], noise[0])
        skip = self.to_rgb0(out, styles[:, 1])
        for k, (conv_a, conv_b, to_rgb) in enumerate(self.blocks, start=1):
            out = conv_a(out, styles[:, 2 * k - 1], noise[2 * k - 1])
            out = conv_b(out, styles[:, 2 * k], noise[2 * k])
            skip = to_rgb(out, styles[:, 2 * k + 1], skip)
        return ops.clip_by_value(skip, -1.0, 1.0)

    def construct(self, image, styles, noise):
        return self.decode(self.encode(image), styles, noise)

    def styles_from_z(self, z):
        """z [B, D] -> [B, 10, D]: one mapped w for every row."""
        w = self.mapping_z(z)
        return ops.tile(w.expand_dims(1), (1, N_STYLES, 1))

    def mix_styles(self, z1, z2, cutoff):
        """Style mixing: rows < cutoff from w(z1), the rest from w(z2) (``cutoff`` an int Tensor, host-drawn)."""
        rows = ops.arange(N_STYLES).reshape(1, N_STYLES, 1)
        return ops.where(rows < cutoff, self.styles_from_z(z1), self.styles_from_z(z2))

    def styles_from_clip(self, feats):
        """CLIP features [B, 512] -> [B, 10, D] through the clip mapper."""
        if self.clip_mapper is None:
            raise ValueError("this Stylizer has no clip_mapper (model.stylizer.clip_mapper is not set)")
        return self.clip_mapper(feats)

    # ----------------------------------------------------------------- host-side helpers
    def noise_shapes(self, batch):
        res = self.resolutions
        return [(batch, 1, res[0], res[0])] + [(batch, 1, r, r) for r in res[1:] for _ in range(2)]

    def random_noise(self, batch, rng=None):
        """Fresh noise maps from ``rng`` (default: the stylizer's own stream). ``mutable``: new
        values each call must not recompile a GRAPH_MODE cell."""
        rng = self.noise_rng if rng is None else rng
        return ms.mutable(tuple(Tensor(rng.standard_normal(s, dtype=np.float32)) for s in self.noise_shapes(batch)))

    def synthesize(self, image, styles, noise=None):
        """Encoder then decoder with fresh noise every call (the official behaviour at train and test time)."""
        return self(image, styles, self.random_noise(image.shape[0]) if noise is None else noise)


# ----------------------------------------------------------------- StyleGAN2 -> Stylizer
def stylegan_rule(size):
    """The official ``_convert_stylegan2_dict`` for a Stylizer of ``size`` (a StyleGAN2 G of the same
    size): ``style.*`` -> ``mapping_z.*``; the convs / to_rgbs of the resolutions S/8 .. S ->
    decoder1a .. decoder4b / to_rgb1..4 (at 512: convs.6..13, to_rgbs.3..6); everything below S/8
    (input, conv1, G's own 4x4 ``to_rgb1``, lower convs / to_rgbs) and the noise buffers are dropped.
    Returns (prefix rename pairs, dropped-name predicate)."""
    first = int(math.log2(size)) - 6      # G's block index of resolution S/8 (3 at 512)
    pairs = [("style.", "mapping_z.")]
    for k in range(1, N_BLOCKS + 1):
        block = first + k - 1
        pairs += [(f"convs.{2 * block}.", f"decoder{k}a."), (f"convs.{2 * block + 1}.", f"decoder{k}b."),
                  (f"to_rgbs.{block}.", f"to_rgb{k}.")]
    return pairs


def stylegan_to_stylizer_name(name, size):
    """A StyleGAN2 parameter name -> the Stylizer's, or None for the layers MMFS drops."""
    for old, new in stylegan_rule(size):
        if name.startswith(old):
            return new + name[len(old):]
    return None


def copy_stylegan_layers(stylizer, generator):
    """Fill mapping_z and decoder1a..to_rgb4 from a library StyleGAN2 ``Generator`` of the same size
    and widths (stage I's initialisation). Strict: every renamed tensor must exist with the same
    shape, and every Stylizer parameter outside encoder / decoder0 / to_rgb0 / clip_mapper is filled.
    Returns the number of tensors copied (80 at 512 with n_mlp 8)."""
    targets = dict(stylizer.parameters_and_names())
    filled = set()
    for name, param in generator.parameters_and_names():
        new = stylegan_to_stylizer_name(name, stylizer.size)
        if new is None:
            continue
        if new not in targets or tuple(targets[new].shape) != tuple(param.shape):
            got = tuple(targets[new].shape) if new in targets else "missing"
            raise ValueError(f"StyleGAN2 {name} {tuple(param.shape)} -> Stylizer {new}: {got}")
        targets[new].set_data(Tensor(param.asnumpy()))
        filled.add(new)
    own = ("encoder.", "decoder0.", "to_rgb0.", "clip_mapper.")
    left = sorted(n for n in targets if not n.startswith(own) and n not in filled)
    if left:
        raise ValueError(f"StyleGAN2 -> Stylizer: {len(left)} parameters not filled, first {left[0]}")
    return len(filled)


def stage1_trained(name):
    """Stage I trains the encoder, decoder0 and to_rgb0 only (the StyleGAN layers stay frozen)."""
    return name.startswith(("encoder.", "decoder0.", "to_rgb0."))


def decoder_trained(name):
    """Phase 4 trains the decoder only (decoder0..4b, to_rgb0..4)."""
    return name.startswith(("decoder", "to_rgb"))


def d_features(discriminator, image, taps=D_FEATURE_TAPS):
    """The discriminator's feature maps at ``taps`` (those the network has: a D below 128 px lacks convs[5])."""
    _, feats = discriminator(image, return_features=True)
    return tuple(feats[i] for i in taps if i < len(feats))
