"""PyTorch side of tools/bench_baselines.py (``python -m tests.reference.bench_baselines_torch WORKLOAD CONFIG_JSON``).

The same baseline steps as baselines_ms, built from the test references (stylegan2_ref,
irse_ref, lpips_ref, identity_ref, and bench_modify_torch's encoder and Lipschitz penalty);
the configuration (sizes, loss weights, JoJoGAN's swapped rows and taps) comes from the driver.

* psp-unpaired: x' = D(E(x)) (E = pSp encoder + latent_avg in training mode, D the frozen
  decoder); l2 * L2 + lpips * LPIPS + id * ID between x and x' + adv * WGAN generator loss
  -Dis(x'); backward; Adam on E (Dis frozen for this pass). Then Dis with the target batch as
  real: Dis(x') - Dis(target) + gp * one-sided Lipschitz penalty at x_hat = a target + (1 - a) x'
  (double backward); Adam on Dis.
* jojogan: under no_grad, w = mapping(z) into the swapped rows of the references' W+ and the
  references' discriminator features; then G(W+) with fresh noise, its features, mean over the
  taps of mean |fake - real|, backward into G's synthesis parameters, Adam lr 2e-3 betas (0, 0.99).
  The discriminator (frozen) runs its convs up to the last tap only, as JoJoGAN's feature-only one.

Noise maps are drawn per step (torch.randn), as the MindSpore side draws them on the host.
Prints one ``RESULT {json}`` line.
"""
import json
import sys

import torch
import torch.nn.functional as F

from baselines_ms.commands.bench_baselines import jojo_host_inputs, with_cpu_time
from modify_ms.commands.bench_modify import host_images, result, time_stage1
from modify_ms.utils.bench import median, rss_mib, torch_threads
from .stylegan2_ref import Discriminator, Generator


def noise_maps(generator, batch):
    """Fresh per-layer noise [batch, 1, r, r] for ``generator``."""
    return [torch.randn(batch, 1, 2 ** ((i + 5) // 2), 2 ** ((i + 5) // 2)) for i in range(generator.num_layers)]


def disc_features(disc, x, taps):
    """The outputs of ``disc.convs[t]`` for t in ``taps``, running the convs up to the last tap only
    (JoJoGAN's feature-only Discriminator has no minibatch-stddev or logit layers)."""
    feats = []
    for i, block in enumerate(list(disc.convs)[:taps[-1] + 1]):
        x = block(x)
        if i in taps:
            feats.append(x)
    return feats


def frozen(module):
    return module.eval().requires_grad_(False)


def run_psp_unpaired(cfg, baseline):
    # imported here: the jojogan worker needs none of them (lpips_ref alone takes seconds to import)
    from .bench_modify_torch import Encoder, lipschitz_penalty
    from .identity_ref import IdentityLossRef
    from .lpips_ref import LPIPSRef

    size, w, adv = cfg["size"], cfg["psp_losses"], cfg["psp_adv"]
    decoder = frozen(Generator(size, cfg["style_dim"], cfg["n_mlp"], cfg["channel_multiplier"], cfg["channel_max"]))
    encoder = Encoder(cfg, decoder.n_latent)  # training mode: pSp trains E on batch statistics
    disc = Discriminator(size, cfg["channel_multiplier"], cfg["channel_max"])
    lpips = frozen(LPIPSRef("alex"))
    identity = frozen(IdentityLossRef(size, units=tuple(cfg["id_units"]), channels=tuple(cfg["id_channels"])))
    e_opt = torch.optim.Adam(encoder.parameters(), lr=cfg["psp_lr"])
    d_opt = torch.optim.Adam(disc.parameters(), lr=cfg["psp_lr"])
    n_params = sum(p.numel() for m in (encoder, disc) for p in m.parameters())
    wgan = adv["kind"] == "wgan"
    batches = [(torch.from_numpy(x), torch.from_numpy(t)) for x, t in
               zip(host_images(cfg, cfg["batch"], 3), host_images(dict(cfg, seed=cfg["seed"] + 1), cfg["batch"], 3))]
    losses, d_losses, cpu = [], [], []

    def step(x, target):
        disc.requires_grad_(False)
        x_out = decoder(encoder(x), noise_maps(decoder, x.shape[0]))
        fake_logits = disc(x_out)
        g_adv = -fake_logits.mean() if wgan else F.softplus(-fake_logits).mean()
        loss = (w["l2"] * (x - x_out).pow(2).mean() + w["lpips"] * lpips(x_out, x).mean()
                + w["id"] * identity(x_out, x) + w["adv"] * g_adv)
        e_opt.zero_grad(set_to_none=True)
        loss.backward()
        e_opt.step()
        losses.append(loss.item())

        disc.requires_grad_(True)
        fake = x_out.detach()
        alpha = torch.rand(x.shape[0], 1, 1, 1)
        real_logits, fake_logits = disc(target), disc(fake)
        d_adv = (fake_logits.mean() - real_logits.mean() if wgan
                 else F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean())
        d_loss = d_adv + adv["gp_weight"] * lipschitz_penalty(disc, target, fake, alpha)
        d_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        d_opt.step()
        d_losses.append(d_loss.item())

    first, med, times = time_stage1(with_cpu_time(step, cpu), batches, cfg["steps"])
    return result("torch", torch.__version__, "psp-unpaired", cfg, baseline, first, med, times,
                  dict(loss_first=losses[0], loss_last=losses[-1], d_loss_last=d_losses[-1], params=n_params,
                       cpu_s=median(cpu[1:]), code="tests/reference/bench_baselines_torch.py"))


def run_jojogan(cfg, baseline):
    size, n = cfg["size"], cfg["jojo_refs"]
    generator = Generator(size, cfg["style_dim"], cfg["n_mlp"], cfg["channel_multiplier"], cfg["channel_max"])
    generator.style.requires_grad_(False)  # W+ input bypasses the mapping: it never gets a gradient
    disc = frozen(Discriminator(size, cfg["channel_multiplier"], cfg["channel_max"]))
    params = [p for p in generator.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg["jojo_lr"], betas=tuple(cfg["jojo_betas"]))
    refs, ref_w = (torch.from_numpy(a) for a in jojo_host_inputs(cfg, generator.n_latent))
    rows, taps = list(cfg["jojo_rows"]), list(cfg["jojo_taps"])
    losses, cpu = [], []

    def step():
        with torch.no_grad():
            w_plus = ref_w.clone()
            w_plus[:, rows] = generator.mapping(torch.randn(n, cfg["style_dim"])).unsqueeze(1)
            real = disc_features(disc, refs, taps)
        fake = disc_features(disc, generator(w_plus, noise_maps(generator, n)), taps)
        loss = sum(F.l1_loss(f, r) for f, r in zip(fake, real)) / len(taps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())

    first, med, times = time_stage1(with_cpu_time(step, cpu), [()], cfg["jojo_steps"])
    return result("torch", torch.__version__, "jojogan", cfg, baseline, first, med, times,
                  dict(loss_first=losses[0], loss_last=losses[-1], params=sum(p.numel() for p in params),
                       cpu_s=median(cpu[1:]), code="tests/reference/bench_baselines_torch.py"))


def main():
    workload, cfg = sys.argv[1], json.loads(sys.argv[2])
    torch_threads(cfg["threads"])
    baseline = rss_mib()
    torch.manual_seed(cfg["seed"])
    out = run_psp_unpaired(cfg, baseline) if workload == "psp-unpaired" else run_jojogan(cfg, baseline)
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
