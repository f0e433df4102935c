"""PyTorch reference of MODIFY's own pieces, written from the paper (eqs. 1-7) and the authors'
latent space, on top of the layer references of this folder (test-only; never imports the code
under test).

* adversarial losses, both sides: WGAN (the paper) and the non-saturating logistic loss of the
  authors' code, written with log-sigmoid (the code under test uses softplus);
* the one-sided Lipschitz penalty E[max(0, ||grad_x Dis(x_hat)||_2 - 1)^2] at
  x_hat = alpha * real + (1 - alpha) * fake, with torch's double backward;
* the remapping network M: PixelNorm, n x EqualLinear(S, S) + fused leaky ReLU, then
  EqualLinear(S, xi * S) + fused leaky ReLU, reshaped [B, xi, S];
* the composition: E(x) and M(z) are OFFSETS from the decoder's mean latent; the fused code is
  cat(E(x)[:, :L - xi], M(z)) + latent_avg on every row; images are average-pooled from the
  decoder's size R to the loss size P, and go back up to R (nearest or bilinear) for Dis;
* the generator-side objectives of stage 1 (eq. 6: L2, LPIPS, ID, adv on y_r and y_z, swap
  between M(z) and the last xi rows of E(y_z) for the same z) and stage 2 (eq. 7, on
  x' = D(E'(x) + latent_avg)), plus pSp's optional w-norm of the offsets.
"""
import torch
import torch.nn.functional as F
from torch import nn

from .stylegan2_ref import EqualLinear

KINDS = ("wgan", "logistic")


# ----------------------------------------------------------------------------- adversarial
def generator_adv_loss(fake_logits, kind):
    """WGAN: -E[Dis(fake)]; logistic (non-saturating): -E[log sigmoid(Dis(fake))]."""
    if kind == "wgan":
        return -fake_logits.mean()
    if kind == "logistic":
        return -F.logsigmoid(fake_logits).mean()
    raise ValueError(kind)


def discriminator_adv_loss(real_logits, fake_logits, kind):
    """WGAN: E[Dis(fake)] - E[Dis(real)]; logistic: -E[log(1 - sigmoid(Dis(fake)))] - E[log sigmoid(Dis(real))]."""
    if kind == "wgan":
        return fake_logits.mean() - real_logits.mean()
    if kind == "logistic":
        return -F.logsigmoid(-fake_logits).mean() - F.logsigmoid(real_logits).mean()
    raise ValueError(kind)


def input_grad_norms(critic, real, fake, alpha):
    """||d sum(critic(x_hat)) / d x_hat_i||_2 per sample, differentiable (create_graph)."""
    x_hat = (alpha * real + (1 - alpha) * fake).detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return grad.flatten(1).norm(dim=1)


def lipschitz_penalty(critic, real, fake, alpha):
    """One-sided: only samples whose input-gradient norm exceeds 1 are penalised."""
    return torch.clamp(input_grad_norms(critic, real, fake, alpha) - 1, min=0).pow(2).mean()


def critic_loss(critic, real, fakes, alpha, kind, gp_weight):
    """Discriminator objective: mean over the fakes of adv(real, fake) + gp_weight * penalty(real, fake)."""
    real_logits = critic(real)
    total = 0
    for fake in fakes:
        total = total + discriminator_adv_loss(real_logits, critic(fake), kind) \
            + gp_weight * lipschitz_penalty(critic, real, fake, alpha)
    return total / len(fakes), real_logits.mean()


# ----------------------------------------------------------------------------- remapping network M
class RemapNetRef(nn.Module):
    """keys: ``layers.{1..n}.{weight,bias}`` (index 0 is the parameter-free PixelNorm), ``to_style_rows.*``."""

    def __init__(self, xi, style_dim, n_layers, lr_mul=1.0, z_dim=None):
        super().__init__()
        z_dim = z_dim or style_dim
        dims = [z_dim] + [style_dim] * n_layers
        self.layers = nn.ModuleList([nn.Identity()] + [EqualLinear(dims[i], dims[i + 1], lr_mul=lr_mul, act=True)
                                                       for i in range(n_layers)])
        self.to_style_rows = EqualLinear(dims[-1], xi * style_dim, lr_mul=lr_mul, act=True)
        self.xi, self.style_dim = xi, style_dim

    def forward(self, z):
        x = z / torch.sqrt(z.pow(2).mean(dim=1, keepdim=True) + 1e-8)
        for layer in list(self.layers)[1:]:
            x = layer(x)
        return self.to_style_rows(x).view(z.shape[0], self.xi, self.style_dim)


@torch.no_grad()
def randomize_remap(module, seed=0):
    """Raw weights ~ N(0, 1) / lr_mul (as stored), biases 0.1 + 0.2 N(0, 1): none at 0 or 1."""
    g = torch.Generator().manual_seed(seed)
    for name, p in module.named_parameters():
        r = torch.randn(p.shape, generator=g)
        lr_mul = module.to_style_rows.lr_mul
        p.copy_(r / lr_mul if name.endswith("weight") else 0.1 + 0.2 * r)
    return module


# ----------------------------------------------------------------------------- composition
def fuse(offsets, style_rows):
    """{w_l, w_z}: the first L - xi rows of E's offsets, then M's xi rows."""
    xi = style_rows.shape[1]
    return torch.cat([offsets[:, :offsets.shape[1] - xi], style_rows], dim=1)


def w_norm(offsets):
    """pSp's WNormLoss (start_from_latent_avg): per-sample L2 norm of the [L, S] offset code, batch mean."""
    return offsets.flatten(1).norm(dim=1).mean()


def mse(a, b):
    return (a - b).pow(2).mean()


class ModifyRef(nn.Module):
    """E, D, M, Dis with the decoder's mean latent ``latent_avg`` [S] and the two resamplings."""

    def __init__(self, encoder, decoder, remap_net, discriminator, latent_avg, gen_size, loss_size,
                 disc_upsample="nearest"):
        super().__init__()
        self.encoder, self.decoder, self.remap_net, self.discriminator = encoder, decoder, remap_net, discriminator
        self.register_buffer("latent_avg", latent_avg.clone())
        self.gen_size, self.loss_size, self.disc_upsample = gen_size, loss_size, disc_upsample

    def w_plus(self, offsets, style_rows=None):
        code = offsets if style_rows is None else fuse(offsets, style_rows)
        return code + self.latent_avg.view(1, 1, -1)

    def render(self, w_plus, noise):
        img = self.decoder(w_plus, list(noise))
        factor = self.gen_size // self.loss_size
        return F.avg_pool2d(img, factor) if factor > 1 else img

    def critic(self, img):
        if self.gen_size != self.loss_size:
            size = (self.gen_size, self.gen_size)
            if self.disc_upsample == "bilinear":
                img = F.interpolate(img, size=size, mode="bilinear", align_corners=False)
            else:
                img = F.interpolate(img, size=size, mode="nearest")
        return self.discriminator(img)


def reconstruction_terms(lpips, identity, target, recon):
    """L2, LPIPS (lpips returns per-sample distances) and ArcFace 1 - cos (target embedding detached)."""
    return {"l2": mse(recon, target), "lpips": lpips(recon, target).mean(), "id": identity(recon, target)}


def weighted_total(terms, weights):
    return sum(weights[k] * terms[k] for k in weights)


def stage1_loss(ref, lpips, identity, weights, kind, y, z, noise_r, noise_z):
    """Eq. (6), generator side, every term computed. ``weights``: {term: weight}.

    Returns (total, {term: value}, y_r, y_z)."""
    offsets = ref.encoder(y)
    y_r = ref.render(ref.w_plus(offsets), noise_r)
    terms = reconstruction_terms(lpips, identity, y, y_r)
    terms["adv_r"] = generator_adv_loss(ref.critic(y_r), kind)
    w_z = ref.remap_net(z)
    y_z = ref.render(ref.w_plus(offsets, w_z), noise_z)
    terms["adv_z"] = generator_adv_loss(ref.critic(y_z), kind)
    xi = w_z.shape[1]
    terms["swap"] = mse(w_z, ref.encoder(y_z)[:, -xi:])   # w'_z: last xi rows of E(y_z), same z
    terms["w_norm"] = w_norm(offsets)
    return weighted_total(terms, weights), terms, y_r, y_z


def stage2_loss(ref, student, lpips, identity, weights, kind, x, noise):
    """Eq. (7), encoder side on x' = D(E'(x) + latent_avg). Returns (total, {term: value}, x')."""
    offsets = student(x)
    x_out = ref.render(ref.w_plus(offsets), noise)
    terms = reconstruction_terms(lpips, identity, x, x_out)
    terms["adv"] = generator_adv_loss(ref.critic(x_out), kind)
    terms["w_norm"] = w_norm(offsets)
    return weighted_total(terms, weights), terms, x_out
