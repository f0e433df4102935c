"""Stage 1 of MODIFY (style encapsulation).

The tool lives in ``modify_ms.commands.train`` (``pip install -e .`` first); this file only runs it.
"""
from modify_ms.commands.train import main

if __name__ == "__main__":
    main()
