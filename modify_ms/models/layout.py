"""The W+ layout every network and config shares; free of MindSpore so configs can validate with it."""
import math

RESOLUTIONS = (8, 16, 32, 64, 128, 256, 512, 1024)


def check_size(size):
    """log2 of a StyleGAN2 resolution; ValueError for any other size."""
    if size not in RESOLUTIONS:
        raise ValueError(f"StyleGAN2 resolution must be a power of two from 8 to 1024, got {size}")
    return int(math.log2(size))


def n_latent_for(size):
    """Number of W+ rows of a generator of this resolution: 18 at 1024, 14 at 256 (two per layer pair + 2)."""
    return check_size(size) * 2 - 2


def stddev_group_for(batch, group_size):
    """Minibatch-stddev group used at ``batch``: min(group_size, batch), the whole batch when
    ``group_size`` is None (NVlabs' stylegan2-ada rule; rosinality's is the same with 4).

    Pure arithmetic: it runs inside compiled (and twice-differentiated) graphs, where a raise
    breaks the gradient-penalty graph; batches are checked on the host by ``check_stddev_batch``."""
    return batch if group_size is None else min(group_size, batch)


def check_stddev_batch(batch, group_size):
    """Host-side check, before a step is compiled: a batch the group does not divide (batch 6
    with group 4) would make the stddev reshape fail (NVlabs' too); one ValueError line instead."""
    group = stddev_group_for(batch, group_size)
    if batch % group:
        raise ValueError(f"minibatch stddev: batch {batch} is not divisible by the group size {group} "
                         f"(min(stddev_group={group_size}, batch)); use a multiple of it or a batch below it")
    return group
