"""PyTorch side of tools/bench_modify.py (``python -m tests.reference.bench_modify_torch WORKLOAD CONFIG_JSON``).

The same MODIFY steps as modify_ms/train/steps.py, built from the test references:
encoder = pSp GradualStyleEncoder (irse_ref.PSPEncoder, style heads to style_dim) + latent_avg;
decoder = stylegan2_ref.Generator; remapping net M = PixelNorm + EqualLinear layers (scaled
lrelu) + EqualLinear to xi*S (unused by the phase-1 and stage-2 steps timed here, built for
completeness); Dis = stylegan2_ref.Discriminator; LPIPS alex = lpips_ref; identity = identity_ref.

* stage1 (phase-1 weights): y_r = D(E(y)); 0.8 L2 + 0.8 LPIPS + 1 ID + 0.1 softplus(-Dis(y_r));
  backward; Adam on E and D (Dis frozen for this pass, as the MindSpore step only
  differentiates E and D). Then Dis: softplus(Dis(y_r)) + softplus(-Dis(y')) + 10 * GP,
  GP = mean(relu(||grad_x_hat Dis(x_hat)||_2 - 1)^2), x_hat = a y' + (1 - a) y_r (double backward).
* tta: E' (a copy of E) and Dis reset with fresh Adam states, then 50 updates at batch 1:
  x' = D(E'(x)); 0.5 L2 + 0.8 LPIPS + 1 ID + 0.01 adv; Adam on E'; then the Dis update with
  real = D(E(x)) (frozen teacher, no gradient) and fake = x'.
Noise maps are drawn per step (torch.randn), as the MindSpore trainer draws them on the host.
Prints one ``RESULT {json}`` line.
"""
import copy
import json
import sys

import torch
import torch.nn.functional as F
from torch import nn

from modify_ms.commands.bench_modify import host_images, result, time_stage1, time_tta
from modify_ms.utils.bench import rss_mib, torch_threads
from .identity_ref import IdentityLossRef
from .irse_ref import PSPEncoder, StyleHead
from .lpips_ref import LPIPSRef
from .stylegan2_ref import Discriminator, EqualLinear, Generator


def build_encoder(cfg, n_latent):
    enc = PSPEncoder(n_latent, cfg["size"], units=tuple(cfg["enc_units"]), channels=tuple(cfg["enc_channels"]))
    c3, size = cfg["enc_channels"][3], cfg["size"]
    enc.styles = nn.ModuleList([StyleHead(c3, cfg["style_dim"], size // (16 if i < 3 else 8 if i < 7 else 4))
                                for i in range(n_latent)])
    return enc


class Encoder(nn.Module):
    """pSp encoder + frozen latent_avg (start_from_latent_avg)."""

    def __init__(self, cfg, n_latent):
        super().__init__()
        self.body = build_encoder(cfg, n_latent)
        self.register_buffer("latent_avg", torch.randn(n_latent, cfg["style_dim"]) * 0.1)

    def forward(self, x):
        return self.body(x) + self.latent_avg


class RemapNet(nn.Module):
    def __init__(self, xi, sdim, n_layers):
        super().__init__()
        self.layers = nn.ModuleList([EqualLinear(sdim, sdim, act=True) for _ in range(n_layers)])
        self.to_style_rows = EqualLinear(sdim, xi * sdim, act=True)
        self.xi, self.sdim = xi, sdim

    def forward(self, z):
        x = z * torch.rsqrt(z.pow(2).mean(1, keepdim=True) + 1e-8)
        for layer in self.layers:
            x = layer(x)
        return self.to_style_rows(x).reshape(z.shape[0], self.xi, self.sdim)


def lipschitz_penalty(disc, real, fake, alpha):
    x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(disc(x_hat).sum(), x_hat, create_graph=True)
    norm = torch.sqrt(grad.pow(2).sum((1, 2, 3)) + 1e-12)
    return F.relu(norm - 1).pow(2).mean()


def main():
    workload, cfg = sys.argv[1], json.loads(sys.argv[2])
    torch_threads(cfg["threads"])
    baseline = rss_mib()
    torch.manual_seed(cfg["seed"])
    size, sdim = cfg["size"], cfg["style_dim"]
    decoder = Generator(size, sdim, cfg["n_mlp"], cfg["channel_multiplier"], cfg["channel_max"])
    n_latent = decoder.n_latent
    encoder = Encoder(cfg, n_latent)
    remap = RemapNet(cfg["xi"], sdim, cfg["remap_layers"])
    disc = Discriminator(size, cfg["channel_multiplier"], cfg["channel_max"])
    lpips = LPIPSRef("alex").eval().requires_grad_(False)
    identity = IdentityLossRef(size, units=tuple(cfg["id_units"]), channels=tuple(cfg["id_channels"])).eval()
    identity.requires_grad_(False)
    n_params = sum(p.numel() for m in (encoder, decoder, remap, disc) for p in m.parameters())
    noise_shapes = [(1, 2 ** ((i + 5) // 2), 2 ** ((i + 5) // 2)) for i in range(decoder.num_layers)]
    adv_kind, gp = cfg["adv_kind"], cfg["gp_weight"]

    def noise(b):
        return [torch.randn((b,) + s) for s in noise_shapes]

    def g_adv(logits):
        return -logits.mean() if adv_kind == "wgan" else F.softplus(-logits).mean()

    def d_adv(real_logits, fake_logits):
        if adv_kind == "wgan":
            return fake_logits.mean() - real_logits.mean()
        return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()

    def recon(target, out, w_l2, w_lpips, w_id):
        return (w_l2 * (target - out).pow(2).mean() + w_lpips * lpips(out, target).mean()
                + w_id * identity(out, target))

    def d_update(d_opt, real, fake):
        disc.requires_grad_(True)
        alpha = torch.rand(real.shape[0], 1, 1, 1)
        loss = d_adv(disc(real), disc(fake)) + gp * lipschitz_penalty(disc, real, fake, alpha)
        d_opt.zero_grad(set_to_none=True)
        loss.backward()
        d_opt.step()
        return loss.item()

    if workload == "stage1":
        lr = cfg["lr_stage1"]
        g_opts = [torch.optim.Adam(m.parameters(), lr=lr) for m in (encoder, decoder)]
        d_opt = torch.optim.Adam(disc.parameters(), lr=lr)
        batches = [(torch.from_numpy(y), torch.from_numpy(r)) for y, r in
                   zip(host_images(cfg, cfg["batch"], 3), host_images(dict(cfg, seed=cfg["seed"] + 1), cfg["batch"], 3))]
        losses = []

        def step(y, y_real):
            disc.requires_grad_(False)
            y_r = decoder(encoder(y), noise(y.shape[0]))
            loss = recon(y, y_r, 0.8, 0.8, 1.0) + 0.1 * g_adv(disc(y_r))
            for opt in g_opts:
                opt.zero_grad(set_to_none=True)
            loss.backward()
            for opt in g_opts:
                opt.step()
            losses.append(loss.item())
            d_update(d_opt, y_real, y_r.detach())

        first, med, times = time_stage1(step, batches, cfg["steps"])
        out = result("torch", torch.__version__, workload, cfg, baseline, first, med, times,
                     dict(loss_first=losses[0], loss_last=losses[-1], params=n_params))
    else:
        lr = cfg["lr_stage2"]
        encoder.requires_grad_(False)
        decoder.requires_grad_(False)
        student = copy.deepcopy(encoder).requires_grad_(True)
        initial = {"student": copy.deepcopy(student.state_dict()), "disc": copy.deepcopy(disc.state_dict())}
        x = torch.from_numpy(host_images(cfg, 1, 1)[0])
        losses = []

        def adapt(x, n):
            student.load_state_dict(initial["student"])
            disc.load_state_dict(initial["disc"])
            s_opt = torch.optim.Adam(student.parameters(), lr=lr)
            d_opt = torch.optim.Adam(disc.parameters(), lr=lr)
            for _ in range(n):
                disc.requires_grad_(False)
                x_out = decoder(student(x), noise(1))
                loss = recon(x, x_out, 0.5, 0.8, 1.0) + 0.01 * g_adv(disc(x_out))
                s_opt.zero_grad(set_to_none=True)
                loss.backward()
                s_opt.step()
                losses.append(loss.item())
                with torch.no_grad():
                    real = decoder(encoder(x), noise(1))
                d_update(d_opt, real, x_out.detach())

        first, last, times = time_tta(adapt, x, cfg["tta_steps"])
        out = result("torch", torch.__version__, workload, cfg, baseline, first, last, times,
                     dict(loss_first=losses[0], loss_last=losses[-1], params=n_params))
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
