"""Stage 1 of MODIFY (style encapsulation).

    python tools/train_modify.py --config yaml/metfaces.yaml [--set key=value ...] [--seed N] [--resume RUN_DIR]

Every input (config, weight files, data, the checkpoint to resume) is checked before any
network is built; a problem is one line on stderr, exit code 2, and nothing is written.
"""
import argparse
import os
import sys

from ..cli import ToolParser, run_main  # first: quiets MindSpore before it is imported
from . import repo_path


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def seed_value(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not 0 <= value < 2 ** 32:
        raise argparse.ArgumentTypeError(f"must be in [0, 2**32 - 1], got {value}")
    return value


def add_run_arguments(parser, default_config):
    """--config/--set/--seed/--resume/--max-steps, shared by every training command."""
    parser.add_argument("--config", default=None, help=f"YAML config (default: {default_config})")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    parser.add_argument("--seed", type=seed_value, default=None,
                        help="override run.seed (weight initialisation, noise, latents)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its latest checkpoint")
    parser.add_argument("--max-steps", type=positive_int, default=None,
                        help="stop after this global step (for testing)")


def run_config_source(parser, args, default_config):
    """(config path, overrides): RUN_DIR/config.yaml when resuming (checked), else --config or the
    default. --config with --resume is refused: it would be ignored."""
    from modify_ms.train.checks import check_run_dir

    if args.resume and args.config:
        parser.error("--resume continues with RUN_DIR/config.yaml: --config would be ignored (leave it out)")
    overrides = args.set + ([f"run.seed={args.seed}"] if args.seed is not None else [])
    if args.resume:
        check_run_dir(args.resume, resume=True)
        return os.path.join(args.resume, "config.yaml"), overrides
    return args.config or default_config, overrides


def train(argv=None):
    parser = ToolParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser, "the repository's yaml/quickstart.yaml")
    args = parser.parse_args(argv)

    from modify_ms.config import load_config
    from modify_ms.train.checks import WeightsMissingError, check_resume_point, check_run_dir, check_weight_files
    from modify_ms.train.config import Stage1Config

    # the cheap checks first, before MindSpore is even imported
    config_path, overrides = run_config_source(parser, args, repo_path("yaml", "quickstart.yaml"))
    cfg = load_config(config_path, Stage1Config, overrides)
    if args.resume:
        check_resume_point(args.resume)
    run_dir = args.resume or cfg.run.out_dir
    check_run_dir(run_dir, bool(args.resume), cfg.data.path)
    try:
        check_weight_files(cfg.weights)
    except WeightsMissingError as exc:
        raise WeightsMissingError(f"{config_path}: {exc}") from None

    from modify_ms.train.stage1 import train_stage1

    log = lambda msg: print(msg, file=sys.stderr)
    trainer = train_stage1(cfg, run_dir, resume=bool(args.resume), max_steps=args.max_steps, log=log)
    print(f"stage 1 finished at step {trainer.step}; checkpoints in {os.path.join(run_dir, 'checkpoints')}, "
          f"samples in {os.path.join(run_dir, 'samples')}")


def main(argv=None):
    """``modify-train`` / ``python tools/train_modify.py``: one-line errors, exit code 2."""
    run_main(lambda: train(argv))


if __name__ == "__main__":
    main()
