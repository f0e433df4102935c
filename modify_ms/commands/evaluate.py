"""Evaluate stylized faces as the papers do: FID to the style set, ArcFace identity distance, LPIPS diversity.

    python tools/evaluate.py --outputs OUT_DIR [--inputs IN_DIR] [--style STYLE_DIR|stats.npz]
        [--inception fid.ckpt|pt_inception-*.pth] [--arcface arcface.ckpt]
        [--lpips lpips.ckpt] [--report results/run1] [--name run1]

Each metric runs when what it needs is given:
* FID (pytorch-fid's definition): --outputs, --style and --inception. All output images
  against the style set. Feature statistics are cached (--cache-dir), keyed by the file
  list (names, sizes, mtimes) and the weights file, so a style set is processed once;
  --style may also be a statistics .npz (this tool's or pytorch-fid's ``mu``/``sigma``).
* Identity distance (MMFS): --inputs, --outputs, --arcface. Mean of 1 - cos(ArcFace(input),
  ArcFace(output)) over every output, paired with its input by file stem.
* LPIPS diversity (BlendGAN / StarGAN v2): --outputs with K >= 2 stylizations per input
  and --lpips. Mean LPIPS over all pairs of an input's stylizations, averaged over inputs.

Output layouts: ``<stem>.png`` (one output per input), ``<stem>_k0.png .. <stem>_k{K-1}.png``,
or a folder ``<stem>/`` per input. Weights: MindSpore .ckpt files from
``python -m weights_convert inception|irse50|lpips``; the Inception .pth files are also
accepted directly (converted in memory).
Writes REPORT.md and REPORT.csv (default: OUT_DIR/evaluation). Exit status 0, or 2 with a
one-line error for missing folders/weights or unusable files.
"""
import os
import sys

from ..cli import ToolParser  # first: quiets MindSpore, caps oneDNN, before MindSpore loads
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
    args = parser.parse_args(argv)
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


def run_fid(args, output_paths, notes, reader):
    import mindspore as ms  # noqa: F401  (context set in main)

    from modify_ms.eval.extract import BatchedFeatures, statistics_for_files
    from modify_ms.eval.fid import file_digest, frechet_distance, load_statistics
    from modify_ms.eval.files import list_images
    from modify_ms.eval.inception import InceptionFeatureExtractor

    net, variant = load_inception(args.inception)
    features = BatchedFeatures(InceptionFeatureExtractor(net), args.batch_size)
    digest = file_digest(args.inception)
    settings = f"{variant};resize=299-bilinear"
    cache = None if args.no_cache else args.cache_dir
    if args.style.lower().endswith(".npz"):
        _require_file(args.style, "statistics")
        style = load_statistics(args.style)
    else:
        style_paths = list_images(args.style, recursive=True)
        style = statistics_for_files(style_paths, features, cache, digest, settings, not args.quiet, "style features",
                                     reader)
    out = statistics_for_files(output_paths, features, cache, digest, settings, not args.quiet, "output features",
                               reader)
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


def run_identity(args, pairs, reader):
    from modify_ms.eval.extract import BatchedFeatures
    from modify_ms.eval.identity import ArcFaceEmbedder, identity_distances_for_pairs

    embed = BatchedFeatures(ArcFaceEmbedder(load_arcface(args.arcface), size=256), 4)
    distances = identity_distances_for_pairs(embed, pairs, reader, _progress(not args.quiet, "identity", "input"))
    return {"identity_distance": float(distances.mean()), "identity_pairs": int(distances.size)}


def run_diversity(args, groups, size, reader):
    import mindspore as ms

    from modify_ms.eval.diversity import LPIPSDistance, diversity_of_output_groups

    cell = LPIPSDistance(load_lpips(args.lpips), size=size)
    lpips = lambda x, y: cell(ms.Tensor(x), ms.Tensor(y)).asnumpy()  # noqa: E731
    mean, per_input = diversity_of_output_groups(groups, lpips, reader,
                                                 _progress(not args.quiet, "diversity", "input"))
    ks = sorted({len(g) for g in groups})
    return {"lpips_diversity": mean, "diversity_inputs": int(per_input.size),
            "variants_per_input": str(ks[0]) if len(ks) == 1 else f"{ks[0]}-{ks[-1]}"}


def evaluate(args):
    """(row dict, notes) for one run; raises the modules' one-line errors."""
    import mindspore as ms

    from modify_ms.eval.files import SkippingReader, group_outputs, list_images, pair_by_stem

    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    groups = group_outputs(args.outputs)
    output_paths = [p for stem in sorted(groups) for p in groups[stem]]
    row = {"run": args.name or os.path.basename(os.path.normpath(args.outputs))}
    notes = []
    reader = SkippingReader()  # one corrupt image is left out (and listed), not the end of the run
    if args.style:
        row.update(run_fid(args, output_paths, notes, reader))
    if args.inputs:
        pairs, lonely_inputs, lonely_outputs = pair_by_stem(list_images(args.inputs), groups)
        if lonely_inputs:
            notes.append(f"{len(lonely_inputs)} inputs have no output: {', '.join(lonely_inputs[:10])}"
                         + (" ..." if len(lonely_inputs) > 10 else ""))
        if lonely_outputs:
            notes.append(f"{len(lonely_outputs)} outputs match no input: {', '.join(lonely_outputs[:10])}"
                         + (" ..." if len(lonely_outputs) > 10 else ""))
        if args.arcface:
            if not pairs:
                from modify_ms.eval.files import EvalInputError

                raise EvalInputError(f"{args.outputs}: no output file stem matches an input in {args.inputs}")
            row.update(run_identity(args, pairs, reader))
    if args.lpips:
        multi = [groups[s] for s in sorted(groups) if len(groups[s]) >= 2]
        if multi:
            row.update(run_diversity(args, multi, args.metric_size, reader))
        else:
            notes.append("diversity skipped: no input has 2 or more stylizations (<stem>_k0.png, <stem>_k1.png ...)")
    if reader.skipped:
        notes.append(reader.note())
    return row, notes


def main(argv=None):
    from modify_ms.data.imageio import InputError
    from modify_ms.eval.fid import FIDError
    from modify_ms.eval.files import EvalInputError
    from modify_ms.eval.report import to_markdown, write_report
    from modify_ms.utils.checkpoint import CheckpointFileError
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
    except (EvalInputError, FIDError, CheckpointFileError, MappingError, InputError, OutputPathError) as exc:
        print(f"error: {exc}", file=sys.stderr)
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
