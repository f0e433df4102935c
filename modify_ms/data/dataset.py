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

A file that cannot be decoded when a worker reads it (a truncated JPEG passes the
default header check) must not kill the run from inside the worker: the worker
substitutes the next readable image in index order (deterministic, so batch shapes
stay static and runs reproducible) and reports what it skipped in one extra column,
``skipped``: per stream (image, y'), the requested index and how many unreadable
images were passed over. ``DataPipeline.arrays(batch)`` strips that column and feeds
``SkipLog``, which logs each bad file once, with its reason, in the main process and
summarises them at the end. ``build_dataset`` first decodes images in order until one
works, so a data set with no readable image stops there with one line.
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


SKIP_COLUMN = "skipped"


class ImageDataset:
    """Random-access source for ``GeneratorDataset``: key -> float32 CHW arrays in [-1, 1]
    per stream, then the ``skipped`` report (streams, 2) int64: [requested index, images skipped]."""

    def __init__(self, source: ImageSource, size: int, crop: str = "center", resampled_real: bool = False):
        self.source, self.size, self.crop, self.resampled_real = source, size, crop, resampled_real
        self._unreadable = set()  # per worker: indices that failed once are not decoded again

    def __len__(self) -> int:
        return len(self.source)

    def image(self, index: int, flip: int) -> np.ndarray:
        img = fit_square(self.source.read(index, reduce_to=self.size), self.size, self.crop)
        if flip:
            img = img[:, ::-1]
        return to_model_array(img)

    def usable_image(self, index: int, flip: int) -> Tuple[np.ndarray, int]:
        """(image of the first readable index from ``index`` on, number of unreadable ones passed over).
        All n unreadable (files damaged after the start): zeros and n, which SkipLog turns into an error."""
        n = len(self.source)
        for step in range(n):
            i = (index + step) % n
            if i in self._unreadable:
                continue
            try:
                return self.image(i, flip), step
            except InputError:
                self._unreadable.add(i)
        return np.zeros((3, self.size, self.size), np.float32), n

    def __getitem__(self, key):
        index, real_index, flip_image, flip_real = decode_key(key, len(self.source))
        image, skipped = self.usable_image(index, flip_image)
        report = [[index, skipped]]
        if not self.resampled_real:
            return image, np.array(report, np.int64)
        real, real_skipped = self.usable_image(real_index, flip_real)
        report.append([real_index, real_skipped])
        return image, real, np.array(report, np.int64)


class SkipLog:
    """Unreadable images met while iterating: each logged once with its reason, counted, summarised."""

    def __init__(self, source: ImageSource, where: str, log: Callable[[str], None]):
        self.source, self.where, self.log = source, where, log
        self.reasons = {}  # index -> reason, in the order found
        self.replaced = 0  # samples that got a substitute image

    def note(self, index: int, reason: str) -> None:
        if index not in self.reasons:
            self.reasons[index] = reason
            self.log(f"{self.where}: skipped unreadable image {self.source.names[index]}: {reason} "
                     f"(the next readable image is used instead)")

    def _reason(self, index: int) -> str:
        try:  # re-read in this process: the worker's exception did not travel with the batch
            self.source.read(index)
        except InputError as exc:
            return exc.reason
        return "could not be decoded by a data worker"

    def update(self, report: np.ndarray) -> None:
        """``report``: the ``skipped`` column of a batch, (B, streams, 2)."""
        n = len(self.source)
        for index, count in np.asarray(report).reshape(-1, 2):
            if count >= n:
                raise DataSourceError(f"{self.where}: none of the {n} images can be decoded any more "
                                      f"(files changed during the run?)")
            if count:
                self.replaced += 1
            for step in range(int(count)):
                i = (int(index) + step) % n
                if i not in self.reasons:
                    self.note(i, self._reason(i))

    def summary(self) -> str:
        if not self.reasons:
            return ""
        names = "; ".join(f"{self.source.names[i]} ({r})" for i, r in list(self.reasons.items())[:10])
        more = f"; and {len(self.reasons) - 10} more" if len(self.reasons) > 10 else ""
        return (f"{self.where}: {len(self.reasons)} unreadable images skipped during the run "
                f"({self.replaced} samples used the next image instead): {names}{more}")


@dataclass
class DataPipeline:
    dataset: msds.Dataset  # batched; its last column is SKIP_COLUMN
    source: ImageSource  # the images actually used (after verification / alignment)
    columns: Tuple[str, ...]  # the image columns
    batches_per_epoch: int
    skipped: List[Tuple[str, str]] = field(default_factory=list)  # refused when the set was opened
    skips: Optional[SkipLog] = None  # unreadable images met while iterating

    def summary(self) -> str:
        return (f"{len(self.source)} images, {self.batches_per_epoch} batches per epoch, "
                f"{len(self.skipped)} skipped")

    def arrays(self, batch) -> tuple:
        """The image columns of a tuple batch; its skip report goes to ``skips``."""
        *images, report = batch
        if self.skips is not None:
            self.skips.update(report)
        return tuple(images)


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


def first_readable(source: ImageSource, where: str) -> List[Tuple[int, str]]:
    """Decode images in order until one works; the unreadable ones before it as (index, reason).
    None readable: DataSourceError (one line), before any network is built."""
    bad = []
    for index in range(len(source)):
        try:
            source.read(index)
            return bad
        except InputError as exc:
            bad.append((index, exc.reason))
    first = f" (first: {source.names[bad[0][0]]}: {bad[0][1]})" if bad else ""
    raise DataSourceError(f"{where}: none of the {len(source)} images can be decoded{first}")


def build_dataset(cfg: DataConfig, start_epoch: int = 0, log: Optional[Callable[[str], None]] = None) -> DataPipeline:
    """A batched MindSpore dataset for ``cfg`` (see module doc). Iterate it per epoch
    (``create_tuple_iterator(num_epochs=...)``, each batch through ``pipeline.arrays``);
    each epoch has new shuffles and flips."""
    cfg.validate()
    log = log or (lambda text: print(text, file=sys.stderr))
    source = prepare_source(cfg, log)
    if source.skipped:
        log(f"{cfg.path}: {source.summary()}; first skipped: "
            + "; ".join(f"{name}: {reason}" for name, reason in source.skipped[:3]))
    check_shards(cfg, len(source), source.summary())
    skips = SkipLog(source, cfg.path, log)
    for index, reason in first_readable(source, cfg.path):
        skips.note(index, reason)
    return make_pipeline(cfg, source, skips, start_epoch)


def check_shards(cfg: DataConfig, n: int, summary: str = "") -> None:
    """Each of ``cfg.num_shards`` shards of ``n`` images must hold a batch; one line otherwise."""
    per_shard = n // cfg.num_shards
    if per_shard == 0 or (cfg.drop_remainder and per_shard < cfg.batch_size):
        workers = f" for each of {cfg.num_shards} workers" if cfg.num_shards > 1 else ""
        raise DataSourceError(f"{cfg.path}: {n} usable images ({summary or 'after checks'}) give {per_shard}"
                              f"{workers}, fewer than batch_size {cfg.batch_size}")


def batches_per_epoch(cfg: DataConfig, n: int) -> int:
    """Batches in one epoch of a shard of ``n`` images."""
    per_shard = n // cfg.num_shards
    return per_shard // cfg.batch_size if cfg.drop_remainder else -(-per_shard // cfg.batch_size)


def make_pipeline(cfg: DataConfig, source: ImageSource, skips: Optional[SkipLog] = None,
                  start_epoch: int = 0) -> DataPipeline:
    """The batched dataset over an opened ``source`` (``build_dataset`` opens and checks it):
    also how a resumed run restarts the same images at a later epoch."""
    sampler = EpochSampler(len(source), cfg.shuffle, cfg.seed, cfg.flip, cfg.num_shards, cfg.shard_id, start_epoch)
    columns = ("image", "real") if cfg.resampled_real else ("image",)
    data = msds.GeneratorDataset(ImageDataset(source, cfg.size, cfg.crop, cfg.resampled_real),
                                 list(columns) + [SKIP_COLUMN], sampler=sampler,
                                 num_parallel_workers=cfg.num_workers, python_multiprocessing=cfg.multiprocessing)
    data = data.batch(cfg.batch_size, drop_remainder=cfg.drop_remainder)
    return DataPipeline(data, source, columns, batches_per_epoch(cfg, len(source)), list(source.skipped), skips)


def held_images(source: ImageSource, size: int, crop: str, count: int) -> np.ndarray:
    """[K, 3, size, size]: ``count`` images spread evenly over ``source``, unflipped (K <= count;
    unreadable ones are passed over): a fixed batch to watch training on, the same at every sample."""
    data = ImageDataset(source, size, crop)
    picks = sorted({int(i) for i in np.linspace(0, len(source) - 1, min(count, len(source))).round()})
    images, seen = [], set()
    for i in picks:
        image, skipped = data.usable_image(i, 0)
        index = (i + skipped) % len(source)
        if skipped < len(source) and index not in seen:
            seen.add(index)
            images.append(image)
    return np.stack(images)


__all__ = ["EpochSampler", "ImageDataset", "DataPipeline", "SkipLog", "build_dataset", "make_pipeline",
           "batches_per_epoch", "check_shards",
           "prepare_source", "first_readable", "held_images", "encode_key", "decode_key", "InputError", "SKIP_COLUMN"]
