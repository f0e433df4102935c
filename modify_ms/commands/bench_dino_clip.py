"""Benchmark MMFS's fine-tuning losses on the real-size frozen networks: MindSpore GRAPH_MODE against PyTorch.

Not a test: it prints figures for docs/BENCHMARKS.md. One workload, the per-step loss cost of MMFS's
image-prompt fine-tuning (phase 4): for a batch of generated images x ([-1, 1], ``--size``) and inputs y,

    0.5 L_ST(x, y)  (DINO ViT-B/8 at 224, last block's keys)
  + 1.0 L_CLIP(x, y) (CLIP ViT-B/32, source = the batch's mean real embedding)
  + 100 L_PROJ(x)   (CLIP tokens after block 4, projected on a 49-token prompt basis)

and its gradient w.r.t. x (the networks frozen), with random weights of the real sizes. The PyTorch
side is ``tests/reference/bench_dino_clip_torch.py`` (the test references), each framework in a fresh
process (``modify_ms.utils.bench.worker_result``): same batch, size, steps, thread settings.

    python tools/bench_dino_clip.py --size 256 --steps 3
"""
import argparse
import json
import os
import sys
import time

import numpy as np

from . import REPO_ROOT
from ..utils.bench import median, peak_rss_mb, worker_result

WEIGHTS = {"st": 0.5, "clip": 1.0, "proj": 100.0}  # exp/sp2pII-phase4.yaml


def child_result(first, times, loss):
    step = median(times)
    return {"compile_s": max(first - step, 0.0), "first_step_s": first, "step_s": step, "loss": loss,
            "peak_rss_mb": peak_rss_mb()}


def run_mindspore(args):
    import mindspore as ms
    from mindspore import nn

    from ..losses.clip_losses import DirectionalClipLoss, TokenProjectionLoss
    from ..losses.structure import DinoStructureLoss
    from ..models.clip import CLIP
    from ..models.dino import dino_vit

    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_seed(0)
    size = (args.size, args.size)
    clip = CLIP()
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.standard_normal((768, 49)))[0].astype(np.float32)

    class Objective(nn.Cell):
        def __init__(self):
            super().__init__()
            self.st = DinoStructureLoss(dino_vit(input_size=(224, 224)), size)
            self.clip = DirectionalClipLoss(clip.visual, size, source_from_batch=True)
            self.proj = TokenProjectionLoss(clip.visual, size, basis)

        def construct(self, x, y, prompt):
            return (WEIGHTS["st"] * self.st(x, y) + WEIGHTS["clip"] * self.clip(x, y, prompt)
                    + WEIGHTS["proj"] * self.proj(x))

    step_fn = ms.value_and_grad(Objective(), grad_position=0)
    x = ms.Tensor(rng.uniform(-1, 1, (args.batch, 3) + size).astype(np.float32))
    y = ms.Tensor(rng.uniform(-1, 1, (args.batch, 3) + size).astype(np.float32))
    prompt = rng.standard_normal((1, 512))
    prompt = ms.Tensor((prompt / np.linalg.norm(prompt)).astype(np.float32))

    def step():
        loss, grad = step_fn(x, y, prompt)
        grad.asnumpy()
        return float(loss.asnumpy())

    t0 = time.perf_counter()
    step()
    first = time.perf_counter() - t0
    times, loss = [], None
    for _ in range(args.steps):
        t0 = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - t0)
    return first, times, loss


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--child", choices=["mindspore"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(child_result(*run_mindspore(args))), flush=True)
        return 0
    common = ["--batch", str(args.batch), "--steps", str(args.steps), "--size", str(args.size)]
    commands = {"mindspore": [sys.executable, "-m", "modify_ms.commands.bench_dino_clip", "--child", "mindspore"]
                + common, "torch": [sys.executable, "-m", "tests.reference.bench_dino_clip_torch"] + common}
    results = {}
    for name, cmd in commands.items():
        try:
            results[name] = worker_result(cmd, REPO_ROOT, name)
        except RuntimeError as exc:
            print(f"{name}: failed ({exc})", file=sys.stderr)
            return 1
    ms_r, pt_r = results["mindspore"], results["torch"]
    print(f"MMFS fine-tuning losses (0.5 DINO-B/8 structure + CLIP-B/32 direction + 100 token projection), "
          f"value and d/dx, batch {args.batch}, {args.size}x{args.size}, median of {args.steps} steps, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print(f"{'':16}{'MindSpore GRAPH':>18}{'PyTorch':>12}{'MS/PT':>8}")
    for key, label in [("step_s", "step (s)"), ("compile_s", "compile (s)"), ("peak_rss_mb", "peak RSS (MB)")]:
        ratio = ms_r[key] / pt_r[key] if pt_r[key] else float("nan")
        print(f"{label:16}{ms_r[key]:>18.2f}{pt_r[key]:>12.2f}{ratio:>8.2f}")
    print(f"loss (random weights, not comparable across frameworks): {ms_r['loss']:.4f} / {pt_r['loss']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
