"""Evaluate stylized faces as the papers do: FID to the style set, ArcFace identity distance, LPIPS diversity.

    python tools/evaluate.py --outputs OUT_DIR [--inputs IN_DIR] [--style STYLE_DIR|stats.npz]
        [--inception fid.ckpt|pt_inception-*.pth] [--arcface arcface.ckpt]
        [--lpips lpips.ckpt] [--report results/run1] [--name run1]
    # a method's outputs made first, by tools/stylize.py's own code, into a new OUT_DIR:
    python tools/evaluate.py --method psp-unpaired --run runs/psp --inputs IN_DIR --outputs OUT_DIR ...
    python tools/evaluate.py --method modify --run runs/quickstart --variants 4 --inputs IN_DIR --outputs OUT_DIR ...

Each metric runs when what it needs is given:
* FID (pytorch-fid's definition): --outputs, --style and --inception. All output images
  against the style set. Feature statistics are cached (--cache-dir), keyed by the file
  list (names, sizes, mtimes) and the weights file, so a style set is processed once;
  --style may also be a statistics .npz (this tool's or pytorch-fid's ``mu``/``sigma``).
* Identity distance (MMFS): --inputs, --outputs, --arcface. Mean of 1 - cos(ArcFace(input),
  ArcFace(output)) over every output, paired with its input by file stem.
* LPIPS diversity (BlendGAN / StarGAN v2): --outputs with K >= 2 stylizations per input
  and --lpips. Mean LPIPS over all pairs of an input's stylizations, averaged over inputs.

With --method NAME --run RUN, the registered method (modify_ms.stylizers) stylizes --inputs into
--outputs (empty or new) as ``tools/stylize.py --method NAME --run RUN --input IN_DIR --output-dir
OUT_DIR`` does (--variants, --align, --opt, --set, --steps are passed on), then FID and identity
score the one output per photo (``<stem>.png``) and diversity its K variants (``<stem>_k*.png``).

Output layouts: ``<stem>.png`` (one output per input), ``<stem>_k0.png .. <stem>_k{K-1}.png``,
or a folder ``<stem>/`` per input. Weights: MindSpore .ckpt files from
``python -m weights_convert inception|irse50|lpips``; the Inception .pth files are also
accepted directly (converted in memory).
Writes REPORT.md and REPORT.csv (default: OUT_DIR/evaluation). Exit status 0, or 2 with a
one-line error for missing folders/weights or unusable files.
"""
import os
import sys

from ..cli import ToolParser, one_line  # first: quiets MindSpore, caps oneDNN, before MindSpore loads
from ..utils.cache import cache_root
from . import exit_now

FID_DIMS = 2048  # a set smaller than the feature dimension has a rank-deficient covariance
DEFAULT_CACHE = os.path.join(cache_root(), "fid")
METRIC_SIZES = (32, 1024)  # AlexNet-LPIPS needs >= 32 px; above 1024 nothing is gained


def parse_args(argv=None):
    parser = ToolParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--outputs", required=True, help="folder of stylized outputs")
    parser.add_argument("--inputs", help="folder of input photos (identity distance)")
    parser.add_argument("--style", help="style image folder, or a statistics .npz (FID)")
    parser.add_argument("--inception", help="FID Inception weights: converted .ckpt or pt_inception-*.pth")
    parser.add_argument("--arcface", help="ArcFace weights: .ckpt from python -m weights_convert irse50")
    parser.add_argument("--lpips", help="LPIPS weights: .ckpt from python -m weights_convert lpips")
    parser.add_argument("--report", help="report path prefix (default OUT_DIR/evaluation)")
    parser.add_argument("--name", help="run name in the table (default: the outputs folder name)")
    parser.add_argument("--batch-size", type=int, default=16, help="Inception batch size (default 16)")
    parser.add_argument("--metric-size", type=int, default=256,
                        help="LPIPS frame size; larger images are area-averaged to it (default 256, as StarGAN v2). "
                             "ArcFace always sees the 256 frame its face crop is defined on")
    parser.add_argument("--cache-dir", default=DEFAULT_CACHE, help=f"FID statistics cache (default {DEFAULT_CACHE})")
    parser.add_argument("--no-cache", action="store_true", help="do not read or write cached statistics")
    parser.add_argument("--fid-method", choices=("sqrtm", "eigh"), default="sqrtm",
                        help="tr sqrt(S1 S2) by scipy.linalg.sqrtm as pytorch-fid (default; ~1-2 min on 2 cores) "
                             "or by symmetric eigenproblems (same value to ~1e-12, ~10x faster)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    method = parser.add_argument_group("stylize first (tools/stylize.py's options)")
    method.add_argument("--method", help="stylize --inputs into --outputs with this registered method first")
    method.add_argument("--run", help="--method's run directory or checkpoint")
    method.add_argument("--variants", type=int, default=0, help="K variants per photo (multi-modal methods; diversity)")
    method.add_argument("--align", default="auto", choices=["auto", "dlib", "none"], help="face alignment of --inputs")
    method.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE", help="an option of --method")
    method.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="MODIFY: a stage-2 config value")
    method.add_argument("--steps", type=int, help="MODIFY: test-time steps")
    args = parser.parse_args(argv)
    if args.method:
        if not (args.run and args.inputs):
            parser.error("--method needs --run (its run or checkpoint) and --inputs (the photos it stylizes)")
        if args.variants < 0:
            parser.error(f"--variants must be >= 0, got {args.variants}")
    else:
        given = [flag for flag, value in (("--run", args.run), ("--variants", args.variants), ("--opt", args.opt),
                                          ("--set", args.set), ("--steps", args.steps)) if value]
        if given:
            parser.error(f"{', '.join(given)}: only with --method (they say how to stylize --inputs)")
    if args.batch_size < 1:
        parser.error(f"--batch-size must be >= 1, got {args.batch_size}")
    if not METRIC_SIZES[0] <= args.metric_size <= METRIC_SIZES[1]:
        parser.error(f"--metric-size must be in [{METRIC_SIZES[0]}, {METRIC_SIZES[1]}], got {args.metric_size}")
    if bool(args.style) != bool(args.inception):
        parser.error("FID needs both --style and --inception")
    if args.arcface and not args.inputs:
        parser.error("--arcface needs --inputs (identity distance pairs inputs with outputs)")
    return args


def _require_file(path, what):
    from modify_ms.eval.files import EvalInputError

    if not os.path.isfile(path):
        raise EvalInputError(f"{path}: no such {what} file")


def _is_ckpt(path):
    return path.lower().endswith(".ckpt")


# ---------------------------------------------------------------- networks


def load_inception(path):
    """(InceptionV3 in eval mode, variant) from a converted .ckpt or a .pth (converted in memory)."""
    from modify_ms.eval.inception import InceptionV3
    from modify_ms.utils.checkpoint import fill_cell, read_arrays
    from weights_convert.inception import convert_inception_file, detect_variant

    _require_file(path, "Inception weights")
    if _is_ckpt(path):
        params, meta = read_arrays(path)
        variant = detect_variant({k: v.shape for k, v in params.items()}, path)
    else:
        params, meta = convert_inception_file(path)
        variant = meta["variant"]
    net = InceptionV3(variant, transform_input=bool(meta.get("transform_input", variant == "torchvision")))
    fill_cell(net, params, path)
    net.set_train(False)
    return net, variant


def _require_ckpt(path, what, command):
    from modify_ms.eval.files import EvalInputError

    _require_file(path, what)
    if not _is_ckpt(path):
        raise EvalInputError(f"{path}: {what} must be a converted .ckpt (python -m weights_convert {command})")


def load_arcface(path):
    """The project's IdentityLoss (ArcFace IR-SE50) at the 256 frame, from ``weights_convert irse50``'s .ckpt."""
    from modify_ms.losses.builders import build_identity_loss

    _require_ckpt(path, "ArcFace weights", "irse50 model_ir_se50.pth arcface.ckpt")
    return build_identity_loss(path, image_size=256)


def load_lpips(path):
    """The project's LPIPS (per-pair distances) from ``weights_convert lpips``'s .ckpt."""
    from modify_ms.losses.builders import build_lpips

    _require_ckpt(path, "LPIPS weights", "lpips lpips.ckpt --net alex --lin LIN.pth --backbone ALEXNET.pth")
    return build_lpips(path, reduction="none")


# ---------------------------------------------------------------- metrics


def _progress(enabled, desc, unit):
    if not enabled:
        return None
    from tqdm import tqdm

    return lambda items: tqdm(items, desc=desc, unit=unit, leave=False, dynamic_ncols=True)


class MetricNets:
    """The networks of one evaluation, each loaded once, when first needed (compare scores several
    methods with the same ones); the style set's FID statistics are kept too."""

    def __init__(self, args):
        self.args = args
        self._loaded = {}

    def _once(self, key, build):
        if key not in self._loaded:
            self._loaded[key] = build()
        return self._loaded[key]

    def inception(self):
        """(BatchedFeatures, weights digest, settings, variant) of --inception."""
        from modify_ms.eval.extract import BatchedFeatures
        from modify_ms.eval.fid import file_digest
        from modify_ms.eval.inception import InceptionFeatureExtractor

        def build():
            net, variant = load_inception(self.args.inception)
            features = BatchedFeatures(InceptionFeatureExtractor(net), self.args.batch_size)
            return features, file_digest(self.args.inception), f"{variant};resize=299-bilinear", variant
        return self._once("inception", build)

    def style_statistics(self, reader):
        from modify_ms.eval.extract import statistics_for_files
        from modify_ms.eval.fid import load_statistics
        from modify_ms.eval.files import list_images

        def build():
            args = self.args
            if args.style.lower().endswith(".npz"):
                _require_file(args.style, "statistics")
                return load_statistics(args.style)
            features, digest, settings, _ = self.inception()
            return statistics_for_files(list_images(args.style, recursive=True), features, _cache(args), digest,
                                        settings, not args.quiet, "style features", reader)
        return self._once("style", build)

    def arcface(self):
        from modify_ms.eval.extract import BatchedFeatures
        from modify_ms.eval.identity import ArcFaceEmbedder

        return self._once("arcface", lambda: BatchedFeatures(ArcFaceEmbedder(load_arcface(self.args.arcface),
                                                                             size=256), 4))

    def lpips(self, size):
        import mindspore as ms

        from modify_ms.eval.diversity import LPIPSDistance

        def build():
            cell = LPIPSDistance(load_lpips(self.args.lpips), size=size)
            return lambda x, y: cell(ms.Tensor(x), ms.Tensor(y)).asnumpy()
        return self._once(("lpips", size), build)


def _cache(args):
    return None if args.no_cache else args.cache_dir


def run_fid(args, output_paths, notes, reader, nets=None):
    import mindspore as ms  # noqa: F401  (context set in main)

    from modify_ms.eval.extract import statistics_for_files
    from modify_ms.eval.fid import frechet_distance

    nets = nets or MetricNets(args)
    features, digest, settings, variant = nets.inception()
    style = nets.style_statistics(reader)
    out = statistics_for_files(output_paths, features, _cache(args), digest, settings, not args.quiet,
                               "output features", reader)
    for label, n in (("output", out["num_images"]), ("style", style["num_images"])):
        if 0 <= n < FID_DIMS:
            notes.append(f"warning: the {label} set has {n} images, fewer than the {FID_DIMS} feature dimensions: "
                         "its covariance is rank-deficient and FID is strongly biased; JoJoGAN (ECCV 2022, 'Quantitative "
                         "Evaluation by FID') calls FID on a few hundred images dangerous (Chong & Forsyth 2020): "
                         "compare only runs with equally sized sets.")
    if variant != "fid":
        notes.append("note: FID computed with torchvision Inception weights; papers use pytorch-fid's "
                     "pt_inception-2015-12-05 weights, so the numbers are not comparable with theirs.")
    value = frechet_distance(out["mu"], out["sigma"], style["mu"], style["sigma"], method=args.fid_method)
    return {"fid": value, "fid_images": out["num_images"],
            "style_images": style["num_images"] if style["num_images"] >= 0 else None}


def run_identity(args, pairs, reader, nets=None):
    from modify_ms.eval.identity import identity_distances_for_pairs

    embed = (nets or MetricNets(args)).arcface()
    distances = identity_distances_for_pairs(embed, pairs, reader, _progress(not args.quiet, "identity", "input"))
    return {"identity_distance": float(distances.mean()), "identity_pairs": int(distances.size)}


def run_diversity(args, groups, size, reader, nets=None):
    from modify_ms.eval.diversity import diversity_of_output_groups

    lpips = (nets or MetricNets(args)).lpips(size)
    mean, per_input = diversity_of_output_groups(groups, lpips, reader,
                                                 _progress(not args.quiet, "diversity", "input"))
    ks = sorted({len(g) for g in groups})
    return {"lpips_diversity": mean, "diversity_inputs": int(per_input.size),
            "variants_per_input": str(ks[0]) if len(ks) == 1 else f"{ks[0]}-{ks[-1]}"}


def score(args, fid_paths, pairs, diversity_groups, notes, reader, nets=None):
    """The metrics ``args`` asks for (its --style/--inception, --arcface, --lpips) on explicit files:
    FID over ``fid_paths``, identity over ``pairs`` [(input, [outputs])], diversity over
    ``diversity_groups`` [[K >= 2 variants] per input]. Returns the row's metric entries."""
    nets = nets or MetricNets(args)
    row = {}
    if args.style:
        row.update(run_fid(args, fid_paths, notes, reader, nets))
    if args.arcface:
        if not pairs:
            from modify_ms.eval.files import EvalInputError

            raise EvalInputError(f"{args.outputs}: no output file stem matches an input in {args.inputs}")
        row.update(run_identity(args, pairs, reader, nets))
    if args.lpips:
        if diversity_groups:
            row.update(run_diversity(args, diversity_groups, args.metric_size, reader, nets))
        else:
            notes.append("diversity skipped: no input has 2 or more stylizations (<stem>_k0.png, <stem>_k1.png ...)")
    return row


def evaluate(args):
    """(row dict, notes) for one run; raises the modules' one-line errors."""
    import mindspore as ms

    from modify_ms.eval.files import SkippingReader, group_outputs, list_images, pair_by_stem

    if args.method:
        return evaluate_method(args)
    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    groups = group_outputs(args.outputs)
    output_paths = [p for stem in sorted(groups) for p in groups[stem]]
    row = {"run": args.name or os.path.basename(os.path.normpath(args.outputs))}
    notes = []
    reader = SkippingReader()  # one corrupt image is left out (and listed), not the end of the run
    pairs = []
    if args.inputs:
        pairs, lonely_inputs, lonely_outputs = pair_by_stem(list_images(args.inputs), groups)
        if lonely_inputs:
            notes.append(f"{len(lonely_inputs)} inputs have no output: {', '.join(lonely_inputs[:10])}"
                         + (" ..." if len(lonely_inputs) > 10 else ""))
        if lonely_outputs:
            notes.append(f"{len(lonely_outputs)} outputs match no input: {', '.join(lonely_outputs[:10])}"
                         + (" ..." if len(lonely_outputs) > 10 else ""))
    multi = [groups[s] for s in sorted(groups) if len(groups[s]) >= 2]
    row.update(score(args, output_paths, pairs, multi, notes, reader))
    if reader.skipped:
        notes.append(reader.note())
    return row, notes


def stylize_argv(method, run, inputs, outputs, align="auto", variants=0, opts=(), sets=(), steps=None):
    """tools/stylize.py's command line that writes ``method``'s outputs for ``inputs`` into ``outputs``."""
    argv = ["--method", method, "--run", run, "--input", inputs, "--output-dir", outputs, "--align", align]
    argv += ["--variants", str(variants)] if variants else []
    argv += [a for item in opts for a in ("--opt", item)] + [a for item in sets for a in ("--set", item)]
    return argv + (["--steps", str(steps)] if steps is not None else [])


def refuse_stale_outputs(folder):
    """A method's outputs go to an empty or new folder: images left there would be scored too."""
    from modify_ms.data.imageio import is_image_name
    from modify_ms.eval.files import EvalInputError

    if os.path.isdir(folder) and any(is_image_name(n) for n in os.listdir(folder)):
        raise EvalInputError(f"{folder}: already holds images; give --method an empty or new --outputs folder")


def evaluate_method(args, log=None):
    """(row, notes): --method's outputs of --inputs written into --outputs by tools/stylize.py's
    code (commands.stylize.produce), then scored: FID and identity on the one output per photo,
    diversity on its K variants."""
    import mindspore as ms

    from modify_ms.eval.files import SkippingReader

    from . import stylize as stylize_command

    log = log or (lambda msg: print(msg, file=sys.stderr))
    if not os.path.isdir(args.inputs):
        from modify_ms.eval.files import EvalInputError

        raise EvalInputError(f"{args.inputs}: no such folder (--method stylizes a folder of photos)")
    refuse_stale_outputs(args.outputs)
    sargs = stylize_command.parse_args(stylize_argv(args.method, args.run, args.inputs, args.outputs, args.align,
                                                    args.variants, args.opt, args.set, args.steps))
    stylize_command.refuse_early(sargs)
    _, sets = stylize_command.produce(sargs, log)
    ms.set_context(mode=ms.GRAPH_MODE)  # the metric cells; the device stays the one the method ran on
    names = sorted(sets)
    notes = []
    reader = SkippingReader()
    pairs = [(name, [sets[name].main]) for name in names]
    groups = [list(sets[name].variants) for name in names if len(sets[name].variants) >= 2]
    row = {"run": args.name or args.method}
    row.update(score(args, [sets[n].main for n in names], pairs, groups, notes, reader))
    if reader.skipped:
        notes.append(reader.note())
    return row, notes


def main(argv=None):
    from modify_ms.config import ConfigError
    from modify_ms.data.imageio import InputError
    from modify_ms.data.sources import DataSourceError
    from modify_ms.eval.fid import FIDError
    from modify_ms.eval.files import EvalInputError
    from modify_ms.eval.report import to_markdown, write_report
    from modify_ms.utils.checkpoint import CheckpointFileError
    from modify_ms.train.checks import WeightsMissingError
    from modify_ms.utils.paths import OutputPathError, check_output_file
    from weights_convert.errors import MappingError

    args = parse_args(argv)
    try:
        prefix = args.report or os.path.join(args.outputs, "evaluation")
        for ext in (".md", ".csv"):  # before any network is built
            check_output_file(prefix + ext, image=False)
        for path, what in ((args.inception, "Inception weights"), (args.arcface, "ArcFace weights"),
                           (args.lpips, "LPIPS weights")):
            if path:
                _require_file(path, what)
        for path in (args.inputs, args.style):
            if path and not (os.path.isdir(path) or os.path.isfile(path)):
                raise EvalInputError(f"{path}: no such folder")
        row, notes = evaluate(args)
        md_path, csv_path = write_report([row], prefix, notes)
    except (EvalInputError, FIDError, CheckpointFileError, MappingError, InputError, OutputPathError, ConfigError,
            DataSourceError, WeightsMissingError) as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 2
    print(to_markdown([row]), end="")
    for note in notes:
        print(note, file=sys.stderr)
    print(f"written: {md_path}, {csv_path}")
    return 0


def cli():
    """``modify-evaluate`` / ``python tools/evaluate.py``: the exit code, without MindSpore's teardown noise."""
    exit_now(main())


if __name__ == "__main__":
    cli()
