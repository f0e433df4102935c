"""Evaluate stylized faces as the papers do: FID to the style set, ArcFace identity distance, LPIPS diversity.

The tool lives in ``modify_ms.commands.evaluate`` (``pip install -e .`` first); this file only runs it.
"""
from modify_ms.commands.evaluate import cli

if __name__ == "__main__":
    cli()
