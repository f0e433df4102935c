"""Benchmark one StyleGAN2 generator train step: MindSpore GRAPH_MODE vs the PyTorch reference.

The tool lives in ``modify_ms.commands.bench_stylegan2`` (``pip install -e .`` first); this file only runs it.
"""
from modify_ms.commands.bench_stylegan2 import main

if __name__ == "__main__":
    main()
