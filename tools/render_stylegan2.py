"""Render an image grid from a StyleGAN2 generator.

The tool lives in ``modify_ms.commands.render`` (``pip install -e .`` first); this file only runs it.
"""
from modify_ms.commands.render import cli

if __name__ == "__main__":
    cli()
