"""Benchmark the baselines' training steps (unpaired pSp, JoJoGAN): MindSpore GRAPH_MODE against PyTorch, side by side.

The tool lives in ``baselines_ms.commands.bench_baselines`` (``pip install -e .`` first); this file only runs it.
"""
from baselines_ms.commands.bench_baselines import main

if __name__ == "__main__":
    raise SystemExit(main())
