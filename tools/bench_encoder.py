"""Benchmark: pSp encoder + LPIPS + ArcFace identity loss, forward/backward/Adam at 256x256.

The tool lives in ``modify_ms.commands.bench_encoder`` (``pip install -e .`` first); this file only runs it.
"""
from modify_ms.commands.bench_encoder import main

if __name__ == "__main__":
    raise SystemExit(main())
