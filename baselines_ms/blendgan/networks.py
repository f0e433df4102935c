"""BlendGAN's networks over the library's StyleGAN2: the style encoder, the generator with the
weighted blending module, the projection discriminator, and their losses.

Shapes: B batch, L = n_latent W+ rows, S = style_dim, R resolution, P = the style encoder's
input (256 in the paper). Every random draw (z, noise, mixing cut-offs, augmentations, queue
negatives) arrives as an input drawn on the host.

How the official code composes the generator (BLEND ``model.py``; ../BASELINES section 4.2):
w_f = style(z_f) (truncation on w_f only), w_s = embedding(z_s) broadcast to every row, and
    a = clamp(add_weight, 0, 1) written back into the parameter (in place, on every call with a style),
    a_j = 1 for rows j < i,                       (the blending indicator i: those rows are face only)
    w = w_f * a + w_s * (1 - a).
So i = L (18 at 1024) renders the natural face, i = 0 blends every row (full stylization); the
learned vector weighs the FACE (the paper's alpha is 1 - add_weight) and row i itself is blended.
"""
import math

import numpy as np
import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops

from modify_ms.models.stylegan2 import ConvLayer, Generator, ResBlock, channel_table, minibatch_stddev
from modify_ms.models.layout import check_size
from modify_ms.models.vgg import VGG19_STYLE_TAPS, VGG19_WIDTHS, VGG19Features, tap_channels
from modify_ms.losses.adversarial import R1Penalty, discriminator_adv_loss, generator_adv_loss  # noqa: F401 (R1Penalty re-exported)
from modify_ms.models.irse import freeze
from modify_ms.nn import EqualLinear, PixelNorm


# ----------------------------------------------------------------- style encoder
def gram_matrix(features):
    """[B, C, H, W] -> [B, C, C]: F F^T / (C H W) with F the features as [B, C, HW]."""
    b, c, h, w = features.shape
    f = features.reshape(b, c, h * w)
    return ops.bmm(f, f.transpose(0, 2, 1)) / (c * h * w)


def gram_dim(widths=VGG19_WIDTHS, taps=VGG19_STYLE_TAPS):
    """Length of the concatenated Gram vector (610,304 for the real VGG-19 and taps)."""
    return int(sum(c * c for c in tap_channels(widths, taps)))


def mlp(in_dim, dims, last_activation=False):
    """EqualLinear layers in_dim -> dims[0] -> ... with fused leaky ReLU (slope 0.2, gain sqrt 2)
    on all but the last (and on the last too when ``last_activation``)."""
    layers, prev = [], in_dim
    for k, d in enumerate(dims):
        act = "fused_lrelu" if (k < len(dims) - 1 or last_activation) else None
        layers.append(EqualLinear(prev, d, activation=act))
        prev = d
    return nn.SequentialCell(layers)


class StyleEncoder(nn.Cell):
    """E_style: resize to ``input_size`` (adaptive average pooling, as the official StyleEmbedder),
    the frozen VGG-19 taps, their Gram matrices flattened and concatenated, then the ``n_mlp``-layer
    predictor to the style code z_s [B, S]. The image goes in as [-1, 1] RGB, without ImageNet
    normalisation (the official code's choice). Parameters: ``vgg.features.*`` (frozen),
    ``predictor.K.{weight,bias}`` (the official ``embedder_mlp``)."""

    def __init__(self, style_dim=512, n_mlp=4, vgg_widths=VGG19_WIDTHS, input_size=256):
        super().__init__()
        if n_mlp < 1:
            raise ValueError(f"StyleEncoder: n_mlp must be >= 1, got {n_mlp}")
        self.vgg = freeze(VGG19Features(vgg_widths, VGG19_STYLE_TAPS))
        self.gram_dim = int(sum(c * c for c in self.vgg.tap_channels))
        self.predictor = mlp(self.gram_dim, [style_dim] * n_mlp)
        self.input_size = int(input_size)
        self.style_dim = style_dim

    def resize(self, x):
        if x.shape[-1] == self.input_size and x.shape[-2] == self.input_size:
            return x
        return ops.adaptive_avg_pool2d(x, (self.input_size, self.input_size))

    def grams(self, x):
        """[B, gram_dim]: the flattened Gram matrices of the VGG taps (no gradient into the VGG)."""
        feats = self.vgg(self.resize(x))
        b = x.shape[0]
        return ops.concat([gram_matrix(f).reshape(b, -1) for f in feats], axis=1)

    def construct(self, x):
        return self.predictor(self.grams(x))


class ProjectionHead(nn.Cell):
    """The contrastive projection head g(z_s) after the predictor: ``n_layers`` EqualLinear with
    leaky ReLU between (the paper's 2-layer MLP; the official, unused ``Projector`` has 4)."""

    def __init__(self, style_dim=512, n_layers=2, out_dim=None):
        super().__init__()
        dims = [style_dim] * (n_layers - 1) + [out_dim or style_dim]
        self.layers = mlp(style_dim, dims)

    def construct(self, z):
        return self.layers(z)


def nt_xent(p1, p2, temperature):
    """SimCLR's NT-Xent (paper eq. 2) over 2N projections, averaged over all 2N anchors: pairs
    (p1[k], p2[k]) are the positives; sim is cosine similarity over ``temperature``."""
    n = p1.shape[0]
    z = ops.concat((p1, p2), axis=0)
    z = z / ops.sqrt((z * z).sum(axis=1, keepdims=True) + 1e-24)
    sim = ops.matmul(z, z.T) / temperature                             # [2N, 2N]
    sim = sim - ops.eye(2 * n, 2 * n, ms.float32) * 1e9                # k != i in the denominator
    positive = (z[:n] * z[n:]).sum(axis=1) / temperature
    positive = ops.concat((positive, positive), axis=0)
    return (ops.logsumexp(sim, 1) - positive).mean()


class ContrastiveLoss(nn.Cell):
    """The style encoder's objective: NT-Xent of the projections of two augmented views of the same
    images. Only the predictor and the head take gradients (the VGG is frozen). Returns (loss, the
    positives' mean cosine similarity)."""

    def __init__(self, encoder, head, temperature):
        super().__init__(auto_prefix=False)
        self.encoder, self.head = encoder, head
        self.temperature = float(temperature)

    def construct(self, view1, view2):
        b = view1.shape[0]
        z = self.encoder(ops.concat((view1, view2), axis=0))           # one VGG pass over both views
        p = self.head(z)
        p1, p2 = p[:b], p[b:]
        cosine = (p1 * p2).sum(axis=1) / ops.sqrt((p1 * p1).sum(axis=1) * (p2 * p2).sum(axis=1) + 1e-24)
        return nt_xent(p1, p2, self.temperature), ops.stop_gradient(cosine.mean())


# ----------------------------------------------------------------- generator with the WBM
def face_rows(n_latent, index):
    """[1, L, 1] float32 Tensor: 1 on the rows j < i that take the face code only (blending indicator i)."""
    index = int(index)
    if not 0 <= index <= n_latent:
        raise ValueError(f"blending indicator must be in [0, {n_latent}], got {index}")
    mask = np.zeros((1, n_latent, 1), np.float32)
    mask[0, :index, 0] = 1.0
    return Tensor(mask)


class BlendGenerator(nn.Cell):
    """BlendGAN's G: the library's StyleGAN2 ``generator`` (face mapping ``style`` and synthesis),
    a second mapping MLP ``embedding`` for style codes, the learned per-row blending weights
    ``add_weight`` [1, L, 1] (init 1) and the style encoder ``embedder`` it carries.

    ``construct(face, z_style, rows, noise=None)``: ``face`` w_f [B, S] or W+ [B, L, S] (mapped
    and truncated already: ``face_w``), ``z_style`` z_s [B, S], ``rows`` = face_rows(L, i).
    Returns the image. ``blended(...)`` gives the W+ the synthesis receives."""

    def __init__(self, size, style_dim=512, n_mlp=8, channel_multiplier=2, channel_max=512, lr_mlp=0.01,
                 embedder_mlp=4, vgg_widths=VGG19_WIDTHS, style_input_size=256):
        super().__init__()
        check_size(size)
        n_latent = 2 * int(math.log2(size)) - 2
        self.add_weight = Parameter(Tensor(np.ones((1, n_latent, 1), np.float32)), name="add_weight")
        self.embedder = StyleEncoder(style_dim, embedder_mlp, vgg_widths, style_input_size)
        self.embedding = nn.SequentialCell([PixelNorm()] + [
            EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation="fused_lrelu") for _ in range(n_mlp)])
        self.generator = Generator(size, style_dim, n_mlp, channel_multiplier, channel_max, lr_mlp)
        self.size, self.style_dim, self.n_latent = size, style_dim, n_latent
        self.kwargs = dict(size=size, style_dim=style_dim, n_mlp=n_mlp, channel_multiplier=channel_multiplier,
                           channel_max=channel_max, lr_mlp=lr_mlp, embedder_mlp=embedder_mlp,
                           vgg_widths=list(vgg_widths), style_input_size=style_input_size)

    def face_w(self, z, truncation=1.0):
        """z_f [B, S] -> w_f [B, S], truncated around the generator's latent_avg when truncation < 1."""
        w = self.generator.mapping(z)
        return w if truncation == 1.0 else self.generator.truncate(w, truncation)

    def clamped_weights(self):
        """clamp(add_weight, 0, 1), written back into the parameter first (the official in-place clamp)."""
        clamped = ops.clip_by_value(self.add_weight, 0.0, 1.0)
        return ops.depend(self.add_weight, ops.assign(self.add_weight, clamped))

    def blended(self, face, z_style, rows):
        """W+ [B, L, S] = w_f a + w_s (1 - a), a = max(rows, clamp(add_weight)) (rows: 1 or 0)."""
        w_face = self.generator.to_w_plus(face)
        w_style = self.embedding(z_style).expand_dims(1)
        a = self.clamped_weights()
        a = rows + (1.0 - rows) * a
        return w_face * a + w_style * (1.0 - a)

    def construct(self, face, z_style, rows, noise=None):
        return self.generator(self.blended(face, z_style, rows), noise)


# ----------------------------------------------------------------- discriminators
class ProjectionDiscriminator(nn.Cell):
    """D_style_latent (paper sec. 3.3; Miyato & Koyama's projection discriminator): rosinality's
    discriminator trunk (``convs``, minibatch stddev, ``final_conv``), h = spatial sum of its output
    [B, C4], out = l_out(h) + <l_style(z_s), h>. ``l_out``/``l_style`` are equalized linears (the
    manifest gives their shapes, not their class). ``construct(img, z_style)`` -> [B, 1]."""

    def __init__(self, size, style_dim=512, channel_multiplier=2, channel_max=512, stddev_group=4, stddev_feat=1):
        super().__init__()
        log_size = check_size(size)
        channels = channel_table(channel_multiplier, channel_max)
        convs = [ConvLayer(3, channels[size], 1)]
        in_channel = channels[size]
        for i in range(log_size, 2, -1):
            convs.append(ResBlock(in_channel, channels[2 ** (i - 1)]))
            in_channel = channels[2 ** (i - 1)]
        self.convs = nn.SequentialCell(convs)
        self.stddev_group, self.stddev_feat = stddev_group, stddev_feat
        self.final_conv = ConvLayer(in_channel + stddev_feat, channels[4], 3)
        self.l_out = EqualLinear(channels[4], 1)
        self.l_style = EqualLinear(style_dim, channels[4])

    def construct(self, x, z_style):
        out = minibatch_stddev(self.convs(x), self.stddev_group, self.stddev_feat)
        h = self.final_conv(out).sum(axis=(2, 3))
        return self.l_out(h) + (self.l_style(z_style) * h).sum(axis=1, keepdims=True)


# ----------------------------------------------------------------- regularisers
class _NoisyImageSum(nn.Cell):
    def __init__(self, synthesis):
        super().__init__(auto_prefix=False)
        self.synthesis = synthesis

    def construct(self, w_plus, img_noise, noise):
        return (self.synthesis(w_plus, noise) * img_noise).sum()


class PathLengths(nn.Cell):
    """rosinality's g_path_regularize, first half: per sample ||J_w^T y||, y = noise / sqrt(R R),
    averaged over the W+ rows: sqrt(mean_rows(sum_S grad^2)). ``construct(w_plus, img_noise, noise)``
    -> path lengths [B]. Differentiate it inside PathLengthPenalty (compiled)."""

    def __init__(self, synthesis):
        super().__init__(auto_prefix=False)
        self.synthesis = synthesis
        self.noisy_sum = _NoisyImageSum(synthesis)
        self.input_grad = ops.GradOperation()

    def construct(self, w_plus, img_noise, noise):
        grad = self.input_grad(self.noisy_sum)(w_plus, img_noise, noise)
        return ops.sqrt((grad * grad).sum(axis=2).mean(axis=1))


def path_length_penalty(lengths, mean_path_length, decay=0.01):
    """(penalty, new running mean): mean((|J^T y| - a)^2) with a = mean + decay (mean(lengths) - mean),
    the running mean taken as a constant (rosinality detaches it)."""
    target = ops.stop_gradient(mean_path_length + decay * (lengths.mean() - mean_path_length))
    diff = lengths - target
    return (diff * diff).mean(), target


class PathLengthPenalty(nn.Cell):
    """``construct(w_plus, img_noise, noise, mean_path_length)`` -> (penalty, new running mean), one
    compiled graph (PYNATIVE too: MindSpore 2.10's PYNATIVE second-order gradients are unreliable)."""

    def __init__(self, synthesis, decay=0.01):
        super().__init__(auto_prefix=False)
        self.lengths = PathLengths(synthesis)
        self.decay = float(decay)

    @ms.jit
    def construct(self, w_plus, img_noise, noise, mean_path_length):
        return path_length_penalty(self.lengths(w_plus, img_noise, noise), mean_path_length, self.decay)


# ----------------------------------------------------------------- adversarial terms
def d_logistic(real_logits, fake_logits):
    """What each discriminator minimises: E softplus(D(fake)) + E softplus(-D(real)) (the library's)."""
    return discriminator_adv_loss(real_logits, fake_logits, "logistic")


def g_nonsaturating(fake_logits):
    return generator_adv_loss(fake_logits, "logistic")
