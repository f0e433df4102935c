"""Benchmark: pSp encoder + LPIPS + ArcFace identity loss, forward/backward/Adam at 256x256.

MindSpore GRAPH_MODE against the PyTorch reference (tests/reference, torch is only
imported there, in its own process), side by side. Each framework runs in a fresh
subprocess so its peak resident memory (VmHWM, native allocations included) is its own.

The step: codes = E(x); loss = mean((codes - w)^2) + LPIPS_alex(y, x) + ID(y, x);
gradients w.r.t. the encoder's parameters and the image y; Adam on the encoder.
(That is the encoder-side work of a MODIFY step without the generator.)

    python tools/bench_encoder.py [--batch 1] [--steps 5] [--size 256]
"""
import argparse
import json
import os
import sys
import time

from ..utils.bench import median, peak_rss_mb, worker_result
from . import REPO_ROOT


def run_mindspore(args):
    os.environ.setdefault("GLOG_v", "3")
    import numpy as np
    import mindspore as ms
    from mindspore import Tensor, nn

    from modify_ms.losses.identity import IdentityLoss
    from modify_ms.losses.lpips import LPIPS
    from modify_ms.models.psp_encoder import GradualStyleEncoder

    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_device("CPU")
    encoder = GradualStyleEncoder(n_styles=18, input_size=args.size)
    lpips, identity = LPIPS("alex"), IdentityLoss(args.size)

    class Loss(nn.Cell):
        def __init__(self):
            super().__init__()
            self.encoder, self.lpips, self.identity = encoder, lpips, identity

        def construct(self, x, y, w):
            codes = self.encoder(x)
            return ((codes - w) ** 2).mean() + self.lpips(y, x) + self.identity(y, x)

    loss_net = Loss()
    loss_net.set_train(True)
    weights = encoder.trainable_params()
    optimizer = nn.Adam(weights, learning_rate=1e-4)
    grad_fn = ms.value_and_grad(loss_net, grad_position=1, weights=weights)

    @ms.jit
    def step(x, y, w):
        loss, (grad_y, grads) = grad_fn(x, y, w)
        optimizer(grads)
        return loss, grad_y

    rng = np.random.default_rng(0)
    b, s = args.batch, args.size
    x = Tensor(rng.uniform(-1, 1, (b, 3, s, s)).astype(np.float32))
    y = Tensor(rng.uniform(-1, 1, (b, 3, s, s)).astype(np.float32))
    w = Tensor(rng.standard_normal((b, 18, 512)).astype(np.float32))
    t0 = time.perf_counter()
    loss, _ = step(x, y, w)
    loss.asnumpy()
    first = time.perf_counter() - t0
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        loss, gy = step(x, y, w)
        loss.asnumpy()
        times.append(time.perf_counter() - t0)
    return first, times, float(loss.asnumpy())


def child_result(first, times, loss):
    step = median(times)
    return {"compile_s": max(first - step, 0.0), "first_step_s": first, "step_s": step, "loss": loss,
            "peak_rss_mb": peak_rss_mb()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--child", choices=["mindspore"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(child_result(*run_mindspore(args))), flush=True)
        return 0
    common = ["--batch", str(args.batch), "--steps", str(args.steps), "--size", str(args.size)]
    commands = {"mindspore": [sys.executable, "-m", "modify_ms.commands.bench_encoder", "--child", "mindspore"] + common,
                "torch": [sys.executable, "-m", "tests.reference.bench_encoder_torch"] + common}
    results = {}
    for name, cmd in commands.items():
        try:
            results[name] = worker_result(cmd, REPO_ROOT, name)
        except RuntimeError as exc:
            print(f"{name}: failed ({exc})", file=sys.stderr)
            return 1
    ms_r, pt_r = results["mindspore"], results["torch"]
    print(f"encoder (pSp IR-SE50, 18 rows) + LPIPS alex + ArcFace ID, fwd+bwd+Adam, "
          f"batch {args.batch}, {args.size}x{args.size}, median of {args.steps} steps, {os.cpu_count()} CPUs")
    print(f"{'':16}{'MindSpore GRAPH':>18}{'PyTorch':>12}{'MS/PT':>8}")
    for key, label in [("step_s", "step (s)"), ("compile_s", "compile (s)"), ("peak_rss_mb", "peak RSS (MB)")]:
        ratio = ms_r[key] / pt_r[key] if pt_r[key] else float("nan")
        print(f"{label:16}{ms_r[key]:>18.2f}{pt_r[key]:>12.2f}{ratio:>8.2f}")
    print(f"loss (random weights, not comparable across frameworks): {ms_r['loss']:.4f} / {pt_r['loss']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
