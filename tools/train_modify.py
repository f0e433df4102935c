"""Stage 1 of MODIFY (style encapsulation).

    python tools/train_modify.py --config yaml/metfaces.yaml [--set key=value ...] [--resume RUN_DIR]
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from modify_ms.cli import run_main  # noqa: E402  (quiets MindSpore before it is imported)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="yaml/quickstart.yaml", help="stage-1 YAML config")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its latest checkpoint")
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this global step (for testing)")
    args = parser.parse_args()

    from modify_ms.config import load_config
    from modify_ms.train.config import Stage1Config
    from modify_ms.train.stage1 import train_stage1

    if args.resume:
        config_path = os.path.join(args.resume, "config.yaml")
        cfg = load_config(config_path, Stage1Config, args.set)
        run_dir = args.resume
    else:
        cfg = load_config(args.config, Stage1Config, args.set)
        run_dir = cfg.run.out_dir
    log = lambda msg: print(msg, file=sys.stderr)
    log(f"stage 1: {cfg.total_steps} steps in {len(cfg.phases)} phases, data {cfg.data.path}, run dir {run_dir}")
    trainer = train_stage1(cfg, run_dir, resume=bool(args.resume), max_steps=args.max_steps, log=log)
    print(f"stage 1 finished at step {trainer.step}; checkpoints in {os.path.join(run_dir, 'checkpoints')}, "
          f"samples in {os.path.join(run_dir, 'samples')}")


if __name__ == "__main__":
    run_main(main)
