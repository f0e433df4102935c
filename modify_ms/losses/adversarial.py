"""Adversarial objectives for MODIFY: WGAN (the paper) or non-saturating logistic (the authors' code),
both with the one-sided Lipschitz gradient penalty on real/fake interpolates (weight 10); and the
R1 penalty at real images that the baselines (StarGAN v2, BlendGAN) train with.

``kind`` is a config value: 'wgan' or 'logistic'. Each function takes discriminator
logits [B, 1]. The interpolation weights ``alpha`` [B, 1, 1, 1] are drawn on the host.
"""
import mindspore as ms
from mindspore import nn, ops

from ..nn import expand_as

KINDS = ("wgan", "logistic")


def generator_adv_loss(fake_logits, kind):
    """What the generator side minimises: -E[D(fake)] (WGAN) or E[softplus(-D(fake))] (logistic)."""
    if kind == "wgan":
        return -fake_logits.mean()
    return ops.softplus(-fake_logits).mean()


def discriminator_adv_loss(real_logits, fake_logits, kind):
    """What the discriminator minimises: E[D(fake)] - E[D(real)] or E[softplus(D(fake)) + softplus(-D(real))]."""
    if kind == "wgan":
        return fake_logits.mean() - real_logits.mean()
    return ops.softplus(fake_logits).mean() + ops.softplus(-real_logits).mean()


class _SumLogits(nn.Cell):
    def __init__(self, nets):
        super().__init__(auto_prefix=False)  # shared sub-cell: keep its parameter names
        self.nets = nets

    def construct(self, x):
        return self.nets.critic(x).sum()


class LipschitzPenalty(nn.Cell):
    """E[max(0, ||grad_x critic(x_hat)||_2 - 1)^2] at x_hat = alpha * real + (1 - alpha) * fake (one-sided).

    ``nets`` is any cell with a ``critic(images)`` method (ModifyNets). The penalty is
    differentiated again by the discriminator's update (double backward)."""

    def __init__(self, nets):
        super().__init__(auto_prefix=False)
        self.sum_logits = _SumLogits(nets)
        self.input_grad = ops.GradOperation()

    @ms.jit  # compiled even under PYNATIVE: MindSpore 2.10's PYNATIVE double backward is wrong here
    def construct(self, real, fake, alpha):
        alpha = expand_as(alpha, real)  # nn/broadcast.py
        x_hat = alpha * real + (1.0 - alpha) * fake
        grad = self.input_grad(self.sum_logits)(x_hat)
        norm = ops.sqrt((grad * grad).sum(axis=(1, 2, 3)) + 1e-12)
        return (ops.relu(norm - 1.0) ** 2).mean()


class _SumDiscriminatorLogits(nn.Cell):
    def __init__(self, discriminator):
        super().__init__(auto_prefix=False)  # shared sub-cell: keep its parameter names
        self.discriminator = discriminator

    def construct(self, x, *cond):
        return self.discriminator(x, *cond).sum()


class R1Penalty(nn.Cell):
    """``scale`` * E_b ||grad_x D(x_b, *cond)||^2 at real images x (Mescheder et al.): rosinality's
    d_r1_loss with scale 1, StarGAN v2's r1_reg with scale 0.5. A conditional discriminator gets
    its condition (a domain label, a style code) as further inputs, not differentiated. The penalty
    is differentiated again by the discriminator's update (double backward)."""

    def __init__(self, discriminator, scale=1.0):
        super().__init__(auto_prefix=False)
        self.sum_logits = _SumDiscriminatorLogits(discriminator)
        self.input_grad = ops.GradOperation()
        self.scale = scale

    @ms.jit  # compiled under PYNATIVE too, as LipschitzPenalty (double backward)
    def construct(self, real, *cond):
        grad = self.input_grad(self.sum_logits)(real, *cond)
        return self.scale * (grad * grad).reshape(grad.shape[0], -1).sum(axis=1).mean()
