"""Benchmark: FID feature extraction throughput (images/s) at 299x299 on CPU, MindSpore vs PyTorch.

The pytorch-fid pipeline ([0,1] images -> bilinear resize to 299 -> [-1,1] -> Inception-v3
pool features, 2048-d) with random weights in the FID layout. MindSpore runs
``modify_ms.eval.InceptionFeatureExtractor`` in GRAPH_MODE; PyTorch runs the reference
from tests/reference/inception_ref.py (torch is only imported there, in its own process).
Each side runs in a fresh subprocess and reports the median batch time.

    python tools/bench_fid.py [--batch 8] [--batches 5] [--size 299] [--no-isa-cap]

``--no-isa-cap`` leaves oneDNN at its default instruction set; by default both sides run
with ONEDNN_MAX_CPU_ISA=AVX2 (what tools/evaluate.py sets: on AVX-512/AMX CPUs MindSpore's
plain-layout float32 convolutions otherwise take a ~60x slower oneDNN path).
"""
import argparse
import json
import os
import sys
import time

from ..utils.bench import median, peak_rss_mb, worker_result
from . import REPO_ROOT


def child_result(first, times, batch):
    step = median(times)
    return {"first_batch_s": first, "batch_s": step, "images_per_s": batch / step,
            "compile_s": max(first - step, 0.0), "peak_rss_mb": peak_rss_mb()}


def run_mindspore(args):
    os.environ.setdefault("GLOG_v", "3")
    import numpy as np
    import mindspore as ms

    from modify_ms.eval.inception import InceptionFeatureExtractor, InceptionV3

    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    if args.threads:
        ms.set_context(runtime_num_threads=args.threads)
    extractor = InceptionFeatureExtractor(InceptionV3("fid"))
    images = ms.Tensor(np.random.default_rng(0).random((args.batch, 3, args.size, args.size)).astype(np.float32))
    t0 = time.perf_counter()
    extractor(images).asnumpy()
    first = time.perf_counter() - t0
    times = []
    for _ in range(args.batches):
        t0 = time.perf_counter()
        extractor(images).asnumpy()
        times.append(time.perf_counter() - t0)
    return first, times, args.batch


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--size", type=int, default=299, help="input side before the resize to 299")
    parser.add_argument("--threads", type=int, default=0,
                        help="intra-op threads for both sides (default: each framework's own choice); on a "
                             "shared, busy machine 1 avoids thread oversubscription")
    parser.add_argument("--no-isa-cap", action="store_true", help="do not set ONEDNN_MAX_CPU_ISA=AVX2")
    parser.add_argument("--child", choices=["mindspore"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(child_result(*run_mindspore(args))), flush=True)
        return 0
    env = dict(os.environ)
    if args.no_isa_cap:
        env.pop("ONEDNN_MAX_CPU_ISA", None)
    else:
        env.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")
    common = ["--batch", str(args.batch), "--batches", str(args.batches), "--size", str(args.size),
              "--threads", str(args.threads)]
    commands = {"mindspore": [sys.executable, "-m", "modify_ms.commands.bench_fid", "--child", "mindspore"] + common,
                "torch": [sys.executable, "-m", "tests.reference.bench_fid_torch"] + common}
    results = {}
    for name, cmd in commands.items():
        try:
            results[name] = worker_result(cmd, REPO_ROOT, name, env=env)
        except RuntimeError as exc:
            print(f"{name}: failed ({exc})", file=sys.stderr)
            return 1
    ms_r, pt_r = results["mindspore"], results["torch"]
    isa = env.get("ONEDNN_MAX_CPU_ISA", "default")
    threads = args.threads or "default"
    print(f"FID Inception-v3 features (pytorch-fid layout), {args.size}px input -> 299, batch {args.batch}, "
          f"median of {args.batches} batches, {os.cpu_count()} CPUs, threads {threads}, ONEDNN_MAX_CPU_ISA={isa}")
    print(f"load average during the run: {' '.join(f'{x:.1f}' for x in os.getloadavg())} "
          "(other processes share these CPUs: compare the two columns, not absolute numbers across runs)")
    print(f"{'':18}{'MindSpore GRAPH':>18}{'PyTorch':>12}{'MS/PT':>8}")
    for key, label in [("images_per_s", "images/s"), ("batch_s", "batch (s)"), ("compile_s", "compile (s)"),
                       ("peak_rss_mb", "peak RSS (MB)")]:
        ratio = ms_r[key] / pt_r[key] if pt_r[key] else float("nan")
        print(f"{label:18}{ms_r[key]:>18.3f}{pt_r[key]:>12.3f}{ratio:>8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
