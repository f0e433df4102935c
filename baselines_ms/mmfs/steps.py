"""MMFS's loss cells, one per optimisation phase (../BASELINES 5.1); the updates are the library's
UpdateStep over them. Every random draw (z, the mixing cut-off, noise) arrives as an input drawn on
the host.

Stage I (``Stage1Loss``): real = hardtanh(G(z)) from the frozen StyleGAN2, fake = Stylizer(real, z)
with the same z, loss = lambda_l1 L1(fake, real) + lambda_feat sum_taps L1(D_l(fake), D_l(real)),
D frozen, taps convs[1, 3, 4, 5].
Stage II: G side (``Stage2GeneratorLoss``) lambda_gan softplus(-D(fake)) + lambda_st L_ST(fake,
real_A), fake = Stylizer(real_A, mixed styles); D side (``Stage2DiscriminatorLoss``) 0.5 (softplus
(D(fake)) + softplus(-D(real_B))); lazy R1 (``LazyR1Loss``) (r1 / 2) ||grad D(real_B)||^2 x every.
"""
import mindspore as ms
from mindspore import nn, ops

from modify_ms.losses.adversarial import R1Penalty, discriminator_adv_loss, generator_adv_loss

from .networks import d_features

STAGE1_TERMS = ("l1", "feat")
STAGE2_TERMS = ("g_gan", "structure")


def l1(a, b):
    return ops.abs(a - b).mean()


def feature_l1(discriminator, fake, real):
    """sum over the D taps of L1(D_l(fake), D_l(real)); the real side is a constant."""
    total = ops.zeros((), ms.float32)
    for f, r in zip(d_features(discriminator, fake), d_features(discriminator, real)):
        total = total + l1(f, ops.stop_gradient(r))
    return total


class Stage1Loss(nn.Cell):
    """``construct(z, noise_g, noise_s)`` -> (total, (l1, feat), real, fake). ``generator`` and
    ``discriminator`` are frozen; only the parameters the UpdateStep is given move."""

    def __init__(self, generator, stylizer, discriminator, lambda_l1=1.0, lambda_feat=4.0):
        super().__init__(auto_prefix=False)
        self.generator, self.stylizer, self.discriminator = generator, stylizer, discriminator
        self.lambda_l1, self.lambda_feat = float(lambda_l1), float(lambda_feat)

    def construct(self, z, noise_g, noise_s):
        g = self.generator
        real = ops.stop_gradient(ops.clip_by_value(g(g.mapping(z), noise_g), -1.0, 1.0))
        fake = self.stylizer(real, self.stylizer.styles_from_z(z), noise_s)
        rec = l1(fake, real)
        feat = feature_l1(self.discriminator, fake, real) if self.lambda_feat > 0 else ops.zeros((), ms.float32)
        total = self.lambda_l1 * rec + self.lambda_feat * feat
        return total, (rec, feat), real, ops.stop_gradient(fake)


class Stage2GeneratorLoss(nn.Cell):
    """``construct(real_a, z1, z2, cutoff, noise)`` -> (total, (g_gan, structure), fake)."""

    def __init__(self, stylizer, discriminator, structure_loss, lambda_gan=1.0, lambda_st=0.5):
        super().__init__(auto_prefix=False)
        self.stylizer, self.discriminator, self.structure = stylizer, discriminator, structure_loss
        self.lambda_gan, self.lambda_st = float(lambda_gan), float(lambda_st)

    def construct(self, real_a, z1, z2, cutoff, noise):
        fake = self.stylizer(real_a, self.stylizer.mix_styles(z1, z2, cutoff), noise)
        gan = generator_adv_loss(self.discriminator(fake), "logistic")
        st = self.structure(fake, real_a) if self.lambda_st > 0 else ops.zeros((), ms.float32)
        return self.lambda_gan * gan + self.lambda_st * st, (gan, st), ops.stop_gradient(fake)


class Stage2DiscriminatorLoss(nn.Cell):
    """``construct(real_b, fake)`` -> (0.5 (softplus(D(fake)) + softplus(-D(real_b))), mean D(real_b))."""

    def __init__(self, discriminator):
        super().__init__(auto_prefix=False)
        self.discriminator = discriminator

    def construct(self, real_b, fake):
        real_logits = self.discriminator(real_b)
        loss = 0.5 * discriminator_adv_loss(real_logits, self.discriminator(fake), "logistic")
        return loss, ops.stop_gradient(real_logits.mean())


class LazyR1Loss(nn.Cell):
    """(r1 / 2) * E ||grad_x D(x)||^2 * every at the art images (rosinality's lazy R1, MMFS's 10 / 16)."""

    def __init__(self, discriminator, r1=10.0, every=16):
        super().__init__(auto_prefix=False)
        self.penalty = R1Penalty(discriminator)
        self.weight = float(r1) / 2 * every

    def construct(self, real_b):
        penalty = self.penalty(real_b)
        return self.weight * penalty, penalty
