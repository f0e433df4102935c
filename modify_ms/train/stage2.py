"""Stage 2, face stylization without style images (paper section 2.2).

E' (``student``) is a trainable copy of the stage-1 encoder E; E stays frozen and
D(E(x)) is the discriminator's "real"; the decoder is frozen; M is unused. The three
modes share ``Stage2Model.update``:

* offline:   the whole source set, ``offline_steps`` updates, then inference;
* online:    images arrive one at a time (batch 1); each gets one update, then its
             output is written at once; state persists and can be checkpointed;
* test-time: per photo, E', Dis and both optimizers restart from stage 1, then
             ``test_time_steps`` updates on that photo alone, then the output.
"""
import dataclasses
import os
import zlib

import numpy as np
import mindspore as ms
from mindspore import ops

from ..config import ConfigError, load_config
from ..models.layout import check_stddev_batch
from ..models.modify import ModifyNets, Stylizer, build_encoder
from ..utils.checkpoint import CheckpointFileError
from .common import (LossNets, PendingRecords, host_noise, load_checkpoint_into, load_loss_nets,
                     resolve_checkpoint, restore_rng, rng_state, seed_everything, setup_runtime)
from ..nn.norm import sync_batch_norms
from .config import Stage1Config
from .distributed import barrier, check_world_size, launched_as_worker, worker_rng
from .memory import apply_recompute
from .optim import build_optimizer
from .precision import Precision, step_outputs
from .steps import STAGE2_TERMS, CriticLoss, ReconstructionObjective, ReconstructionTerms, Stage2Loss


def load_stage1(stage1_path):
    """(Stage1Config, checkpoint path) of a stage-1 run directory or one of its checkpoints."""
    if not stage1_path:
        raise CheckpointFileError("stage1 is empty: give a stage-1 run directory or checkpoint (--stage1)")
    ckpt = resolve_checkpoint(stage1_path)
    run_dir = os.path.dirname(os.path.dirname(os.path.abspath(ckpt)))
    cfg_path = os.path.join(run_dir, "config.yaml")
    if not os.path.isfile(cfg_path):
        raise CheckpointFileError(f"{stage1_path}: not a stage-1 run or a checkpoint inside one "
                                  f"(expected <run>/checkpoints/step_*.ckpt and <run>/config.yaml)")
    return load_config(cfg_path, Stage1Config), ckpt


def source_data_config(data_cfg, stage1_cfg):
    """Offline mode's data section at the stage-1 loss size (data.size 0), or an error naming both
    sizes when the config asks for another: E' reads images at the loss size only."""
    size = stage1_cfg.model.loss_size
    if data_cfg.size not in (0, size):
        raise ConfigError(f"data.size is {data_cfg.size} but the stage-1 run's model.loss_size is {size}: "
                         f"stage 2 reads images at the loss size (set data.size={size} or 0)")
    try:
        check_stddev_batch(data_cfg.batch_size, stage1_cfg.model.discriminator.group)
    except ValueError as exc:
        raise ConfigError(f"data.batch_size: {exc}") from None
    return dataclasses.replace(data_cfg, size=size)


class Stage2Model:
    """Networks, optimizers and step cells of stage 2, built once and reset in place."""

    def __init__(self, cfg, run_dir, log=print):
        self.cfg, self.log = cfg, log
        self.stage1_cfg, self.stage1_ckpt = load_stage1(cfg.stage1)
        if launched_as_worker() and cfg.mode != "offline":
            raise ConfigError(f"mode {cfg.mode}: only offline stage 2 trains data-parallel under msrun "
                              f"(test-time and online adaptation run in one process)")
        self.world = setup_runtime(cfg.run, run_dir, cache_key=f"stage2-{cfg.mode}", distributed=cfg.mode == "offline")
        seed_everything(cfg.run.seed)
        s1 = self.stage1_cfg
        self.nets = ModifyNets(s1.model)
        self.loss_nets = LossNets(s1.model.loss_nets, s1.model.loss_size)
        self.student = build_encoder(s1.model.encoder, self.nets.n_latent, s1.model.generator.style_dim,
                                     s1.model.loss_size)
        self.student.update_parameters_name("student.")
        # E' trains in training mode (batch statistics, running statistics updated), as the authors'
        # coach; the teacher E, the decoder and the loss networks stay in inference mode (cells start
        # there and nothing here switches a parent of them). Renders of outputs switch E' to
        # inference mode while they run (_inference).
        self.student.set_train(True)
        self.nets.set_train(False)
        if self.world.distributed and cfg.run.sync_batch_norm:
            sync_batch_norms(self.student, self.world.size)
        apply_recompute(self.nets, cfg.run.recompute)  # train.memory: G/Dis blocks recomputed in the backward pass
        # exactly the loss networks stage 1 trained with (saved in its run); E, D, M, Dis from its checkpoint
        load_loss_nets(self.loss_nets, os.path.dirname(os.path.dirname(os.path.abspath(self.stage1_ckpt))))
        load_checkpoint_into(self.stage1_ckpt, self.nets.groups(), partial=True)
        self.student_opt = build_optimizer(self.student, cfg.optim)
        self.disc_opt = build_optimizer(self.nets.discriminator, cfg.optim)
        adv = cfg.adversarial
        self.precision = Precision(cfg.run)  # fp16/bf16 step cells and the fp16 loss scales
        self.g_step = self.precision.update_step(
            Stage2Loss(self.nets, self.student, self.loss_nets.lpips, self.loss_nets.identity, cfg.weights, adv.kind),
            [(self.student_opt, self.student.trainable_params())])
        self.d_step = self.precision.critic_step(CriticLoss(self.nets, adv.kind, adv.gp_weight),
                                                 [(self.disc_opt, self.nets.discriminator.trainable_params())]) \
            if cfg.weights.adv > 0 else None
        self.teacher_render = Stylizer(self.nets, self.nets.encoder)  # D(E(x)): the discriminator's "real"
        self.student_render = Stylizer(self.nets, self.student)        # D(E'(x)), or D({w_l, M(z)}) with z
        w = cfg.weights
        self.measure = ReconstructionObjective(ReconstructionTerms(self.loss_nets.lpips, self.loss_nets.identity,
                                                                   w.l2, w.lpips, w.id))
        self.rng = worker_rng(cfg.run.seed, self.world)
        self._initial = self._snapshot()
        self.updates = 0

    def groups(self):
        """What a stage-2 checkpoint holds (the frozen networks come from the stage-1 checkpoint)."""
        return {"student": self.student, "discriminator": self.nets.discriminator,
                "optim.student": self.student_opt, "optim.discriminator": self.disc_opt, **self.precision.groups()}

    # ----------------------------------------------------------------- reset (test-time)
    def _snapshot(self):
        """Stage-1 values of E' (= E), Dis and fresh optimizer states, kept to reset in place.
        get_parameters() includes E''s BatchNorm running statistics (Parameters without gradient)."""
        self.student_copy_from_teacher()
        return {id(p): p.asnumpy().copy() for cell in self.groups().values() for p in cell.get_parameters()}

    def student_copy_from_teacher(self):
        teacher = dict(self.nets.encoder.parameters_and_names())
        for name, param in self.student.parameters_and_names():
            param.set_data(ms.Tensor(teacher[name].asnumpy()))

    def reset(self, seed_key=None):
        """Back to the stage-1 weights with fresh Adam states; reseed the host RNG from ``seed_key``."""
        for cell in self.groups().values():
            for p in cell.get_parameters():
                # in place: a compiled update holding the old storage (step counters) must see the reset;
                # by a kernel (ops.assign): under fp16 the optimizer states live in the update's overflow
                # branch, which assign_value does not reach (train.precision)
                ops.assign(p, ms.Tensor(self._initial[id(p)], dtype=p.dtype))
        if seed_key is not None:
            self.rng = np.random.default_rng([self.cfg.run.seed, seed_key])
        self.updates = 0

    # ----------------------------------------------------------------- steps
    def noise(self, batch):
        return host_noise(self.nets.decoder, batch, self.rng, self.cfg.run.noise)

    def _inference(self, render, *inputs):
        """Run a render with E' on its running statistics (pSp's inference), then back to training mode."""
        self.student.set_train(False)
        try:
            return render(*inputs).asnumpy()
        finally:
            self.student.set_train(True)

    def update(self, x):
        """One E' update (and one Dis update) on the batch x [B, 3, P, P]. Returns the metrics record
        with its values still on the device (``host_record`` copies them; callers do at log intervals)."""
        self.student.set_train(True)  # a flag only: each compiled graph keeps the mode it was built in
        x = ms.Tensor(x)
        batch = x.shape[0]
        flags = {}  # fp16: overflow flag and count, loss scale
        total, terms, x_out = step_outputs(self.g_step, self.g_step(x, self.noise(batch)), flags)
        record = {"loss": total}
        record.update(zip(STAGE2_TERMS, terms))
        record.update(flags)
        if self.d_step is not None:
            real = self.teacher_render(x, self.noise(batch))
            alpha = ms.Tensor(self.rng.uniform(size=(batch, 1, 1, 1)).astype(np.float32))
            record["d_loss"], _ = step_outputs(self.d_step, self.d_step(real, ms.mutable((x_out,)), alpha), record)
        self.updates += 1
        return record

    def stylize(self, x, noise_seed=0):
        """x' = D(E'(x)) with noise from a fixed seed (deterministic outputs)."""
        x = ms.Tensor(x)
        rng = np.random.default_rng(noise_seed)
        return self._inference(self.student_render, x, host_noise(self.nets.decoder, x.shape[0], rng,
                                                                  self.cfg.run.noise))

    def variants(self, x, zs, noise_seed=0):
        """K stylizations of one photo x [1, 3, P, P] from K style samples zs [K, Z]."""
        k = zs.shape[0]
        xs = ms.Tensor(np.repeat(x, k, axis=0))
        rng = np.random.default_rng(noise_seed)
        return self._inference(self.student_render, xs, host_noise(self.nets.decoder, k, rng, self.cfg.run.noise),
                               ms.Tensor(zs.astype(np.float32)))

    def objective(self, x):
        """L2 + LPIPS + ID of x vs D(E'(x)) without updating (to measure adaptation); the output that
        stylize() writes, so E' on its running statistics."""
        return float(self.measure(ms.Tensor(x), ms.Tensor(self.stylize(x))).asnumpy())

    def save(self, ckpts, step, extra):
        """Rank 0 writes the checkpoint; under msrun every worker waits for it."""
        path = None
        if self.world.main:
            path = ckpts.save(step, self.groups(), dict(extra, rng=rng_state(self.rng), stage=2,
                                                        world_size=self.world.size))
        barrier()
        return path

    def resume(self, path):
        meta = load_checkpoint_into(path, self.groups())
        check_world_size(meta.get("world_size", 1), path)
        self.rng = restore_rng(meta["rng"])
        return meta


def photo_key(name):
    """A per-photo seed that depends on the photo's name only, so results do not depend on order."""
    return zlib.crc32(os.path.basename(name).encode("utf-8"))


# --------------------------------------------------------------------- modes
# Each mode hands every finished photo to ``emit(name, x)`` (modify_ms.stylize.OutputWriter
# writes its files), so the model state a photo's outputs come from is the one right after
# that photo's own update(s).

def test_time(model, photos, emit, steps, log=print, metrics=None, bar=None, log_every=10):
    """For each (name, x [1,3,P,P]): reset to stage 1, ``steps`` updates on x alone, then ``emit``.

    ``bar(total, desc)``: a progress bar factory for the steps of each photo (one photo), else a
    line per photo. Losses are copied from the device every ``log_every`` steps. Returns
    {name: (objective before, objective after)}."""
    results = {}
    for name, x in photos:
        model.reset(seed_key=photo_key(name))
        before = model.objective(x)
        steps_bar = bar(steps, os.path.basename(name)) if bar is not None else None
        pending = PendingRecords()
        for i in range(steps):
            pending.add(dict(model.update(x), photo=os.path.basename(name), step=i + 1))
            if steps_bar is not None:
                steps_bar.update(1)
            if (i + 1) % log_every == 0 or i + 1 == steps:
                last = pending.flush(metrics)
                if steps_bar is not None:
                    steps_bar.set_postfix(loss=f"{last['loss']:.3f}")
        if steps_bar is not None:
            steps_bar.close()
        after = model.objective(x)
        path = emit(name, x)
        results[name] = (before, after)
        log(f"[{len(results)}] {name}: objective {before:.4f} -> {after:.4f} after {steps} steps; wrote {path}")
    return results


def online(model, arrivals, emit, ckpts=None, ckpt_every=50, state=None, log=print, metrics=None, updates=0,
           log_every=10):
    """Each arriving (name, x): one update (batch 1), then ``emit`` at once.

    ``updates`` > 0 is the paper's online training: the finite stream is replayed in its order
    until that many updates (20k over 2000 photos); each photo is written on its first arrival
    and all are written again by the final E' at the end. ``state`` (from a checkpoint) holds
    the names already processed (skipped) and the update count; the state is saved every
    ``ckpt_every`` updates and when the stream ends or is interrupted."""
    state = state or {}
    done = list(state.get("processed", []))
    seen = set(done)
    count = int(state.get("updates", len(done)))
    saved = count
    pending = PendingRecords()

    def save():
        if ckpts is not None:
            model.save(ckpts, count, {"processed": done, "updates": count, "mode": "online"})

    try:
        if updates:
            arrivals = list(arrivals)  # the finite source, replayed (kept in memory: ~0.8 MB a 256 px photo)
            if not arrivals:
                return done
            replay = (arrivals[i % len(arrivals)] for i in range(count, updates))
        else:
            replay = ((n, x) for n, x in arrivals if n not in seen)
        for name, x in replay:
            pending.add(dict(model.update(x), photo=os.path.basename(name), step=count + 1))
            count += 1
            if name not in seen:  # first arrival: its output at once, from the state after its update
                path = emit(name, x)
                done.append(name)
                seen.add(name)
                log(f"[{len(done)}] {name}: loss {pending.flush(metrics)['loss']:.4f}; wrote {path}")
            elif count % log_every == 0:
                pending.flush(metrics)
            if count % ckpt_every == 0:
                save()
                saved = count
        pending.flush(metrics)
        if updates:
            for name, x in arrivals:
                emit(name, x)
            log(f"online: {count} updates over {len(arrivals)} photos; every output rewritten by the final E'")
    finally:
        pending.flush(metrics)
        if count > saved:
            save()
    return done


def offline(model, batches, steps, start=0, ckpts=None, ckpt_every=1000, log=print, metrics=None, bar=None,
            log_every=10):
    """``steps`` updates over batches of the source set (an iterator of [B,3,P,P] arrays)."""
    step = start
    pending = PendingRecords()
    for x in batches:
        if step >= steps:
            break
        pending.add(dict(model.update(x), step=step + 1))
        step += 1
        if bar is not None:
            bar.update(1)
        if step % log_every == 0 or step == steps:
            last = pending.flush(metrics)
            if bar is not None:
                bar.set_postfix(loss=f"{last['loss']:.3f}")
        if ckpts is not None and (step % ckpt_every == 0 or step == steps):
            model.save(ckpts, step, {"mode": "offline"})
    pending.flush(metrics)
    return step
