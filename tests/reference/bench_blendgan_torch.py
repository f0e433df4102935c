"""PyTorch side of tools/bench_blendgan.py (``python -m tests.reference.bench_blendgan_torch CONFIG_JSON``).

The same GAN step as baselines_ms.blendgan's, from the test reference (blendgan_ref, stylegan2_ref):
w_f = mapping(z_f) (no mixing), W+ rows [w_f; WBM(w_f, z_s, i=0); WBM(w_f, z_s^-, i=0)] through one
synthesis pass with fresh noise, G loss softplus(-D_face(face)) + softplus(-D_style(style)) +
softplus(-D_style_latent(style^-, z_s^-)), backward, Adam(lr 2e-3, betas (0, 0.99)) on G without
its style encoder; then the three discriminators' logistic losses on the detached fakes, Adam.
Prints one ``RESULT {json}`` line.
"""
import json
import sys

import torch
import torch.nn.functional as F

from baselines_ms.commands.bench_baselines import with_cpu_time
from baselines_ms.commands.bench_blendgan import host_codes
from modify_ms.commands.bench_modify import host_images, result, time_stage1
from modify_ms.utils.bench import median, rss_mib, torch_threads
from .blendgan_ref import BlendGenerator, ProjectionDiscriminator
from .bench_baselines_torch import noise_maps
from .stylegan2_ref import Discriminator


def main(cfg):
    torch_threads(cfg["threads"])
    torch.manual_seed(cfg["seed"])
    baseline = rss_mib()
    s, b = cfg["size"], cfg["batch"]
    g = BlendGenerator(s, cfg["style_dim"], cfg["n_mlp"], cfg["channel_multiplier"], cfg["channel_max"],
                       widths=tuple(cfg["vgg_widths"]), style_input_size=s)
    d_face = Discriminator(s, cfg["channel_multiplier"], cfg["channel_max"])
    d_style = Discriminator(s, cfg["channel_multiplier"], cfg["channel_max"])
    d_latent = ProjectionDiscriminator(s, cfg["style_dim"], cfg["channel_multiplier"], cfg["channel_max"])
    g_params = [p for n, p in g.named_parameters() if not n.startswith("embedder.")]
    d_params = [p for d in (d_face, d_style, d_latent) for p in d.parameters()]
    g_opt = torch.optim.Adam(g_params, lr=cfg["lr"], betas=tuple(float(x) for x in cfg["betas"]))
    d_opt = torch.optim.Adam(d_params, lr=cfg["lr"], betas=tuple(float(x) for x in cfg["betas"]))
    n = cfg["steps"] + 1
    faces = host_images(cfg, b, n)
    arts = host_images(dict(cfg, seed=cfg["seed"] + 2), b, n)
    codes = host_codes(cfg, n)
    losses, cpu = [], []

    def step(face, art, z_f, z_s, z_n):
        z_f, z_s, z_n = (torch.from_numpy(z) for z in (z_f, z_s, z_n))
        w = g.mapping(z_f)[:, None, :].repeat(1, g.n_latent, 1)
        images = g(torch.cat([w, g.blended(w, z_s, 0), g.blended(w, z_n, 0)]), noise_maps(g, 3 * b))
        fake_face, fake_style, fake_neg = images[:b], images[b:2 * b], images[2 * b:]
        g_loss = (F.softplus(-d_face(fake_face)).mean() + F.softplus(-d_style(fake_style)).mean()
                  + F.softplus(-d_latent(fake_neg, z_n)).mean())
        g_opt.zero_grad(set_to_none=True)
        g_loss.backward()
        g_opt.step()
        face, art = torch.from_numpy(face), torch.from_numpy(art)
        d_loss = (F.softplus(d_face(fake_face.detach())).mean() + F.softplus(-d_face(face)).mean()
                  + F.softplus(d_style(fake_style.detach())).mean() + F.softplus(-d_style(art)).mean()
                  + F.softplus(d_latent(fake_neg.detach(), z_n)).mean() + F.softplus(-d_latent(art, z_s)).mean())
        d_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        d_opt.step()
        losses.append(g_loss.item() + d_loss.item())

    batches = [(faces[i], arts[i]) + codes[i] for i in range(n)]
    first, med, times = time_stage1(with_cpu_time(step, cpu), batches, cfg["steps"])
    return result("torch", torch.__version__, "blendgan", cfg, baseline, first, med, times,
                  dict(cpu_s=median(cpu[1:]), loss_first=losses[0], loss_last=losses[-1],
                       params=len(g_params) + len(d_params), code="tests.reference.bench_blendgan_torch"))


if __name__ == "__main__":
    print("RESULT " + json.dumps(main(json.loads(sys.argv[1]))), flush=True)
