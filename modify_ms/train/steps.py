"""GRAPH_MODE step cells: one per optimisation phase, each doing one update.

Loss weights are Python constants of a step cell: a term whose weight is 0 is not
computed at all (stage 1's first 150k iterations never render y_z), and a schedule
switch builds the next phase's cell. All randomness (z, noise, GP interpolation
weights) arrives as inputs drawn on the host.
"""
import mindspore as ms
from mindspore import nn, ops

from ..losses.adversarial import LipschitzPenalty, discriminator_adv_loss, generator_adv_loss
from ..models.modify import style_part
from .distributed import current_world

STAGE1_TERMS = ("l2", "lpips", "id", "adv_r", "adv_z", "swap", "w_norm")
STAGE2_TERMS = ("l2", "lpips", "id", "adv", "w_norm")


def mse(a, b):
    return ((a - b) ** 2).mean()


def w_norm(offsets):
    """pSp's WNormLoss with start_from_latent_avg: the L2 norm of each sample's offset code
    [L, S] from the mean latent, averaged over the batch (the authors' option, weight 0.005)."""
    return ops.sqrt((offsets * offsets).sum(axis=(1, 2))).mean()


class ReconstructionTerms(nn.Cell):
    """L2, LPIPS and ArcFace identity between a target and its reconstruction, skipping zero weights."""

    def __init__(self, lpips, identity, w_l2, w_lpips, w_id):
        super().__init__(auto_prefix=False)
        self.lpips, self.identity = lpips, identity
        self.w_l2, self.w_lpips, self.w_id = w_l2, w_lpips, w_id

    def construct(self, target, recon):
        zero = ops.zeros((), ms.float32)
        l2 = mse(target, recon) if self.w_l2 > 0 else zero
        lp = self.lpips(recon, target) if self.w_lpips > 0 else zero
        idl = self.identity(recon, target) if self.w_id > 0 else zero
        return l2, lp, idl, self.w_l2 * l2 + self.w_lpips * lp + self.w_id * idl


class Stage1Loss(nn.Cell):
    """Eq. (6), generator side: y -> y_r = D(E(y)); z -> w_z = M(z), y_z = D({w_l, w_z});
    swap loss between w_z and the last xi rows of E(y_z) for the same z (offsets, module doc of
    models.modify).

    Returns (total, terms STAGE1_TERMS, y_r, y_z)."""

    def __init__(self, nets, lpips, identity, weights, adv_kind):
        super().__init__(auto_prefix=False)
        self.nets = nets
        self.recon = ReconstructionTerms(lpips, identity, weights.l2, weights.lpips, weights.id)
        self.w = weights
        self.adv_kind = adv_kind
        self.need_y_z = weights.adv_z > 0 or weights.swap > 0

    def construct(self, y, z, noise_r, noise_z):
        zero = ops.zeros((), ms.float32)
        offsets = self.nets.encoder(y)
        y_r = self.nets.render(self.nets.w_plus(offsets), noise_r)
        l2, lp, idl, total = self.recon(y, y_r)
        adv_r = generator_adv_loss(self.nets.critic(y_r), self.adv_kind) if self.w.adv_r > 0 else zero
        wn = w_norm(offsets) if self.w.w_norm > 0 else zero
        adv_z, swap, y_z = zero, zero, y_r
        if self.need_y_z:
            style_rows = self.nets.remap_net(z)                                  # w_z [B, xi, S]
            y_z = self.nets.render(self.nets.w_plus(offsets, style_rows), noise_z)
            if self.w.adv_z > 0:
                adv_z = generator_adv_loss(self.nets.critic(y_z), self.adv_kind)
            if self.w.swap > 0:                                                  # E(y_z)'s style rows vs w_z
                swap = mse(style_rows, style_part(self.nets.encoder(y_z), style_rows.shape[1]))
        total = total + self.w.adv_r * adv_r + self.w.adv_z * adv_z + self.w.swap * swap + self.w.w_norm * wn
        return total, (l2, lp, idl, adv_r, adv_z, swap, wn), ops.stop_gradient(y_r), ops.stop_gradient(y_z)


class Stage2Loss(nn.Cell):
    """Eq. (7), encoder side: x' = D(E'(x)); adv on x', L2/LPIPS/ID between x and x' (and the
    authors' optional w-norm of E'(x)).

    Returns (total, terms STAGE2_TERMS, x')."""

    def __init__(self, nets, student, lpips, identity, weights, adv_kind):
        super().__init__(auto_prefix=False)
        self.nets, self.student = nets, student
        self.recon = ReconstructionTerms(lpips, identity, weights.l2, weights.lpips, weights.id)
        self.w_adv, self.w_norm, self.adv_kind = weights.adv, weights.w_norm, adv_kind

    def construct(self, x, noise):
        zero = ops.zeros((), ms.float32)
        offsets = self.student(x)
        x_out = self.nets.render(self.nets.w_plus(offsets), noise)
        l2, lp, idl, total = self.recon(x, x_out)
        adv = generator_adv_loss(self.nets.critic(x_out), self.adv_kind) if self.w_adv > 0 else zero
        wn = w_norm(offsets) if self.w_norm > 0 else zero
        return total + self.w_adv * adv + self.w_norm * wn, (l2, lp, idl, adv, wn), ops.stop_gradient(x_out)


class ReconstructionObjective(nn.Cell):
    """The reconstruction part of a loss (weighted L2 + LPIPS + ID) of given images, no gradients:
    stage 2's measure of adaptation on the images it writes."""

    def __init__(self, terms):
        super().__init__(auto_prefix=False)
        self.terms = terms

    def construct(self, target, recon):
        return ops.stop_gradient(self.terms(target, recon)[3])


class CriticLoss(nn.Cell):
    """Discriminator side: adversarial loss + gp_weight * one-sided Lipschitz penalty, averaged over fakes."""

    def __init__(self, nets, adv_kind, gp_weight):
        super().__init__(auto_prefix=False)
        self.nets = nets
        self.adv_kind, self.gp_weight = adv_kind, gp_weight
        self.penalty = LipschitzPenalty(nets)

    def construct(self, real, fakes, alpha):
        real_logits = self.nets.critic(real)
        total = ops.zeros((), ms.float32)
        for fake in fakes:
            adv = discriminator_adv_loss(real_logits, self.nets.critic(fake), self.adv_kind)
            total = total + adv + self.gp_weight * self.penalty(real, fake, alpha)
        return total / len(fakes), real_logits.mean()


class UpdateStep(nn.Cell):
    """value_and_grad of a loss cell whose first output is the objective, then one optimizer update
    per network. ``optimizers``: (optimizer, parameters) pairs; gradients are split in that order.
    Under msrun the gradients are first averaged over the workers (train.distributed).

    ``scaler`` (fp16, train.precision.DynamicLossScale): the objective is differentiated times the
    loss scale, the gradients unscaled, and the optimizers run only when they are all finite; the
    step then returns (the loss cell's outputs, (overflow flag, overflow count, next scale))."""

    def __init__(self, loss_cell, optimizers, scaler=None):
        super().__init__(auto_prefix=False)
        self.loss_cell = loss_cell
        self.scaler = scaler
        self.optimizers = nn.CellList([opt for opt, _ in optimizers])
        self.sizes = tuple(len(params) for _, params in optimizers)
        params = [p for _, ps in optimizers for p in ps]
        self.params = ms.ParameterTuple(params)
        objective = loss_cell if scaler is None else scaler.objective(loss_cell)
        self.grad_fn = ms.value_and_grad(objective, None, self.params, has_aux=True)
        world = current_world()
        self.grad_reducer = nn.DistributedGradReducer(self.params, mean=True, degree=world.size) \
            if world.distributed else None

    def construct(self, *inputs):
        outputs, grads = self.grad_fn(*inputs)
        if self.grad_reducer is not None:
            grads = self.grad_reducer(grads)
        if self.scaler is None:
            self.run_optimizers(grads)
            return outputs
        grads = self.scaler.unscale(grads)
        finite = self.scaler.finite(grads)  # after the reduction: every worker decides alike
        if finite:  # an overflow skips the update: weights, moments and step counters stay
            self.run_optimizers(grads)
        return outputs[1:], self.scaler.adjust(finite)  # outputs[0]: the scaled objective

    def run_optimizers(self, grads):
        start = 0
        for i, opt in enumerate(self.optimizers):
            opt(grads[start:start + self.sizes[i]])
            start += self.sizes[i]
