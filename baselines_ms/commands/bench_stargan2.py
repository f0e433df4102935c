"""Benchmark StarGAN v2's training iteration: MindSpore GRAPH_MODE against a PyTorch version of the same iteration.

Not a test: it prints figures for docs/BENCHMARKS.md. One iteration is the official solver's
(BASELINES 6.1, w_hpf 0): D update with a mapped z, D update with a reference's style (each with
R1 by double backward), G+F+E update (latent: adversarial, style reconstruction, diversity,
cycle), G update (reference), EMA of G, F and E; Adam betas (0, 0.99), weight decay 1e-4.
MindSpore side: baselines_ms.stargan2's ``StarGAN2Updates`` (what ``StarGAN2Trainer.train_step``
runs per batch); PyTorch side: ``tests/reference/bench_stargan2_torch.py`` (the test reference's
``train_iteration``). Both get the same host batches (images, labels, z) and the same networks'
configuration; each framework runs in a fresh worker process with the same thread count and
ONEDNN_MAX_CPU_ISA (measurement machinery: modify_ms.commands.bench_modify's ``result``,
``time_stage1``, ``table_row``; CPU seconds per step beside wall time, as bench_baselines).

    python tools/bench_stargan2.py --size 64                 # narrow, quick
    python tools/bench_stargan2.py --size 256 --official     # the paper's networks (slow on a CPU)
"""
import argparse
import json
import os
import sys
import time

from modify_ms.commands import REPO_ROOT
from modify_ms.commands.bench_modify import HEADER, result, table_row, time_stage1
from modify_ms.utils.bench import median, print_table, rss_mib, worker_result, write_json

WORKLOAD = "stargan2"
NARROW = dict(style_dim=16, latent_dim=16, max_conv_dim=64, first_dim=16, hidden_dim=64)
OFFICIAL = dict(style_dim=64, latent_dim=16, max_conv_dim=512, first_dim=0, hidden_dim=512)


def host_batches(cfg, count=2):
    """``count`` batches {x_real, y_org, y_trg, x_ref, x_ref2, z_trg, z_trg2} drawn from cfg's seed."""
    import numpy as np

    rng = np.random.default_rng(cfg["seed"])
    b, s, k = cfg["batch"], cfg["size"], cfg["domains"]
    out = []
    for _ in range(count):
        img = lambda: rng.uniform(-1, 1, (b, 3, s, s)).astype(np.float32)
        out.append({"x_real": img(), "x_ref": img(), "x_ref2": img(),
                    "y_org": rng.integers(0, k, b).astype(np.int32), "y_trg": rng.integers(0, k, b).astype(np.int32),
                    "z_trg": rng.standard_normal((b, cfg["latent_dim"])).astype(np.float32),
                    "z_trg2": rng.standard_normal((b, cfg["latent_dim"])).astype(np.float32)})
    return out


def with_cpu_time(step, cpu_times):
    def timed(*args):
        t0 = time.process_time()
        step(*args)
        cpu_times.append(time.process_time() - t0)
    return timed


def run_mindspore(cfg, baseline):
    import dataclasses

    import mindspore as ms

    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_device("CPU")
    ms.device_context.cpu.op_tuning.threads_num(cfg["threads"])
    from baselines_ms.stargan2.config import StarGAN2Config, StarGAN2ModelConfig
    from baselines_ms.stargan2.networks import StarGAN2Nets
    from baselines_ms.stargan2.trainer import StarGAN2Updates

    model = StarGAN2ModelConfig(img_size=cfg["size"], w_hpf=0, **{k: cfg[k] for k in NARROW})
    sg = StarGAN2Config(model=model)
    sg = dataclasses.replace(sg, domains=sg.domains[:1] * cfg["domains"], domain_names=tuple(map(str, range(cfg["domains"]))))
    nets = StarGAN2Nets(model, cfg["domains"])
    nets.init_weights(cfg["seed"])
    updates = StarGAN2Updates(nets, sg)
    batches = host_batches(cfg)
    cpu = []
    counter = {"i": 0}

    def step(batch):
        record = updates(batch, batch["z_trg"], batch["z_trg2"], counter["i"])
        record["g_ref"].asnumpy()  # wait for the device
        counter["i"] += 1

    first, med, times = time_stage1(with_cpu_time(step, cpu), [(b,) for b in batches], cfg["steps"])
    return result("mindspore", ms.__version__, WORKLOAD, cfg, baseline, first, med, times,
                  {"cpu_s": median(cpu[1:])})


def worker(argv):
    """``python -m baselines_ms.commands.bench_stargan2 --worker CONFIG_JSON`` (the MindSpore side)."""
    cfg = json.loads(argv[0])
    baseline = rss_mib()
    print("RESULT " + json.dumps(run_mindspore(cfg, baseline)), flush=True)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=64, help="image size (a power of two >= 32)")
    p.add_argument("--official", action="store_true", help="the official widths (style 64, max_conv_dim 512, "
                                                            "first layer 2**14 / size, mapping 512 wide)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--domains", type=int, default=2)
    p.add_argument("--steps", type=int, default=5, help="timed iterations after the first")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--json", default="", help="also write the raw figures here")
    return p.parse_args(argv)


def main(argv=None):
    if argv is None and len(sys.argv) > 2 and sys.argv[1] == "--worker":
        return worker(sys.argv[2:])
    args = parse_args(argv)
    cfg = dict(size=args.size, batch=args.batch, domains=args.domains, steps=args.steps, threads=args.threads,
               seed=args.seed, **(OFFICIAL if args.official else NARROW))
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA=os.environ.get("ONEDNN_MAX_CPU_ISA", "AVX2"), GLOG_v="3")
    blob = json.dumps(cfg)
    ms_r = worker_result([sys.executable, "-m", "baselines_ms.commands.bench_stargan2", "--worker", blob],
                         REPO_ROOT, "MindSpore", env=env)
    pt_r = worker_result([sys.executable, "-m", "tests.reference.bench_stargan2_torch", blob],
                         REPO_ROOT, "PyTorch", env=env)
    widths = "official widths" if args.official else "narrow"
    label = f"stargan2 {args.size}px {widths} b{args.batch}"
    print_table([table_row(label, ms_r, pt_r)], args.markdown, HEADER)
    print(f"CPU s per iteration: MindSpore {ms_r['cpu_s']:.3f}, PyTorch {pt_r['cpu_s']:.3f}; "
          f"load average {os.getloadavg()[0]:.2f}; threads {args.threads}")
    if args.json:
        write_json(args.json, {"config": cfg, "mindspore": ms_r, "torch": pt_r})
    return 0


if __name__ == "__main__":
    main()
