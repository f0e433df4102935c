"""Export a stage-1 run's networks as weight files.

The tool lives in ``modify_ms.commands.export_weights`` (``pip install -e .`` first); this file only runs it.
"""
from modify_ms.commands.export_weights import main

if __name__ == "__main__":
    main()
