"""Compare stylization methods on the same photos: the paper's Fig. 2 grid and Table 1.

    python tools/compare.py --photos IN_DIR --method modify=runs/quickstart \\
        --method psp-unpaired=runs/psp --out results/compare [--variants 4] \\
        [--reference STYLE_DIR --inception fid.ckpt] [--arcface arcface.ckpt] [--lpips lpips.ckpt]

Each --method NAME=RUN_OR_CHECKPOINT (a registered method: tools/stylize.py --list-methods)
stylizes the same photos, with the same seeds, by tools/stylize.py's own code, into
OUT/<NAME>/ (<stem>.png, and <stem>_k*.png variants for multi-modal methods with --variants).
Then OUT holds:

* input/<stem>.png   each photo as the methods saw it (aligned, at the grid's cell size)
* grid.png           rows = photos, columns = input | each method, labelled (Fig. 2)
* table.md, .json    per method (Table 1): FID to --reference (with --inception), ArcFace identity
                     similarity to the input (cos, with --arcface), LPIPS diversity of the K
                     variants (multi-modal methods, --variants K >= 2, --lpips); n/a where a
                     metric does not apply or its weights are not given (null in the JSON)

Options of one method: --set NAME:KEY=VALUE (MODIFY: a stage-2 config value, as stylize's --set;
other methods: one of their options, as stylize's --opt). A bad --method or --set is one line and
exit 2 before anything runs; a method that fails later is reported, left out of the grid, marked
failed in the table, and the others go on (exit 1). Every file is written atomically; no input is
ever replaced, and OUT may sit beside the photos but not inside their folder.
"""
import argparse
import json
import os
import sys
import types

from ..cli import ToolParser, one_line, run_main  # first: quiets MindSpore before it is imported
from . import evaluate as evaluate_command
from . import stylize as stylize_command

LABEL_HEIGHT = 14  # px above the grid for the column labels (PIL's built-in font is 11 px high)
PAD = 2  # modify_ms.utils.images.make_grid's padding
COLUMNS = ("method", "fid", "identity_similarity", "lpips_diversity", "photos", "status")


def parse_args(argv=None):
    parser = ToolParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", nargs="+", required=True,
                        help="a folder, a .txt list, a .zip, builtin:photos, or photo files")
    parser.add_argument("--method", action="append", required=True, metavar="NAME=RUN",
                        help="a registered method and its run directory or checkpoint (repeat per method)")
    parser.add_argument("--out", required=True, help="output folder (grid.png, table.md, table.json, one folder per method)")
    parser.add_argument("--variants", type=int, default=0, help="K variants per photo for multi-modal methods")
    parser.add_argument("--set", action="append", default=[], metavar="NAME:KEY=VALUE", help="an option of one method")
    parser.add_argument("--align", default="auto", choices=["auto", "dlib", "none"], help="face alignment of the photos")
    parser.add_argument("--reference", help="style image folder or statistics .npz: FID (needs --inception)")
    parser.add_argument("--inception", help="FID Inception weights (converted .ckpt or pt_inception-*.pth)")
    parser.add_argument("--arcface", help="ArcFace weights (.ckpt of python -m weights_convert irse50): identity")
    parser.add_argument("--lpips", help="LPIPS weights (.ckpt of python -m weights_convert lpips): diversity")
    parser.add_argument("--metric-size", type=int, default=256, help="LPIPS frame size (default 256)")
    parser.add_argument("--batch-size", type=int, default=16, help="Inception batch size (default 16)")
    parser.add_argument("--cache-dir", default=evaluate_command.DEFAULT_CACHE, help="FID statistics cache")
    parser.add_argument("--no-cache", action="store_true", help="do not read or write cached FID statistics")
    parser.add_argument("--fid-method", choices=("sqrtm", "eigh"), default="sqrtm", help="as tools/evaluate.py's")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.variants < 0:
        parser.error(f"--variants must be >= 0, got {args.variants}")
    if bool(args.reference) != bool(args.inception):
        parser.error("FID needs both --reference and --inception")
    lo, hi = evaluate_command.METRIC_SIZES
    if not lo <= args.metric_size <= hi:
        parser.error(f"--metric-size must be in [{lo}, {hi}], got {args.metric_size}")
    if args.batch_size < 1:
        parser.error(f"--batch-size must be >= 1, got {args.batch_size}")
    return args


# --------------------------------------------------------------------- the request
def method_specs(items):
    """[(name, run)] from NAME=RUN items: registered names, existing runs, no name twice."""
    from modify_ms.config import ConfigError
    from modify_ms.stylizers import stylizer_options

    specs = []
    for item in items:
        name, sep, run = item.partition("=")
        name, run = name.strip(), run.strip()
        if not sep or not name or not run:
            raise ConfigError(f"--method {item!r}: expected NAME=RUN_OR_CHECKPOINT")
        stylizer_options(name)  # an unknown name: one line listing the registered ones
        if not os.path.exists(run):
            raise ConfigError(f"--method {item!r}: {run}: no such run directory or checkpoint")
        if name in dict(specs):
            raise ConfigError(f"--method {name} is given twice")
        specs.append((name, run))
    return specs


def method_settings(items, names):
    """{method: [KEY=VALUE]} from NAME:KEY=VALUE items."""
    from modify_ms.config import ConfigError

    settings = {name: [] for name in names}
    for item in items:
        name, sep, setting = item.partition(":")
        if not sep or "=" not in setting:
            raise ConfigError(f"--set {item!r}: expected NAME:KEY=VALUE")
        if name not in settings:
            raise ConfigError(f"--set {item!r}: {name} is not one of the compared methods ({', '.join(names)})")
        settings[name].append(setting)
    return settings


def stylize_args(args, name, run, photos, settings):
    """tools/stylize.py's parsed command line for one method (its outputs in OUT/<name>)."""
    from modify_ms.stylizers import MODIFY_MODES, is_multimodal

    variants = args.variants if is_multimodal(name) else 0
    modify = name in MODIFY_MODES
    argv = evaluate_command.stylize_argv(name, run, photos, os.path.join(args.out, name), args.align, variants,
                                         opts=() if modify else settings, sets=settings if modify else ())
    sargs = stylize_command.parse_args(argv)
    stylize_command.refuse_early(sargs)  # a method's bad option: one line before anything runs
    return sargs


def photos_input(photos, out):
    """stylize's --input for ``--photos``: the one path given, or a file list (in the work folder)
    of several photo files."""
    from modify_ms.data.imageio import InputError, write_bytes_atomic
    from modify_ms.stylize import is_single
    from modify_ms.utils.paths import default_work_dir

    for path in photos:
        if not (path.startswith("builtin:") or os.path.exists(path)):
            raise InputError(path, "no such photo, folder or list")
    if len(photos) == 1:
        return photos[0]
    bad = [p for p in photos if p.startswith("builtin:") or not is_single(p)]
    if bad:
        raise InputError(bad[0], "several --photos must all be photo files (or give one folder, list or builtin)")
    listing = os.path.join(default_work_dir("compare", os.path.abspath(out)), "photos.txt")
    write_bytes_atomic(listing, "".join(os.path.abspath(p) + "\n" for p in photos).encode("utf-8"))
    return listing


# --------------------------------------------------------------------- the grid
def _read_cell(path, size):
    """An output image as uint8 HWC at ``size`` x ``size`` (methods may render different frames)."""
    import numpy as np
    from PIL import Image

    from modify_ms.data.imageio import read_image

    image = read_image(path)
    if image.shape[:2] != (size, size):
        image = np.asarray(Image.fromarray(image).resize((size, size), Image.BICUBIC))
    return image


def comparison_grid(rows, labels, size):
    """``rows``: per photo, one uint8 HWC image (or None: that method has no output for it) per
    column; the library's make_grid with a band of column ``labels`` above it."""
    import numpy as np
    from PIL import Image, ImageDraw

    from modify_ms.utils.images import make_grid

    blank = np.full((size, size, 3), 128, np.uint8)
    batches = [np.stack([blank if im is None else im for im in row]).transpose(0, 3, 1, 2) / 127.5 - 1.0
               for row in rows]
    grid = make_grid(batches, pad=PAD)
    canvas = Image.new("RGB", (grid.shape[1], grid.shape[0] + LABEL_HEIGHT), (255, 255, 255))
    canvas.paste(Image.fromarray(grid), (0, LABEL_HEIGHT))
    draw = ImageDraw.Draw(canvas)
    chars = max(1, size // 6)  # the built-in font is 6 px wide
    for j, label in enumerate(labels):
        draw.text((PAD + j * (size + PAD) + 1, 1), label[:chars], fill=(0, 0, 0))
    return np.asarray(canvas)


def grid_size(n_photos, n_columns, size):
    """(height, width) of the comparison grid."""
    return LABEL_HEIGHT + n_photos * (size + PAD) + PAD, n_columns * (size + PAD) + PAD


# --------------------------------------------------------------------- the table
def _stem(path):
    return os.path.splitext(os.path.basename(path))[0]


def metric_args(args, outputs, inputs):
    """tools/evaluate.py's options for one method's files."""
    return types.SimpleNamespace(outputs=outputs, inputs=inputs, style=args.reference, inception=args.inception,
                                 arcface=args.arcface, lpips=args.lpips, metric_size=args.metric_size,
                                 batch_size=args.batch_size, cache_dir=args.cache_dir, no_cache=args.no_cache,
                                 fid_method=args.fid_method, quiet=args.quiet)


def score_method(args, name, sets, input_crops, nets, notes):
    """Table 1's entries of one method, scored by tools/evaluate.py's code on its files."""
    from modify_ms.eval.files import SkippingReader
    from modify_ms.stylizers import is_multimodal

    reader = SkippingReader()
    names = sorted(sets)
    pairs = [(input_crops[n], [sets[n].main]) for n in names]
    groups = [list(sets[n].variants) for n in names if len(sets[n].variants) >= 2]
    margs = metric_args(args, os.path.join(args.out, name), os.path.join(args.out, "input"))
    margs.lpips = args.lpips if groups and is_multimodal(name) else None  # diversity: multi-modal methods only
    method_notes = []
    row = evaluate_command.score(margs, [sets[n].main for n in names], pairs, groups, method_notes, reader, nets)
    if "identity_distance" in row:
        row["identity_similarity"] = 1.0 - row["identity_distance"]
    if reader.skipped:
        method_notes.append(reader.note())
    if args.lpips and is_multimodal(name) and not groups:
        method_notes.append("diversity n/a: give --variants K >= 2")
    notes += [f"{name}: {n}" for n in method_notes]
    return row


def table_markdown(rows):
    from modify_ms.eval.report import to_markdown

    return to_markdown(rows, COLUMNS, missing="n/a")


# --------------------------------------------------------------------- the job
def prepare(args):
    """Everything checked before any method runs: (specs, stylize args per method, input names,
    their source, the input files no output may replace). One-line errors."""
    from modify_ms.stylize import input_files
    from modify_ms.utils.paths import check_output_dir, check_output_file

    specs = method_specs(args.method)
    settings = method_settings(args.set, [n for n, _ in specs])
    for path, what in ((args.inception, "Inception weights"), (args.arcface, "ArcFace weights"),
                       (args.lpips, "LPIPS weights"), (args.reference, "reference style set")):
        if path and not os.path.exists(path):
            raise FileNotFoundError(f"{path}: no such {what}")
    photos = photos_input(args.photos, args.out)
    check_output_dir(args.out, [p for p in args.photos if os.path.isdir(p)],
                     input_files=[p for p in args.photos if os.path.isfile(p)])
    sargs = {name: stylize_args(args, name, run, photos, settings[name]) for name, run in specs}
    names, source, _ = stylize_command._inputs(stylize_command.stylize_request(next(iter(sargs.values()))))
    inputs = input_files(names, source)
    for path in _fixed_outputs(args):
        check_output_file(path, inputs, image=path.endswith(".png"))
    return specs, sargs, names, source, inputs


def _fixed_outputs(args):
    return [os.path.join(args.out, f) for f in ("grid.png", "table.md", "table.json")]


def run_methods(specs, sargs, n_photos, log):
    """({method: {input name: OutputSet}}, {failed method: reason}, written paths): each method
    through tools/stylize.py's code; one that fails is reported and the others go on."""
    results, failures, written = {}, {}, []
    for i, (name, run) in enumerate(specs, 1):
        log(f"[{i}/{len(specs)}] {name}: stylizing {n_photos} photos with {run}")
        try:
            files, sets = stylize_command.produce(sargs[name], log)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001  (one method's failure is reported; the others go on)
            failures[name] = one_line(exc) or type(exc).__name__
            log(f"error: {name} failed, left out: {failures[name]}")
            continue
        results[name] = sets
        written += files
    return results, failures, written


def write_input_crops(args, results, names, source, inputs):
    """OUT/input/<stem>.png: each stylized photo as the methods saw it (aligned), at the largest
    frame any method rendered (the grid's cell). Returns ({input name: path}, cell size)."""
    import numpy as np

    from modify_ms.data.imageio import save_image_atomic
    from modify_ms.stylize import read_photo
    from modify_ms.utils.images import to_uint8
    from modify_ms.utils.paths import check_output_file

    size = max((_frame(outs.main) for sets in results.values() for outs in sets.values()), default=0)
    crops = {}
    for index, name in enumerate(names):
        mains = [sets[name].main for sets in results.values() if name in sets]
        if not mains:  # no method stylized it (unreadable): not in the grid
            continue
        path = check_output_file(os.path.join(args.out, "input", _stem(mains[0]) + ".png"), inputs)
        save_image_atomic(path, to_uint8(read_photo(name, source, index, size, args.align))[0])
        crops[name] = path
    return crops, size


def write_grid(path, results, crops, size):
    """Fig. 2: a row per photo, columns input | each method that ran."""
    from modify_ms.data.imageio import save_image_atomic

    rows = [[_read_cell(crops[n], size)] + [_read_cell(sets[n].main, size) if n in sets else None
                                             for sets in results.values()] for n in crops]
    save_image_atomic(path, comparison_grid(rows, ["input"] + list(results), size))


def build_table(args, specs, results, failures, crops, log):
    """(Table 1 rows, notes): each method that ran scored by tools/evaluate.py's code (the
    networks loaded once for all); a failed method, or one whose scoring fails, is marked failed."""
    table, notes = [], []
    nets = evaluate_command.MetricNets(metric_args(args, args.out, None))
    scoring = bool(args.reference or args.arcface or args.lpips)
    if results and scoring:
        import mindspore as ms

        ms.set_context(mode=ms.GRAPH_MODE)  # the metric cells (a method may have left PYNATIVE set)
    for name, run in specs:
        row = {"method": name, "run": run, "status": "ok", "photos": len(results.get(name, {}))}
        if name in failures:
            row.update(status="failed", error=failures[name])
        elif scoring:
            log(f"scoring {name}")
            try:
                row.update(score_method(args, name, results[name], crops, nets, notes))
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # noqa: BLE001  (as a failing method: reported, the others go on)
                failures[name] = one_line(exc) or type(exc).__name__
                row.update(status="failed", error=f"scoring: {failures[name]}")
                log(f"error: scoring {name} failed: {failures[name]}")
        table.append({**{key: row.get(key) for key in TABLE_KEYS}, **row})
    return table, notes


def compare(args, log):
    """Stylize, grid, table; returns (table rows, notes, written paths, {failed method: reason})."""
    from modify_ms.eval.files import atomic_write_text

    specs, sargs, names, source, inputs = prepare(args)
    grid_path, md_path, json_path = _fixed_outputs(args)
    results, failures, written = run_methods(specs, sargs, len(names), log)
    crops, size = write_input_crops(args, results, names, source, inputs)
    written += list(crops.values())
    if crops:
        write_grid(grid_path, results, crops, size)
        written.append(grid_path)
    table, notes = build_table(args, specs, results, failures, crops, log)
    document = {"photos": len(crops), "reference": args.reference, "variants": args.variants,
                "rows": table, "notes": notes}
    atomic_write_text(md_path, table_markdown(table) + "".join(f"\n> {n}\n" for n in notes))
    atomic_write_text(json_path, json.dumps(document, indent=2, default=_plain) + "\n")
    return table, notes, written + [md_path, json_path], failures


# every row of table.json has these keys (null where a metric does not apply or was not measured)
TABLE_KEYS = ("method", "run", "status", "photos", "fid", "identity_similarity", "identity_distance",
              "lpips_diversity", "fid_images", "style_images", "identity_pairs", "diversity_inputs",
              "variants_per_input")


def _plain(value):
    """numpy scalars (a count, a distance) as JSON numbers."""
    return value.item() if hasattr(value, "item") else str(value)


def _frame(path):
    from PIL import Image

    with Image.open(path) as image:
        return max(image.size)


def main(argv=None):
    args = parse_args(argv)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    table, notes, written, failures = compare(args, log)
    print(table_markdown(table), end="")
    for note in notes:
        log(note)
    print("written: " + ", ".join(p for p in _fixed_outputs(args) if p in written))
    return 1 if failures else 0


def cli():
    """``modify-compare`` / ``python tools/compare.py``: one-line errors (exit 2), exit 1 when a method failed."""
    run_main(lambda: main())


if __name__ == "__main__":
    cli()
