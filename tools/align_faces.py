"""Align a folder of face photos the FFHQ way (dlib 68 landmarks -> eye/mouth quad).

The tool lives in ``modify_ms.commands.align`` (``pip install -e .`` first); this file only runs it.
"""
from modify_ms.commands.align import main

if __name__ == "__main__":
    raise SystemExit(main())
