"""Ranger (RAdam + Lookahead + gradient centralisation) written from the mathematics in float64 torch.

RAdam: Liu et al. 2020, "On the Variance of the Adaptive Learning Rate and Beyond" (rho_t, the
rectification r_t, momentum SGD while rho_t is small); Lookahead: Zhang et al. 2019 (every k
steps slow <- slow + alpha (fast - slow), fast <- slow); gradient centralisation: Yong et al.
2020 (subtract the gradient's mean over all axes but the first). Arranged as pSp's
``training/ranger.py`` (lessw2020 20.4.11): eps added to sqrt(v) without bias correction of v,
the rectification test ``rho_t > threshold``, the slow copy taken at the first step.
"""
import math

import torch


def radam_scalars(t, beta1, beta2, threshold):
    """(rectified, step size per unit lr) at step t >= 1, in Python floats (double)."""
    rho_inf = 2.0 / (1.0 - beta2) - 1.0
    beta2_t = beta2 ** t
    rho_t = rho_inf - 2.0 * t * beta2_t / (1.0 - beta2_t)
    bias1 = 1.0 - beta1 ** t
    if rho_t > threshold:
        r_t = math.sqrt((1.0 - beta2_t) * (rho_t - 4.0) * (rho_t - 2.0) * rho_inf
                        / ((rho_inf - 4.0) * (rho_t * (rho_inf - 2.0))))
        return True, r_t / bias1
    return False, 1.0 / bias1


def centralize(grad):
    if grad.dim() <= 1:
        return grad
    return grad - grad.mean(dim=tuple(range(1, grad.dim())), keepdim=True)


def ranger_run(params, grads, lr, beta1=0.95, beta2=0.999, eps=1e-5, k=6, alpha=0.5, threshold=5.0,
               gradient_centralization=True):
    """Run len(grads) steps from ``params`` (list of arrays); ``grads[s][i]`` is parameter i's
    gradient at step s + 1. Returns the parameters after every step and the final state
    (dict of lists m, v, slow) as float64 tensors."""
    p = [torch.as_tensor(x, dtype=torch.float64).clone() for x in params]
    m = [torch.zeros_like(x) for x in p]
    v = [torch.zeros_like(x) for x in p]
    slow = [x.clone() for x in p]
    history = []
    for step, step_grads in enumerate(grads, start=1):
        rectified, step_size = radam_scalars(step, beta1, beta2, threshold)
        for i, g in enumerate(step_grads):
            g = torch.as_tensor(g, dtype=torch.float64)
            if gradient_centralization:
                g = centralize(g)
            m[i] = beta1 * m[i] + (1.0 - beta1) * g
            v[i] = beta2 * v[i] + (1.0 - beta2) * g * g
            if rectified:
                p[i] = p[i] - lr * step_size * m[i] / (v[i].sqrt() + eps)
            else:
                p[i] = p[i] - lr * step_size * m[i]
            if step % k == 0:
                slow[i] = slow[i] + alpha * (p[i] - slow[i])
                p[i] = slow[i].clone()
        history.append([x.clone() for x in p])
    return history, {"exp_avg": m, "exp_avg_sq": v, "slow": slow}
