"""Align a folder of face photos the FFHQ way (dlib 68 landmarks -> eye/mouth quad).

    python tools/align_faces.py IN_DIR OUT_DIR --size 1024 [--workers 2] [--mode auto]

IN_DIR may also be a .zip archive, a .txt file list or a single image. Each input
becomes OUT_DIR/<relative path>.png (lossless). Outputs are written atomically, so a
rerun skips finished images (use --overwrite to redo them). Files that cannot be used
(not an image, corrupt, too small or too large, no face) are skipped; the summary lists
each with its reason and is also saved as OUT_DIR/align_skipped.tsv. ``--no-face center``
keeps photos without a detected face as centre crops instead.
Exit status: 0 when at least one image is aligned or already present, 1 otherwise,
2 for bad arguments.
"""
from __future__ import annotations

import argparse
import os
import sys

if __package__ in (None, ""):  # run as a script from a checkout
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from modify_ms.data.align import ALIGN_MODES, AlignUnavailableError  # noqa: E402
from modify_ms.data.imageio import write_bytes_atomic  # noqa: E402
from modify_ms.data.prepare import align_source  # noqa: E402
from modify_ms.data.sources import DataSourceError, ZipSource, open_source  # noqa: E402


def output_paths(source, in_path: str, out_dir: str):
    """Mirror the input layout; every output is a .png."""
    if isinstance(source, ZipSource):
        rels = list(source.names)
    elif os.path.isdir(in_path):
        rels = [os.path.relpath(name, in_path) for name in source.names]
    else:  # file list or single image: keep the base names
        rels = [os.path.basename(name) for name in source.names]
    return [os.path.join(out_dir, os.path.splitext(rel)[0] + ".png") for rel in rels]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("in_dir", help="folder (recursive), .zip, .txt list or one image")
    parser.add_argument("out_dir", help="output folder (created)")
    parser.add_argument("--size", type=int, default=1024, help="output resolution (default 1024)")
    parser.add_argument("--workers", type=int, default=max(1, min(4, os.cpu_count() or 1)),
                        help="worker processes (default: min(4, cores))")
    parser.add_argument("--mode", choices=ALIGN_MODES, default="auto",
                        help="dlib: FFHQ alignment (needs pip install .[align]); auto: dlib when installed, "
                             "else centre crop; none: centre crop only")
    parser.add_argument("--min-score", type=float, default=0.0,
                        help="dlib detector score a face must reach (default 0, dlib's own threshold)")
    parser.add_argument("--no-face", choices=("skip", "center"), default="skip",
                        help="photos where no face is found: skip them (default) or keep a centre crop")
    parser.add_argument("--overwrite", action="store_true", help="redo outputs that already exist")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if not 8 <= args.size <= 4096:
        parser.error(f"--size must be in [8, 4096], got {args.size}")
    if args.workers < 1:
        parser.error("--workers must be >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        source = open_source(args.in_dir)
    except DataSourceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    paths = output_paths(source, args.in_dir, args.out_dir)
    seen, unique, skipped_dup = {}, [], []
    for index, path in enumerate(paths):  # a.jpg and a.png in one folder would share a.png
        if path in seen:
            skipped_dup.append((source.names[index], f"output {path} already taken by {source.names[seen[path]]}"))
        else:
            seen[path] = index
            unique.append(index)
    source = source.subset(unique, skipped_dup) if skipped_dup else source
    paths = [paths[i] for i in unique]
    try:
        summary, _ = align_source(source, args.size, args.mode, paths, workers=args.workers,
                                  min_score=args.min_score, overwrite=args.overwrite, progress=not args.quiet,
                                  no_face="center" if args.no_face == "center" else "error")
    except AlignUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary.text(limit=50))
    if source.ignored:
        print(f"{source.ignored} files without an image extension ignored")
    if summary.skipped:
        report = os.path.join(args.out_dir, "align_skipped.tsv")
        rows = "".join(f"{name}\t{reason}\n" for name, reason in summary.skipped)
        write_bytes_atomic(report, ("input\treason\n" + rows).encode("utf-8"))
        print(f"skipped files listed in {report}")
    return 0 if summary.aligned + summary.existing > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
