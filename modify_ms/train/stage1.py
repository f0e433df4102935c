"""Stage 1, style encapsulation: train E, D, M and Dis on the style images only (paper section 2.1).

``train_stage1`` checks every input before it builds a network or writes a file: the run
folder, the weight files, the checkpoint to resume, the data (opened, at least one image
decodes); then it seeds, builds, and only then creates the run folder with its
config.yaml and loss_nets.ckpt.
"""
import os

import numpy as np
import mindspore as ms

from ..data.dataset import build_dataset, held_images
from ..eval.specificity import specificity
from ..models.modify import ModifyNets, Stylizer
from ..nn.norm import sync_batch_norms
from ..utils.checkpoint import load_groups
from .checks import check_resume_point, check_run_dir, check_weight_files
from .common import (LOSS_NETS_FILE, LossNets, MetricsLog, PendingRecords, ResumePoint, RunCheckpoints, host_noise,
                     load_loss_nets, load_pretrained, optimizer_groups, progress, rng_state, sample_noise,
                     save_grid, save_loss_nets, seed_everything, setup_runtime, worker_pipeline,
                     write_resolved_config)
from .distributed import barrier, sample_rngs, stack_draws, worker_rng
from .memory import apply_recompute
from .optim import build_optimizer
from .precision import Precision, step_outputs
from .steps import STAGE1_TERMS, CriticLoss, Stage1Loss

HELD_IMAGES = 8  # the sample grid's columns: fixed images spread over the data set
# per-sample host streams of a step (distributed.sample_rngs): the draws of one sample never
# depend on the batch size or the number of workers
NOISE_R, Z, NOISE_Z, ALPHA = range(4)
TRAINED = {"encoder": "encoder", "decoder": "decoder", "remap": "remap_net"}


def phase_at(phases, step):
    """(phase index, first step of that phase) for a global step."""
    start = 0
    for i, phase in enumerate(phases):
        if step < start + phase.steps:
            return i, start
        start += phase.steps
    return len(phases) - 1, start - phases[-1].steps


class Stage1Trainer:
    """Owns the networks, optimizers and step cells; ``run()`` trains to the end of the schedule.

    A trainer built on this loop (baselines_ms' unpaired pSp) names its progress bar and the
    losses it shows with ``progress_label`` and ``progress_keys``.

    Under msrun (train.distributed) every worker runs this loop on its data shard; rank 0
    alone writes metrics, samples and checkpoints (``self.world.main``)."""

    progress_label = "stage 1"
    progress_keys = ("loss", "l2", "lpips", "id", "swap")

    def __init__(self, cfg, run_dir, log=print, start_step=0, pipeline=None):
        self.cfg, self.run_dir, self.log = cfg, run_dir, log
        self.pipeline = pipeline  # None: run() builds it
        self.world = setup_runtime(cfg.run, run_dir, make_dir=False, distributed=True,
                                   cache_key=f"stage1-phase{phase_at(cfg.phases, start_step)[0]}")
        seed_everything(cfg.run.seed)  # before any network is built: the initial weights follow run.seed
        self.nets = ModifyNets(cfg.model)
        self.loss_nets = LossNets(cfg.model.loss_nets, cfg.model.loss_size)
        load_pretrained(self.nets, self.loss_nets, cfg.weights, log)
        self.distribute_cells(self.nets.encoder)
        apply_recompute(self.nets, cfg.run.recompute)  # train.memory: G/Dis blocks recomputed in the backward pass
        # E trains in training mode (batch statistics, running statistics updated), as pSp's and the
        # authors' coach (net.train()); MindSpore cells start in inference mode. Only E: the decoder,
        # M and Dis have no BatchNorm, and ArcFace/LPIPS are frozen (their BatchNorm never uses batch
        # statistics). Sample grids switch E to inference mode while they render (sample_rows).
        self.nets.encoder.set_train(True)
        self.sample_render = Stylizer(self.nets, self.nets.encoder)  # grid rows y_r and y_z (every phase)
        self.optimizers = {name: build_optimizer(getattr(self.nets, attr), cfg.optim) for name, attr in TRAINED.items()}
        self.optimizers["discriminator"] = build_optimizer(self.nets.discriminator, cfg.optim)
        self.precision = Precision(cfg.run)  # fp16/bf16 step cells and the fp16 loss scales
        self.step_cells = {}
        self.rng = worker_rng(cfg.run.seed, self.world)  # draws that are not per sample (subclasses)
        self.step = 0
        self.ckpts = RunCheckpoints(run_dir, cfg.run.keep_checkpoints)

    def distribute_cells(self, *cells):
        """Under msrun with run.sync_batch_norm: the BatchNorms of ``cells`` take global-batch statistics."""
        if self.world.distributed and self.cfg.run.sync_batch_norm:
            for cell in cells:
                sync_batch_norms(cell, self.world.size)

    # ----------------------------------------------------------------- state
    def groups(self):
        groups = self.nets.groups()
        groups.update(optimizer_groups(self.optimizers))
        groups.update(self.precision.groups())
        return groups

    def save(self):
        return self.save_state({"stage": 1})

    def save_state(self, state):
        """Rank 0 writes the checkpoint (with the host RNG and the number of workers); every worker
        waits for it. Returns the path (None on the other workers)."""
        path = None
        if self.world.main:
            path = self.ckpts.save(self.step, self.groups(),
                                   dict(state, rng=rng_state(self.rng), world_size=self.world.size))
        barrier()
        return path

    def resume(self, point):
        """Continue from a ResumePoint (or a checkpoint path): networks, optimizers, step, host RNG."""
        point = ResumePoint(point) if isinstance(point, str) else point
        load_groups(self.groups(), point.arrays, point.path)
        self.step, self.rng = point.step, point.rng
        self.log(f"resumed from {point.path} at step {self.step}")

    # ----------------------------------------------------------------- steps
    def phase_cells(self, index):
        """(generator-side step, discriminator-side step or None) of a phase, built once."""
        if index not in self.step_cells:
            phase = self.cfg.phases[index]
            adv = self.cfg.adversarial
            loss = Stage1Loss(self.nets, self.loss_nets.lpips, self.loss_nets.identity, phase.weights, adv.kind)
            trained = [(self.optimizers[n], getattr(self.nets, TRAINED[n]).trainable_params()) for n in phase.train]
            g_step = self.precision.update_step(loss, trained)
            d_step = None
            if phase.weights.adv_r > 0 or phase.weights.adv_z > 0:
                d_step = self.precision.critic_step(CriticLoss(self.nets, adv.kind, adv.gp_weight),
                                                    [(self.optimizers["discriminator"],
                                                      self.nets.discriminator.trainable_params())])
            self.step_cells[index] = (g_step, d_step)
        return self.step_cells[index]

    def train_step(self, y, y_real):
        """One generator-side update then one discriminator update. Returns the step's record with
        its losses still on the device (``host_record`` copies them): the loop copies at log
        intervals only, since a copy per step would make the host wait for every step."""
        index, _ = phase_at(self.cfg.phases, self.step)
        phase = self.cfg.phases[index]
        g_step, d_step = self.phase_cells(index)
        self.nets.encoder.set_train(True)  # a flag only: each compiled graph keeps the mode it was built in
        batch, mode, z_dim = y.shape[0], self.cfg.run.noise, self.nets.remap_net.z_dim

        def rngs(stream):
            return sample_rngs(self.cfg.run.seed, stream, self.step, batch, self.world)

        noise_r = sample_noise(self.nets.decoder, rngs(NOISE_R), mode)
        if g_step.loss_cell.need_y_z:
            z = ms.Tensor(stack_draws(rngs(Z), lambda rng: rng.standard_normal(z_dim, dtype=np.float32)))
            noise_z = sample_noise(self.nets.decoder, rngs(NOISE_Z), mode)
        else:  # the phase never renders y_z: nothing is drawn for it (the graph ignores these inputs)
            z, noise_z = self.unused_z(batch), noise_r
        flags = {}  # fp16: overflow flag and count, loss scale
        total, terms, y_r, y_z = step_outputs(g_step, g_step(ms.Tensor(y), z, noise_r, noise_z), flags)
        record = {"step": self.step + 1, "phase": index, "loss": total}  # y_r, y_z: batch statistics
        record.update(zip(STAGE1_TERMS, terms))
        record.update(flags)
        if d_step is not None:
            fakes = ms.mutable(tuple(f for f, w in ((y_r, phase.weights.adv_r), (y_z, phase.weights.adv_z))
                                     if w > 0))  # mutable: a constant tuple would recompile every step
            alpha = stack_draws(rngs(ALPHA), lambda rng: rng.uniform(size=(1, 1, 1))).astype(np.float32)
            record["d_loss"], record["d_real"] = step_outputs(d_step, d_step(ms.Tensor(y_real), fakes,
                                                                              ms.Tensor(alpha)), record)
        self.step += 1
        return record

    def unused_z(self, batch):
        if getattr(self, "_unused_z", None) is None or self._unused_z.shape[0] != batch:
            self._unused_z = ms.Tensor(np.zeros((batch, self.nets.remap_net.z_dim), np.float32))
        return self._unused_z

    def sample_rows(self, y):
        """Grid rows [y, y_r, y_z] for the batch y, rendered as at inference: E with its running
        statistics (pSp's inference), so the grid moves no statistic and each image depends on
        itself only. z and noise come from a generator seeded by (run.seed, step), never from the
        training stream, so samples do not change the training that follows."""
        rng = np.random.default_rng([self.cfg.run.seed, self.step])
        batch = y.shape[0]
        z = ms.Tensor(rng.standard_normal((batch, self.nets.remap_net.z_dim), dtype=np.float32))
        noise = host_noise(self.nets.decoder, batch, rng, self.cfg.run.noise)
        self.nets.encoder.set_train(False)
        try:
            y_r = self.sample_render(ms.Tensor(y), noise)
            y_z = self.sample_render(ms.Tensor(y), noise, z)
        finally:
            self.nets.encoder.set_train(True)
        return [y, y_r.asnumpy(), y_z.asnumpy()]

    # ----------------------------------------------------------------- loop
    def log_step(self, record, total, bar, metrics, pending):
        """Progress bar every step; metrics lines (copied from the device together), sample grid
        and checkpoint at their intervals."""
        run = self.cfg.run
        bar.update(1)
        pending.add(record)
        sample = self.step % run.sample_every == 0 or self.step == total
        ckpt = self.step % run.ckpt_every == 0 or self.step == total
        if self.step % run.log_every == 0 or self.step == 1 or sample or ckpt:
            last = pending.flush(metrics)
            bar.set_postfix({k: f"{last[k]:.3f}" for k in self.progress_keys})
        if sample:
            self.sample(metrics, bar)
        if ckpt:
            self.save()

    def sample(self, metrics, bar):
        """The held images' grid (rows y | y_r | y_z) and their reconstruction specificity
        (eval.specificity: 1 = the mean image, 0 = perfect), logged and in metrics.jsonl."""
        # every worker renders, rank 0 writes: MindSpore's CPU collectives give up on a worker that
        # waits about 30 s, so the workers must not wait while rank 0 alone compiles and renders
        rows = self.sample_rows(self.held)
        if not self.world.main:
            return
        path = os.path.join(self.run_dir, "samples", f"step_{self.step:08d}.png")
        save_grid(path, rows)
        spec = specificity(rows[0], rows[1]) if len(self.held) > 1 else float("nan")
        metrics.write({"step": self.step, "specificity": round(spec, 5), "samples": os.path.relpath(path, self.run_dir)})
        bar.write(f"step {self.step}: specificity {spec:.3f} on {len(self.held)} held images "
                  f"(1 = the mean image, 0 = perfect); {path}")

    def epoch_pipeline(self):
        """(pipeline starting at the current step's epoch, batches of that epoch already trained);
        under msrun, this worker's shard."""
        return self.shard_pipeline(self.pipeline or build_dataset(self.cfg.data, log=self.log), self.cfg.data)

    def shard_pipeline(self, pipeline, data_cfg):
        """``pipeline`` (opened on ``data_cfg``) as this worker's shard at the current step's epoch,
        and the batches of that epoch already trained (common.worker_pipeline)."""
        return worker_pipeline(pipeline, data_cfg, self.world, self.step)

    def run(self, max_steps=None):
        cfg = self.cfg
        total = cfg.total_steps if max_steps is None else min(cfg.total_steps, max_steps)
        pipeline, skip = self.epoch_pipeline()
        per_epoch = pipeline.batches_per_epoch
        main = self.world.main
        self.held = held_images(pipeline.source, cfg.data.size, cfg.data.crop, HELD_IMAGES)
        metrics = None
        if main:
            metrics = MetricsLog(self.run_dir, resume_step=self.step)
            os.makedirs(os.path.join(self.run_dir, "samples"), exist_ok=True)
        bar = progress(total, self.step, self.progress_label, enabled=main)
        epochs = -(-(total - self.step + skip) // per_epoch)
        iterator = pipeline.dataset.create_tuple_iterator(output_numpy=True, num_epochs=epochs)
        pending = PendingRecords()
        try:
            for _ in range(epochs):  # each pass over the iterator is one epoch (new shuffle and flips)
                for batch in iterator:
                    if skip:
                        skip -= 1  # resuming mid-epoch: these batches were trained before the checkpoint
                        continue
                    if self.step >= total:
                        break
                    y, y_real = pipeline.arrays(batch)  # logs any image a worker could not decode
                    self.log_step(self.train_step(y, y_real), total, bar, metrics, pending)
        finally:
            pending.flush(metrics)
            bar.close()
            if metrics is not None:
                metrics.close()
        barrier()  # no worker leaves while another still needs it
        if pipeline.skips is not None and pipeline.skips.summary():
            self.log(pipeline.skips.summary())
        return self.step


def train_stage1(cfg, run_dir, resume=False, max_steps=None, log=print):
    """Train stage 1 into ``run_dir`` (config.yaml, loss_nets.ckpt, metrics.jsonl, samples/, checkpoints/).

    Every input is checked before any network is built or any file written (module doc)."""
    check_run_dir(run_dir, resume, cfg.data.path)
    check_weight_files(cfg.weights)
    point = ResumePoint(check_resume_point(run_dir)) if resume else None
    pipeline = build_dataset(cfg.data, log=log)  # a data set with no readable image stops here
    log(f"stage 1: {cfg.total_steps} steps in {len(cfg.phases)} phases, data {cfg.data.path} "
        f"({pipeline.summary()}), run dir {run_dir}")
    trainer = Stage1Trainer(cfg, run_dir, log, start_step=point.step if point else 0, pipeline=pipeline)
    return start_run(trainer, cfg, run_dir, point, max_steps)


def start_run(trainer, cfg, run_dir, point, max_steps):
    """Resume the trainer from ``point`` (a ResumePoint or None), create the run folder with its
    config.yaml and loss_nets.ckpt, then train. Called once every input is valid and the networks
    are built: only now does anything appear on disk."""
    if point is not None:
        trainer.resume(point)
    barrier()  # under msrun: every worker has checked its inputs before the run folder appears
    if trainer.world.main:
        os.makedirs(run_dir, exist_ok=True)
        write_resolved_config(cfg, run_dir)
    # stage 2 must use exactly these loss networks (partly random when no LPIPS/ArcFace file is given;
    # the same on every worker: seeded alike)
    if point is not None and os.path.isfile(os.path.join(run_dir, LOSS_NETS_FILE)):
        load_loss_nets(trainer.loss_nets, run_dir)
    elif trainer.world.main:
        save_loss_nets(trainer.loss_nets, run_dir)
    trainer.run(max_steps)
    return trainer
