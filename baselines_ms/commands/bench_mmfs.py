"""Benchmark MMFS's one-shot fine-tuning step and its inference: MindSpore GRAPH_MODE against PyTorch.

Not a test: it prints figures for docs/BENCHMARKS.md. Two workloads, each in a fresh worker per
framework (bench_baselines' machinery: peak RSS above the process's baseline, CPU seconds per step,
compile = first - median step):

* ``step``: one phase-4 update (BASELINES 5.1, exp/sp2pII-phase4.yaml) from an image prompt (one-shot;
  the zero-shot step is the same without the projection term): ``prompting.FewShotLoss`` under
  ``UpdateStep``, as ``PromptTuning.step`` runs it: fake = Stylizer(photos, clip_mapper(prompt
  feature), fresh noise) (mapper frozen, its dropout on); loss = 0.5 L_ST(fake, photos) (DINO keys'
  self-similarity) + 1.0 L_CLIP (direction from the batch's mean CLIP embedding to the prompt's) + 100
  L_PROJ (4th-block CLIP tokens on the prompt's token basis); gradients w.r.t. decoder0..4b /
  to_rgb0..4 only; Adam lr 2e-4 betas (0.9, 0.999) (FewShotConfig's values). The EMA (0.99) after
  each step is not timed.
* ``inference``: the render path: the prompt's w+ once (eval-mode mapper), then Stylizer(photos,
  w+, fresh noise), no gradients.

Random weights on both sides (the costs do not depend on the values; the losses are therefore not
comparable across frameworks). The prompt feature and the projection basis are host constants, as
they are once per prompt in MMFS.

Presets: ``small`` (64 px, narrow Stylizer, style_dim 64, tiny DINO/CLIP stand-ins of the real
architecture) and ``real`` (512 px, the official Stylizer, DINO ViT-B/8 at 224, CLIP ViT-B/32).
PyTorch side: ``tests/reference/bench_mmfs_torch.py`` (the test references mmfs_ref, mmfs_clip_ref,
vit_ref; torch.optim.Adam).

    python tools/bench_mmfs.py --preset small --pin-core 1
    python tools/bench_mmfs.py --preset real --steps 2 --markdown
"""
import argparse
import json
import os
import sys

from baselines_ms.commands.bench_baselines import CPU_HEADER, cpu_columns, with_cpu_time
from modify_ms.commands import REPO_ROOT
from modify_ms.commands.bench_modify import HEADER, host_images, reset_peak_rss, result, table_row, time_stage1
from modify_ms.utils.bench import median, peak_rss_mb, print_table, rss_mib, worker_result, write_json

WORKLOADS = ("step", "inference")
PRESETS = {
    "small": dict(size=64, ngf=16, style_dim=64, n_mlp=2, channel_multiplier=1, channel_max=64,
                  mapper=dict(n_layers=4, n_heads=4, ff_dim=128),
                  dino=dict(patch_size=16, width=64, layers=2, heads=2),
                  clip=dict(patch_size=32, width=64, layers=4, heads=2)),
    "real": dict(size=512, ngf=64, style_dim=512, n_mlp=8, channel_multiplier=2, channel_max=512,
                 mapper=dict(n_layers=4, n_heads=8, ff_dim=2048),
                 dino=dict(patch_size=8, width=768, layers=12, heads=12),
                 clip=dict(patch_size=32, width=768, layers=12, heads=12)),
}
VIT_INPUT = 224          # both DINO (Resize(224) of a square) and CLIP see 224 x 224
PROJECTION_LAYERS = 4    # MMFS's token projection reads CLIP's 4th block


def few_shot_phase():
    """FewShotConfig's defaults: lr, betas and the three loss weights (no MindSpore import)."""
    from baselines_ms.mmfs.config import FewShotConfig

    return FewShotConfig()


def host_prompt(cfg):
    """A seeded unit prompt feature [1, style_dim] (CLIP's embedding width = the mapper's)."""
    import numpy as np

    v = np.random.default_rng(cfg["seed"] + 3).standard_normal((1, cfg["style_dim"]))
    return (v / np.linalg.norm(v)).astype(np.float32)


def host_basis(cfg):
    """A seeded orthonormal token basis [clip width, r], r = min(width, patches) (the prompt's SVD in MMFS)."""
    import numpy as np

    width = cfg["clip"]["width"]
    r = min(width, (VIT_INPUT // cfg["clip"]["patch_size"]) ** 2)
    return np.linalg.qr(np.random.default_rng(cfg["seed"] + 4).standard_normal((width, r)))[0].astype(np.float32)


def noise_shapes(cfg, batch):
    """The Stylizer's 9 noise maps (decoder0 at S/16, then a and b per resolution up to S)."""
    s = cfg["size"]
    res = [s // 2 ** (4 - k) for k in range(5)]
    return [(batch, 1, res[0], res[0])] + [(batch, 1, r, r) for r in res[1:] for _ in range(2)]


def host_noise(cfg, count):
    """Fresh noise per step, seeded, the same for both frameworks."""
    import numpy as np

    rng = np.random.default_rng(cfg["seed"] + 5)
    return [[rng.standard_normal(sh).astype(np.float32) for sh in noise_shapes(cfg, cfg["batch"])]
            for _ in range(count)]


def restart_peak_after_first(step, first_peak):
    """``step`` that restarts the kernel's peak RSS (VmHWM) after its first call (compilation /
    warm-up), so that ``peak_rss_mb()`` at the end is the peak of the later steps alone."""
    def wrapped(*args):
        step(*args)
        if not first_peak:
            first_peak.append(peak_rss_mb())
            reset_peak_rss()
    return wrapped


def timed_result(framework, version, workload, cfg, baseline, step, inputs, extra):
    """time_stage1 over ``step`` with CPU seconds and the steady-state peak (after the first step)."""
    cpu, first_peak = [], []
    first, med, times = time_stage1(with_cpu_time(restart_peak_after_first(step, first_peak), cpu), inputs,
                                    cfg["steps"])
    return result(framework, version, workload, cfg, baseline, first, med, times,
                  dict(extra, cpu_s=median(cpu[1:]), steady_peak_mib=peak_rss_mb()))


# ----------------------------------------------------------------------------- MindSpore worker
def build_mindspore(cfg):
    """(stylizer, DINO ViT, CLIP image tower) of the preset, random weights."""
    from baselines_ms.mmfs.config import ClipMapperConfig, StylizerConfig
    from baselines_ms.mmfs.networks import Stylizer
    from modify_ms.models.clip import ClipConfig, ClipVisual
    from modify_ms.models.dino import DinoConfig, dino_vit

    mp, d, c = cfg["mapper"], cfg["dino"], cfg["clip"]
    scfg = StylizerConfig(size=cfg["size"], ngf=cfg["ngf"], style_dim=cfg["style_dim"], n_mlp=cfg["n_mlp"],
                          channel_multiplier=cfg["channel_multiplier"], channel_max=cfg["channel_max"],
                          clip_mapper=ClipMapperConfig(dim=cfg["style_dim"], **mp))
    scfg.validate()
    stylizer = Stylizer(scfg, noise_seed=cfg["seed"])
    dino = dino_vit(DinoConfig(image_size=VIT_INPUT, patch_size=d["patch_size"], width=d["width"],
                               layers=d["layers"], heads=d["heads"]), input_size=(VIT_INPUT, VIT_INPUT))
    visual = ClipVisual(ClipConfig(embed_dim=cfg["style_dim"], image_resolution=VIT_INPUT, vision_layers=c["layers"],
                                   vision_width=c["width"], vision_patch_size=c["patch_size"],
                                   vision_heads=c["heads"]))
    return stylizer, dino, visual


def one_shot_loss(cfg, stylizer, dino, visual):
    """prompting.FewShotLoss (the phase-4 loss cell) for an image prompt: the directional loss with the
    batch source and the token projection on the host basis; (photos, feature, target, noise) inputs."""
    from baselines_ms.mmfs.prompting import FewShotLoss
    from modify_ms.losses.clip_losses import DirectionalClipLoss, TokenProjectionLoss
    from modify_ms.losses.structure import DinoStructureLoss

    phase = few_shot_phase()
    size = (cfg["size"], cfg["size"])
    return FewShotLoss(stylizer, DinoStructureLoss(dino, size), DirectionalClipLoss(visual, size, True),
                       TokenProjectionLoss(visual, size, host_basis(cfg), PROJECTION_LAYERS),
                       (phase.lambda_st, phase.lambda_clip, phase.lambda_proj))


def run_mindspore(workload, cfg):
    os.environ.setdefault("GLOG_v", "3")
    import mindspore as ms

    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    ms.device_context.cpu.op_tuning.threads_num(cfg["threads"])
    import modify_ms  # noqa: F401  (ONEDNN_MAX_CPU_ISA)
    from baselines_ms.blendgan.trainer import _Params
    from baselines_ms.mmfs.networks import decoder_trained
    from modify_ms.train.common import seed_everything
    from modify_ms.train.optim import build_optimizer
    from modify_ms.train.steps import UpdateStep

    seed_everything(cfg["seed"])
    baseline = rss_mib()
    stylizer, dino, visual = build_mindspore(cfg)
    params = [p for p in stylizer.trainable_params() if decoder_trained(p.name)]
    n = cfg["steps"] + 1
    photos, noises = host_images(cfg, cfg["batch"], n), host_noise(cfg, n)
    prompt = ms.Tensor(host_prompt(cfg))
    losses = []
    if workload == "step":
        for name, p in stylizer.parameters_and_names():
            p.requires_grad = decoder_trained(name)
        stylizer.clip_mapper.set_train(True)  # dropout on, as PromptTuning (the mapper's weights frozen)
        optim = build_optimizer(_Params(params), few_shot_phase().optim())
        update = UpdateStep(one_shot_loss(cfg, stylizer, dino, visual), [(optim, params)])

        def step(x, noise):
            loss, _, _ = update(ms.Tensor(x), prompt, prompt, ms.mutable(tuple(ms.Tensor(a) for a in noise)))
            losses.append(float(loss.asnumpy()))
    else:  # the render path: the prompt's w+ once (eval-mode mapper), then the Stylizer
        styles = ms.Tensor(stylizer.styles_from_clip(ms.Tensor(host_prompt(cfg).repeat(cfg["batch"], 0))).asnumpy())

        def step(x, noise):
            out = stylizer(ms.Tensor(x), styles, ms.mutable(tuple(ms.Tensor(a) for a in noise)))
            losses.append(float(out.asnumpy().mean()))

    out = timed_result("mindspore", ms.__version__, workload, cfg, baseline, step, list(zip(photos, noises)),
                       dict(params=len(params), code="baselines_ms.mmfs.prompting.FewShotLoss"))
    return dict(out, loss_first=losses[0], loss_last=losses[-1])


# ----------------------------------------------------------------------------- driver
STEADY_HEADER = ["MS peak after 1st step MiB", "PT peak after 1st step MiB", "ratio"]


def steady_columns(ms_r, pt_r):
    a, b = ms_r["steady_peak_mib"], pt_r["steady_peak_mib"]
    return [f"{a:.0f}", f"{b:.0f}", f"{a / b:.2f}" if b else "nan"]


def run_worker(framework, workload, cfg, timeout):
    if framework == "mindspore":
        cmd = [sys.executable, "-m", "baselines_ms.commands.bench_mmfs", "--worker", workload,
               "--config", json.dumps(cfg)]
    else:
        cmd = [sys.executable, "-m", "tests.reference.bench_mmfs_torch", workload, json.dumps(cfg)]
    if cfg.get("pin_core", -1) >= 0:
        cmd = ["taskset", "-c", str(cfg["pin_core"])] + cmd
    env = dict(os.environ, GLOG_v="3", ONEDNN_MAX_CPU_ISA=cfg["onednn_isa"])
    return worker_result(cmd, REPO_ROOT, f"{framework} mmfs {workload}", timeout, env)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default="small")
    p.add_argument("--workloads", default="step,inference")
    p.add_argument("--batch", type=int, default=1, help="photos per step (the official fine-tuning uses 1)")
    p.add_argument("--steps", type=int, default=3, help="timed steps after the first")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--onednn-isa", default="AVX2")
    p.add_argument("--pin-core", type=int, default=-1, help="taskset both workers to this core")
    p.add_argument("--timeout", type=int, default=3600)
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--json")
    p.add_argument("--worker", choices=WORKLOADS, help=argparse.SUPPRESS)
    p.add_argument("--config", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(run_mindspore(args.worker, json.loads(args.config))), flush=True)
        return 0
    workloads = [w for w in args.workloads.split(",") if w]
    bad = [w for w in workloads if w not in WORKLOADS]
    if bad:
        print(f"bench_mmfs: unknown workload {bad[0]!r} (choose from {', '.join(WORKLOADS)})", file=sys.stderr)
        return 2
    phase = few_shot_phase()
    cfg = dict(PRESETS[args.preset], preset=args.preset, batch=args.batch, steps=args.steps, threads=args.threads,
               seed=0, onednn_isa=args.onednn_isa, pin_core=args.pin_core, lr=phase.lr, betas=list(phase.betas),
               weights=[phase.lambda_st, phase.lambda_clip, phase.lambda_proj])
    load_start = os.getloadavg()
    rows, results = [], {}
    for w in workloads:
        res = {fw: run_worker(fw, w, cfg, args.timeout) for fw in ("mindspore", "torch")}
        results[w] = res
        for fw, r in res.items():
            print(f"# mmfs {w} {fw} {r['version']}: first {r['first_s']:.2f} s, times "
                  f"{[round(t, 3) for t in r['times']]}, CPU {r['cpu_s']:.3f} s/step, peak {r['peak_mib']:.0f} MiB "
                  f"(after the first step {r['steady_peak_mib']:.0f}), trained params {r['params']}, "
                  f"load avg {r['loadavg']:.2f}", flush=True)
        label = (f"{cfg['size']} px MMFS {'one-shot step' if w == 'step' else 'inference'} B={args.batch} "
                 f"({args.preset})")
        rows.append(table_row(label, res["mindspore"], res["torch"]) + cpu_columns(res["mindspore"], res["torch"])
                    + steady_columns(res["mindspore"], res["torch"]))
    pin = f" pinned to core {args.pin_core}" if args.pin_core >= 0 else ""
    print(f"MMFS one-shot fine-tuning step / inference, preset {args.preset} ({json.dumps(PRESETS[args.preset])}), "
          f"{args.threads} thread(s) each{pin}, random weights, load avg at start "
          f"{'/'.join(f'{v:.1f}' for v in load_start)}, at end {'/'.join(f'{v:.1f}' for v in os.getloadavg())}")
    print_table(rows, args.markdown, HEADER + CPU_HEADER + STEADY_HEADER)
    if args.json:
        write_json(args.json, dict(config=cfg, results=results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
