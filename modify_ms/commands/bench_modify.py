"""Benchmark MODIFY's training steps: MindSpore GRAPH_MODE against the PyTorch reference, side by side.

Not a test: it prints figures for docs/BENCHMARKS.md. Two workloads, each in both frameworks:

* stage1: one ``Stage1Trainer.train_step`` with the phase-1 weights (l2 0.8, lpips 0.8,
  id 1, adv_r 0.1; E and D trained), batch 4: y -> E -> W+ -> decoder -> y_r; L2 + LPIPS
  + ArcFace ID + logistic adv; backward; Adam on E and D; then one discriminator update
  (logistic loss + 10 * one-sided Lipschitz GP on real/fake interpolates, double backward).
* tta: test-time adaptation of one photo, ``Stage2Model.reset`` then 50 ``update`` calls
  at batch 1 (E' update with l2 0.5, lpips 0.8, id 1, adv 0.01, then the Dis update
  against the frozen teacher D(E(x))), timed as a whole. Run twice: the first run
  includes graph compilation (MindSpore) / warm-up (PyTorch), the second is the figure.

PyTorch side: ``tests/reference/bench_modify_torch.py`` (the test references: stylegan2_ref,
irse_ref, lpips_ref, identity_ref), run as ``python -m tests.reference.bench_modify_torch``.
Each (framework, workload) runs in its own fresh subprocess, so its peak RSS
(``ru_maxrss``) is its own; base = RSS after importing the framework. Both get the same
configuration (narrow networks, random weights), the same thread count
(MindSpore ``op_tuning.threads_num``, ``torch.set_num_threads``) and the same
ONEDNN_MAX_CPU_ISA (AVX2 unless --onednn-isa says otherwise; ``import modify_ms`` sets
it for MindSpore, the driver sets it in both workers' environment).

    python tools/bench_modify.py --size 64              # quick
    python tools/bench_modify.py --size 256 --markdown  # the figure for the docs

``--memory`` (MindSpore only, docs/memory.md): the peak of one stage-1 generator-side step and
of one discriminator step, each in its own fresh worker, recompute off and on (``run.recompute``,
train.memory). The step cell is compiled first; "run peak" is the peak RSS (VmHWM, reset through
/proc/self/clear_refs) of its first run above the RSS after compiling; "compile" what compiling
added, "built nets" what the built trainer added to the imported framework. ``--recompute``
runs the timed workloads with recompute on.

    python tools/bench_modify.py --memory --size 64 --markdown
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

from ..utils.bench import peak_rss_mb, peak_rss_mib, print_table, rss_mib, worker_result, write_json
from . import REPO_ROOT, repo_path

WORKLOADS = ("stage1", "tta", "memory")
MEMORY_STEPS = ("g", "d")  # --memory: the generator-side step cell, the discriminator step cell
# the stage-1 timing and --memory measure the paper's first 150k iterations (E and D trained, y_r
# only, discriminator step), as the PyTorch worker does: the quickstart's own phases are L2 only
PAPER_PHASE1 = ("phases=[{steps: 10, weights: {l2: 0.8, lpips: 0.8, id: 1.0, adv_r: 0.1, swap: 0.0, adv_z: 0.0},"
                " train: [encoder, decoder]}]")


def narrow_overrides(cfg):
    """Stage-1 config overrides of the narrow benchmark configuration (on top of yaml/quickstart.yaml)."""
    s = cfg["size"]
    return [f"model.generator.size={s}", f"model.loss_size={s}", f"data.size={s}",
            f"model.generator.channel_max={cfg['channel_max']}", f"model.generator.style_dim={cfg['style_dim']}",
            f"model.generator.n_mlp={cfg['n_mlp']}", f"model.discriminator.channel_max={cfg['channel_max']}",
            f"model.encoder.channels={list(cfg['enc_channels'])}", f"model.encoder.units={list(cfg['enc_units'])}",
            f"model.loss_nets.identity_channels={list(cfg['id_channels'])}",
            f"model.loss_nets.identity_units={list(cfg['id_units'])}",
            f"model.remap.xi={cfg['xi']}", f"model.remap.n_layers={cfg['remap_layers']}",
            "run.compile_cache=false", "weights.require=false",
            "weights.generator=", "weights.encoder="]  # random weights: the quickstart's prior is 64 px


def host_images(cfg, batch, count):
    """Seeded images in [-1, 1] shared by both frameworks."""
    import numpy as np

    rng = np.random.default_rng(cfg["seed"])
    s = cfg["size"]
    return [rng.uniform(-1, 1, (batch, 3, s, s)).astype(np.float32) for _ in range(count)]


def result(framework, version, workload, cfg, baseline, first_s, step_s, times, extra=None):
    out = dict(framework=framework, version=version, workload=workload, threads=cfg["threads"],
               baseline_mib=baseline, peak_mib=peak_rss_mib(), first_s=first_s, step_s=step_s,
               compile_s=max(first_s - step_s, 0.0), times=times, end_mib=rss_mib(),
               onednn_isa=os.environ.get("ONEDNN_MAX_CPU_ISA", "default"), loadavg=os.getloadavg()[0])
    out.update(extra or {})
    return out


def time_stage1(step, batches, steps):
    """(first step s, median of ``steps`` more steps s, [step s])."""
    t0 = time.perf_counter()
    step(*batches[0])
    first = time.perf_counter() - t0
    times = []
    for i in range(steps):
        t0 = time.perf_counter()
        step(*batches[(i + 1) % len(batches)])
        times.append(time.perf_counter() - t0)
    return first, statistics.median(times), times


def time_tta(adapt, x, n_steps, runs=2):
    """Each run: reset + ``n_steps`` updates on x, timed as a whole. Returns (first run s, last run s, [run s])."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        adapt(x, n_steps)
        times.append(time.perf_counter() - t0)
    return times[0], times[-1], times


# ----------------------------------------------------------------------------- MindSpore worker
def run_mindspore(workload, cfg):
    os.environ.setdefault("GLOG_v", "3")
    import mindspore as ms

    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    ms.device_context.cpu.op_tuning.threads_num(cfg["threads"])
    import modify_ms  # noqa: F401  (sets ONEDNN_MAX_CPU_ISA=AVX2 unless already set)
    from modify_ms.config import load_config
    from modify_ms.train.config import Stage1Config, Stage2Config
    from modify_ms.train.stage1 import Stage1Trainer
    from modify_ms.train.common import save_loss_nets, write_resolved_config

    baseline = rss_mib()
    quiet = lambda _m: None  # noqa: E731
    with tempfile.TemporaryDirectory() as tmp:
        s1_dir = os.path.join(tmp, "stage1")
        s1_cfg = load_config(repo_path("yaml", "quickstart.yaml"), Stage1Config,
                             narrow_overrides(cfg) + [f"run.out_dir={s1_dir}", f"data.batch_size={cfg['batch']}",
                                                      f"run.recompute={cfg.get('recompute', False)}"]
                             + ([PAPER_PHASE1] if workload in ("memory", "stage1") else []))
        trainer = Stage1Trainer(s1_cfg, s1_dir, log=quiet)
        n_params = sum(p.size for p in trainer.nets.trainable_params())
        if workload == "memory":
            built = rss_mib() - baseline  # the networks, loss networks and optimizers
            return dict(step_peak(trainer, cfg), framework="mindspore", version=ms.__version__, params=n_params,
                        built_mib=built, loadavg=os.getloadavg()[0])
        if workload == "stage1":
            ys = host_images(cfg, cfg["batch"], 3)
            reals = host_images(dict(cfg, seed=cfg["seed"] + 1), cfg["batch"], 3)
            losses = []

            def step(y, y_real):
                # asnumpy waits for the step: the loop copies at log intervals only, a timing must not
                losses.append(float(trainer.train_step(y, y_real)["loss"].asnumpy()))

            first, med, times = time_stage1(step, list(zip(ys, reals)), cfg["steps"])
            return result("mindspore", ms.__version__, workload, cfg, baseline, first, med, times,
                          dict(loss_first=losses[0], loss_last=losses[-1], params=n_params))
        # tta: a stage-1 run directory (random weights) for Stage2Model to start from
        trainer.save()
        write_resolved_config(s1_cfg, s1_dir)
        save_loss_nets(trainer.loss_nets, s1_dir)  # stage 2 loads exactly stage 1's loss networks
        trainer = None  # stage 1's networks go before stage 2 builds its own
        from modify_ms.train.stage2 import Stage2Model

        s2_yaml = os.path.join(tmp, "stage2.yaml")
        with open(s2_yaml, "w", encoding="utf-8") as fh:
            fh.write("{}\n")
        s2_cfg = load_config(s2_yaml, Stage2Config, [f"stage1={s1_dir}", "mode=test-time",
                                                  f"run.out_dir={os.path.join(tmp, 'stage2')}",
                                                  "run.compile_cache=false"])
        model = Stage2Model(s2_cfg, os.path.join(tmp, "stage2"), log=quiet)
        x = host_images(cfg, 1, 1)[0]
        losses = []

        def adapt(x, n):
            model.reset(seed_key=0)
            for _ in range(n):
                losses.append(float(model.update(x)["loss"].asnumpy()))  # waits for the update

        first, last, times = time_tta(adapt, x, cfg["tta_steps"])
        return result("mindspore", ms.__version__, workload, cfg, baseline, first, last, times,
                      dict(loss_first=losses[0], loss_last=losses[-1], params=n_params))


def reset_peak_rss():
    """Restart VmHWM at the current RSS (Linux: 5 > /proc/self/clear_refs)."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def step_peak(trainer, cfg):
    """Peak memory of one stage-1 step cell (cfg['step']: 'g' generator side, 'd' discriminator) run
    once after its compilation: {compile_mib: RSS added by compiling, run_mib: peak RSS while it
    runs above the RSS after compiling, step_s}. The discriminator step gets seeded images as its
    fakes (its cost does not depend on their values), so no generator step runs in its process."""
    import numpy as np
    import mindspore as ms

    g_step, d_step = trainer.phase_cells(0)
    y, y_real = host_images(cfg, cfg["batch"], 2)
    if cfg["step"] == "g":
        batch, rng = cfg["batch"], np.random.default_rng(cfg["seed"])
        noise = trainer.nets.decoder.random_noise(batch, rng)
        z = ms.Tensor(rng.standard_normal((batch, trainer.nets.remap_net.z_dim)).astype("float32"))
        cell, args = g_step, (ms.Tensor(y), z, noise, noise)
    else:
        alpha = ms.Tensor(np.full((cfg["batch"], 1, 1, 1), 0.5, np.float32))
        cell, args = d_step, (ms.Tensor(y_real), ms.mutable((ms.Tensor(y),)), alpha)
    before = rss_mib()
    cell.compile(*args)
    compiled = rss_mib()
    reset_peak_rss()
    t0 = time.perf_counter()
    cell(*args)
    ms.runtime.synchronize()
    return dict(step=cfg["step"], recompute=cfg.get("recompute", False), compile_mib=compiled - before,
                run_mib=peak_rss_mb() - compiled, step_s=time.perf_counter() - t0)


def run_memory(args, cfg):
    """--memory: one fresh worker per (step, recompute); prints the table and returns the results."""
    results = []
    for step in MEMORY_STEPS:
        for recompute in (False, True):
            r = run_worker("mindspore", "memory", dict(cfg, step=step, recompute=recompute), args.timeout)
            results.append(r)
            print(f"# {step} recompute={recompute}: {json.dumps(r)}", flush=True)
    rows = [[f"{'generator-side' if r['step'] == 'g' else 'discriminator'} step", "on" if r["recompute"] else "off",
             f"{r['run_mib']:.0f}", f"{r['compile_mib']:.0f}", f"{r['built_mib']:.0f}", f"{r['step_s']:.2f}"]
            for r in results]
    print(f"stage-1 step memory, {args.size} px, batch {args.batch}, generator channel_max {args.channel_max}, "
          f"MindSpore {results[0]['version']} GRAPH_MODE CPU, {results[0]['params']} trainable params")
    print_table(rows, args.markdown, ["step cell", "recompute", "run peak MiB", "compile MiB", "built nets MiB",
                                      "first run s"])
    return results


# ----------------------------------------------------------------------------- driver
def run_worker(framework, workload, cfg, timeout):
    if framework == "mindspore":
        cmd = [sys.executable, "-m", "modify_ms.commands.bench_modify", "--worker", workload, "--config", json.dumps(cfg)]
    else:
        cmd = [sys.executable, "-m", "tests.reference.bench_modify_torch", workload, json.dumps(cfg)]
    env = dict(os.environ, GLOG_v="3", ONEDNN_MAX_CPU_ISA=cfg["onednn_isa"])
    return worker_result(cmd, REPO_ROOT, f"{framework} {workload}", timeout, env)


HEADER = ["workload", "MS compile s", "PT warm-up s", "MS step s", "PT step s", "step MS/PT",
          "MS peak MiB (base)", "PT peak MiB (base)", "peak MS/PT", "(peak-base) MS/PT"]


def table_row(label, ms_r, pt_r):
    def ratio(a, b):
        return f"{a / b:.2f}" if b else "nan"

    return [label, f"{ms_r['compile_s']:.1f}", f"{pt_r['compile_s']:.2f}", f"{ms_r['step_s']:.3f}",
            f"{pt_r['step_s']:.3f}", ratio(ms_r["step_s"], pt_r["step_s"]),
            f"{ms_r['peak_mib']:.0f} ({ms_r['baseline_mib']:.0f})", f"{pt_r['peak_mib']:.0f} ({pt_r['baseline_mib']:.0f})",
            ratio(ms_r["peak_mib"], pt_r["peak_mib"]),
            ratio(ms_r["peak_mib"] - ms_r["baseline_mib"], pt_r["peak_mib"] - pt_r["baseline_mib"])]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=256, help="generator = loss resolution (64 for a quick run)")
    p.add_argument("--workloads", default="stage1,tta")
    p.add_argument("--batch", type=int, default=4, help="stage-1 batch (test-time adaptation is batch 1)")
    p.add_argument("--steps", type=int, default=3, help="timed stage-1 steps after the first")
    p.add_argument("--tta-steps", type=int, default=50)
    p.add_argument("--threads", type=int, default=1, help="CPU threads for both frameworks (1 = fair on 2 shared cores)")
    p.add_argument("--channel-max", type=int, default=32)
    p.add_argument("--style-dim", type=int, default=64)
    p.add_argument("--n-mlp", type=int, default=2)
    p.add_argument("--onednn-isa", default="AVX2", help="ONEDNN_MAX_CPU_ISA for both workers")
    p.add_argument("--timeout", type=int, default=3600)
    p.add_argument("--memory", action="store_true", help="MindSpore step-cell memory, recompute off and on "
                   "(docs/memory.md) instead of the timed workloads")
    p.add_argument("--recompute", action="store_true", help="the timed workloads with run.recompute on")
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--json", help="also write all results to this file")
    p.add_argument("--worker", choices=WORKLOADS, help=argparse.SUPPRESS)
    p.add_argument("--config", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(run_mindspore(args.worker, json.loads(args.config))), flush=True)
        return 0
    cfg = dict(size=args.size, batch=args.batch, steps=args.steps, tta_steps=args.tta_steps, threads=args.threads,
               channel_max=args.channel_max, style_dim=args.style_dim, n_mlp=args.n_mlp, channel_multiplier=1,
               enc_channels=(16, 16, 32, 32), enc_units=(1, 1, 1, 1), id_channels=(16, 16, 16, 32),
               id_units=(1, 1, 1, 1), xi=4, remap_layers=2, seed=0, onednn_isa=args.onednn_isa,
               lr_stage1=1e-3, lr_stage2=1e-4, adv_kind="logistic", gp_weight=10.0, recompute=args.recompute)
    if args.memory:
        results = run_memory(args, cfg)
        if args.json:
            write_json(args.json, dict(config=cfg, results=results))
        return 0
    rows, results = [], {}
    for workload in args.workloads.split(","):
        res = {fw: run_worker(fw, workload, cfg, args.timeout) for fw in ("mindspore", "torch")}
        results[workload] = res
        label = (f"stage-1 step B={args.batch}" if workload == "stage1"
                 else f"test-time adaptation, {args.tta_steps} steps B=1 (whole run)")
        rows.append(table_row(label, res["mindspore"], res["torch"]))
        for fw, r in res.items():
            print(f"# {workload} {fw} {r['version']}: first {r['first_s']:.2f} s, times "
                  f"{[round(t, 3) for t in r['times']]}, loss {r['loss_first']:.4f} -> {r['loss_last']:.4f}, "
                  f"trainable params {r['params']}, load avg {r['loadavg']:.2f}, ISA {r['onednn_isa']}", flush=True)
    print(f"MODIFY steps, {args.size} px, generator channel_max {args.channel_max} style_dim {args.style_dim} "
          f"n_mlp {args.n_mlp}, encoder channels {cfg['enc_channels']} units {cfg['enc_units']}, "
          f"LPIPS alex, {args.threads} thread(s) each, random weights")
    print_table(rows, args.markdown, HEADER)
    if args.json:
        write_json(args.json, dict(config=cfg, results=results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
