"""Benchmark MODIFY's training steps: MindSpore GRAPH_MODE against the PyTorch reference, side by side.

The tool lives in ``modify_ms.commands.bench_modify`` (``pip install -e .`` first); this file only runs it.
"""
from modify_ms.commands.bench_modify import main

if __name__ == "__main__":
    raise SystemExit(main())
