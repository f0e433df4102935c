"""Training datasets on ``mindspore.dataset``.

``build_dataset(cfg)`` turns a ``DataConfig`` into a batched ``GeneratorDataset``
whose columns are ``image`` (and ``real`` with ``resampled_real``), float32
(B, 3, size, size) in [-1, 1], with static batch shapes (``drop_remainder``).

Randomness lives in ``EpochSampler`` only, on the host, from
``np.random.default_rng([seed, epoch, stream])`` (no global seed is touched): the
shuffled order, the horizontal flips and MODIFY's re-sampled real image y' are all
fixed by (seed, epoch), so a run is reproducible whatever the number of workers.
The sampler hands each worker one integer key that packs (index, y' index, flip of
the image, flip of y'); the y' index is ``(index + offset) % n`` with
``1 <= offset < n``, so it always differs from the input's index when n > 1.

Shards (``num_shards``, ``shard_id``) take disjoint, equally long strided slices of
the same per-epoch permutation.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Tuple

import mindspore.dataset as msds
import numpy as np

from .config import DataConfig
from .imageio import InputError
from .prepare import align_source, cache_paths, fit_square, to_model_array
from .sources import ArraySource, DataSourceError, FileSource, ImageSource, open_source, verify_source


def encode_key(index: int, real_index: int, flip_image: int, flip_real: int, n: int) -> int:
    return ((index * n + real_index) * 2 + flip_image) * 2 + flip_real


def decode_key(key: int, n: int) -> Tuple[int, int, int, int]:
    key, flip_real = divmod(int(key), 2)
    key, flip_image = divmod(key, 2)
    index, real_index = divmod(key, n)
    return index, real_index, flip_image, flip_real


class EpochSampler(msds.Sampler):
    """Per-epoch seeded order, flips and y' indices for one shard (see module doc).

    MindSpore calls ``__iter__`` once per epoch on its own copy of the sampler, so the
    epoch counter advances with the pipeline; ``start_epoch`` resumes a run.
    """

    def __init__(self, n: int, shuffle: bool = True, seed: int = 0, flip: bool = False,
                 num_shards: int = 1, shard_id: int = 0, start_epoch: int = 0):
        if n < num_shards:
            raise ValueError(f"{n} images cannot be split into {num_shards} shards")
        self.n, self.shuffle, self.seed, self.flip = n, shuffle, seed, flip
        self.num_shards, self.shard_id = num_shards, shard_id
        self.epoch = start_epoch
        super().__init__()  # reads len(self)

    def __len__(self) -> int:
        return self.n // self.num_shards

    def plan(self, epoch: int) -> np.ndarray:
        """(len, 4) int64 rows (index, y' index, flip image, flip y') of this shard's epoch."""
        n = self.n
        order = np.random.default_rng([self.seed, epoch, 0]).permutation(n) if self.shuffle else np.arange(n)
        offsets = (np.random.default_rng([self.seed, epoch, 1]).integers(1, n, size=n) if n > 1
                   else np.zeros(n, dtype=np.int64))
        flips = (np.random.default_rng([self.seed, epoch, 2]).integers(0, 2, size=(n, 2)) if self.flip
                 else np.zeros((n, 2), dtype=np.int64))
        real = (order + offsets) % n
        rows = np.stack([order, real, flips[:, 0], flips[:, 1]], axis=1).astype(np.int64)
        return rows[self.shard_id::self.num_shards][:len(self)]

    def keys(self, epoch: int) -> List[int]:
        return [encode_key(int(i), int(j), int(a), int(b), self.n) for i, j, a, b in self.plan(epoch)]

    def __iter__(self):
        keys = self.keys(self.epoch)
        self.epoch += 1
        return iter(keys)


class ImageDataset:
    """Random-access source for ``GeneratorDataset``: key -> float32 CHW arrays in [-1, 1]."""

    def __init__(self, source: ImageSource, size: int, crop: str = "center", resampled_real: bool = False):
        self.source, self.size, self.crop, self.resampled_real = source, size, crop, resampled_real

    def __len__(self) -> int:
        return len(self.source)

    def image(self, index: int, flip: int) -> np.ndarray:
        img = fit_square(self.source.read(index, reduce_to=self.size), self.size, self.crop)
        if flip:
            img = img[:, ::-1]
        return to_model_array(img)

    def __getitem__(self, key):
        index, real_index, flip_image, flip_real = decode_key(key, len(self.source))
        image = self.image(index, flip_image)
        if not self.resampled_real:
            return (image,)
        return image, self.image(real_index, flip_real)


@dataclass
class DataPipeline:
    dataset: msds.Dataset  # batched
    source: ImageSource  # the images actually used (after verification / alignment)
    columns: Tuple[str, ...]
    batches_per_epoch: int
    skipped: List[Tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{len(self.source)} images, {self.batches_per_epoch} batches per epoch, "
                f"{len(self.skipped)} skipped")


def prepare_source(cfg: DataConfig, log: Callable[[str], None]) -> ImageSource:
    """Open, verify and (optionally) align the images named by cfg.path."""
    source = open_source(cfg.path, cfg.size)
    if cfg.max_images and len(source) > cfg.max_images:
        source = source.subset(range(cfg.max_images))
    source = verify_source(source, cfg.verify, cfg.num_workers)
    if cfg.align != "none":
        paths = cache_paths(source, cfg.cache_dir, cfg.size, cfg.align, cfg.align_min_score) if cfg.cache_dir else None
        summary, outputs = align_source(source, cfg.size, cfg.align, paths, workers=cfg.num_workers,
                                        min_score=cfg.align_min_score, progress=sys.stderr.isatty(), notice=log)
        log(f"{cfg.path}: alignment: {summary.text(limit=5)}")
        if paths is not None:
            source = FileSource(outputs, summary.skipped, source.ignored)
        else:
            failed = {name for name, _ in summary.skipped}
            names = [name for name in source.names if name not in failed]
            source = ArraySource(outputs, names, summary.skipped, source.ignored)
    return source


def build_dataset(cfg: DataConfig, start_epoch: int = 0, log: Optional[Callable[[str], None]] = None) -> DataPipeline:
    """A batched MindSpore dataset for ``cfg`` (see module doc). Iterate it per epoch
    (``create_dict_iterator(num_epochs=...)``); each epoch has new shuffles and flips."""
    cfg.validate()
    log = log or (lambda text: print(text, file=sys.stderr))
    source = prepare_source(cfg, log)
    if source.skipped:
        log(f"{cfg.path}: {source.summary()}; first skipped: "
            + "; ".join(f"{name}: {reason}" for name, reason in source.skipped[:3]))
    per_shard = len(source) // cfg.num_shards
    if per_shard == 0 or (cfg.drop_remainder and per_shard < cfg.batch_size):
        raise DataSourceError(f"{cfg.path}: {len(source)} usable images ({source.summary()}) give "
                              f"{per_shard} per shard, fewer than batch_size {cfg.batch_size}")
    sampler = EpochSampler(len(source), cfg.shuffle, cfg.seed, cfg.flip, cfg.num_shards, cfg.shard_id, start_epoch)
    columns = ("image", "real") if cfg.resampled_real else ("image",)
    data = msds.GeneratorDataset(ImageDataset(source, cfg.size, cfg.crop, cfg.resampled_real), list(columns),
                                 sampler=sampler, num_parallel_workers=cfg.num_workers,
                                 python_multiprocessing=cfg.multiprocessing)
    data = data.batch(cfg.batch_size, drop_remainder=cfg.drop_remainder)
    batches = per_shard // cfg.batch_size if cfg.drop_remainder else -(-per_shard // cfg.batch_size)
    return DataPipeline(data, source, columns, batches, list(source.skipped))


__all__ = ["EpochSampler", "ImageDataset", "DataPipeline", "build_dataset", "prepare_source",
           "encode_key", "decode_key", "InputError"]
