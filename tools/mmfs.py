"""MMFS from a prompt (--text / --style-image) to stylized photos: zero- / one-shot fine-tuning, then stylization.

The tool lives in ``baselines_ms.commands.mmfs`` (``pip install -e .`` first); this file only runs it.
"""
from baselines_ms.commands.mmfs import main

if __name__ == "__main__":
    main()
