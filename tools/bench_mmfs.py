"""Benchmark MMFS's one-shot fine-tuning step and inference, MindSpore GRAPH vs PyTorch (see baselines_ms/commands/bench_mmfs.py)."""
from baselines_ms.commands.bench_mmfs import main

if __name__ == "__main__":
    raise SystemExit(main())
