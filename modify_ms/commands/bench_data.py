"""Throughput of the data pipeline and of face alignment (prints, asserts nothing).

    python tools/bench_data.py [--images 96] [--source-size 1024] [--size 256] [--workers 2]

* dataset: images/s of build_dataset at --size with --workers workers, reading
  --source-size PNG and JPEG files (FFHQ and MetFaces ship 1024 px PNGs), with flips
  and the re-sampled real column on (two decoded images per row), threads and
  worker processes;
* alignment: seconds per photo for the FFHQ recipe at 1024 on the bundled photos
  (astronaut 512 px, grace_hopper 600x512), model loading reported apart.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("GLOG_v", "3")

import numpy as np  # noqa: E402

from ..data.align import Aligner, dlib_available  # noqa: E402
from ..data.builtin import astronaut_photo, builtin_photos, grace_hopper_photo  # noqa: E402
from ..data.imageio import save_image_atomic  # noqa: E402


def make_folder(folder: str, count: int, side: int, ext: str) -> None:
    photos = builtin_photos(side)[:8]  # the two colour photos and six LFW faces, repeated
    for i in range(count):
        save_image_atomic(os.path.join(folder, f"{i:05d}{ext}"), np.ascontiguousarray(photos[i % len(photos)]))


def bench_dataset(folder: str, size: int, workers: int, processes: bool, epochs: int = 2) -> float:
    from modify_ms.data import DataConfig, build_dataset

    cfg = DataConfig(path=folder, size=size, batch_size=4, num_workers=workers, multiprocessing=processes,
                     resampled_real=True, flip=True)
    pipe = build_dataset(cfg, log=lambda _t: None)
    it = pipe.dataset.create_tuple_iterator(num_epochs=epochs + 1, output_numpy=True)
    for _ in it:  # warm-up epoch (worker start-up, page cache)
        pass
    start, rows = time.perf_counter(), 0
    for _ in range(epochs):
        for batch in it:
            rows += batch[0].shape[0]
    return rows / (time.perf_counter() - start)


def bench_alignment(repeats: int, size: int = 1024):
    aligner = Aligner(size, "dlib")
    photos = [astronaut_photo(), grace_hopper_photo()]
    start = time.perf_counter()
    aligner(photos[0])  # first call loads the 100 MB landmark model
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(repeats):
        for photo in photos:
            aligner(photo)
    per_photo = (time.perf_counter() - start) / (repeats * len(photos))
    return first, per_photo


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--source-size", type=int, default=1024)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--align-repeats", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"cpu cores: {os.cpu_count()}")
    with tempfile.TemporaryDirectory() as tmp:
        for ext in (".png", ".jpg"):
            folder = os.path.join(tmp, ext[1:])
            make_folder(folder, args.images, args.source_size, ext)
            for processes in (False, True):
                rate = bench_dataset(folder, args.size, args.workers, processes)
                kind = "processes" if processes else "threads"
                print(f"dataset: {args.source_size}px {ext[1:]} -> {args.size}x{args.size}, {args.workers} worker "
                      f"{kind}, image+real columns: {rate:.1f} rows/s ({2 * rate:.1f} decoded images/s)")
    if dlib_available():
        first, per_photo = bench_alignment(args.align_repeats)
        print(f"alignment: FFHQ recipe to 1024x1024: {per_photo:.3f} s/photo "
              f"(first call incl. model load {first:.2f} s)")
    else:
        print("alignment: skipped (dlib not installed: pip install .[align])")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
