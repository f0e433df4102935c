"""Align a folder of face photos the FFHQ way (dlib 68 landmarks -> eye/mouth quad).

    python tools/align_faces.py IN OUT_DIR --size 1024 [--workers 2] [--mode auto] [--face largest]

IN may be a folder (recursive), a .zip archive, a .txt file list or a single image. Each
input becomes OUT_DIR/<relative path>.<ext> (--ext, default png; the format follows the
extension). Names come from the input and are cleaned: an archive member with an absolute
name or '..' is skipped and reported, and no output ever leaves OUT_DIR. Two inputs with
the same name (a.jpg, a.png) get a.png and a_png.png, listed in the summary.

OUT_DIR must not be the input folder or inside it, nor the folder holding the input
archive, list or photo (outputs would mix with, be read back as, or replace the inputs)
unless --allow-output-in-input is given; even then no input file is ever overwritten.

Faces: the main face of each photo is kept (--face largest: the largest, most central
face; printed with its score when the photo has several), --face best keeps the highest
detector score, --face N face number N (0 = main face), --face all one crop per face as
<name>_face0.<ext>, <name>_face1.<ext>, ... When no face is found, detection is retried
with upsampling and contrast equalisation before the photo is reported as 'no face'.

Outputs are written atomically, so a rerun skips finished images (use --overwrite to redo
them). Files that cannot be used (not an image, corrupt, too small or too large, no face)
are skipped; the summary lists each with its reason and it is also saved as
OUT_DIR/align_skipped.tsv. ``--no-face center`` keeps photos without a detected face as
centre crops instead.
Exit status: 0 when at least one image is aligned or already present, 1 otherwise,
2 for bad arguments (one line 'error: ...', nothing written).
"""
from __future__ import annotations

import math
import os
import sys
import tempfile

from ..cli import ToolParser  # first: quiets MindSpore before it is imported
from ..data.align import ALIGN_MODES, FACE_CHOICES, parse_face_choice
from ..data.imageio import InputError, write_bytes_atomic
from ..data.prepare import align_source, printable
from ..data.sources import DataSourceError, FileSource, ZipSource, open_source
from ..utils.paths import OutputPathError, check_output_dir, unique_stems

OUTPUT_EXTENSIONS = ("png", "jpg", "jpeg", "webp")
SKIPPED_REPORT = "align_skipped.tsv"
ALLOW_FLAG = "--allow-output-in-input"


def parse_args(argv=None):
    parser = ToolParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("in_path", metavar="IN", help="folder (recursive), .zip, .txt list or one image")
    parser.add_argument("out_dir", metavar="OUT_DIR", help="output folder (created)")
    parser.add_argument("--size", type=int, default=1024, help="output resolution (default 1024)")
    parser.add_argument("--workers", type=int, default=max(1, min(4, os.cpu_count() or 1)),
                        help="worker processes (default: min(4, cores))")
    parser.add_argument("--mode", choices=ALIGN_MODES, default="auto",
                        help="dlib: FFHQ alignment (needs pip install .[align]); auto: dlib when installed, "
                             "else centre crop; none: centre crop only")
    parser.add_argument("--face", type=_face_choice, default="largest", metavar="|".join(FACE_CHOICES) + "|N",
                        help="which face of a photo with several: largest (default: the main face, largest "
                             "and most central), best (highest detector score), all (one crop per face, "
                             "<name>_face<k>), or N (face number N, 0 = main face)")
    parser.add_argument("--ext", choices=OUTPUT_EXTENSIONS, default="png",
                        help="output format, by extension (default png, lossless)")
    parser.add_argument("--min-score", type=float, default=0.0,
                        help="dlib detector score a face must reach (default 0, dlib's own threshold)")
    parser.add_argument("--no-face", choices=("skip", "center"), default="skip",
                        help="photos where no face is found: skip them (default) or keep a centre crop")
    parser.add_argument("--overwrite", action="store_true", help="redo outputs that already exist")
    parser.add_argument(ALLOW_FLAG, dest="allow_output_in_input", action="store_true",
                        help="allow OUT_DIR inside (or equal to) the input folder; inputs are still never "
                             "overwritten, and files under an OUT_DIR inside it are not read as inputs")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if not 8 <= args.size <= 4096:
        parser.error(f"--size must be in [8, 4096], got {args.size}")
    if args.workers < 1:
        parser.error(f"--workers must be >= 1, got {args.workers}")
    if not math.isfinite(args.min_score):
        parser.error(f"--min-score must be a finite number, got {args.min_score}")
    return args


def _face_choice(text: str):
    try:
        return parse_face_choice(text)
    except ValueError as exc:
        import argparse

        raise argparse.ArgumentTypeError(str(exc)) from None


# ----------------------------------------------------------------------------- where outputs go

def input_files(in_path: str, source) -> list:
    """The input files whose folders must not receive outputs: the archive, list or photo
    named on the command line and, for a list, every file it names."""
    if os.path.isdir(in_path):
        return []
    files = [in_path]
    if isinstance(source, FileSource) and in_path.lower().endswith(".txt"):
        files += source.names
    return files


def check_out_dir(out_dir: str, in_path: str, source, allow: bool) -> None:
    folders = [in_path] if os.path.isdir(in_path) else []
    check_output_dir(out_dir, folders, allow_inside=allow, flag=ALLOW_FLAG, input_files=input_files(in_path, source))


def _real(path: str) -> str:
    return os.path.realpath(os.path.abspath(path))


def drop_own_outputs(source, in_path: str, out_dir: str):
    """With OUT_DIR inside the input folder (allowed by the flag), files under OUT_DIR are
    this tool's outputs: never read them back as inputs. Returns (source, count left out)."""
    if not (isinstance(source, FileSource) and os.path.isdir(in_path)) or _real(out_dir) == _real(in_path):
        return source, 0  # OUT_DIR equal to the input folder: every file is an input
    prefix = _real(out_dir).rstrip(os.sep) + os.sep
    keep = [i for i, name in enumerate(source.names) if not _real(name).startswith(prefix)]
    return (source.subset(keep), len(source) - len(keep)) if len(keep) < len(source) else (source, 0)


def plan_outputs(source, out_dir: str, ext: str):
    """One output path per image, from its clean relative name with the extension replaced,
    made unique (first in sorted order keeps the name). Returns (source, paths, renames:
    (input, new stem) for each input that could not keep its own name);
    images whose output would leave OUT_DIR through a symbolic link are moved to the
    source's skipped list."""
    stem_of = lambda rel: os.path.splitext(rel)[0]  # noqa: E731
    stems, _ = unique_stems(source.rel_names, stem_of=stem_of)
    renames = [(source.names[i], stem) for i, stem in enumerate(stems) if stem != stem_of(source.rel_names[i])]
    root = _real(out_dir)
    keep, paths, skipped = [], [], []
    for index, stem in enumerate(stems):
        path = os.path.join(out_dir, *stem.split("/")) + "." + ext
        folder = _real(os.path.dirname(path))  # a symbolic link under OUT_DIR may point anywhere
        if folder != root and not folder.startswith(root.rstrip(os.sep) + os.sep):
            skipped.append((source.names[index], f"output {path} would leave {out_dir} (symbolic link)"))
            continue
        keep.append(index)
        paths.append(path)
    if skipped:
        source = source.subset(keep, skipped)
    return source, paths, renames


def protected_inputs(in_path: str, source) -> list:
    """Files that must never be written: the images (folder, list, photo) or the archive."""
    if isinstance(source, ZipSource):
        return [source.archive]
    files = list(source.names) if isinstance(source, FileSource) else []
    return files + ([in_path] if os.path.isfile(in_path) else [])


def ensure_out_dir(out_dir: str) -> None:
    """Create OUT_DIR and make sure it takes files, so an unwritable folder is one error line
    rather than one skip per image."""
    try:
        os.makedirs(out_dir, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir, prefix=".tmp_probe_"):
            pass
    except OSError as exc:
        raise OutputPathError(f"{out_dir}: cannot write to the output folder ({exc.strerror or exc})") from None


# ----------------------------------------------------------------------------- reporting

def write_skipped_report(out_dir: str, skipped) -> str:
    report = os.path.join(out_dir, SKIPPED_REPORT)
    rows = "".join(f"{printable(name)}\t{printable(reason)}\n" for name, reason in skipped)
    write_bytes_atomic(report, ("input\treason\n" + rows).encode("utf-8"))
    return report


def print_renames(renames, ext: str, all_faces: bool, limit: int = 50) -> None:
    """``renames``: (input, new output stem) pairs from plan_outputs."""
    if not renames:
        return
    print(f"{len(renames)} outputs renamed because another input has the same name:")
    suffix = f"_face<k>.{ext}" if all_faces else f".{ext}"
    for name, stem in renames[:limit]:
        print(f"  {printable(name)} -> {printable(stem + suffix)}")
    if len(renames) > limit:
        print(f"  ... and {len(renames) - limit} more renamed")


# ----------------------------------------------------------------------------- main

def run(args) -> int:
    source = open_source(args.in_path, args.size)
    if len(source) == 0 and not source.skipped:
        ignored = f" ({source.ignored} files without an image extension)" if source.ignored else ""
        raise DataSourceError(f"{args.in_path}: no images found{ignored}")
    check_out_dir(args.out_dir, args.in_path, source, args.allow_output_in_input)
    source, own = drop_own_outputs(source, args.in_path, args.out_dir)
    source, paths, renames = plan_outputs(source, args.out_dir, args.ext)
    ensure_out_dir(args.out_dir)  # every check passed: the first write
    summary, _ = align_source(source, args.size, args.mode, paths, workers=args.workers,
                              min_score=args.min_score, overwrite=args.overwrite, progress=not args.quiet,
                              no_face="center" if args.no_face == "center" else "error", face=args.face,
                              protect=protected_inputs(args.in_path, source))
    print(summary.text(limit=50))
    print_renames(renames, args.ext, args.face == "all")
    if own:
        print(f"{own} files under {printable(args.out_dir)} not read as inputs (earlier outputs)")
    if source.ignored:
        print(f"{source.ignored} files without an image extension ignored")
    if summary.skipped:
        print(f"skipped files listed in {printable(write_skipped_report(args.out_dir, summary.skipped))}")
    return 0 if summary.aligned + summary.existing > 0 else 1


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except (DataSourceError, OutputPathError, InputError) as exc:  # InputError: AlignUnavailableError too
        print(f"error: {printable(str(exc))}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. the disk filling up while the report is written
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {printable(where + (exc.strerror or str(exc)))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
