"""Optimizers from ``OptimConfig``: Adam (the paper's choice, the default) or Ranger (the authors' code).

Ranger here is the one pSp ships as ``training/ranger.py`` (lessw2020, version 20.4.11) and
the authors' training code calls with only a learning rate: RAdam + Lookahead + gradient
centralisation. Per parameter p with gradient g, at step t (counted from 1):

    g   <- g - mean(g over every axis but the first)       (only when g has more than 1 axis)
    m   <- beta1 m + (1 - beta1) g
    v   <- beta2 v + (1 - beta2) g^2
    rho_inf = 2 / (1 - beta2) - 1,   rho_t = rho_inf - 2 t beta2^t / (1 - beta2^t)
    rho_t >  threshold: p <- p - lr r_t m / (sqrt(v) + eps) / (1 - beta1^t),
                        r_t = sqrt((1 - beta2^t) (rho_t - 4) (rho_t - 2) rho_inf
                                   / ((rho_inf - 4) (rho_inf - 2) rho_t))
    rho_t <= threshold: p <- p - lr m / (1 - beta1^t)        (bias-corrected momentum SGD)
    t % k == 0:         slow <- slow + alpha (p - slow),  p <- slow

The slow weights are those of the parameters before the first update (pSp fills them at its
first step), whenever the optimizer was built. Everything step-dependent is computed on the
device from the step counter and chosen with masks, so an update is one graph with no host sync.
"""
import math

import mindspore as ms
from mindspore import nn, ops

_ranger_update = ops.MultitypeFuncGraph("ranger_update")

# MindSpore's nn.Adam refuses beta1 = 0 (JoJoGAN's and StyleGAN2-ADA's value). With this one,
# m_t = (1 - b1) g_t + b1 m_{t-1} is g_t to float32 rounding (1 - 1e-8 rounds to 1, b1 m is 1e-8
# of m) and the bias correction 1 - b1^t is 1: the updates of beta1 = 0.
ADAM_BETA1_ZERO = 1e-8


def build_optimizer(cell, optim_cfg):
    """The optimizer ``optim_cfg.kind`` names over ``cell.trainable_params()``."""
    params = cell.trainable_params()
    if optim_cfg.kind == "adam":
        beta1 = optim_cfg.beta1 if optim_cfg.beta1 > 0 else ADAM_BETA1_ZERO
        return nn.Adam(params, learning_rate=optim_cfg.lr, beta1=beta1, beta2=optim_cfg.beta2)
    if optim_cfg.kind == "ranger":
        return Ranger(params, learning_rate=optim_cfg.lr, beta1=optim_cfg.beta1, beta2=optim_cfg.beta2,
                      eps=optim_cfg.ranger_eps, k=optim_cfg.lookahead_k, alpha=optim_cfg.lookahead_alpha,
                      rectify_threshold=optim_cfg.rectify_threshold,
                      gradient_centralization=optim_cfg.gradient_centralization)
    raise ValueError(f"optim.kind must be 'adam' or 'ranger', got {optim_cfg.kind!r}")


_INV_FACTORIALS = tuple(1.0 / math.factorial(n) for n in range(2, 13))


def _exp_tail(x):
    """(e^x - 1 - x) / x^2 = sum_n x^(n-2) / n! for |x| <= 1 (Horner; the rest is below 1e-9)."""
    tail = ops.zeros_like(x)
    for c in reversed(_INV_FACTORIALS):
        tail = tail * x + c
    return tail


def _expm1(x):
    """e^x - 1 to float32 precision. MindSpore's CPU expm1 (and log1p) lose up to 1e-4 relative
    near 0, which is where RAdam evaluates them (1 - beta2^t early on)."""
    near = ops.clip_by_value(x, -1.0, 1.0)
    series = near + near * near * _exp_tail(near)
    return ops.select(ops.abs(x) < 1.0, series, ops.exp(x) - 1.0)


def _one_minus_power(log_beta, t):
    """1 - beta^t: 1 - pow(beta, t) loses most of its digits in float32 while beta^t is near 1."""
    if log_beta is None:  # beta = 0
        return ops.ones_like(t)
    return -_expm1(t * log_beta)


def _one_minus_bernoulli(u):
    """1 - u / (e^u - 1) for u > 0 without cancellation: below u = 1 as u^2 tail(u) / expm1(u),
    above directly (it tends to 1; e^u overflowing to inf gives exactly 1)."""
    near = ops.minimum(u, 1.0)
    below = near * near * _exp_tail(near) / _expm1(near)
    above = 1.0 - u / (ops.exp(u) - 1.0)
    return ops.select(u < 1.0, below, above)


class RangerSchedule(nn.Cell):
    """The step-dependent scalars of RAdam at step t (a float32 tensor, t >= 1).

    rho_t = rho_inf - 2 t beta2^t / (1 - beta2^t) is a difference of two numbers near 2000 when
    beta2 = 0.999; evaluated as written in float32 it is off by ~1e-4 (and the step size with it),
    enough to flip the rectification test near a threshold. With u = -t log beta2 it equals
    (rho_inf - 2 / L) + (2 / L) (1 - u / (e^u - 1)), L = -log beta2: the first term a host
    constant (double), the second accurate to float32 rounding."""

    def __init__(self, beta1, beta2, rectify_threshold):
        super().__init__()
        self.log_beta1 = math.log(beta1) if beta1 > 0 else None
        self.neg_log_beta2 = -math.log(beta2)
        self.rho_inf = 2.0 / (1.0 - beta2) - 1.0
        self.rho_offset = self.rho_inf - 2.0 / self.neg_log_beta2
        self.threshold = float(rectify_threshold)

    def construct(self, t):
        """(step size per unit lr, rectified as 1.0/0.0)."""
        u = t * self.neg_log_beta2
        one_minus_b2t = -_expm1(-u)
        rho_t = self.rho_offset + (2.0 / self.neg_log_beta2) * _one_minus_bernoulli(u)
        rectified = ops.cast(rho_t > self.threshold, ms.float32)
        # clamped so the branch not taken stays finite (rho_t < 4 early on)
        ratio = ops.maximum(rho_t - 4.0, 0.0) * (rho_t - 2.0) * self.rho_inf / \
            ((self.rho_inf - 4.0) * (self.rho_inf - 2.0) * rho_t)
        rect = ops.sqrt(one_minus_b2t * ratio)
        step_size = (rectified * rect + (1.0 - rectified)) / _one_minus_power(self.log_beta1, t)
        return step_size, rectified


@_ranger_update.register("Number", "Number", "Number", "Number", "Tensor", "Tensor", "Tensor", "Tensor",
                         "Bool", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor")
def _update_one(beta1, beta2, eps, alpha, lr_step, rectified, first, sync,
                centralize, param, grad, exp_avg, exp_avg_sq, slow):
    """One parameter's Ranger step; the masks (float 0/1 scalars) stand in for pSp's Python ifs."""
    if centralize:  # a Python constant per parameter: its number of axes
        grad = grad - grad.mean(axis=tuple(range(1, grad.ndim)), keep_dims=True)
    m = beta1 * exp_avg + (1.0 - beta1) * grad
    v = beta2 * exp_avg_sq + (1.0 - beta2) * grad * grad
    denom = rectified * (ops.sqrt(v) + eps) + (1.0 - rectified)  # Adam step, or plain momentum
    fast = param - lr_step * m / denom
    slow_now = first * param + (1.0 - first) * slow  # pSp takes the slow copy at its first step
    synced = slow_now + alpha * (fast - slow_now)
    ops.assign(exp_avg, m)
    ops.assign(exp_avg_sq, v)
    ops.assign(slow, sync * synced + (1.0 - sync) * slow_now)
    ops.assign(param, sync * synced + (1.0 - sync) * fast)
    return True


class Ranger(nn.Optimizer):
    """RAdam + Lookahead (+ gradient centralisation) as pSp's ``training/ranger.py``; see the module doc.

    State, all Parameters under fixed names (saved and restored by run checkpoints):
    ``exp_avg.<param>``, ``exp_avg_sq.<param>``, ``slow.<param>`` and the step counter
    ``global_step`` (nn.Optimizer's own, counting updates from 0)."""

    def __init__(self, params, learning_rate=1e-3, beta1=0.95, beta2=0.999, eps=1e-5, k=6, alpha=0.5,
                 rectify_threshold=5.0, gradient_centralization=True):
        if not (0 <= beta1 < 1 and 0 < beta2 < 1):
            raise ValueError(f"Ranger: betas in [0, 1) and (0, 1) required, got {beta1}, {beta2}")
        super().__init__(learning_rate, params)
        if self.is_group or self.dynamic_lr:
            raise ValueError("Ranger: one parameter group with a fixed learning rate only")
        self.beta1, self.beta2, self.eps, self.alpha, self.k = float(beta1), float(beta2), float(eps), \
            float(alpha), int(k)
        self.schedule = RangerSchedule(beta1, beta2, rectify_threshold)
        self.exp_avg = self._parameters.clone(prefix="exp_avg", init="zeros")
        self.exp_avg_sq = self._parameters.clone(prefix="exp_avg_sq", init="zeros")
        self.slow = self._parameters.clone(prefix="slow", init="same")
        for p in (*self.exp_avg, *self.exp_avg_sq, *self.slow):
            p.requires_grad = False
        self.centralize = tuple(bool(gradient_centralization) and len(p.shape) > 1 for p in self._parameters)

    @ms.jit  # one graph in PYNATIVE too, as nn.Adam
    def construct(self, gradients):
        step = self.global_step + 1  # this update's t, from 1
        ops.assign(self.global_step, step)
        t = ops.cast(step, ms.float32).reshape(())
        step_size, rectified = self.schedule(t)
        first = ops.cast(step == 1, ms.float32).reshape(())
        sync = ops.cast(step % self.k == 0, ms.float32).reshape(())
        lr_step = self.get_lr() * step_size
        return self.hyper_map(ops.partial(_ranger_update, self.beta1, self.beta2, self.eps, self.alpha,
                                          lr_step, rectified, first, sync),
                              self.centralize, self._parameters, gradients, self.exp_avg, self.exp_avg_sq,
                              self.slow)
