"""Stage 2 of MODIFY: stylize photos with a stage-1 model, without any style image.

The tool lives in ``modify_ms.commands.stylize`` (``pip install -e .`` first); this file only runs it.
"""
from modify_ms.commands.stylize import main

if __name__ == "__main__":
    main()
