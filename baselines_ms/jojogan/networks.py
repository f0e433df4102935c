"""JoJoGAN's pieces over the library's networks: the paired set, the losses, the fine-tuning
loss cell, the style-strength render and e4e inversion.

Shapes: N references, L = W+ rows, S = style_dim, R = generator resolution, P = loss_size
(the e4e input). All randomness (z of the paired set, generator noise) arrives as inputs drawn
on the host.
"""
import numpy as np
import mindspore as ms
from mindspore import Tensor, nn, ops

from modify_ms.losses.lpips import LPIPS
from modify_ms.models.e4e import Encoder4Editing
from modify_ms.models.modify import build_decoder
from modify_ms.models.stylegan2 import Discriminator

from .config import feature_taps


# ----------------------------------------------------------------- paired set
def swap_mask(n_latent, rows):
    """[1, L, 1] bool: True on the rows the paired set replaces (config.swap_rows)."""
    mask = np.zeros((1, n_latent, 1), np.bool_)
    mask[0, list(rows), 0] = True
    return Tensor(mask)


def mix_codes(ref_w_plus, mean_w, swap_rows, mix_alpha):
    """The paired set's codes (the notebook's ``in_latent``): ``ref_w_plus`` [N, L, S] with the rows
    of ``swap_rows`` (a ``swap_mask``) replaced by mix_alpha * w_ref + (1 - mix_alpha) * mean_w,
    ``mean_w`` [N, S] the mapped random codes; every other row is the reference's own, exactly."""
    blend = mix_alpha * ref_w_plus + (1.0 - mix_alpha) * mean_w.expand_dims(1)
    return ops.where(swap_rows, blend, ref_w_plus)


# ----------------------------------------------------------------- losses
def disc_features(discriminator, img, taps):
    """The activations after ``discriminator.convs[t]`` for t in ``taps`` (the convs only: the
    minibatch stddev and logit layers are never run, as JoJoGAN's feature-only Discriminator)."""
    feats = ()
    x = img
    for i, block in enumerate(discriminator.convs):
        if i <= taps[-1]:  # Python constants: the blocks past the last tap are not built into the graph
            x = block(x)
            if i in taps:
                feats = feats + (x,)
    return feats


class DiscFeatureL1(nn.Cell):
    """(1/T) sum over the T taps of mean |D_t(fake) - D_t(real)| (BASELINES 3.1 step 5); the real
    images' features carry no gradient, and the discriminator itself is frozen."""

    def __init__(self, discriminator):
        super().__init__(auto_prefix=False)
        self.discriminator = discriminator
        self.taps = feature_taps(len(discriminator.convs))

    def construct(self, fake, real):
        fake_feats = disc_features(self.discriminator, fake, self.taps)
        real_feats = disc_features(self.discriminator, real, self.taps)
        total = ops.zeros((), ms.float32)
        for f, r in zip(fake_feats, real_feats):
            total = total + ops.abs(f - ops.stop_gradient(r)).mean()
        return total / len(self.taps)


class PooledLPIPS(nn.Cell):
    """The paper's LPIPS variant: LPIPS between the images average-pooled from R to P (the paper's
    256, "the standard way" it names; its Fig. 4 shows the loss of detail that brings)."""

    def __init__(self, lpips, gen_size, loss_size):
        super().__init__(auto_prefix=False)
        self.lpips = lpips
        factor = gen_size // loss_size
        self.pool = nn.AvgPool2d(kernel_size=factor, stride=factor) if factor > 1 else None

    def construct(self, fake, real):
        if self.pool is not None:
            fake, real = self.pool(fake), self.pool(real)
        return self.lpips(fake, ops.stop_gradient(real))


class FineTuneLoss(nn.Cell):
    """One step's objective: mean_w = mapping(z) (no gradient), codes = mix_codes(w_ref, mean_w),
    img = G(codes, noise), loss(img, references). Returns (loss, img without gradient)."""

    def __init__(self, generator, feature_loss, swap_rows, mix_alpha):
        super().__init__(auto_prefix=False)
        self.generator, self.feature_loss = generator, feature_loss
        self.swap = swap_mask(generator.n_latent, swap_rows)
        self.mix_alpha = float(mix_alpha)

    def construct(self, ref_w_plus, references, z, noise):
        mean_w = ops.stop_gradient(self.generator.mapping(z))
        codes = mix_codes(ref_w_plus, mean_w, self.swap, self.mix_alpha)
        img = self.generator(codes, noise)
        return self.feature_loss(img, references), ops.stop_gradient(img)


def freeze(cell):
    for p in cell.get_parameters():
        p.requires_grad = False
    return cell


def synthesis_params(generator):
    """The parameters JoJoGAN fine-tunes: all trainable ones but the mapping network's (a W+ input
    bypasses it; the notebook's Adam over all parameters leaves it unchanged for want of gradients)."""
    mapping = {id(p) for p in generator.style.get_parameters()}
    return [p for p in generator.trainable_params() if id(p) not in mapping]


# ----------------------------------------------------------------- style strength
def lerp(a, b, strength):
    """(1 - s) a + s b: exactly a at s = 0 and exactly b at s = 1 (a + s (b - a) is not b at 1)."""
    return (1.0 - strength) * a + strength * b


class StrengthRender(nn.Cell):
    """The paper's style strength (feature interpolation): W+ -> image, both generators run layer by
    layer on the same input, and each layer's output (the constant input, every styled conv, every
    toRGB skip image) is (1 - s) f_original + s f_finetuned, which feeds the next layer of both.
    s = 0 gives the original generator's output, s = 1 the fine-tuned one's; ``strength`` a float32
    scalar Tensor (no recompilation per value). The walk is Generator.construct's, with the two
    generators' own layers. No gradients."""

    def __init__(self, original, finetuned):
        super().__init__(auto_prefix=False)
        self.original, self.finetuned = original, finetuned

    def construct(self, w_plus, noise, strength):
        a, b = self.original, self.finetuned
        x = lerp(a.input(w_plus), b.input(w_plus), strength)
        x = lerp(a.conv1(x, w_plus[:, 0], noise[0]), b.conv1(x, w_plus[:, 0], noise[0]), strength)
        skip = lerp(a.to_rgb1(x, w_plus[:, 1]), b.to_rgb1(x, w_plus[:, 1]), strength)
        i = 1
        for block in range(len(a.to_rgbs)):
            up, same = 2 * block, 2 * block + 1  # the upsampling conv, then the one at its resolution
            x = lerp(a.convs[up](x, w_plus[:, i], noise[up + 1]), b.convs[up](x, w_plus[:, i], noise[up + 1]),
                     strength)
            x = lerp(a.convs[same](x, w_plus[:, i + 1], noise[same + 1]),
                     b.convs[same](x, w_plus[:, i + 1], noise[same + 1]), strength)
            skip = lerp(a.to_rgbs[block](x, w_plus[:, i + 2], skip), b.to_rgbs[block](x, w_plus[:, i + 2], skip),
                        strength)
            i += 2
        return ops.stop_gradient(skip)


class Invert(nn.Cell):
    """Photos [B, 3, P, P] -> W+ [B, L, S] through an e4e encoder that adds its mean latent; no gradients."""

    def __init__(self, encoder):
        super().__init__(auto_prefix=False)
        self.encoder = encoder

    def construct(self, x):
        return ops.stop_gradient(self.encoder(x))


# ----------------------------------------------------------------- building
def build_generator(cfg):
    return build_decoder(cfg.model.generator)


def build_discriminator(cfg):
    d = cfg.model.discriminator
    return Discriminator(cfg.model.generator.size, d.channel_multiplier, d.channel_max,
                         stddev_group=d.group, stddev_feat=d.stddev_feat)


def mean_latent(generator, samples, seed):
    """rosinality's mean_latent: the mean of mapping(z) over ``samples`` z ~ N(0, I) (seeded)."""
    z = np.random.default_rng(seed).standard_normal((samples, generator.style_dim)).astype(np.float32)
    return generator.mapping(Tensor(z)).asnumpy().mean(axis=0)


def random_e4e(cfg, latent_avg):
    """A random-init Encoder4Editing sized by ``model.encoder`` (quickstart only: it inverts
    nothing meaningfully, it only lets the pipeline run without a download), adding ``latent_avg``."""
    e, g = cfg.model.encoder, cfg.model.generator
    return Encoder4Editing(n_styles=cfg.n_latent, input_size=cfg.model.loss_size, num_layers=e.num_layers,
                           units=e.units, channels=tuple(e.channels), style_dim=g.style_dim, latent_avg=latent_avg)


def load_e4e(path):
    """(W+ encoder whose output includes latent_avg, its input size) of a converted e4e file
    (``python -m weights_convert psp e4e_ffhq_encode.pt ...``), through the importer's
    ``load_inversion_encoder``. The decoder it also returns is not used: JoJoGAN fine-tunes the
    generator of weights.generator."""
    from weights_convert.psp import load_inversion_encoder  # its errors are CheckpointFileErrors (one line)

    encoder, _decoder, meta = load_inversion_encoder(path)
    kwargs = (meta.get("encoder") or {}).get("kwargs") or {}
    return encoder, int(kwargs.get("input_size", 256))


def build_lpips(cfg, path):
    from modify_ms.losses.builders import load_lpips_weights

    net = cfg.model.loss_nets.lpips_net
    return load_lpips_weights(LPIPS(net), net, path or None)
