"""Benchmark: FID feature extraction throughput (images/s) at 299x299 on CPU, MindSpore vs PyTorch.

The tool lives in ``modify_ms.commands.bench_fid`` (``pip install -e .`` first); this file only runs it.
"""
from modify_ms.commands.bench_fid import main

if __name__ == "__main__":
    raise SystemExit(main())
