"""Throughput of the data pipeline and of face alignment (prints, asserts nothing).

The tool lives in ``modify_ms.commands.bench_data`` (``pip install -e .`` first); this file only runs it.
"""
from modify_ms.commands.bench_data import main

if __name__ == "__main__":
    raise SystemExit(main())
