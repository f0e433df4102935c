"""Stage 2 of MODIFY: stylize photos with a stage-1 model, without any style image.

    # one photo, test-time adaptation (50 steps by default); the output's extension picks its format
    python tools/stylize.py --stage1 runs/quickstart --input photo.jpg --output out.png
    # a folder, online mode (one update per arriving image; --watch waits for new files)
    python tools/stylize.py --stage1 RUN --mode online --input IN_DIR --output-dir OUT [--watch]
    # offline: train E' on the source set in the config's data section, then stylize --input
    python tools/stylize.py --stage1 RUN --mode offline --input IN_DIR --output-dir OUT
    # multi-modal: K variants from K style samples (out_k{i}.png and a grid out_variants.png),
    # and an interpolation strip between two
    python tools/stylize.py --stage1 RUN --input photo.jpg --output out.png --variants 6 --interpolate 6

Nothing but the outputs is written beside them: metrics, stage-2 checkpoints (online/offline
state for --resume) and the compile cache go to --work-dir (default: a folder per stage-1 run,
mode and output under ~/.cache/modify_ms, or $MODIFY_MS_CACHE). An output never replaces an
input, and --output-dir may not be (inside) the input folder unless --allow-output-in-input.
"""
import argparse
import math
import sys

from ..cli import ToolParser, run_main  # first: quiets MindSpore before it is imported
from . import repo_path


def parse_args(argv=None):
    parser = ToolParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=repo_path("yaml", "ffhq_stylize.yaml"),
                        help="stage-2 YAML config (default: the repository's yaml/ffhq_stylize.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    parser.add_argument("--stage1", help="stage-1 run directory or checkpoint (overrides the config's stage1)")
    parser.add_argument("--mode", choices=["offline", "online", "test-time"], help="overrides the config's mode")
    parser.add_argument("--input", required=True,
                        help="a photo, a folder, a .txt list, a .zip, builtin:photos, or one bundled photo "
                             "(builtin:astronaut, builtin:grace_hopper)")
    parser.add_argument("--output", default="", help="output image for one --input photo (.png, .jpg, .webp)")
    parser.add_argument("--output-dir", default="", help="output folder: <stem><ext> per input")
    parser.add_argument("--ext", default=".png", choices=[".png", ".jpg", ".jpeg", ".webp"],
                        help="format of the files in --output-dir (default .png)")
    parser.add_argument("--align", default="auto", choices=["auto", "dlib", "none"],
                        help="FFHQ face alignment (auto: when the align extra is installed)")
    parser.add_argument("--steps", type=int, help="test-time steps (default: the config's test_time_steps)")
    parser.add_argument("--watch", action="store_true", help="online mode: keep watching --input for new files")
    parser.add_argument("--poll", type=float, default=2.0, help="seconds between scans of a watched folder")
    parser.add_argument("--resume", action="store_true", help="online/offline: continue from the work folder's state")
    parser.add_argument("--variants", type=int, default=0, help="also write K variants from K style samples z")
    parser.add_argument("--interpolate", type=int, default=0, help="also write N >= 2 frames between two style samples")
    parser.add_argument("--work-dir", help="metrics, stage-2 checkpoints and compile cache (overrides run.out_dir; "
                                           "default: a folder under ~/.cache/modify_ms or $MODIFY_MS_CACHE)")
    parser.add_argument("--seed", type=int, help="overrides run.seed (noise, variants, data order)")
    parser.add_argument("--allow-output-in-input", action="store_true",
                        help="allow --output-dir inside the input folder (outputs are never read back as inputs)")
    args = parser.parse_args(argv)
    if args.steps is not None and args.steps < 1:
        parser.error(f"--steps must be >= 1, got {args.steps}")
    if args.variants < 0:
        parser.error(f"--variants must be >= 0, got {args.variants}")
    if args.interpolate < 0 or args.interpolate == 1:
        parser.error(f"--interpolate must be 0 or >= 2 frames, got {args.interpolate}")
    if not (math.isfinite(args.poll) and args.poll > 0):
        parser.error(f"--poll must be a positive number of seconds, got {args.poll}")
    if bool(args.output) == bool(args.output_dir):
        parser.error("give --output (one photo) or --output-dir (several), exactly one of them")
    return args


def stylize(argv=None):
    args = parse_args(argv)
    from modify_ms.config import load_config
    from modify_ms.stylize import StylizeRequest, run_stylize
    from modify_ms.train.config import Stage2Config

    overrides = list(args.set)
    for key, value in (("stage1", args.stage1), ("mode", args.mode), ("test_time_steps", args.steps),
                       ("run.seed", args.seed), ("run.out_dir", args.work_dir)):
        if value is not None:
            overrides.append(f"{key}={value}")
    cfg = load_config(args.config, Stage2Config, overrides)
    request = StylizeRequest(input=args.input, output=args.output, output_dir=args.output_dir, ext=args.ext,
                             align=args.align, variants=args.variants, interpolate=args.interpolate,
                             watch=args.watch, poll=args.poll, resume=args.resume, work_dir=cfg.run.out_dir,
                             allow_output_in_input=args.allow_output_in_input)
    written, _ = run_stylize(cfg, request, log=lambda msg: print(msg, file=sys.stderr))
    for path in written:
        print(path)


def main(argv=None):
    """``modify-stylize`` / ``python tools/stylize.py``: one-line errors, exit code 2."""
    run_main(lambda: stylize(argv))


if __name__ == "__main__":
    main()
