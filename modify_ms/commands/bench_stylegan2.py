"""Benchmark one StyleGAN2 generator train step: MindSpore GRAPH_MODE vs the PyTorch reference.

Not a test: it prints figures for docs/BENCHMARKS.md. One step = z -> mapping ->
W+ -> synthesis (random noise drawn on the host) -> Discriminator -> non-saturating
G loss mean(softplus(-D(G(z)))) -> backward -> Adam update of the generator only
(D is frozen, as in a G step). Both sides use the same configuration, batch, inputs
and CPU thread count.

Each (framework, size) runs in its own fresh subprocess so that peak RSS
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) belongs to that run alone; the
baseline is the RSS right after importing the framework. The first step is reported
as "first step" (MindSpore: graph compilation + one step; PyTorch: allocator warm-up
+ one step), then the median of ``--steps`` timed steps after ``--warmup`` more.

    python tools/bench_stylegan2.py                       # 64 px and 256 px, small widths
    python tools/bench_stylegan2.py --sizes 64 --steps 5 --channel-max 32
    python tools/bench_stylegan2.py --markdown            # also print a Markdown table

torch is imported only inside the torch worker subprocess (it is the reference, from
tests/reference/stylegan2_ref.py, run as ``python -m tests.reference.bench_stylegan2_torch``
in the checkout); MindSpore never sees it.
"""
import argparse
import json
import os
import statistics
import sys
import time

from ..utils.bench import peak_rss_mib, print_table, rss_mib, worker_result, write_json
from . import REPO_ROOT

# Per-size defaults: small channel widths so the 256 px step fits a shared 2-core CPU.
DEFAULT_CHANNEL_MAX = {64: 64, 256: 32}
DEFAULT_STYLE_DIM = {64: 256, 256: 128}


def host_inputs(cfg, n_latent, noise_shapes, n_batches):
    """Pre-drawn z and per-layer noise (numpy, seeded) shared by both frameworks."""
    import numpy as np

    rng = np.random.default_rng(cfg["seed"])
    batches = []
    for _ in range(n_batches):
        z = rng.standard_normal((cfg["batch"], cfg["style_dim"]), dtype=np.float32)
        noise = [rng.standard_normal(s, dtype=np.float32) for s in noise_shapes]
        batches.append((z, noise))
    return batches


def time_steps(step, batches, cfg):
    """First step (compile/warm-up), then warmup steps, then the timed steps.

    Returns (first step wall s, [wall s], [process CPU s]): on a shared machine the CPU
    seconds of this process (all its threads) are steadier than wall time.
    """
    MARKS["built"] = rss_mib()
    t0 = time.perf_counter()
    step(*batches[0])
    first = time.perf_counter() - t0
    MARKS["after_first"] = rss_mib()
    MARKS["peak_after_first"] = peak_rss_mib()
    for i in range(cfg["warmup"]):
        step(*batches[(i + 1) % len(batches)])
    times, cpu = [], []
    for i in range(cfg["steps"]):
        t0, c0 = time.perf_counter(), time.process_time()
        step(*batches[i % len(batches)])
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return first, times, cpu


MARKS = {}  # RSS (MiB) at points of a worker's run, for the record


def summary(framework, version, threads, baseline, first, times, cpu, n_params, losses):
    return dict(framework=framework, version=version, threads=threads, baseline_mib=baseline,
                peak_mib=peak_rss_mib(), first_s=first, step_s=statistics.median(times),
                cpu_s=statistics.median(cpu), times=times, g_params=n_params, loss_first=losses[0],
                loss_last=losses[-1], onednn_isa=os.environ.get("ONEDNN_MAX_CPU_ISA", "default"),
                loadavg=os.getloadavg()[0], rss_marks=dict(MARKS, end=rss_mib()))


# ----------------------------------------------------------------------------- MindSpore worker
def run_mindspore(cfg):
    os.environ.setdefault("GLOG_v", "3")
    import numpy as np
    import mindspore as ms
    from mindspore import nn, ops

    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    ms.device_context.cpu.op_tuning.threads_num(cfg["threads"])
    if cfg.get("ms_memory"):  # e.g. "O1" or "O1,0.5GB,0.5GB": optimize level, pool init/increase size
        level, *sizes = cfg["ms_memory"].split(",")
        ms.runtime.set_memory(**dict(zip(("init_size", "increase_size"), sizes)), optimize_level=level)
    baseline = rss_mib()
    from modify_ms.models.stylegan2 import Discriminator, Generator

    np.random.seed(cfg["seed"])
    gen = Generator(cfg["size"], style_dim=cfg["style_dim"], n_mlp=cfg["n_mlp"],
                    channel_multiplier=cfg["channel_multiplier"], channel_max=cfg["channel_max"])
    disc = Discriminator(cfg["size"], channel_multiplier=cfg["channel_multiplier"], channel_max=cfg["channel_max"])
    disc.set_grad(False)
    for p in disc.get_parameters():
        p.requires_grad = False

    class GeneratorLoss(nn.Cell):
        """Non-saturating G loss through a frozen D."""

        def __init__(self, g, d):
            super().__init__()
            self.g, self.d = g, d

        def construct(self, z, *noise):
            img = self.g(self.g.mapping(z), noise)
            return ops.softplus(-self.d(img)).mean()

    g_params = [p for p in gen.trainable_params()]
    optimizer = nn.Adam(g_params, learning_rate=1e-4, beta1=0.9, beta2=0.999)
    train_step = nn.TrainOneStepCell(GeneratorLoss(gen, disc), optimizer)
    train_step.set_train()
    n_params = sum(int(np.prod(p.shape)) for p in g_params)

    batches = host_inputs(cfg, gen.n_latent, gen.noise_shapes(cfg["batch"]), 3)
    # Noise goes in as separate tensor arguments: a tuple argument is a compile-time constant
    # (every new noise tuple recompiles), and ms.mutable(tuple) runs ~3x slower per step.
    batches = [(ms.Tensor(z), tuple(ms.Tensor(n) for n in noise)) for z, noise in batches]
    losses = []

    def step(z, noise):
        losses.append(float(train_step(z, *noise).asnumpy()))  # asnumpy waits for the step to finish

    first, times, cpu = time_steps(step, batches, cfg)
    return summary("mindspore", ms.__version__, cfg["threads"], baseline, first, times, cpu, n_params, losses)


# ----------------------------------------------------------------------------- driver
def run_worker(framework, cfg, timeout, onednn_isa=None):
    module = "modify_ms.commands.bench_stylegan2" if framework == "mindspore" else "tests.reference.bench_stylegan2_torch"
    cmd = [sys.executable, "-m", module, "--worker", framework, "--config", json.dumps(cfg)]
    env = dict(os.environ, GLOG_v="3")
    if onednn_isa:  # otherwise: modify_ms.nn's default cap (MindSpore) / oneDNN's own choice (torch)
        env["ONEDNN_MAX_CPU_ISA"] = onednn_isa
    return worker_result(cmd, REPO_ROOT, framework, timeout, env)


def fmt_row(size, cfg, ms_res, pt_res):
    def ratio(a, b):
        return a / b if b else float("nan")

    return [
        f"{size}px cmax={cfg['channel_max']} S={cfg['style_dim']} B={cfg['batch']}",
        f"{ms_res['first_s']:.1f}", f"{pt_res['first_s']:.2f}",
        f"{ms_res['step_s']:.3f}", f"{pt_res['step_s']:.3f}", f"{ratio(ms_res['step_s'], pt_res['step_s']):.2f}",
        f"{ms_res['cpu_s']:.3f}", f"{pt_res['cpu_s']:.3f}", f"{ratio(ms_res['cpu_s'], pt_res['cpu_s']):.2f}",
        f"{ms_res['peak_mib']:.0f} ({ms_res['baseline_mib']:.0f})", f"{pt_res['peak_mib']:.0f} ({pt_res['baseline_mib']:.0f})",
        f"{ratio(ms_res['peak_mib'], pt_res['peak_mib']):.2f}",
        f"{ratio(ms_res['peak_mib'] - ms_res['baseline_mib'], pt_res['peak_mib'] - pt_res['baseline_mib']):.2f}",
    ]


HEADER = ["config", "MS first step s", "PT first step s", "MS step s", "PT step s", "step MS/PT",
          "MS CPU s/step", "PT CPU s/step", "CPU MS/PT",
          "MS peak MiB (base)", "PT peak MiB (base)", "peak MS/PT", "(peak-base) MS/PT"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="64,256", help="comma-separated resolutions (default 64,256)")
    p.add_argument("--channel-max", type=int, default=None,
                   help="channel cap for every size (default: 64 at 64 px, 32 at 256 px)")
    p.add_argument("--style-dim", type=int, default=None, help="style dim (default: 256 at 64 px, 128 at 256 px)")
    p.add_argument("--n-mlp", type=int, default=8)
    p.add_argument("--channel-multiplier", type=int, default=2)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=10, help="timed steps (median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps after the first one")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPU threads for both frameworks")
    p.add_argument("--frameworks", default="mindspore,torch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ms-onednn-isa", help="ONEDNN_MAX_CPU_ISA for the MindSpore worker (default: modify_ms.nn's AVX2 "
                   "cap; ALL measures MindSpore's own choice)")
    p.add_argument("--torch-fir", choices=("planes", "depthwise"), default="planes",
                   help="torch FIR filtering: the reference's (B*C, 1, H, W) planes (as rosinality's CPU "
                        "upfirdn2d_native) or one depthwise conv (faster torch)")
    p.add_argument("--ms-memory", help="mindspore.runtime.set_memory for the MindSpore worker: LEVEL[,INIT,INCREASE] "
                   "e.g. O1,0.5GB,0.5GB (default: MindSpore's O0, 2GB, 2GB)")
    p.add_argument("--pt-onednn-isa", help="ONEDNN_MAX_CPU_ISA for the PyTorch worker (default: unset)")
    p.add_argument("--timeout", type=int, default=1800, help="seconds per worker")
    p.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    p.add_argument("--json", help="write all raw results to this file")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--config", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        cfg = json.loads(args.config)
        result = run_mindspore(cfg)  # the torch worker is tests/reference/bench_stylegan2_torch.py
        print("RESULT " + json.dumps(result), flush=True)
        os._exit(0)  # skip MindSpore's exit-time Cell.__del__ noise

    frameworks = [f.strip() for f in args.frameworks.split(",") if f.strip()]
    rows, raw = [], []
    for size in [int(s) for s in args.sizes.split(",")]:
        cfg = dict(size=size, batch=args.batch, n_mlp=args.n_mlp, channel_multiplier=args.channel_multiplier,
                   channel_max=args.channel_max or DEFAULT_CHANNEL_MAX.get(size, 32),
                   style_dim=args.style_dim or DEFAULT_STYLE_DIM.get(size, 128),
                   steps=args.steps, warmup=args.warmup, threads=args.threads, seed=args.seed,
                   torch_fir=args.torch_fir, ms_memory=args.ms_memory)
        results = {}
        for fw in frameworks:
            print(f"[{size}px] {fw} ...", file=sys.stderr, flush=True)
            res = run_worker(fw, cfg, args.timeout, args.ms_onednn_isa if fw == "mindspore" else args.pt_onednn_isa)
            results[fw] = res
            print(f"[{size}px] {fw}: first {res['first_s']:.2f} s, step {res['step_s']:.3f} s "
                  f"(CPU {res['cpu_s']:.3f} s), oneDNN ISA {res['onednn_isa']}, load {res['loadavg']:.1f}, "
                  f"peak {res['peak_mib']:.0f} MiB (baseline {res['baseline_mib']:.0f}), threads {res['threads']}, "
                  f"G params {res['g_params']}, loss {res['loss_first']:.4f} -> {res['loss_last']:.4f}",
                  file=sys.stderr, flush=True)
        raw.append(dict(config=cfg, results=results))
        if "mindspore" in results and "torch" in results:
            rows.append(fmt_row(size, cfg, results["mindspore"], results["torch"]))
    print(f"torch FIR: {args.torch_fir}; threads: {args.threads} (MindSpore op threads_num, torch.set_num_threads); "
          f"steps: median of {args.steps} after {args.warmup} warm-up; batch {args.batch}")
    if rows:
        print_table(rows, False, HEADER)
        if args.markdown:
            print()
            print_table(rows, True, HEADER)
    if args.json:
        write_json(args.json, raw)


if __name__ == "__main__":
    main()
