"""PyTorch side of tools/bench_stylegan2.py (``python -m tests.reference.bench_stylegan2_torch --config JSON``).

The same generator step as the MindSpore worker in ``modify_ms.commands.bench_stylegan2``
(same configuration, host inputs and timing), on the test reference ``stylegan2_ref``.
Prints one ``RESULT {json}`` line.
"""
import argparse
import json
import os

from modify_ms.commands.bench_stylegan2 import host_inputs, summary, time_steps
from modify_ms.utils.bench import rss_mib, torch_threads


def depthwise_upfirdn2d(planes_upfirdn2d):
    """The reference's upfirdn2d as one depthwise (groups=C) conv instead of (B*C, 1, H, W) planes.

    Same mathematics; checked against the reference's version once before use.
    """
    import torch
    import torch.nn.functional as F

    def upfirdn2d(x, kernel, up=1, down=1, pad=(0, 0)):
        b, c, h, w = x.shape
        if up > 1:
            z = x.new_zeros(b, c, h * up, w * up)
            z[:, :, ::up, ::up] = x
            x = z
        x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
        k = torch.flip(kernel, [0, 1])[None, None].expand(c, 1, *kernel.shape)
        return F.conv2d(x, k, groups=c, stride=down)

    x = torch.randn(2, 5, 9, 9)
    k = torch.rand(4, 4)
    for kw in (dict(pad=(1, 1)), dict(up=2, pad=(2, 1)), dict(pad=(2, 2), down=2)):
        if not torch.allclose(upfirdn2d(x, k, **kw), planes_upfirdn2d(x, k, **kw), atol=1e-5):
            raise AssertionError(f"depthwise upfirdn2d differs from the reference for {kw}")
    return upfirdn2d


def run_torch(cfg):
    import torch
    import torch.nn.functional as F

    torch_threads(cfg["threads"])
    baseline = rss_mib()
    from . import stylegan2_ref
    from .stylegan2_ref import Discriminator, Generator

    if cfg.get("torch_fir") == "depthwise":
        stylegan2_ref.upfirdn2d = depthwise_upfirdn2d(stylegan2_ref.upfirdn2d)

    torch.manual_seed(cfg["seed"])
    gen = Generator(cfg["size"], sdim=cfg["style_dim"], n_mlp=cfg["n_mlp"], cm=cfg["channel_multiplier"],
                    cmax=cfg["channel_max"])
    disc = Discriminator(cfg["size"], cm=cfg["channel_multiplier"], cmax=cfg["channel_max"])
    disc.requires_grad_(False)
    g_params = list(gen.parameters())
    optimizer = torch.optim.Adam(g_params, lr=1e-4, betas=(0.9, 0.999))
    n_params = sum(p.numel() for p in g_params)
    noise_shapes = [(cfg["batch"], 1, 2 ** ((i + 5) // 2), 2 ** ((i + 5) // 2)) for i in range(gen.num_layers)]
    batches = host_inputs(cfg, gen.n_latent, noise_shapes, 3)
    batches = [(torch.from_numpy(z), [torch.from_numpy(n) for n in noise]) for z, noise in batches]
    losses = []

    def step(z, noise):
        w = gen.mapping(z)
        img = gen(w[:, None].repeat(1, gen.n_latent, 1), noise)
        loss = F.softplus(-disc(img)).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss))

    first, times, cpu = time_steps(step, batches, cfg)
    return summary("torch", torch.__version__, torch.get_num_threads(), baseline, first, times, cpu, n_params, losses)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", choices=["torch"], default="torch")
    parser.add_argument("--config", required=True, help="JSON configuration from the driver")
    args = parser.parse_args()
    print("RESULT " + json.dumps(run_torch(json.loads(args.config))), flush=True)
    os._exit(0)


if __name__ == "__main__":
    main()
