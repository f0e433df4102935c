"""Benchmark BlendGAN's training step: MindSpore GRAPH_MODE against a PyTorch version of the same step.

Not a test: it prints figures for docs/BENCHMARKS.md. The step (baselines_ms.blendgan.trainer's
``GeneratorLoss`` and ``DiscriminatorLoss`` under ``UpdateStep``, what ``BlendGANTrainer.gan_step``
runs between its lazy regularisers): G's update from one synthesis pass over [face (i = L);
stylized (i = 0, z_s); stylized (i = 0, z_s^-)] and the three non-saturating terms of D_face,
D_style and D_style_latent, Adam lr 2e-3 betas (0, 0.99) on G without its frozen style encoder;
then the three discriminators' update (logistic terms on real faces / real art / (art, z_s) vs the
three fakes). R1, the path-length penalty and the EMA run every few steps in training and are not
timed here. PyTorch side: ``tests/reference/bench_blendgan_torch.py`` (the test reference). Each
framework runs in a fresh subprocess with the same sizes, threads and ONEDNN_MAX_CPU_ISA
(bench_baselines' machinery: peak RSS, CPU seconds per step, compile = first - median step).

    python tools/bench_blendgan.py --size 64              # quick
    python tools/bench_blendgan.py --size 256 --markdown  # the figure for the docs
"""
import argparse
import json
import os
import sys

from baselines_ms.commands.bench_baselines import CPU_HEADER, cpu_columns, with_cpu_time
from modify_ms.commands import REPO_ROOT
from modify_ms.commands.bench_modify import HEADER, host_images, result, table_row, time_stage1
from modify_ms.utils.bench import print_table, rss_mib, worker_result, write_json

LR, BETAS = 2e-3, (0.0, 0.99)


def host_codes(cfg, count):
    """Seeded (z_f, z_s, z_s^-) per step, shared by both frameworks."""
    import numpy as np

    rng = np.random.default_rng(cfg["seed"] + 1)
    b, s = cfg["batch"], cfg["style_dim"]
    return [tuple(rng.standard_normal((b, s)).astype(np.float32) for _ in range(3)) for _ in range(count)]


def blendgan_config(cfg):
    from baselines_ms.blendgan.config import BlendGANConfig
    from modify_ms.config import load_config

    s = cfg["size"]
    items = [f"model.generator.size={s}", f"model.generator.style_dim={cfg['style_dim']}",
             f"model.generator.n_mlp={cfg['n_mlp']}", f"model.generator.channel_max={cfg['channel_max']}",
             f"model.generator.channel_multiplier={cfg['channel_multiplier']}",
             f"model.discriminator.channel_max={cfg['channel_max']}",
             f"model.discriminator.channel_multiplier={cfg['channel_multiplier']}",
             f"model.style_encoder.vgg_widths={list(cfg['vgg_widths'])}", f"model.style_encoder.input_size={s}",
             f"data.size={s}", f"target.size={s}", f"data.batch_size={cfg['batch']}", f"target.batch_size={cfg['batch']}"]
    return load_config(os.path.join(REPO_ROOT, "yaml", "baselines", "blendgan_quickstart.yaml"), BlendGANConfig, items)


def run_mindspore(cfg):
    os.environ.setdefault("GLOG_v", "3")
    import numpy as np
    import mindspore as ms

    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    ms.device_context.cpu.op_tuning.threads_num(cfg["threads"])
    import modify_ms  # noqa: F401  (ONEDNN_MAX_CPU_ISA)
    from baselines_ms.blendgan.trainer import BlendNets, DiscriminatorLoss, GeneratorLoss, _Params
    from modify_ms.train.common import seed_everything
    from modify_ms.train.config import OptimConfig
    from modify_ms.train.optim import build_optimizer
    from modify_ms.train.steps import UpdateStep

    bcfg = blendgan_config(cfg)
    seed_everything(cfg["seed"])
    baseline = rss_mib()
    nets = BlendNets(bcfg)
    g = nets.generator
    embedder = {id(p) for p in g.embedder.get_parameters()}
    g_params = [p for p in g.trainable_params() if id(p) not in embedder]
    d_params = [p for d in (nets.d_face, nets.d_style, nets.d_style_latent) for p in d.trainable_params()]
    optim = OptimConfig(lr=LR, beta1=BETAS[0], beta2=BETAS[1])
    g_step = UpdateStep(GeneratorLoss(nets), [(build_optimizer(_Params(g_params), optim), g_params)])
    d_step = UpdateStep(DiscriminatorLoss(nets), [(build_optimizer(_Params(d_params), optim), d_params)])
    n = cfg["steps"] + 1
    faces, arts = host_images(cfg, cfg["batch"], n), host_images(dict(cfg, seed=cfg["seed"] + 2), cfg["batch"], n)
    codes = host_codes(cfg, n)
    rng = np.random.default_rng(cfg["seed"])
    cutoff = ms.Tensor(g.n_latent, ms.int32)
    losses, cpu = [], []

    def step(face, art, z_f, z_s, z_n):
        noise = g.generator.random_noise(3 * cfg["batch"], rng)
        zs, zn = ms.Tensor(z_s), ms.Tensor(z_n)
        g_loss, _, fakes = g_step(ms.Tensor(z_f), ms.Tensor(z_f), cutoff, zs, zn, noise)
        d_loss, _ = d_step(ms.Tensor(face), ms.Tensor(art), zs, *fakes, zn)
        losses.append(float(g_loss.asnumpy()) + float(d_loss.asnumpy()))

    batches = [(faces[i], arts[i]) + codes[i] for i in range(n)]
    first, med, times = time_stage1(with_cpu_time(step, cpu), batches, cfg["steps"])
    return result("mindspore", ms.__version__, "blendgan", cfg, baseline, first, med, times,
                  dict(cpu_s=sorted(cpu[1:])[len(cpu[1:]) // 2], loss_first=losses[0], loss_last=losses[-1],
                       params=len(g_params) + len(d_params), code="baselines_ms.blendgan.trainer"))


def run_worker(framework, cfg, timeout):
    if framework == "mindspore":
        cmd = [sys.executable, "-m", "baselines_ms.commands.bench_blendgan", "--worker", "--config", json.dumps(cfg)]
    else:
        cmd = [sys.executable, "-m", "tests.reference.bench_blendgan_torch", json.dumps(cfg)]
    if cfg.get("pin_core", -1) >= 0:
        cmd = ["taskset", "-c", str(cfg["pin_core"])] + cmd
    env = dict(os.environ, GLOG_v="3", ONEDNN_MAX_CPU_ISA=cfg["onednn_isa"])
    return worker_result(cmd, REPO_ROOT, f"{framework} blendgan", timeout, env)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=3, help="timed steps after the first")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--channel-max", type=int, default=32)
    p.add_argument("--channel-multiplier", type=int, default=1)
    p.add_argument("--style-dim", type=int, default=64)
    p.add_argument("--n-mlp", type=int, default=2)
    p.add_argument("--vgg-widths", default="8,16,32,32,32", help="the style encoder's VGG-19 stage widths")
    p.add_argument("--onednn-isa", default="AVX2")
    p.add_argument("--pin-core", type=int, default=-1)
    p.add_argument("--timeout", type=int, default=3600)
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--json")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--config", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(run_mindspore(json.loads(args.config))), flush=True)
        return 0
    cfg = dict(size=args.size, batch=args.batch, steps=args.steps, threads=args.threads, channel_max=args.channel_max,
               channel_multiplier=args.channel_multiplier, style_dim=args.style_dim, n_mlp=args.n_mlp,
               vgg_widths=[int(w) for w in args.vgg_widths.split(",")], seed=0, onednn_isa=args.onednn_isa,
               lr=LR, betas=BETAS, pin_core=args.pin_core)
    load_start = os.getloadavg()
    res = {fw: run_worker(fw, cfg, args.timeout) for fw in ("mindspore", "torch")}
    for fw, r in res.items():
        print(f"# blendgan {fw} {r['version']} ({r['code']}): first {r['first_s']:.2f} s, times "
              f"{[round(t, 3) for t in r['times']]}, CPU {r['cpu_s']:.3f} s/step, loss {r['loss_first']:.4f} -> "
              f"{r['loss_last']:.4f}, trained params {r['params']}, load avg {r['loadavg']:.2f}", flush=True)
    label = f"{args.size} px BlendGAN step B={args.batch} (G + 3 D updates)"
    print(f"BlendGAN GAN step, {args.size} px, channel_max {args.channel_max} style_dim {args.style_dim} n_mlp "
          f"{args.n_mlp} channel multiplier {args.channel_multiplier}, VGG widths {cfg['vgg_widths']}, "
          f"{args.threads} thread(s) each{f' pinned to core {args.pin_core}' if args.pin_core >= 0 else ''}, random "
          f"weights, load avg at start {'/'.join(f'{v:.1f}' for v in load_start)}, at end "
          f"{'/'.join(f'{v:.1f}' for v in os.getloadavg())}")
    print_table([table_row(label, res["mindspore"], res["torch"]) + cpu_columns(res["mindspore"], res["torch"])],
                args.markdown, HEADER + CPU_HEADER)
    if args.json:
        write_json(args.json, dict(config=cfg, results=res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
