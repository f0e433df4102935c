"""StarGAN v2's objectives and updates as ``core/solver.py`` does them (BASELINES section 6.1).

Per iteration: two discriminator updates (the fake from a mapped z, then from a reference's
style), two generator-side updates (latent: G, F and E step; reference: G alone), then the EMA
of G, F and E. The discriminator loss is BCE(D(x, y_org), 1) + BCE(D(G(x, s), y_trg), 0) + lambda_reg
R1 on the real images; the generator loss BCE(D(G(x, s), y_trg), 1) + lambda_sty |E(G(x, s)) - s|
- lambda_ds |G(x, s) - G(x, s2)| (the second output detached) + lambda_cyc |G(G(x, s), E(x, y_org)) - x|,
all means. lambda_ds decays linearly and is a step input (the other weights are constants of the
cells). Which style guides a step (``guide``: 'latent' = F(z, y_trg), 'reference' = E(x_ref,
y_trg)) is a constant of each cell, so the four updates are four compiled graphs.
"""
import mindspore as ms
from mindspore import nn, ops

from modify_ms.losses.adversarial import R1Penalty

GUIDES = ("latent", "reference")
D_TERMS = ("real", "fake", "reg")
G_TERMS = ("adv", "sty", "ds", "cyc")


def bce_logits(logits, target):
    """Binary cross-entropy with logits against a constant target 1 or 0, averaged."""
    return ops.softplus(-logits).mean() if target == 1 else ops.softplus(logits).mean()


def l1(a, b):
    return ops.abs(a - b).mean()


def ds_weight(step, initial, ds_iter):
    """lambda_ds at iteration ``step`` (0-based): the official decrement of initial / ds_iter after
    every iteration while it is positive, in closed form."""
    return max(initial * (1.0 - step / ds_iter), 0.0) if ds_iter > 0 else initial


class Guide(nn.Cell):
    """The target style: F(z, y) ('latent') or E(x_ref, y) ('reference')."""

    def __init__(self, nets, guide):
        super().__init__(auto_prefix=False)
        if guide not in GUIDES:
            raise ValueError(f"guide must be one of {GUIDES}, got {guide!r}")
        self.nets, self.latent = nets, guide == "latent"

    def construct(self, source, y):
        return self.nets.mapping_network(source, y) if self.latent else self.nets.style_encoder(source, y)


class DiscriminatorLoss(nn.Cell):
    """(total, (real, fake, reg)); the fake is rendered without gradients."""

    def __init__(self, nets, guide, lambda_reg):
        super().__init__(auto_prefix=False)
        self.nets, self.guide, self.lambda_reg = nets, Guide(nets, guide), lambda_reg
        self.r1 = R1Penalty(nets.discriminator, scale=0.5)  # the official r1_reg's 0.5

    def construct(self, x_real, y_org, y_trg, source, masks=None):
        loss_real = bce_logits(self.nets.discriminator(x_real, y_org), 1)
        loss_reg = self.r1(x_real, y_org)
        x_fake = ops.stop_gradient(self.nets.generator(x_real, self.guide(source, y_trg), masks))
        loss_fake = bce_logits(self.nets.discriminator(x_fake, y_trg), 0)
        return loss_real + loss_fake + self.lambda_reg * loss_reg, (loss_real, loss_fake, loss_reg)


class GeneratorLoss(nn.Cell):
    """(total, (adv, sty, ds, cyc)); ``source``, ``source2``: z and z2, or x_ref and x_ref2 (two
    references of the target domain); ``lambda_ds`` a float32 scalar tensor (it decays); ``masks``
    (w_hpf > 0) the FAN masks of x_real, those of the fake for the cycle computed here."""

    def __init__(self, nets, guide, lambda_sty, lambda_cyc):
        super().__init__(auto_prefix=False)
        self.nets, self.guide = nets, Guide(nets, guide)
        self.lambda_sty, self.lambda_cyc = lambda_sty, lambda_cyc

    def construct(self, x_real, y_org, y_trg, source, source2, lambda_ds, masks=None):
        G, E = self.nets.generator, self.nets.style_encoder
        s_trg = self.guide(source, y_trg)
        x_fake = G(x_real, s_trg, masks)
        loss_adv = bce_logits(self.nets.discriminator(x_fake, y_trg), 1)
        loss_sty = l1(E(x_fake, y_trg), s_trg)
        x_fake2 = ops.stop_gradient(G(x_real, self.guide(source2, y_trg), masks))
        loss_ds = l1(x_fake, x_fake2)
        # w_hpf > 0: the cycle's masks are the FAN's of the fake (no gradient through them)
        masks_fake = None if masks is None else self.nets.masks(x_fake)
        loss_cyc = l1(G(x_fake, E(x_real, y_org), masks_fake), x_real)
        total = loss_adv + self.lambda_sty * loss_sty - lambda_ds * loss_ds + self.lambda_cyc * loss_cyc
        return total, (loss_adv, loss_sty, loss_ds, loss_cyc)


_lerp_into = ops.MultitypeFuncGraph("lerp_into")


@_lerp_into.register("Number", "Tensor", "Tensor")
def _lerp_one(beta, p, p_ema):
    return ops.assign(p_ema, p + beta * (p_ema - p))


class MovingAverage(nn.Cell):
    """p_ema <- lerp(p, p_ema, beta) = p + beta (p_ema - p) for every parameter of the pairs
    ((trained cell, EMA cell), ...), one compiled update."""

    def __init__(self, pairs, beta):
        super().__init__(auto_prefix=False)
        # every parameter (the EMA copies are frozen: get_parameters, not trainable_params)
        trained = [p for cell, _ in pairs for p in cell.get_parameters()]
        averaged = [p for _, ema in pairs for p in ema.get_parameters()]
        if [p.shape for p in trained] != [p.shape for p in averaged]:
            raise ValueError("EMA copies must have the trained networks' parameters")
        self.trained, self.averaged = ms.ParameterTuple(trained), ms.ParameterTuple(averaged)
        self.beta = beta
        self.hyper_map = ops.HyperMap()

    def construct(self):
        # the assignments are the outputs: a compiled graph keeps them (a loop of bare assigns was dropped)
        return self.hyper_map(ops.partial(_lerp_into, self.beta), self.trained, self.averaged)
