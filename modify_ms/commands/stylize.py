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
    # any registered method (modify_ms.stylizers: MODIFY's modes and the installed baselines)
    python tools/stylize.py --method psp-unpaired --run runs/psp --input IN_DIR --output-dir OUT
    python tools/stylize.py --method modify-online --run RUN --input IN_DIR --output-dir OUT

Every method writes the same layout: <stem><ext> per photo and, for multi-modal methods with
--variants K, <stem>_k0<ext> .. <stem>_k{K-1}<ext> and the grid <stem>_variants<ext>. MODIFY
(modify, modify-online, modify-offline: --method picks the mode, as --mode does) takes the
stage-2 options (--config, --set, --steps, --seed, --work-dir, --watch, --resume, --interpolate);
another method takes its own options as --opt KEY=VALUE (create_stylizer's keywords).

Nothing but the outputs is written beside them: metrics, stage-2 checkpoints (online/offline
state for --resume) and the compile cache go to --work-dir (default: a folder per stage-1 run,
mode and output under ~/.cache/modify_ms, or $MODIFY_MS_CACHE). An output never replaces an
input, and --output-dir may not be (inside) the input folder unless --allow-output-in-input.
"""
import argparse
import dataclasses
import math
import os
import sys

from ..cli import ToolParser, run_main  # first: quiets MindSpore before it is imported
from . import repo_path


def parse_args(argv=None):
    parser = ToolParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default="modify",
                        help="stylization method (default modify; tools/stylize.py --list-methods names them)")
    parser.add_argument("--list-methods", action="store_true", help="print the registered methods and exit")
    parser.add_argument("--run", help="the method's run directory or checkpoint (for MODIFY: its stage-1 run, "
                                      "as --stage1)")
    parser.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE",
                        help="an option of a method other than MODIFY (a YAML value)")
    parser.add_argument("--text", help="a text prompt (methods taking one, e.g. mmfs: as --opt text=...)")
    parser.add_argument("--style-image", help="a style image prompt (e.g. mmfs: as --opt style_image=...)")
    parser.add_argument("--config", default=None,
                        help="MODIFY: stage-2 YAML config (default: the repository's yaml/ffhq_stylize.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    parser.add_argument("--stage1", help="stage-1 run directory or checkpoint (overrides the config's stage1)")
    parser.add_argument("--mode", choices=["offline", "online", "test-time"], help="overrides the config's mode")
    parser.add_argument("--input",
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
    if args.list_methods:
        return args
    if not args.input:
        parser.error("the following arguments are required: --input")
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


# options of MODIFY's stage 2 that no other method has: (attribute, flag, its value when not given)
MODIFY_ONLY = (("config", "--config", None), ("set", "--set", []), ("stage1", "--stage1", None),
               ("mode", "--mode", None), ("steps", "--steps", None), ("watch", "--watch", False),
               ("resume", "--resume", False), ("interpolate", "--interpolate", 0), ("work_dir", "--work-dir", None),
               ("seed", "--seed", None))


def _modify_config(args):
    """The stage-2 config of a MODIFY method: --config (or the repository's), then --set, then
    what the method and the flags say (the mode of modify-online / modify-offline)."""
    from modify_ms.config import ConfigError, load_config
    from modify_ms.stylizers import MODIFY_MODES
    from modify_ms.train.config import Stage2Config

    stage1 = args.stage1
    if args.run is not None:
        if stage1 is not None and stage1 != args.run:
            raise ConfigError(f"--run {args.run} and --stage1 {stage1} differ: give one of them")
        stage1 = args.run
    mode = args.mode
    if args.method != "modify":  # the name holds the mode; --mode may only repeat it
        if mode is not None and mode != MODIFY_MODES[args.method]:
            raise ConfigError(f"--mode {mode} contradicts --method {args.method} "
                              f"(mode {MODIFY_MODES[args.method]}); use --method modify --mode {mode}")
        mode = MODIFY_MODES[args.method]
    if args.opt or args.text or args.style_image:
        raise ConfigError(f"--opt / --text / --style-image are for methods other than MODIFY; {args.method} takes --set KEY=VALUE "
                          f"(its stage-2 config), --steps, --seed, --work-dir")
    overrides = list(args.set)
    for key, value in (("stage1", stage1), ("mode", mode), ("test_time_steps", args.steps),
                       ("run.seed", args.seed), ("run.out_dir", args.work_dir)):
        if value is not None:
            overrides.append(f"{key}={value}")
    return load_config(args.config or repo_path("yaml", "ffhq_stylize.yaml"), Stage2Config, overrides)


def stylize_request(args):
    from modify_ms.stylize import StylizeRequest

    return StylizeRequest(input=args.input, output=args.output, output_dir=args.output_dir, ext=args.ext,
                          align=args.align, variants=args.variants, interpolate=args.interpolate,
                          watch=args.watch, poll=args.poll, resume=args.resume, work_dir=args.work_dir or "",
                          allow_output_in_input=args.allow_output_in_input)


def method_options(args, log=None):
    """create_stylizer's keywords for a method other than MODIFY: its --opt KEY=VALUE (YAML values),
    plus ``log`` where it takes one. One-line errors: MODIFY's options given, no --run, a bad --opt."""
    import yaml

    from modify_ms.config import ConfigError
    from modify_ms.stylizers import stylizer_options

    accepted = stylizer_options(args.method)  # an unknown method fails here, before any work
    settable = "any" if accepted is None else ", ".join(o for o in accepted if o != "log") or "none"
    given = [flag for attr, flag, unset in MODIFY_ONLY if getattr(args, attr) != unset]
    if given:
        raise ConfigError(f"{', '.join(given)}: MODIFY's stage-2 option(s), not {args.method}'s "
                          f"(its options, as --opt KEY=VALUE: {settable})")
    if not args.run:
        raise ConfigError(f"--method {args.method} needs --run RUN (its run directory or checkpoint)")
    opts = {}
    for item in args.opt:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--opt {item!r}: expected KEY=VALUE")
        if key.strip() == "log":
            raise ConfigError(f"--opt {item!r}: log is the tool's own (its options: {settable})")
        try:
            opts[key.strip()] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            raise ConfigError(f"--opt {item!r}: the value is not YAML") from None
    for key, value in (("text", args.text), ("style_image", args.style_image)):
        if value:
            if key in opts and opts[key] != value:
                raise ConfigError(f"--{key.replace('_', '-')} and --opt {key}= differ: give one of them")
            opts[key] = value
    if log is not None and (accepted is None or "log" in accepted):
        opts.setdefault("log", log)
    return opts


def produce(args, log):
    """Write ``args.method``'s outputs for ``args.input``: what tools/stylize.py does, and what
    evaluate --method and compare run. Returns (written paths, {input name: OutputSet written})."""
    from modify_ms.stylizers import MODIFY_MODES

    if args.method in MODIFY_MODES:
        from modify_ms.stylize import run_stylize

        req = stylize_request(args)
        cfg = _modify_config(args)
        req = dataclasses.replace(req, work_dir=cfg.run.out_dir)
        written, _ = run_stylize(cfg, req, log=log)
    else:
        req = stylize_request(args)
        written = run_method(args.method, args.run, method_options(args, log), req, log)
    return written, written_sets(req, written, log)


def written_sets(req, written, log):
    """{input name: its planned OutputSet} for the inputs whose main output was written (the plan
    is deterministic: built again from the same request, it names the same files)."""
    from modify_ms.stylize import plan_outputs

    if req.watch:
        return {}
    names, source, single = _inputs(req)
    plan = plan_outputs(req, "test-time", names, source, single, lambda _m: None)
    done = set(written)
    return {name: outs for name, outs in plan.sets.items() if outs.main in done}


def _inputs(req):
    """(names, source, single) of the request, without outputs from an earlier run under an
    --output-dir inside the input folder (as run_stylize lists them)."""
    from modify_ms.stylize import list_inputs
    from modify_ms.utils.paths import is_inside

    names, source, single = list_inputs(req.input)
    if req.output_dir and source is not None and os.path.isdir(req.input):
        keep = [i for i, n in enumerate(names) if not is_inside(n, req.output_dir)]
        source = source.subset(keep)
        names = list(source.names)
    return names, source, single


class MethodWriter:
    """A photo's output, and for --variants K its K variants and their grid, from a registry
    stylizer: the files and names tools/stylize.py writes for MODIFY (modify_ms.stylize.OutputWriter)."""

    def __init__(self, stylizer, plan, req):
        self.stylizer, self.plan, self.req = stylizer, plan, req
        self.written = []

    def _save(self, path, image):
        import numpy as np

        from modify_ms.data.imageio import save_image_atomic
        from modify_ms.data.prepare import from_model_array

        save_image_atomic(path, image if image.dtype == np.uint8 else from_model_array(image))
        self.written.append(path)

    def __call__(self, name, x):
        from modify_ms.utils.images import make_grid

        outs = self.plan[name]
        self._save(outs.main, self.stylizer.stylize(x, names=[name])[0])
        if self.req.variants:
            variants = self.stylizer.variants(x, self.req.variants, names=[name])[0]
            for path, image in zip(outs.variants, variants):
                self._save(path, image)
            self._save(outs.grid, make_grid([x, variants]))
        return outs.main


def run_method(method, run, opts, req, log):
    """Stylize ``req.input`` with the registry's ``method`` (not MODIFY: run_stylize drives its
    modes); the inputs are listed and every output checked before the stylizer is built."""
    from modify_ms.data.imageio import InputError
    from modify_ms.stylize import Skips, photos, plan_outputs, read_photo
    from modify_ms.stylizers import StylizerError, create_stylizer, input_size

    req.validate()
    names, source, single = _inputs(req)
    plan = plan_outputs(req, "test-time", names, source, single, log)
    stylizer = create_stylizer(method, run, **opts)
    if req.variants and not getattr(stylizer, "multimodal", False):
        raise StylizerError(f"--variants: {method} is not multi-modal (one output per photo)")
    size = input_size(stylizer)
    skips = Skips(log)
    arrivals = iter([(names[0], read_photo(names[0], None, None, size, req.align))]) if single else \
        photos(names, source, size, req.align, skips)
    writer = MethodWriter(stylizer, plan, req)
    for i, (name, x) in enumerate(arrivals, 1):
        writer(name, x)
        log(f"[{i}/{len(names)}] {method}: {name}")
    if skips.items:
        log(skips.summary())
    if not writer.written:
        raise InputError(req.input, "no photo could be stylized" + (f" ({skips.summary()})" if skips.items else ""))
    return writer.written


def refuse_early(args):
    """What a method cannot do, refused before anything is listed or built (one line)."""
    from modify_ms.config import ConfigError
    from modify_ms.stylizers import MODIFY_MODES, is_multimodal

    if args.method in MODIFY_MODES:
        _modify_config(args)  # a bad --set or --mode: before anything is listed or built
        return
    if args.variants and is_multimodal(args.method) is False:
        raise ConfigError(f"--variants: {args.method} is not multi-modal (one output per photo)")
    method_options(args)


def stylize(argv=None):
    args = parse_args(argv)
    if args.list_methods:
        from modify_ms.stylizers import describe_stylizers

        for name, summary in describe_stylizers().items():
            print(f"{name}\t{summary}")
        return
    log = lambda msg: print(msg, file=sys.stderr)  # noqa: E731
    refuse_early(args)
    written, _ = produce(args, log)
    for path in written:
        print(path)


def main(argv=None):
    """``modify-stylize`` / ``python tools/stylize.py``: one-line errors, exit code 2."""
    run_main(lambda: stylize(argv))


if __name__ == "__main__":
    main()
