"""python tools/bench_stargan2.py [--size 64] [--official] [--markdown]: StarGAN v2's training iteration,
MindSpore against PyTorch (baselines_ms/commands/bench_stargan2.py)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from baselines_ms.commands.bench_stargan2 import main  # noqa: E402

if __name__ == "__main__":
    main()
