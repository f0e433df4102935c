"""Data parallelism on MindSpore's own runtime.

``msrun`` (or, on older Ascend clusters, one process per device from a rank table) starts
the workers; ``join_world`` calls ``mindspore.communication.init()`` when the environment
says the process is one of them, and a plain ``python tools/train_modify.py`` stays a
single process. What each piece does under N workers:

- gradients: ``UpdateStep`` averages them with ``nn.DistributedGradReducer`` before the
  optimizers run, so every replica takes the same update;
- data: ``data.batch_size`` is per device (global batch = N x batch_size); each worker
  reads a disjoint strided shard of the same per-epoch plan (images and y' together,
  ``data.dataset.EpochSampler``), so the N shards of a step hold exactly the samples one
  process at batch N x batch_size would read;
- host randomness (z, noise, the penalty's interpolation weights): one generator per
  sample, keyed by (seed, stream, the sample's position in the global stream)
  (``sample_rngs``), so a sample gets the same draws whatever the number of workers;
- BatchNorm: with ``run.sync_batch_norm`` the encoder's statistics are those of the
  global batch (``nn.norm.CrossDeviceBatchNorm``); minibatch stddev groups stay within a
  device's batch (as in NVlabs' multi-GPU training; with a group equal to the per-device
  batch, the strided shards make them the same groups as one process's);
- files: rank 0 alone writes (config, metrics, samples, checkpoints); the others log to
  msrun's per-worker logs. ``barrier`` holds the workers together before the run folder
  is created (every worker has checked its inputs) and after checkpoints.

On the CPU, MindSpore runs collectives only inside compiled graphs: the barrier is a
compiled AllReduce, and a distributed run requires ``run.mode: graph``.
"""
import functools
import os
import sys
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class World:
    size: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def main(self):
        """The worker that writes the run's files."""
        return self.rank == 0

    @property
    def distributed(self):
        return self.size > 1


_WORLD = World()


def launched_as_worker(environ=None):
    """True when msrun started this process (it sets MS_ROLE=MS_WORKER) or a rank-table job with
    more than one device did (RANK_TABLE_FILE and RANK_SIZE > 1)."""
    environ = os.environ if environ is None else environ
    if environ.get("MS_ROLE") == "MS_WORKER":
        return True
    return bool(environ.get("RANK_TABLE_FILE")) and int(environ.get("RANK_SIZE", "1") or 1) > 1


def device_id_for(configured, environ=None):
    """``run.device_id`` when set (>= 0); otherwise the device msrun or the rank table assigned this
    worker (DEVICE_ID, its local rank), 0 in a single process."""
    environ = os.environ if environ is None else environ
    if configured >= 0:
        return configured
    return int(environ.get("DEVICE_ID", "0") or 0) if launched_as_worker(environ) else 0


def serve_if_scheduler(environ=None):
    """msrun starts its scheduler with the workers' command line (MS_ROLE=MS_SCHED). That process
    must run nothing of the command (no checks, no files): it serves the cluster inside
    ``init()`` until the workers finish, then leaves."""
    environ = os.environ if environ is None else environ
    if environ.get("MS_ROLE") != "MS_SCHED":
        return
    from mindspore.communication import init

    init()
    sys.exit(0)


def join_world():
    """Join the workers once per process (``mindspore.communication.init``); the single-process
    World when the environment names no distributed launch. Call after the device is set."""
    global _WORLD
    if _WORLD.distributed or not launched_as_worker():
        return _WORLD
    from mindspore.communication import get_group_size, get_local_rank, get_rank, init

    init()
    _WORLD = World(get_group_size(), get_rank(), get_local_rank())
    return _WORLD


def current_world():
    return _WORLD


def sample_rngs(seed, stream, step, batch, world=None):
    """One ``np.random.Generator`` per sample of this worker's share of step ``step``'s global batch.

    The step's global batch is positions ``step * N * batch`` ... of the sample stream; worker r
    holds positions r, r + N, r + 2N, ... of it (the strided data shards), and each sample's
    generator is keyed by (seed, stream, position): the draws do not depend on N."""
    world = world or _WORLD
    first = step * batch * world.size + world.rank
    return [np.random.default_rng([seed, stream, first + world.size * j]) for j in range(batch)]


def worker_rng(seed, world=None):
    """A host generator for draws that are not per sample: the seed's own in a single process,
    (seed, rank)'s under msrun, so that the workers' streams differ."""
    world = world or _WORLD
    return np.random.default_rng([seed, world.rank] if world.distributed else seed)


def stack_draws(rngs, draw):
    """[B, ...]: ``draw(rng)`` for each sample's generator, stacked."""
    return np.stack([draw(rng) for rng in rngs])


@functools.lru_cache(maxsize=None)
def _compiled_all_sum():
    """An AllReduce (sum) compiled once: on the CPU, MindSpore runs collectives only inside graphs."""
    import mindspore as ms
    from mindspore import ops

    all_reduce = ops.AllReduce()

    @ms.jit
    def summed(x):
        return all_reduce(x)

    return summed


def all_sum(values):
    """``values`` (float32 array) summed over the workers; the values themselves in a single process."""
    values = np.asarray(values, np.float32)
    if not _WORLD.distributed:
        return values
    import mindspore as ms  # (not at import: modify_ms.cli imports this module before MindSpore)

    return _compiled_all_sum()(ms.Tensor(values)).asnumpy()


def barrier():
    """Wait until every worker gets here (a summed zero: the device waits for all of them)."""
    all_sum(np.zeros(1, np.float32))


def launched_world_size(environ=None):
    """The number of workers the launcher started (MS_WORKER_NUM under msrun, RANK_SIZE from a rank
    table), 1 for a plain process: known before ``join_world``."""
    environ = os.environ if environ is None else environ
    if not launched_as_worker(environ):
        return 1
    key = "MS_WORKER_NUM" if environ.get("MS_ROLE") == "MS_WORKER" else "RANK_SIZE"
    return int(environ.get(key, "1") or 1)


def check_world_size(saved, path, environ=None):
    """A run resumes with the number of workers it was trained with: the data shards, the per-device
    batch and the step count are all laid out for it. One line otherwise (before any network is built)."""
    from ..utils.checkpoint import CheckpointFileError

    world = launched_world_size(environ)
    if saved != world:
        how = f"msrun --worker_num={saved}" if saved > 1 else "a single process (plain python, no msrun)"
        raise CheckpointFileError(f"{path}: trained with {saved} worker(s), resumed with {world}: resume it with {how}")
