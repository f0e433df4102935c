"""Benchmark MMFS's DINO/CLIP fine-tuning losses: MindSpore GRAPH_MODE against PyTorch, side by side.

The tool lives in ``modify_ms.commands.bench_dino_clip`` (``pip install -e .`` first); this file only runs it.
"""
from modify_ms.commands.bench_dino_clip import main

if __name__ == "__main__":
    raise SystemExit(main())
