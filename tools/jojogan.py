"""JoJoGAN in one command: fine-tune StyleGAN2 on style references, then stylize photos.

The tool lives in ``baselines_ms.commands.jojogan`` (``pip install -e .`` first); this file only runs it.
"""
from baselines_ms.commands.jojogan import main

if __name__ == "__main__":
    main()
