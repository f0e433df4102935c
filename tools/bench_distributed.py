"""Stage-1 throughput of one process against msrun workers (prints, asserts nothing).

The tool lives in ``modify_ms.commands.bench_distributed`` (``pip install -e .`` first); this file only runs it.
"""
from modify_ms.commands.bench_distributed import main

if __name__ == "__main__":
    raise SystemExit(main())
