"""Regenerate the packaged LPIPS v0.1 linear layers as plain arrays (run once, when the .pth change).

The tool lives in ``modify_ms.commands.export_lpips_linear`` (``pip install -e .`` first); this file only runs it.
"""
from modify_ms.commands.export_lpips_linear import main

if __name__ == "__main__":
    raise SystemExit(main())
