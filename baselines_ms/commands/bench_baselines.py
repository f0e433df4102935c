"""Benchmark the baselines' training steps: MindSpore GRAPH_MODE against a PyTorch version of the same step.

Not a test: it prints figures for docs/BENCHMARKS.md. Two workloads, each in both frameworks:

* psp-unpaired: one ``UnpairedPSPTrainer.train_step`` at batch 4: the encoder update
  (x' = D(E(x)); 0.5 L2 + 0.8 LPIPS + 1 ArcFace ID between x and x', + 0.01 WGAN adv;
  Adam on E, the decoder frozen: yaml/baselines/psp_unpaired.yaml's assumptions), then
  the discriminator update with a batch of target images as real (WGAN + 10 x one-sided
  Lipschitz penalty on real/fake interpolates, double backward).
* jojogan: one fine-tuning step of JoJoGAN: W+ of the references with the style rows
  (7.. clipped to the generator's rows) replaced by mapping(z) (no gradient), G(W+) with
  random noise, the frozen discriminator's features (taps after convs 1, 3, 4, 5; the taps
  a small network lacks are dropped) of G's output and of the reference images (computed
  every step under no gradient, as the official notebook does), mean L1 over the taps,
  backward into G's synthesis network only, Adam lr 2e-3 betas (0, 0.99); the discriminator
  runs its convs up to the last tap only (JoJoGAN's feature-only network). MindSpore side:
  baselines_ms.jojogan's ``FineTuneLoss(DiscFeatureL1)`` under ``UpdateStep`` (what
  ``JoJoGANTrainer.train_step`` runs), or with ``--jojogan-cell pieces`` the same step built
  here from modify_ms pieces (``FeatureMatchLoss``); the result's ``code`` names which ran.

PyTorch side: ``tests/reference/bench_baselines_torch.py`` (the test references), run as
``python -m tests.reference.bench_baselines_torch``. The measurement machinery is
``modify_ms.commands.bench_modify``'s (each (framework, workload) in a fresh subprocess,
same configuration, same thread count, the same ONEDNN_MAX_CPU_ISA in both workers' environment,
peak RSS, compile time = first step - median step); this driver adds the CPU seconds per
step (``time.process_time``, all threads of the worker) and the load average.

    python tools/bench_baselines.py --size 64              # quick
    python tools/bench_baselines.py --size 256 --markdown  # the figure for the docs
"""
import argparse
import json
import os
import sys
import tempfile
import time

from modify_ms.commands import REPO_ROOT, repo_path
from modify_ms.commands.bench_modify import HEADER, host_images, narrow_overrides, result, table_row, time_stage1
from modify_ms.utils.bench import median, print_table, rss_mib, worker_result, write_json

WORKLOADS = ("psp-unpaired", "jojogan")
# yaml/baselines/psp_unpaired.yaml's (assumed) objective, optimizer and trained networks
PSP_LOSSES = dict(l2=0.5, lpips=0.8, id=1.0, adv=0.01)
PSP_ADV = dict(kind="wgan", gp_weight=10.0)
PSP_LR = 1e-4
# JoJoGAN (official notebook): Adam lr 2e-3, betas (0, 0.99); style rows 7.. of W+; D taps
JOJO_LR, JOJO_BETAS = 2e-3, (0.0, 0.99)
JOJO_FIRST_STYLE_ROW, JOJO_TAPS = 7, (1, 3, 4, 5)


def with_cpu_time(step, cpu_times):
    """``step`` that also appends this process's CPU seconds (all threads) per call to ``cpu_times``."""
    def timed(*args):
        t0 = time.process_time()
        step(*args)
        cpu_times.append(time.process_time() - t0)
    return timed


def jojo_rows_and_taps(size):
    """(swapped W+ rows, discriminator taps) of a ``size`` px network: the notebook's rows 7..17
    and taps (1, 3, 4, 5), dropping those a smaller network does not have."""
    log_size = size.bit_length() - 1
    n_latent, n_blocks = 2 * log_size - 2, log_size - 1  # D's convs: fromRGB + (log_size - 2) ResBlocks
    return (tuple(range(JOJO_FIRST_STYLE_ROW, n_latent)), tuple(t for t in JOJO_TAPS if t < n_blocks))


def jojo_host_inputs(cfg, n_latent):
    """The fixed reference images and their W+ codes (e4e's in the real pipeline), seeded for both frameworks."""
    import numpy as np

    refs = host_images(dict(cfg, seed=cfg["seed"] + 2), cfg["jojo_refs"], 1)[0]
    rng = np.random.default_rng(cfg["seed"] + 3)
    ref_w = (0.5 * rng.standard_normal((cfg["jojo_refs"], n_latent, cfg["style_dim"]))).astype(np.float32)
    return refs, ref_w


# ----------------------------------------------------------------------------- MindSpore worker
def psp_overrides(cfg, out_dir):
    """Overrides of yaml/baselines/psp_unpaired_quickstart.yaml: bench_modify's narrow networks,
    batch ``cfg['batch']`` for source and target, the paper config's losses, objective and trained nets."""
    s, b = cfg["size"], cfg["batch"]
    return narrow_overrides(cfg) + [
        f"model.generator.channel_multiplier={cfg['channel_multiplier']}",
        f"model.discriminator.channel_multiplier={cfg['channel_multiplier']}",
        f"target.size={s}", f"data.batch_size={b}", f"target.batch_size={b}", f"run.out_dir={out_dir}",
        "train=[encoder]", "losses.w_norm=0.0", f"optim.lr={PSP_LR}", "optim.beta1=0.9", "optim.beta2=0.999",
        f"adversarial.kind={PSP_ADV['kind']}", f"adversarial.gp_weight={PSP_ADV['gp_weight']}",
    ] + [f"losses.{k}={v}" for k, v in PSP_LOSSES.items()]


def run_psp_unpaired(cfg):
    import mindspore as ms
    from modify_ms.config import load_config

    from ..psp_unpaired.config import UnpairedPSPConfig
    from ..psp_unpaired.trainer import UnpairedPSPTrainer

    baseline = rss_mib()
    with tempfile.TemporaryDirectory() as tmp:
        run_cfg = load_config(repo_path("yaml", "baselines", "psp_unpaired_quickstart.yaml"), UnpairedPSPConfig,
                              psp_overrides(cfg, tmp))
        trainer = UnpairedPSPTrainer(run_cfg, tmp, log=lambda _m: None)
        n_params = sum(p.size for net in (trainer.nets.encoder, trainer.nets.discriminator)
                       for p in net.trainable_params())
        xs = host_images(cfg, cfg["batch"], 3)
        targets = host_images(dict(cfg, seed=cfg["seed"] + 1), cfg["batch"], 3)
        losses, d_losses, cpu = [], [], []

        def step(x, target):
            record = trainer.train_step(x, target)
            # asnumpy waits for both updates: the records stay on the device otherwise
            losses.append(float(record["loss"].asnumpy()))
            d_losses.append(float(record["d_loss"].asnumpy()))

        first, med, times = time_stage1(with_cpu_time(step, cpu), list(zip(xs, targets)), cfg["steps"])
    return result("mindspore", ms.__version__, "psp-unpaired", cfg, baseline, first, med, times,
                  dict(loss_first=losses[0], loss_last=losses[-1], d_loss_last=d_losses[-1], params=n_params,
                       cpu_s=median(cpu[1:]), code="baselines_ms.psp_unpaired.trainer.UnpairedPSPTrainer.train_step"))


def _feature_match_loss_cell():
    """:class:`FeatureMatchLoss`, defined on first use (no MindSpore import at module import)."""
    import mindspore as ms
    from mindspore import nn, ops

    class FeatureMatchLoss(nn.Cell):
        """JoJoGAN's objective from modify_ms pieces (used when baselines_ms.jojogan has no step
        cell): mean over the taps of mean |D_t(G(W+)) - D_t(refs)|, W+ the references' codes with
        ``rows`` replaced by mapping(z) (no gradient: the notebook's get_latent runs under no_grad),
        the refs' features without gradient, D's convs up to the last tap only (JoJoGAN's
        feature-only discriminator). Inputs in the order of JoJoGAN's FineTuneLoss."""

        def __init__(self, generator, discriminator, rows, taps):
            super().__init__()
            self.generator, self.discriminator, self.taps = generator, discriminator, taps
            mask = [[[r in rows] for r in range(generator.n_latent)]]
            self.rows_mask = ms.Tensor(mask, ms.bool_)  # [1, L, 1]

        def features(self, x):
            feats = ()
            for i, block in enumerate(self.discriminator.convs):
                if i <= self.taps[-1]:  # Python constants: the blocks past the last tap are not in the graph
                    x = block(x)
                    if i in self.taps:
                        feats = feats + (x,)
            return feats

        def construct(self, ref_w, refs, z, noise):
            w = ops.stop_gradient(self.generator.mapping(z)).expand_dims(1)     # [N, 1, S]
            w_plus = ops.where(self.rows_mask, ops.broadcast_to(w, ref_w.shape), ref_w)  # mix_alpha 0
            img = self.generator(w_plus, noise)
            loss = ops.zeros((), ms.float32)
            for fake, real in zip(self.features(img), self.features(refs)):
                loss = loss + ops.abs(fake - ops.stop_gradient(real)).mean()
            return loss / len(self.taps), ops.stop_gradient(img)

    return FeatureMatchLoss


def project_jojogan_cell():
    """(FineTuneLoss, DiscFeatureL1, synthesis_params) of baselines_ms.jojogan, or None where that
    package has no fine-tuning step cell (yet)."""
    try:
        from ..jojogan.networks import DiscFeatureL1, FineTuneLoss, synthesis_params
    except ImportError:
        return None
    return FineTuneLoss, DiscFeatureL1, synthesis_params


class _ParamList:
    """A parameter list as build_optimizer's cell argument (it optimises ``trainable_params()``)."""

    def __init__(self, params):
        self.params = list(params)

    def trainable_params(self):
        return list(self.params)


def jojogan_step(cfg):
    """(step(ref_w, refs, z, noise) -> loss Tensor, generator, trained parameter count, code name).

    ``cfg['jojo_cell']``: 'project' = baselines_ms.jojogan's FineTuneLoss(DiscFeatureL1) under
    UpdateStep (what JoJoGANTrainer.train_step runs), 'pieces' = the same step from modify_ms
    pieces (:class:`FeatureMatchLoss`), 'auto' = project when importable. Both with
    build_optimizer's Adam (beta1 = 0 as JoJoGAN's, through its nn.Adam workaround)."""
    from modify_ms.models.stylegan2 import Discriminator, Generator
    from modify_ms.train.config import OptimConfig
    from modify_ms.train.optim import build_optimizer
    from modify_ms.train.steps import UpdateStep

    rows, taps = cfg["jojo_rows"], cfg["jojo_taps"]
    generator = Generator(cfg["size"], cfg["style_dim"], cfg["n_mlp"], cfg["channel_multiplier"], cfg["channel_max"])
    discriminator = Discriminator(cfg["size"], cfg["channel_multiplier"], cfg["channel_max"])
    for p in list(discriminator.get_parameters()) + list(generator.style.get_parameters()):
        p.requires_grad = False  # D frozen; the mapping never receives a gradient (W+ input bypasses it)
    project = project_jojogan_cell() if cfg["jojo_cell"] != "pieces" else None
    if cfg["jojo_cell"] == "project" and project is None:
        raise RuntimeError("--jojogan-cell project: baselines_ms.jojogan has no fine-tuning step cell")
    if project is not None:
        FineTuneLoss, DiscFeatureL1, synthesis_params = project
        params = synthesis_params(generator)
        loss = FineTuneLoss(generator, DiscFeatureL1(discriminator), rows, 0.0)
        code = "baselines_ms.jojogan.networks.FineTuneLoss(DiscFeatureL1) + UpdateStep"
    else:
        params = generator.trainable_params()
        loss = _feature_match_loss_cell()(generator, discriminator, rows, taps)
        code = "FeatureMatchLoss + UpdateStep (modify_ms pieces)"
    beta1, beta2 = cfg["jojo_betas"]
    adam = build_optimizer(_ParamList(params), OptimConfig(lr=cfg["jojo_lr"], beta1=beta1, beta2=beta2))
    update = UpdateStep(loss, [(adam, params)])

    def step(ref_w, refs, z, noise):
        return update(ref_w, refs, z, noise)[0]

    return step, generator, sum(p.size for p in params), code


def run_jojogan(cfg):
    import numpy as np
    import mindspore as ms

    baseline = rss_mib()
    step_fn, generator, n_params, code = jojogan_step(cfg)
    refs, ref_w = jojo_host_inputs(cfg, generator.n_latent)
    refs, ref_w = ms.Tensor(refs), ms.Tensor(ref_w)
    rng = np.random.default_rng(cfg["seed"] + 4)
    n = cfg["jojo_refs"]
    losses, cpu = [], []

    def step():
        z = ms.Tensor(rng.standard_normal((n, cfg["style_dim"]), dtype=np.float32))
        losses.append(float(step_fn(ref_w, refs, z, generator.random_noise(n, rng)).asnumpy()))  # waits

    first, med, times = time_stage1(with_cpu_time(step, cpu), [()], cfg["jojo_steps"])
    return result("mindspore", ms.__version__, "jojogan", cfg, baseline, first, med, times,
                  dict(loss_first=losses[0], loss_last=losses[-1], params=n_params, cpu_s=median(cpu[1:]),
                       code=code))


def run_mindspore(workload, cfg):
    os.environ.setdefault("GLOG_v", "3")
    import mindspore as ms

    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    ms.device_context.cpu.op_tuning.threads_num(cfg["threads"])
    import modify_ms  # noqa: F401  (sets ONEDNN_MAX_CPU_ISA=AVX2 unless already set)

    return run_psp_unpaired(cfg) if workload == "psp-unpaired" else run_jojogan(cfg)


# ----------------------------------------------------------------------------- driver
def run_worker(framework, workload, cfg, timeout):
    if framework == "mindspore":
        cmd = [sys.executable, "-m", "baselines_ms.commands.bench_baselines", "--worker", workload,
               "--config", json.dumps(cfg)]
    else:
        cmd = [sys.executable, "-m", "tests.reference.bench_baselines_torch", workload, json.dumps(cfg)]
    if cfg.get("pin_core", -1) >= 0:  # the whole worker (every thread it starts) on one core
        cmd = ["taskset", "-c", str(cfg["pin_core"])] + cmd
    env = dict(os.environ, GLOG_v="3", ONEDNN_MAX_CPU_ISA=cfg["onednn_isa"])
    return worker_result(cmd, REPO_ROOT, f"{framework} {workload}", timeout, env)


CPU_HEADER = ["MS CPU s/step", "PT CPU s/step", "CPU MS/PT"]


def cpu_columns(ms_r, pt_r):
    return [f"{ms_r['cpu_s']:.3f}", f"{pt_r['cpu_s']:.3f}",
            f"{ms_r['cpu_s'] / pt_r['cpu_s']:.2f}" if pt_r["cpu_s"] else "nan"]


def workload_label(workload, cfg):
    if workload == "psp-unpaired":
        return f"{cfg['size']} px unpaired-pSp step B={cfg['batch']} (E + Dis updates)"
    return f"{cfg['size']} px JoJoGAN fine-tuning step, {cfg['jojo_refs']} ref(s)"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=256, help="generator = loss resolution (64 for a quick run)")
    p.add_argument("--workloads", default=",".join(WORKLOADS))
    p.add_argument("--batch", type=int, default=4, help="unpaired-pSp batch (source and target)")
    p.add_argument("--steps", type=int, default=3, help="timed unpaired-pSp steps after the first")
    p.add_argument("--jojo-refs", type=int, default=1, help="JoJoGAN reference images (its batch; one-shot: 1)")
    p.add_argument("--jojo-steps", type=int, default=5, help="timed JoJoGAN steps after the first")
    p.add_argument("--jojogan-cell", choices=("auto", "project", "pieces"), default="auto",
                   help="MindSpore JoJoGAN step: baselines_ms.jojogan's cell (auto: when it exists) "
                        "or one built from modify_ms pieces")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads for both frameworks (1 = fair on 2 shared cores)")
    p.add_argument("--channel-max", type=int, default=32)
    p.add_argument("--style-dim", type=int, default=64)
    p.add_argument("--n-mlp", type=int, default=2)
    p.add_argument("--channel-multiplier", type=int, default=1, help="2 with --channel-max 512: config-f's widths")
    p.add_argument("--onednn-isa", default="AVX2", help="ONEDNN_MAX_CPU_ISA for both workers")
    p.add_argument("--pin-core", type=int, default=-1,
                   help="run each worker under taskset on this core (MindSpore's runtime runs independent "
                        "kernels on more threads than threads_num; -1: no pinning)")
    p.add_argument("--timeout", type=int, default=3600)
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--json", help="also write all results to this file")
    p.add_argument("--worker", choices=WORKLOADS, help=argparse.SUPPRESS)
    p.add_argument("--config", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def bench_config(args):
    """The configuration both workers get: bench_modify's narrow networks plus this tool's workloads."""
    rows, taps = jojo_rows_and_taps(args.size)
    return dict(size=args.size, batch=args.batch, steps=args.steps, threads=args.threads,
                channel_max=args.channel_max, style_dim=args.style_dim, n_mlp=args.n_mlp,
                channel_multiplier=args.channel_multiplier,
                enc_channels=(16, 16, 32, 32), enc_units=(1, 1, 1, 1), id_channels=(16, 16, 16, 32),
                id_units=(1, 1, 1, 1), xi=4, remap_layers=2, seed=0, onednn_isa=args.onednn_isa,
                psp_losses=PSP_LOSSES, psp_adv=PSP_ADV, psp_lr=PSP_LR,
                jojo_refs=args.jojo_refs, jojo_steps=args.jojo_steps, jojo_lr=JOJO_LR, jojo_betas=JOJO_BETAS,
                jojo_rows=rows, jojo_taps=taps, jojo_cell=args.jojogan_cell, pin_core=args.pin_core)


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(run_mindspore(args.worker, json.loads(args.config))), flush=True)
        return 0
    cfg = bench_config(args)
    load_start = os.getloadavg()
    rows, results = [], {}
    for workload in args.workloads.split(","):
        res = {fw: run_worker(fw, workload, cfg, args.timeout) for fw in ("mindspore", "torch")}
        results[workload] = res
        rows.append(table_row(workload_label(workload, cfg), res["mindspore"], res["torch"])
                    + cpu_columns(res["mindspore"], res["torch"]))
        for fw, r in res.items():
            print(f"# {workload} {fw} {r['version']} ({r['code']}): first {r['first_s']:.2f} s, times "
                  f"{[round(t, 3) for t in r['times']]}, CPU {r['cpu_s']:.3f} s/step, loss {r['loss_first']:.4f} -> "
                  f"{r['loss_last']:.4f}, trained params {r['params']}, load avg {r['loadavg']:.2f}, "
                  f"ISA {r['onednn_isa']}", flush=True)
    print(f"Baseline steps, {args.size} px, generator channel_max {args.channel_max} style_dim {args.style_dim} "
          f"n_mlp {args.n_mlp} channel multiplier {args.channel_multiplier}, encoder channels {cfg['enc_channels']} "
          f"units {cfg['enc_units']}, "
          f"LPIPS alex, JoJoGAN rows {list(cfg['jojo_rows'])} taps {list(cfg['jojo_taps'])}, "
          f"{args.threads} thread(s) each{f' pinned to core {args.pin_core}' if args.pin_core >= 0 else ''}, "
          f"random weights, load avg (1/5/15 min) at start "
          f"{'/'.join(f'{v:.1f}' for v in load_start)}, at end {'/'.join(f'{v:.1f}' for v in os.getloadavg())}")
    print_table(rows, args.markdown, HEADER + CPU_HEADER)
    if args.json:
        write_json(args.json, dict(config=cfg, results=results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
