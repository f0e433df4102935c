"""Train a baseline through MODIFY's training machinery (run folder, config.yaml, metrics.jsonl,
samples/, checkpoints/, resume, seeding, compile cache).

    python tools/train_baseline.py --config yaml/baselines/psp_unpaired_quickstart.yaml [--set key=value ...]
    python tools/train_baseline.py --resume RUN_DIR

The config's ``method`` key picks the baseline. Every input (config, weight files, data, the
checkpoint to resume) is checked before any network is built; a problem is one line on
stderr, exit code 2, and nothing is written.
"""
import argparse
import os
import sys

from modify_ms.cli import ToolParser, run_main  # first: quiets MindSpore before it is imported
from modify_ms.commands import repo_path
from modify_ms.commands.train import add_run_arguments, run_config_source


def _psp_unpaired():
    from ..psp_unpaired.config import UnpairedPSPConfig
    from ..psp_unpaired.trainer import train_psp_unpaired

    return UnpairedPSPConfig, train_psp_unpaired


def _jojogan():
    from ..jojogan.config import JoJoGANConfig
    from ..jojogan.trainer import train_jojogan

    return JoJoGANConfig, train_jojogan


def _stargan2():
    from ..stargan2.config import StarGAN2Config
    from ..stargan2.trainer import train_stargan2

    return StarGAN2Config, train_stargan2


def _blendgan():
    from ..blendgan.config import BlendGANConfig
    from ..blendgan.trainer import train_blendgan

    return BlendGANConfig, train_blendgan


def _mmfs():
    from ..mmfs.config import MMFSConfig
    from ..mmfs.trainer import train_mmfs

    return MMFSConfig, train_mmfs


# method -> loader of (config class, train function): nothing is imported for the others
TRAINERS = {"psp-unpaired": _psp_unpaired, "jojogan": _jojogan, "stargan2": _stargan2, "blendgan": _blendgan,
            "mmfs": _mmfs}


def config_method(path):
    """The ``method`` key of a config file (read with the library's safe YAML reader)."""
    from modify_ms.config import ConfigError, read_config_text, safe_yaml

    data = safe_yaml(read_config_text(path))
    method = data.get("method") if isinstance(data, dict) else None
    if method not in TRAINERS:
        raise ConfigError(f"{path}: method must be one of {', '.join(sorted(TRAINERS))}, got {method!r}")
    return method


def train(argv=None):
    parser = ToolParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser, "yaml/baselines/psp_unpaired_quickstart.yaml")
    args = parser.parse_args(argv)

    from modify_ms.config import load_config
    from modify_ms.train.checks import WeightsMissingError, check_resume_point, check_weight_files

    config_path, overrides = run_config_source(parser, args,
                                               repo_path("yaml", "baselines", "psp_unpaired_quickstart.yaml"))
    method = config_method(config_path)
    config_cls, train_fn = TRAINERS[method]()
    cfg = load_config(config_path, config_cls, overrides)
    if args.resume:
        check_resume_point(args.resume)
    run_dir = args.resume or cfg.run.out_dir
    try:
        # a method whose weight files differ from MODIFY's (jojogan) checks its own
        getattr(cfg, "check_weight_files", lambda: check_weight_files(cfg.weights))()
    except WeightsMissingError as exc:
        raise WeightsMissingError(f"{config_path}: {exc}") from None

    log = lambda msg: print(msg, file=sys.stderr)
    trainer = train_fn(cfg, run_dir, resume=bool(args.resume), max_steps=args.max_steps, log=log)
    print(f"{method} finished at step {trainer.step}; checkpoints in {os.path.join(run_dir, 'checkpoints')}, "
          f"samples in {os.path.join(run_dir, 'samples')}")


def main(argv=None):
    """``python tools/train_baseline.py``: one-line errors, exit code 2."""
    run_main(lambda: train(argv))


if __name__ == "__main__":
    main()
