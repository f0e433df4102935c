"""Pieces shared by both stages: runtime set-up, networks from configs and weight files,
optimizers, run checkpoints (atomic, exact resume), metrics log and sample grids."""
import dataclasses
import glob
import json
import os
import random
import sys
import time

import numpy as np
import mindspore as ms
from mindspore import nn

from ..config import ConfigError, save_resolved
from ..data.dataset import batches_per_epoch, check_shards, make_pipeline
from ..data.imageio import save_image_atomic
from ..losses.identity import IdentityLoss
from ..losses.builders import load_identity_weights, load_lpips_weights
from ..losses.lpips import LPIPS
from ..utils.checkpoint import (CheckpointFileError, atomic_write_json, fill_cell, load_groups, named_arrays,
                                read_arrays, save_arrays)
from ..utils.images import make_grid
from .distributed import all_sum, check_world_size, current_world, device_id_for, join_world
from .checks import (ALTERNATIVES, WeightsMissingError, check_weight_files, latest_checkpoint,  # noqa: F401
                     read_sidecar, restore_rng, weight_file)  # (re-exported: their home is the MindSpore-free checks module)


def setup_runtime(run_cfg, out_dir, cache_key="default", make_dir=True, distributed=False):
    """GRAPH_MODE on the configured device, with MindSpore's compile cache inside the run folder;
    returns the World (distributed.World) this process belongs to.

    MindSpore's cache numbers graphs in compilation order, so a run that compiles its
    graphs in another order must not share a cache: ``cache_key`` names the sequence
    (stage, mode, starting phase), one sub-folder each (and one per worker). ``make_dir=False``:
    the caller creates ``out_dir`` itself once its inputs are known to be valid (nothing is
    written here; MindSpore makes the cache folder at the first compilation). ``distributed``:
    a trainer, which joins the msrun workers when msrun started it (distributed.join_world)."""
    if make_dir:
        os.makedirs(out_dir, exist_ok=True)
    ms.set_context(mode=ms.GRAPH_MODE if run_cfg.mode == "graph" else ms.PYNATIVE_MODE)
    select_device(run_cfg.device, device_id_for(run_cfg.device_id))
    if run_cfg.device == "CPU":
        set_cpu_threads(run_cfg.cpu_threads)
    if run_cfg.jit_level:
        ms.set_context(jit_config={"jit_level": run_cfg.jit_level})
    if run_cfg.max_device_memory:
        ms.runtime.set_memory(max_size=run_cfg.max_device_memory)
    world = join_world() if distributed else current_world()
    if world.distributed and run_cfg.mode != "graph":
        raise ConfigError(f"run.mode {run_cfg.mode}: a distributed run needs run.mode graph (collectives run "
                          f"inside compiled graphs)")
    if run_cfg.precision != "fp32":  # mixed precision compiles other graphs: never the fp32 ones' cache
        cache_key = f"{cache_key}-{run_cfg.precision}"
    if run_cfg.compile_cache and run_cfg.mode == "graph":
        key = f"{cache_key}-rank{world.rank}" if world.distributed else cache_key
        cache = os.path.join(run_cfg.compile_cache_dir or os.path.join(out_dir, ".compile_cache"), key)
        ms.set_context(enable_compile_cache=True, compile_cache_path=cache)
    return world


_CPU_THREADS = {}  # what set_cpu_threads set in this process


def set_cpu_threads(count):
    """MindSpore's CPU kernel threads (``run.cpu_threads``; 0 leaves MindSpore's default). MindSpore
    takes the setting once per process: a second run asking the same is a no-op, one asking another
    count is one line; a count the process's owner set itself (a benchmark) is left as it is."""
    if count == 0 or _CPU_THREADS.get("count", count) in (count, None):  # None: the owner's setting
        if count and "count" not in _CPU_THREADS:
            _set_threads(count)
        return
    raise ConfigError(f"run.cpu_threads {count}: this process already runs CPU kernels on "
                      f"{_CPU_THREADS['count']} threads (MindSpore sets them once per process)")


def _set_threads(count):
    try:
        ms.device_context.cpu.op_tuning.threads_num(count)
        _CPU_THREADS["count"] = count
    except RuntimeError:  # set before by whoever started the process: theirs to choose
        _CPU_THREADS["count"] = None


def select_device(target, device_id):
    """``mindspore.set_device``, once per process: a process whose kernels already ran on the same
    device (a second trainer, a test) keeps it; another device is one line."""
    try:
        ms.set_device(target, device_id)
    except RuntimeError:  # the runtime started before any set_device call (on MindSpore's default)
        have = (ms.get_context("device_target"), ms.get_context("device_id"))
        if have != (target, device_id):
            raise ConfigError(f"run.device {target}:{device_id}: this process already runs on "
                              f"{have[0]}:{have[1]} (MindSpore sets the device once per process)") from None


def seed_everything(seed):
    """Seed every generator a network constructor may draw from: layer constructors use numpy's
    global generator, MindSpore's initialisers its global seed, a few helpers Python's ``random``.
    Call before any network is built, so ``run.seed`` fixes the initial weights too."""
    random.seed(seed)
    np.random.seed(seed)
    ms.set_seed(seed)


LOSS_NETS_FILE = "loss_nets.ckpt"
LOSS_NETS_FORMAT = "modify_ms.loss_nets"


class LossNets(nn.Cell):
    """The frozen perceptual and identity networks under stable names (``lpips.*``, ``identity.*``)."""

    def __init__(self, cfg, image_size):
        super().__init__()
        self.cfg, self.image_size = cfg, image_size
        self.lpips = LPIPS(cfg.lpips_net)
        self.identity = IdentityLoss(image_size, num_layers=cfg.identity_num_layers, units=cfg.identity_units,
                                     channels=tuple(cfg.identity_channels))


def loss_net_groups(loss_nets):
    return {"lpips": loss_nets.lpips, "identity": loss_nets.identity}


def save_loss_nets(loss_nets, run_dir):
    """Write the loss networks a run trains with to ``run_dir/loss_nets.ckpt`` (+ .json), so stage 2
    uses exactly them even when they were partly random (no LPIPS backbone / ArcFace file given)."""
    path = os.path.join(run_dir, LOSS_NETS_FILE)
    meta = {"format": LOSS_NETS_FORMAT, "loss_nets": dataclasses.asdict(loss_nets.cfg),
            "image_size": loss_nets.image_size}
    save_arrays(named_arrays(loss_net_groups(loss_nets)), path, meta)
    return path


def load_loss_nets(loss_nets, run_dir):
    """Fill ``loss_nets`` from ``run_dir/loss_nets.ckpt``; CheckpointFileError (one line) when the
    file is missing, is not a loss-network file, or does not fit the networks."""
    path = os.path.join(run_dir, LOSS_NETS_FILE)
    if not os.path.isfile(path):
        raise CheckpointFileError(f"{path}: missing: the stage-1 run did not save its loss networks "
                                  f"(it predates loss_nets.ckpt; rerun stage 1)")
    arrays, meta = read_arrays(path)
    if meta.get("format") != LOSS_NETS_FORMAT:
        raise CheckpointFileError(f"{path}: not a loss-network checkpoint (its .json sidecar lacks "
                                  f"format '{LOSS_NETS_FORMAT}')")
    load_groups(loss_net_groups(loss_nets), arrays, path)
    return path


def _weight_file(path, what, require, log):
    if path:
        if not os.path.isfile(path):
            raise WeightsMissingError(f"{path}: {what} weights not found (see README, 'Pretrained weights')")
        return path
    if require:
        raise WeightsMissingError(f"weights.{what} is empty: a converted checkpoint is required "
                                  f"(see README, 'Pretrained weights'), or set weights.require=false for a smoke test")
    what_is_random = "a random backbone under the packaged v0.1 linear layers" if what == "lpips" else \
        "random initialisation"
    log(f"note: no {what} weights given, using {what_is_random} (smoke test only)")
    return ""


def check_minibatch_stddev(discriminator, meta, path):
    """A converted discriminator's recorded minibatch stddev (NVlabs' mbstd_group_size and
    mbstd_num_channels, in the sidecar's kwargs) must be the model's: the weights do not show it,
    and another group gives another network. One line naming the config keys otherwise."""
    kwargs = meta.get("kwargs") or {}
    if "stddev_group" not in kwargs and "stddev_feat" not in kwargs:
        return  # rosinality files record nothing: their (4, 1) is the default
    want = (kwargs.get("stddev_group", 4), kwargs.get("stddev_feat", 1))
    have = (discriminator.stddev_group, discriminator.stddev_feat)
    if want != have:
        group = 0 if want[0] is None else want[0]
        raise CheckpointFileError(f"{path}: converted with minibatch stddev group {want[0]}, {want[1]} feature(s), "
                                  f"the model has {have[0]}, {have[1]}: set model.discriminator.stddev_group="
                                  f"{group} and model.discriminator.stddev_feat={want[1]}")


def load_pretrained(nets, loss_nets, weights, log):
    """Fill networks from converted checkpoints named in ``weights`` (WeightsConfig). The loss
    networks load through ``losses.builders``, as evaluation loads them."""
    table = (  # (config key, cell, parameters that may stay initialised)
        ("generator", nets.decoder, ()),
        ("discriminator", nets.discriminator, ()),
        # only the IR-SE50 body is pretrained; the pyramid and style heads start fresh (as in pSp)
        ("encoder_backbone", nets.encoder, ("styles.", "latlayer")),
        ("encoder", nets.encoder, ()),  # or the whole encoder (exclusive with the backbone)
    )
    for key, cell, allow_missing in table:
        if not getattr(weights, key) and (key == "encoder" or getattr(weights, ALTERNATIVES.get(key, key))):
            continue  # the other of the two encoder files is given (or neither: one note, the backbone's)
        path = _weight_file(weight_file(weights, key), key, weights.require, log)
        if path:
            arrays, meta = read_arrays(path)
            if key == "discriminator":
                check_minibatch_stddev(nets.discriminator, meta, path)
            # a converted pSp file (python -m weights_convert psp) holds its encoder under 'encoder.'
            prefix = "encoder." if key == "encoder" and meta.get("format") == "modify_ms.psp" else ""
            fill_cell(cell, arrays, path, prefix=prefix, allow_missing=allow_missing)
    path = _weight_file(weight_file(weights, "identity"), "identity", weights.require, log)
    if path:
        load_identity_weights(loss_nets.identity, path)
    # without a file the linear layers are still the packaged v0.1 ones (never random)
    load_lpips_weights(loss_nets.lpips, loss_nets.cfg.lpips_net,
                       _weight_file(weight_file(weights, "lpips"), "lpips", weights.require, log) or None)
    # (the decoder's latent_avg, from its checkpoint, is the origin of E's and M's offsets: ModifyNets.w_plus)


def optimizer_groups(optimizers):
    """{'optim.encoder': optimizer, ...} for checkpointing (moments, step counters, Ranger's slow weights)."""
    return {f"optim.{name}": opt for name, opt in optimizers.items()}


class RunCheckpoints:
    """``run_dir/checkpoints/step_XXXXXXXX.ckpt`` + ``.json``; ``latest.json`` points at the newest."""

    def __init__(self, run_dir, keep=3, subdir="checkpoints"):
        self.dir = os.path.join(run_dir, subdir)
        self.keep = keep

    def save(self, step, groups, state):
        os.makedirs(self.dir, exist_ok=True)
        path = os.path.join(self.dir, f"step_{step:08d}.ckpt")
        save_arrays(named_arrays(groups), path, dict(state, step=step))
        atomic_write_json(os.path.join(self.dir, "latest.json"), {"checkpoint": os.path.basename(path), "step": step})
        for old in sorted(glob.glob(os.path.join(self.dir, "step_*.ckpt")))[:-self.keep]:
            for f in (old, old + ".json"):
                if os.path.exists(f):
                    os.remove(f)
        return path

    def latest(self):
        """Path of the newest checkpoint, None when there is no ``latest.json``; a corrupt pointer
        is a one-line CheckpointFileError (see checks.latest_checkpoint)."""
        return latest_checkpoint(self.dir)


class ResumePoint:
    """A run checkpoint read and checked before any network is built: arrays, step, host RNG."""

    def __init__(self, path):
        self.path = path
        self.step, self.rng = read_sidecar(path)
        self.arrays, self.meta = read_arrays(path)
        check_world_size(self.meta.get("world_size", 1), path)


def resolve_checkpoint(path):
    """A run directory (its latest checkpoint) or a checkpoint file."""
    if os.path.isdir(path):
        latest = RunCheckpoints(path).latest()
        if latest is None:
            raise CheckpointFileError(f"{path}: run directory has no checkpoints/latest.json")
        return latest
    if not os.path.isfile(path):
        raise CheckpointFileError(f"{path}: no such run directory or checkpoint")
    return path


def load_checkpoint_into(path, groups, partial=False):
    """Fill ``groups`` from a run checkpoint; ``partial`` ignores entries of other groups
    (stage 2 reads only the networks of a stage-1 checkpoint, not its optimizers)."""
    arrays, meta = read_arrays(path)
    if partial:
        keep = tuple(f"{g}/" for g in groups)
        arrays = {k: v for k, v in arrays.items() if k.startswith(keep)}
    load_groups(groups, arrays, path)
    return meta


def rng_state(rng):
    return rng.bit_generator.state


class MetricsLog:
    """One JSON object per line in ``run_dir/metrics.jsonl``; appended, flushed each write."""

    def __init__(self, run_dir, resume_step=None, name="metrics.jsonl"):
        self.path = os.path.join(run_dir, name)
        if resume_step is not None and os.path.exists(self.path):
            # drop lines past the resumed checkpoint so the log reads as one uninterrupted run
            with open(self.path, encoding="utf-8") as fh:
                lines = [l for l in fh if l.strip() and json.loads(l).get("step", 0) <= resume_step]
            with open(self.path + ".tmp", "w", encoding="utf-8") as fh:
                fh.writelines(lines)
            os.replace(self.path + ".tmp", self.path)
        self.fh = open(self.path, "a", encoding="utf-8")

    def write(self, record):
        self.fh.write(json.dumps(record) + "\n")
        self.fh.flush()

    def close(self):
        self.fh.close()


def host_record(record):
    """A step record with its device scalars copied to Python floats."""
    return {k: float(v.asnumpy()) if isinstance(v, ms.Tensor) else v for k, v in record.items()}


def worker_means(records):
    """Under msrun, each record's losses averaged over the workers (each worker's are the mean over
    its shard of the step's batch, so their mean is the global batch's): one small AllReduce per
    log interval, every worker at the same steps. The records themselves in a single process."""
    if not records or not current_world().distributed:
        return records
    keys = [k for k, v in records[0].items() if isinstance(v, float) and k not in ("step", "phase")]
    table = all_sum(np.array([[r[k] for k in keys] for r in records], np.float32)) / current_world().size
    return [dict(r, **{k: float(v) for k, v in zip(keys, row)}) for r, row in zip(records, table)]


class PendingRecords:
    """Step records whose losses are still device tensors, copied to the host together at log
    intervals. Each line's ``sec`` is the interval's mean wall time per step: steps run
    asynchronously, so the time of one step is only known on average."""

    def __init__(self):
        self.records = []
        self.t0 = time.perf_counter()

    def add(self, record):
        self.records.append(record)

    def flush(self, metrics):
        """Write the pending records to ``metrics`` (a MetricsLog, or None); returns the last one
        (host values), None when nothing was pending."""
        if not self.records:
            return None
        host = worker_means([host_record(r) for r in self.records])  # the first copy waits for the device
        sec = round((time.perf_counter() - self.t0) / len(host), 4)
        for record in host:
            record["sec"] = sec
            if metrics is not None:
                metrics.write(record)
        self.records, self.t0 = [], time.perf_counter()
        return host[-1]


def save_grid(path, rows):
    save_image_atomic(path, make_grid(rows))


def write_resolved_config(cfg, run_dir):
    save_resolved(cfg, os.path.join(run_dir, "config.yaml"))


def host_noise(decoder, batch, rng, mode):
    """Per-layer generator noise drawn on the host, or the fixed buffers (``mode='const'``)."""
    if mode == "const":
        return ms.mutable(tuple(ms.Tensor(np.tile(p.asnumpy(), (batch, 1, 1, 1))) for p in decoder.const_noise()))
    return decoder.random_noise(batch, rng)


def sample_noise(decoder, rngs, mode):
    """Per-layer generator noise [B, 1, H, W], each sample's maps drawn from its own generator
    (distributed.sample_rngs), or the fixed buffers (``mode='const'``)."""
    if mode == "const":
        return host_noise(decoder, len(rngs), None, mode)
    shapes = [shape[1:] for shape in decoder.noise_shapes(1)]
    maps = [[rng.standard_normal(shape, dtype=np.float32) for shape in shapes] for rng in rngs]
    return ms.mutable(tuple(ms.Tensor(np.stack([m[layer] for m in maps])) for layer in range(len(shapes))))


def progress(total, initial, desc, enabled=True):
    """A progress bar on stderr (none on a terminal-less stderr, or where ``enabled`` is false:
    the other workers of a distributed run)."""
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True, file=sys.stderr,
                disable=None if enabled else True, smoothing=0.1)


def worker_data_config(data_cfg, world, n):
    """``data_cfg`` for this worker's shard of ``n`` images (the whole set in a single process);
    one line when a shard would not fill a batch."""
    if not world.distributed:
        return data_cfg
    data_cfg = dataclasses.replace(data_cfg, num_shards=world.size, shard_id=world.rank)
    check_shards(data_cfg, n)
    return data_cfg


def worker_pipeline(pipeline, data_cfg, world, step):
    """``pipeline`` (opened on ``data_cfg``) as this worker's shard, at the epoch of global step
    ``step`` (resuming in a later epoch: the same images in that epoch's order), and the batches
    of that epoch already trained. A single process's shard is the whole set."""
    data_cfg = worker_data_config(data_cfg, world, len(pipeline.source))
    per_epoch = batches_per_epoch(data_cfg, len(pipeline.source))
    if step >= per_epoch or world.distributed:
        pipeline = make_pipeline(data_cfg, pipeline.source, pipeline.skips, step // per_epoch)
    return pipeline, step % per_epoch


def epoch_batches(pipeline, steps):
    """Batches (tuples of the image columns' arrays) for ``steps`` steps, one pass of the iterator
    per epoch; unreadable images met on the way are logged by ``pipeline.skips``."""
    epochs = -(-steps // pipeline.batches_per_epoch)
    iterator = pipeline.dataset.create_tuple_iterator(output_numpy=True, num_epochs=epochs)
    for _ in range(epochs):
        for batch in iterator:
            yield pipeline.arrays(batch)
