"""Run a feature network over many images in fixed-size batches (one GRAPH_MODE compile per image size).

The last, partial batch is padded with zeros to the full batch size and the
padding rows are dropped afterwards, so the compiled graph never sees a new
shape. Consecutive images of equal size share a batch.
"""
import os

import numpy as np
import mindspore as ms

from .files import read_image


def _progress(iterable, total, desc, enabled):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="img", leave=False, dynamic_ncols=True)


class BatchedFeatures:
    """host callable: [N, 3, H, W] float32 array -> [N, D] numpy features, in batches of ``batch_size``."""

    def __init__(self, cell, batch_size=16):
        self.cell = cell
        self.batch_size = int(batch_size)

    def __call__(self, images):
        images = np.asarray(images, dtype=np.float32)
        outs = []
        for start in range(0, images.shape[0], self.batch_size):
            chunk = images[start:start + self.batch_size]
            count = chunk.shape[0]
            if count < self.batch_size:
                pad = np.zeros((self.batch_size - count,) + chunk.shape[1:], np.float32)
                chunk = np.concatenate([chunk, pad], axis=0)
            outs.append(self.cell(ms.Tensor(chunk)).asnumpy()[:count])
        return np.concatenate(outs, axis=0)


def features_of_files(paths, features, reader=read_image, progress=True, desc="features"):
    """[N, D] features of image files ([0, 1] RGB, NCHW) through ``features`` (a BatchedFeatures).
    A ``reader`` returning None (files.SkippingReader) leaves that file out."""
    batch, outs = [], []
    batch_size = getattr(features, "batch_size", 16)

    def flush():
        if batch:
            outs.append(features(np.stack(batch)))
            batch.clear()

    for path in _progress(paths, len(paths), desc, progress):
        image = reader(path)
        if image is None:
            continue
        image = image.transpose(2, 0, 1)
        if batch and image.shape != batch[0].shape:
            flush()
        batch.append(image)
        if len(batch) == batch_size:
            flush()
    flush()
    if not outs:
        from .files import EvalInputError

        raise EvalInputError(f"none of the {len(paths)} images could be read ({desc})")
    return np.concatenate(outs, axis=0)


def statistics_for_files(paths, features, cache_dir=None, weights_digest="", settings="", progress=True,
                         desc="features", reader=read_image):
    """FID statistics of image files, read from / written to ``cache_dir`` when given.

    The cache file is ``fid_stats_<key>.npz`` with ``key = statistics_key(paths, weights_digest,
    settings)``: a changed, added or removed file, other weights or other extractor settings
    give another key. Returns dict(mu, sigma, num_images, key, cached).
    """
    from .fid import feature_statistics, load_statistics, save_statistics, statistics_key

    key = statistics_key(paths, weights_digest, settings)
    cache = os.path.join(cache_dir, f"fid_stats_{key}.npz") if cache_dir else None
    if cache and os.path.isfile(cache):
        stats = load_statistics(cache)
        if stats["key"] == key:  # the key covers every file's name, size and mtime
            return dict(stats, cached=True)
    feats = features_of_files(paths, features, reader=reader, progress=progress, desc=desc)
    mu, sigma = feature_statistics(feats)
    if cache:
        save_statistics(cache, mu, sigma, len(feats), key)
    return {"mu": mu, "sigma": sigma, "num_images": len(feats), "key": key, "cached": False}
