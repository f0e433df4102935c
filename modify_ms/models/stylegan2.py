"""StyleGAN2 generator and ResNet discriminator (Karras et al. 2020), config-f structure.

Parameter names are rosinality's state_dict keys (``convs.3.conv.modulation.weight``,
``noises.noise_5``, D's ``convs.2.conv2.1.weight`` ...), so the PyTorch importer is a
rule table. The blur kernels rosinality keeps as buffers are constants here.

Shapes: B batch, L = n_latent W+ rows, S = style_dim, R resolution.
"""
import math

import numpy as np
import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops

from ..nn import (Blur, EqualConv2d, expand_as, EqualLinear, FusedLeakyReLU, ModulatedConv2d, NoiseInjection, PixelNorm,
                  Upsample)
from .layout import check_size, check_stddev_batch, n_latent_for, stddev_group_for  # noqa: F401  (re-exported)


def channel_table(channel_multiplier=2, channel_max=512):
    """Feature maps per resolution (config-f), capped at ``channel_max`` for small CPU models."""
    table = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * channel_multiplier, 128: 128 * channel_multiplier,
             256: 64 * channel_multiplier, 512: 32 * channel_multiplier, 1024: 16 * channel_multiplier}
    return {res: min(ch, channel_max) for res, ch in table.items()}


class ConstantInput(nn.Cell):
    """Learned 4x4 input, ``input`` [1, C, 4, 4], repeated over the batch."""

    def __init__(self, channel, size=4):
        super().__init__()
        self.input = Parameter(Tensor(np.random.randn(1, channel, size, size).astype(np.float32)), name="input")

    def construct(self, batch_ref):
        return ops.tile(self.input, (batch_ref.shape[0], 1, 1, 1))


class StyledConv(nn.Cell):
    """Modulated conv -> noise -> bias + scaled leaky ReLU."""

    def __init__(self, in_channel, out_channel, kernel_size, style_dim, upsample=False, blur_kernel=(1, 3, 3, 1)):
        super().__init__()
        self.conv = ModulatedConv2d(in_channel, out_channel, kernel_size, style_dim, upsample=upsample,
                                    blur_kernel=blur_kernel)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channel)

    def construct(self, x, style, noise):
        return self.activate(self.noise(self.conv(x, style), noise))


class ToRGB(nn.Cell):
    """1x1 modulated conv without demodulation, bias [1, 3, 1, 1], plus the upsampled skip image."""

    def __init__(self, in_channel, style_dim, upsample=True, blur_kernel=(1, 3, 3, 1)):
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.has_upsample = upsample
        self.conv = ModulatedConv2d(in_channel, 3, 1, style_dim, demodulate=False)
        self.bias = Parameter(Tensor(np.zeros((1, 3, 1, 1), np.float32)), name="bias")

    def construct(self, x, style, skip=None):
        out = ops.bias_add(self.conv(x, style), self.bias.reshape(-1))  # not a broadcasting add (nn/broadcast.py)
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class Generator(nn.Cell):
    """StyleGAN2 generator.

    ``construct(latent, noise=None)``: ``latent`` is W+ [B, L, S] (or one W [B, S] used
    for every layer); ``noise`` a tuple of ``num_layers`` tensors [B, 1, r, r], or None
    for the fixed buffers ``noises.noise_i``. Returns images [B, 3, R, R], and with
    ``return_features=True`` also the feature map after each resolution block.
    z -> W goes through ``mapping``; truncation, style mixing and random noise are
    host-side helpers so that compiled graphs stay free of randomness.
    """

    def __init__(self, size, style_dim=512, n_mlp=8, channel_multiplier=2, channel_max=512, lr_mlp=0.01,
                 blur_kernel=(1, 3, 3, 1)):
        super().__init__()
        self.size = size
        self.log_size = check_size(size)
        self.style_dim = style_dim
        self.n_mlp = n_mlp
        self.channel_multiplier = channel_multiplier
        self.channel_max = channel_max
        self.n_latent = n_latent_for(size)
        self.num_layers = (self.log_size - 2) * 2 + 1
        self.channels = channel_table(channel_multiplier, channel_max)

        self.style = nn.SequentialCell([PixelNorm()] + [
            EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation="fused_lrelu") for _ in range(n_mlp)])

        ch4 = self.channels[4]
        self.input = ConstantInput(ch4)
        self.conv1 = StyledConv(ch4, ch4, 3, style_dim, blur_kernel=blur_kernel)
        self.to_rgb1 = ToRGB(ch4, style_dim, upsample=False)

        convs, to_rgbs = [], []
        in_channel = ch4
        for i in range(3, self.log_size + 1):
            out_channel = self.channels[2 ** i]
            convs.append(StyledConv(in_channel, out_channel, 3, style_dim, upsample=True, blur_kernel=blur_kernel))
            convs.append(StyledConv(out_channel, out_channel, 3, style_dim, blur_kernel=blur_kernel))
            to_rgbs.append(ToRGB(out_channel, style_dim, blur_kernel=blur_kernel))
            in_channel = out_channel
        self.convs = nn.CellList(convs)
        self.to_rgbs = nn.CellList(to_rgbs)

        noises = nn.Cell()
        for layer_idx, shape in enumerate(self.noise_shapes(1)):
            setattr(noises, f"noise_{layer_idx}",
                    Parameter(Tensor(np.random.randn(*shape).astype(np.float32)), requires_grad=False))
        self.noises = noises  # assigned after filling so the names get the ``noises.`` prefix
        self.latent_avg = Parameter(Tensor(np.zeros(style_dim, np.float32)), name="latent_avg", requires_grad=False)

    # ----------------------------------------------------------------- host-side helpers
    def noise_shapes(self, batch):
        return [(batch, 1, 2 ** ((i + 5) // 2), 2 ** ((i + 5) // 2)) for i in range(self.num_layers)]

    def random_noise(self, batch, rng):
        """Fresh per-layer noise drawn on the host from a seeded ``np.random.Generator``.

        ``mutable``: a plain tuple of Tensors is a compile-time constant to GRAPH_MODE, and
        new values would recompile the graph every step."""
        return ms.mutable(tuple(Tensor(rng.standard_normal(s, dtype=np.float32)) for s in self.noise_shapes(batch)))

    def const_noise(self):
        return tuple(getattr(self.noises, f"noise_{i}") for i in range(self.num_layers))

    # ----------------------------------------------------------------- graph-friendly pieces
    def mapping(self, z):
        """z [B, S] -> w [B, S]."""
        return self.style(z)

    def truncate(self, w, truncation):
        """w' = avg + t (w - avg), around the stored ``latent_avg``."""
        return self.latent_avg + truncation * (w - self.latent_avg)

    def to_w_plus(self, w):
        """[B, S] -> [B, L, S]; W+ input passes through."""
        if w.ndim == 2:
            return ops.tile(w.expand_dims(1), (1, self.n_latent, 1))
        return w

    def mix(self, w1, w2, cutoff):
        """Style mixing: rows < cutoff from w1, the rest from w2; ``cutoff`` an int Tensor drawn on the host."""
        rows = ops.arange(self.n_latent).reshape(1, self.n_latent, 1)
        return ops.where(rows < cutoff, self.to_w_plus(w1), self.to_w_plus(w2))

    def construct(self, latent, noise=None, return_features=False):
        w_plus = self.to_w_plus(latent)                                  # [B, L, S]
        if noise is None:
            noise = self.const_noise()
        out = self.input(w_plus)
        out = self.conv1(out, w_plus[:, 0], noise[0])
        skip = self.to_rgb1(out, w_plus[:, 1])
        features = (out,)
        i = 1
        for block in range(len(self.to_rgbs)):
            out = self.convs[2 * block](out, w_plus[:, i], noise[2 * block + 1])
            out = self.convs[2 * block + 1](out, w_plus[:, i + 1], noise[2 * block + 2])
            skip = self.to_rgbs[block](out, w_plus[:, i + 2], skip)
            features = features + (out,)
            i += 2
        if return_features:
            return skip, features
        return skip


class ConvLayer(nn.SequentialCell):
    """[Blur] -> EqualConv2d -> [FusedLeakyReLU]; indices match rosinality (``conv2.1.weight``)."""

    def __init__(self, in_channel, out_channel, kernel_size, downsample=False, blur_kernel=(1, 3, 3, 1),
                 bias=True, activate=True):
        layers = []
        if downsample:
            p = (len(blur_kernel) - 2) + (kernel_size - 1)
            layers.append(Blur(blur_kernel, pad=((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        layers.append(EqualConv2d(in_channel, out_channel, kernel_size, stride=stride, padding=padding,
                                  bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(out_channel))
        super().__init__(layers)


class ResBlock(nn.Cell):
    """conv3x3 -> downsampling conv3x3, plus a downsampling 1x1 skip; (out + skip) / sqrt(2)."""

    def __init__(self, in_channel, out_channel, blur_kernel=(1, 3, 3, 1)):
        super().__init__()
        self.conv1 = ConvLayer(in_channel, in_channel, 3)
        self.conv2 = ConvLayer(in_channel, out_channel, 3, downsample=True, blur_kernel=blur_kernel)
        self.skip = ConvLayer(in_channel, out_channel, 1, downsample=True, activate=False, bias=False)

    def construct(self, x):
        out = self.conv2(self.conv1(x))
        return (out + self.skip(x)) / math.sqrt(2.0)


def minibatch_stddev(x, group_size=4, num_features=1):
    """Append ``num_features`` channels: the std of each feature over groups of the batch.

    ``group_size`` None means the whole batch; see :func:`stddev_group_for` for the rule and
    :func:`check_stddev_batch` for the host-side check of a batch it does not divide. ``num_features`` splits the C channels
    into F features of C/F channels (NVlabs' ``mbstd_num_channels``; 0: nothing appended).
    """
    if num_features == 0:
        return x
    b, c, h, w = x.shape
    group = stddev_group_for(b, group_size)
    if c % num_features:
        raise ValueError(f"minibatch stddev: {c} channels cannot be split into {num_features} features")
    y = x.reshape(group, b // group, num_features, c // num_features, h, w)
    # variance written out: ops.var's gradient is NaN over a group of one (batch-1 stage 2)
    y = y - expand_as(y.mean(axis=0, keep_dims=True), y)
    y = ops.sqrt((y * y).mean(axis=0) + 1e-8)                     # [B/G, F, C/F, H, W]
    y = y.mean(axis=(2, 3, 4)).reshape(b // group, num_features, 1, 1)
    y = ops.tile(y, (group, 1, h, w))
    return ops.concat((x, y), axis=1)


class Discriminator(nn.Cell):
    """ResNet discriminator with minibatch stddev. ``construct(img, return_features=False)``.

    With ``return_features`` it also returns the activations after ``convs.0`` and
    every ResBlock (resolution R, R/2, ..., 4), which JoJoGAN and MMFS use as a
    perceptual loss.

    Minibatch stddev: groups of ``min(stddev_group, B)`` samples (``stddev_group`` None:
    the whole batch), ``stddev_feat`` appended channels (0: none). Rosinality's network
    is (4, 1); an NVlabs stylegan2-ada pickle gives its ``mbstd_group_size`` (8 in the
    paper256/paper512 configs) and ``mbstd_num_channels``. A batch the group does not
    divide raises a ValueError naming both (NVlabs' own reshape fails there).
    """

    def __init__(self, size, channel_multiplier=2, channel_max=512, blur_kernel=(1, 3, 3, 1),
                 stddev_group=4, stddev_feat=1):
        super().__init__()
        log_size = check_size(size)
        self.size = size
        self.channel_multiplier = channel_multiplier
        self.channel_max = channel_max
        channels = channel_table(channel_multiplier, channel_max)
        convs = [ConvLayer(3, channels[size], 1)]
        in_channel = channels[size]
        for i in range(log_size, 2, -1):
            out_channel = channels[2 ** (i - 1)]
            convs.append(ResBlock(in_channel, out_channel, blur_kernel))
            in_channel = out_channel
        self.convs = nn.SequentialCell(convs)
        if stddev_group is not None and (isinstance(stddev_group, bool) or not isinstance(stddev_group, int)
                                         or stddev_group < 1):
            raise ValueError(f"stddev_group must be a positive int or None (whole batch), got {stddev_group!r}")
        if isinstance(stddev_feat, bool) or not isinstance(stddev_feat, int) or stddev_feat < 0:
            raise ValueError(f"stddev_feat must be an int >= 0, got {stddev_feat!r}")
        self.stddev_group = stddev_group
        self.stddev_feat = stddev_feat
        self.final_conv = ConvLayer(in_channel + stddev_feat, channels[4], 3)
        self.final_linear = nn.SequentialCell([
            EqualLinear(channels[4] * 4 * 4, channels[4], activation="fused_lrelu"),
            EqualLinear(channels[4], 1)])

    def construct(self, x, return_features=False):
        features = ()
        for block in self.convs:
            x = block(x)
            features = features + (x,)
        out = minibatch_stddev(x, self.stddev_group, self.stddev_feat)
        out = self.final_conv(out)
        out = self.final_linear(out.reshape(out.shape[0], -1))
        if return_features:
            return out, features
        return out
