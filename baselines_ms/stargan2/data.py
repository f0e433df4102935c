"""The official sampling of sources and references (``core/data_loader.py``), on the host.

Each sample of a batch: a source x_real of domain y_org and two references x_ref, x_ref2 of domain
y_trg. Both loaders use a class-balanced sampler with replacement, so each domain is drawn
uniformly and then an image uniformly within it; x_ref2 is x_ref's partner in a fixed
per-domain shuffle (``ReferenceDataset``: drawn once when the set is built). Each image goes
through the training transform: with probability ``rand_crop`` a RandomResizedCrop (scale
[0.8, 1], ratio [0.9, 1.1]) resized back, then a horizontal flip with probability 0.5.

Everything is drawn from the generator passed in (the trainer's seeded, checkpointed host RNG),
so a resumed run sees the batches an uninterrupted one would. Images are read through
modify_ms' data sources (``ImageDataset``: decoding, square fitting, unreadable files passed over).
"""
import math

import cv2
import numpy as np

from modify_ms.data.dataset import ImageDataset, first_readable, prepare_source
from modify_ms.data.sources import DataSourceError

CROP_SCALE = (0.8, 1.0)
CROP_RATIO = (0.9, 1.1)


def random_resized_crop(image, rng):
    """torchvision's RandomResizedCrop on a CHW square image, resized back to its size (bilinear);
    ten tries, then the whole image (its fallback for a square image)."""
    _, h, w = image.shape
    for _ in range(10):
        area = h * w * rng.uniform(*CROP_SCALE)
        ratio = math.exp(rng.uniform(math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])))
        cw, ch = int(round(math.sqrt(area * ratio))), int(round(math.sqrt(area / ratio)))
        if 0 < cw <= w and 0 < ch <= h:
            top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            crop = np.ascontiguousarray(image[:, top:top + ch, left:left + cw].transpose(1, 2, 0))
            return cv2.resize(crop, (w, h), interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1)
    return image


class DomainSampler:
    """Batches {x_real, y_org, x_ref, x_ref2, y_trg} over the domains' image sets."""

    def __init__(self, domains, size, rand_crop=0.5, flips=None, partner_seed=0):
        self.sets = [ImageDataset(source, size, data_cfg.crop) for source, data_cfg in domains]
        self.flips = [data_cfg.flip for _, data_cfg in domains] if flips is None else list(flips)
        self.rand_crop = rand_crop
        rng = np.random.default_rng([partner_seed, 2])
        self.partners = [rng.permutation(len(s)) for s in self.sets]

    @property
    def num_domains(self):
        return len(self.sets)

    def image(self, domain, index, rng):
        flip = int(self.flips[domain] and rng.uniform() < 0.5)
        crop = rng.uniform() < self.rand_crop
        image, _ = self.sets[domain].usable_image(index, 0)
        if crop:
            image = random_resized_crop(image, rng)
        return np.ascontiguousarray(image[:, :, ::-1] if flip else image, np.float32)

    def batch(self, rng, batch_size):
        k = self.num_domains
        y_org = rng.integers(0, k, batch_size)
        y_trg = rng.integers(0, k, batch_size)
        x_real, x_ref, x_ref2 = [], [], []
        for b in range(batch_size):
            x_real.append(self.image(y_org[b], int(rng.integers(len(self.sets[y_org[b]]))), rng))
            j = int(rng.integers(len(self.sets[y_trg[b]])))
            x_ref.append(self.image(y_trg[b], j, rng))
            x_ref2.append(self.image(y_trg[b], int(self.partners[y_trg[b]][j]), rng))
        return {"x_real": np.stack(x_real), "y_org": y_org.astype(np.int32), "x_ref": np.stack(x_ref),
                "x_ref2": np.stack(x_ref2), "y_trg": y_trg.astype(np.int32)}


def open_domains(cfg, log):
    """[(source, data config)] of every domain, opened and checked (one line when a set has no
    readable image) before any network is built."""
    opened = []
    for i, data_cfg in enumerate(cfg.domains):
        data_cfg.validate()
        source = prepare_source(data_cfg, log)
        if len(source) == 0:
            raise DataSourceError(f"{data_cfg.path}: no images (domain {cfg.domain_names[i]!r})")
        first_readable(source, data_cfg.path)
        opened.append((source, data_cfg))
    return opened
