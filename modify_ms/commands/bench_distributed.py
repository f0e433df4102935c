"""Stage-1 throughput of one process against N msrun workers on the same global batch (prints, asserts nothing).

    python tools/bench_distributed.py [--workers 2] [--batch 4] [--steps 30] [--warmup 10] [--config yaml/quickstart.yaml]
                                      [--set key=value ...]

Runs ``tools/train_modify.py`` twice on ``--config`` (the quickstart by default): one process at
batch ``--batch``, then ``msrun --worker_num=N`` at batch ``--batch / N`` per worker (the same
global batch and samples), each for ``--steps`` steps with a log line per step, and reports
images per second over the steps after ``--warmup`` (compilation and warm-up excluded) from
each run's metrics.jsonl, with the wall time of each command. Run folders go to a temporary
directory, removed afterwards.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

from . import repo_path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train(prefix, config, run_dir, batch, steps, log_dir, extra=()):
    """Run stage 1 for ``steps`` steps; returns the wall seconds (images/s are read from metrics.jsonl)."""
    sets = list(extra) + [f"run.out_dir={run_dir}", f"data.batch_size={batch}", "run.log_every=1", f"run.sample_every={10 ** 6}",
            f"run.ckpt_every={10 ** 6}", "run.compile_cache=false"]
    cmd = prefix + [repo_path("tools", "train_modify.py"), "--config", config, "--max-steps", str(steps)]
    cmd += [a for s in sets for a in ("--set", s)]
    start = time.perf_counter()
    with open(os.path.join(log_dir, "stdout.log"), "a", encoding="utf-8") as out:
        subprocess.run(cmd, check=True, stdout=out, stderr=subprocess.STDOUT, cwd=repo_path())
    return time.perf_counter() - start


def images_per_second(run_dir, global_batch, warmup):
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as fh:
        secs = [json.loads(line)["sec"] for line in fh if '"loss"' in line]
    timed = secs[warmup:]
    return global_batch * len(timed) / sum(timed), len(timed)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4, help="global batch (divisible by --workers)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=10, help="first steps left out of the rate")
    parser.add_argument("--config", default=repo_path("yaml", "quickstart.yaml"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config overrides for both runs")
    args = parser.parse_args(argv)
    if args.batch % args.workers or args.steps <= args.warmup:
        parser.error("--batch must be divisible by --workers and --steps larger than --warmup")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        single = os.path.join(tmp, "single")
        wall = train([sys.executable], args.config, single, args.batch, args.steps, tmp, args.set)
        rows.append(("1 process", args.batch, wall, *images_per_second(single, args.batch, args.warmup)))
        multi = os.path.join(tmp, "msrun")
        prefix = ["msrun", f"--worker_num={args.workers}", f"--local_worker_num={args.workers}",
                  f"--master_port={free_port()}", f"--log_dir={os.path.join(tmp, 'msrun_logs')}", "--join=True"]
        wall = train(prefix, args.config, multi, args.batch // args.workers, args.steps, tmp, args.set)
        rows.append((f"{args.workers} msrun workers", args.batch // args.workers, wall,
                     *images_per_second(multi, args.batch, args.warmup)))
    print(f"stage 1, {os.path.relpath(args.config, repo_path())} {' '.join(args.set)}, global batch {args.batch}, "
          f"{args.steps} steps (rate over the last {args.steps - args.warmup}), {os.cpu_count()} CPUs")
    print(f"{'run':<18} {'batch/worker':>12} {'wall s':>8} {'images/s':>9} {'vs 1 process':>13}")
    for name, batch, wall, rate, _n in rows:
        print(f"{name:<18} {batch:>12} {wall:>8.1f} {rate:>9.2f} {rate / rows[0][3]:>12.2f}x")
    return 0
