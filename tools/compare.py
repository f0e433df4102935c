"""Compare stylization methods on the same photos: the Fig. 2 grid and Table 1 (FID, identity, diversity).

The tool lives in ``modify_ms.commands.compare`` (``pip install -e .`` first); this file only runs it.
"""
from modify_ms.commands.compare import cli

if __name__ == "__main__":
    cli()
