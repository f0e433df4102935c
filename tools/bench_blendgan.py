"""Benchmark BlendGAN's training step, MindSpore GRAPH vs PyTorch (see baselines_ms/commands/bench_blendgan.py)."""
from baselines_ms.commands.bench_blendgan import main

if __name__ == "__main__":
    raise SystemExit(main())
