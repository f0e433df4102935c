"""Train a baseline (unpaired pSp, ...) through MODIFY's training machinery.

The tool lives in ``baselines_ms.commands.train_baseline`` (``pip install -e .`` first); this file only runs it.
"""
from baselines_ms.commands.train_baseline import main

if __name__ == "__main__":
    main()
