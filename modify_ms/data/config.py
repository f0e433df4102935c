"""``DataConfig``: the ``data:`` section of every training config."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MAX_SIZE = 4096


@dataclass(frozen=True)
class DataConfig:
    """Where the images come from and how they are turned into batches.

    path: a folder (searched recursively), a .zip archive, a .txt file list (one path a
      line, relative to the list's folder), a single image, or 'builtin:photos' /
      'builtin:painted' (offline smoke-test data, see modify_ms.data.builtin).
    size: model resolution; images are square size x size. 0 only in stage 2, where it means
      the stage-1 run's model.loss_size (the size E' reads; any other value must equal it).
    align: 'none' (images already aligned: centre crop), 'auto' (FFHQ alignment when
      dlib is installed, centre crop otherwise), 'dlib' (FFHQ alignment, error without
      dlib). Aligned images are computed once, into cache_dir when given.
    crop: for unaligned images, 'center' (central square) or 'stretch' (resize as is).
    resampled_real: add a 'real' column, another real image (a different index) for the
      adversarial loss (MODIFY's y').
    verify: 'header' checks each file's header when the set is opened, 'full' decodes
      every file once (finds truncated files before training starts).
    batch_size: per device. Under msrun each of N workers reads batches of batch_size from its
      own shard (the trainers set num_shards / shard_id from the workers), so the global batch
      is N x batch_size.
    num_shards / shard_id: data-parallel split (group size, rank); shards are disjoint
      and equally long.
    """

    path: str = ""
    size: int = 256
    batch_size: int = 4
    num_workers: int = 2
    # worker processes (default) or threads: processes measured ~1.5x faster for 1024 px PNGs on
    # 2 cores (tools/bench_data.py); threads avoid copying in-memory sources into each worker
    multiprocessing: bool = True
    flip: bool = True
    shuffle: bool = True
    seed: int = 0
    drop_remainder: bool = True
    resampled_real: bool = False
    align: Literal["none", "auto", "dlib"] = "none"
    align_min_score: float = 0.0  # dlib detector score a face must reach
    crop: Literal["center", "stretch"] = "center"
    cache_dir: str = ""
    max_images: int = 0  # 0: all images; else the first max_images (in sorted order)
    verify: Literal["header", "full"] = "header"
    num_shards: int = 1
    shard_id: int = 0

    def validate(self) -> None:
        if not self.path:
            raise ValueError("data.path is empty (a folder, .zip, .txt list, image, or builtin:photos / builtin:painted)")
        if not (8 <= self.size <= MAX_SIZE or self.size == 0):
            raise ValueError(f"data.size must be in [8, {MAX_SIZE}] (or 0 in stage 2: the stage-1 loss size), "
                             f"got {self.size}")
        if self.batch_size < 1:
            raise ValueError(f"data.batch_size must be >= 1, got {self.batch_size}")
        if not 1 <= self.num_workers <= 64:
            raise ValueError(f"data.num_workers must be in [1, 64], got {self.num_workers}")
        if self.seed < 0:
            raise ValueError(f"data.seed must be >= 0, got {self.seed}")
        if self.max_images < 0:
            raise ValueError(f"data.max_images must be >= 0, got {self.max_images}")
        if self.num_shards < 1:
            raise ValueError(f"data.num_shards must be >= 1, got {self.num_shards}")
        if not 0 <= self.shard_id < self.num_shards:
            raise ValueError(f"data.shard_id must be in [0, {self.num_shards - 1}], got {self.shard_id}")
        if self.align not in ("none", "auto", "dlib"):
            raise ValueError(f"data.align must be none, auto or dlib, got {self.align!r}")
        if self.crop not in ("center", "stretch"):
            raise ValueError(f"data.crop must be center or stretch, got {self.crop!r}")
        if self.verify not in ("header", "full"):
            raise ValueError(f"data.verify must be header or full, got {self.verify!r}")
