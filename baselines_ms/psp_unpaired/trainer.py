"""Unpaired pSp (MODIFY paper section 3.1, "PSP*"): MODIFY's stage 2 with real style images as
the discriminator's "real".

pSp's encoder E (GradualStyleEncoder over IR-SE50) into a StyleGAN2 decoder D is trained on
source photos x with L2, LPIPS and ArcFace identity between x and x' = D(E(x)) (no ground
truth: the data are unpaired), plus an adversarial loss from a discriminator that sees
target-domain images as real and x' as fake. The encoder side is stage 2's ``Stage2Loss``
with E in the student's place; the discriminator side is ``CriticLoss`` with a batch of the
target set as ``real``; both run through ``UpdateStep``. The loop, run folder, checkpoints,
resume, metrics, samples and seeding are ``Stage1Trainer``'s: this module adds the second data
stream and the trainer's wiring only.

Assumptions (the paper states none of these; yaml/baselines/psp_unpaired.yaml marks each):
MODIFY stage 2's loss weights, objective, optimizer and step count; the decoder frozen (pSp's
default) unless ``train`` names it.
"""
import dataclasses

import numpy as np
import mindspore as ms

from modify_ms.data.dataset import DataPipeline, batches_per_epoch, build_dataset, held_images, make_pipeline
from modify_ms.models.modify import ModifyNets, Stylizer
from modify_ms.train.checks import check_resume_point, check_run_dir, check_weight_files
from modify_ms.train.common import (LossNets, ResumePoint, RunCheckpoints, host_noise, load_pretrained,
                                    seed_everything, setup_runtime, worker_data_config)
from modify_ms.train.distributed import worker_rng
from modify_ms.train.memory import apply_recompute
from modify_ms.train.optim import build_optimizer
from modify_ms.train.stage1 import HELD_IMAGES, Stage1Trainer, start_run
from modify_ms.train.precision import Precision, step_outputs
from modify_ms.train.steps import STAGE2_TERMS, CriticLoss, Stage2Loss

from .config import METHOD

NETWORK_ATTR = {"encoder": "encoder", "decoder": "decoder"}


def target_batches(pipeline, data_cfg, start=0):
    """Batches of the target set (``pipeline``'s images, shard and batch of ``data_cfg``) from batch
    index ``start`` on, epoch after epoch (each epoch reshuffled as ``data_cfg`` says): the step-th
    training step always gets the same target batch, so a resumed run sees the target images an
    uninterrupted one would."""
    per_epoch = batches_per_epoch(data_cfg, len(pipeline.source))
    epoch, skip = divmod(start, per_epoch)
    while True:
        epoch_pipeline = make_pipeline(data_cfg, pipeline.source, pipeline.skips, epoch)
        for batch in epoch_pipeline.dataset.create_tuple_iterator(output_numpy=True, num_epochs=1):
            if skip:
                skip -= 1
                continue
            (images,) = epoch_pipeline.arrays(batch)
            yield images
        epoch += 1


@dataclasses.dataclass
class PairedPipeline(DataPipeline):
    """The source pipeline whose ``arrays(batch)`` is (photos x, the next target batch): what
    Stage1Trainer's loop hands to ``train_step`` as (y, y_real)."""
    targets: object = None

    def arrays(self, batch):
        (x,) = super().arrays(batch)
        return x, next(self.targets)


class UnpairedPSPTrainer(Stage1Trainer):
    """Networks, optimizers and the two step cells of unpaired pSp; ``run()`` is Stage1Trainer's."""

    progress_label = METHOD
    progress_keys = ("loss", "l2", "lpips", "id", "adv")

    def __init__(self, cfg, run_dir, log=print, pipeline=None, target=None):
        self.cfg, self.run_dir, self.log = cfg, run_dir, log
        self.pipeline, self.target = pipeline, target  # None: built by run() / target_pipeline()
        self.world = setup_runtime(cfg.run, run_dir, cache_key=METHOD, make_dir=False, distributed=True)
        seed_everything(cfg.run.seed)  # before any network is built: the initial weights follow run.seed
        self.nets = ModifyNets(cfg.model)
        self.loss_nets = LossNets(cfg.model.loss_nets, cfg.model.loss_size)
        load_pretrained(self.nets, self.loss_nets, cfg.weights, log)
        self.distribute_cells(self.nets.encoder)
        apply_recompute(self.nets, cfg.run.recompute)  # modify_ms.train.memory
        self.nets.encoder.set_train(True)  # pSp trains E with batch statistics (sample_rows switches)
        self.sample_render = Stylizer(self.nets, self.nets.encoder)
        self.optimizers = {name: build_optimizer(getattr(self.nets, NETWORK_ATTR[name]), cfg.optim)
                           for name in cfg.train}
        self.optimizers["discriminator"] = build_optimizer(self.nets.discriminator, cfg.optim)
        self.precision = Precision(cfg.run)  # fp16/bf16 step cells and the fp16 loss scales (groups())
        self.g_step, self.d_step = self.build_steps()
        self.rng = worker_rng(cfg.run.seed, self.world)
        self.step = 0
        self.ckpts = RunCheckpoints(run_dir, cfg.run.keep_checkpoints)

    def build_steps(self):
        """Stage 2's encoder-side loss with E in the student's place, over the networks of
        ``train``; the discriminator step when losses.adv > 0."""
        cfg, nets, adv = self.cfg, self.nets, self.cfg.adversarial
        loss = Stage2Loss(nets, nets.encoder, self.loss_nets.lpips, self.loss_nets.identity, cfg.losses, adv.kind)
        trained = [(self.optimizers[n], getattr(nets, NETWORK_ATTR[n]).trainable_params()) for n in cfg.train]
        d_step = None
        if cfg.losses.adv > 0:
            d_step = self.precision.critic_step(CriticLoss(nets, adv.kind, adv.gp_weight),
                                                [(self.optimizers["discriminator"],
                                                  nets.discriminator.trainable_params())])
        return self.precision.update_step(loss, trained), d_step

    # ----------------------------------------------------------------- state
    # groups() and resume() are Stage1Trainer's: every network (M too, untrained) and the
    # optimizers of the trained ones
    def save(self):
        return self.save_state({"method": METHOD})

    # ----------------------------------------------------------------- steps
    def train_step(self, x, target):
        """One encoder-side update on source photos x, then one discriminator update with the
        target images as real and x' = D(E(x)) as fake. Returns the record, values on the device."""
        self.nets.encoder.set_train(True)
        batch = x.shape[0]
        noise = host_noise(self.nets.decoder, batch, self.rng, self.cfg.run.noise)
        flags = {}  # fp16: overflow flag and count, loss scale
        total, terms, x_out = step_outputs(self.g_step, self.g_step(ms.Tensor(x), noise), flags)
        record = {"step": self.step + 1, "loss": total}
        record.update(zip(STAGE2_TERMS, terms))
        record.update(flags)
        if self.d_step is not None:
            alpha = ms.Tensor(self.rng.uniform(size=(batch, 1, 1, 1)).astype(np.float32))
            record["d_loss"], record["d_real"] = step_outputs(
                self.d_step, self.d_step(ms.Tensor(target), ms.mutable((x_out,)), alpha), record)
        self.step += 1
        return record

    # ----------------------------------------------------------------- data and samples
    def target_pipeline(self):
        if self.target is None:
            self.target = build_dataset(self.cfg.target, log=self.log)
        return self.target

    def epoch_pipeline(self):
        """Stage 1's source pipeline for the current epoch, paired with the target stream at the
        current step."""
        pipeline, skip = super().epoch_pipeline()
        target = self.target_pipeline()
        if not hasattr(self, "held_target"):
            self.held_target = held_images(target.source, self.cfg.target.size, self.cfg.target.crop, HELD_IMAGES)
        fields = {f.name: getattr(pipeline, f.name) for f in dataclasses.fields(DataPipeline)}
        target_cfg = worker_data_config(self.cfg.target, self.world, len(target.source))  # this worker's shard
        return PairedPipeline(**fields, targets=target_batches(target, target_cfg, self.step)), skip

    def sample_rows(self, x):
        """Grid rows [x, x' = D(E(x)), target images] for the held photos, E in inference mode
        (its running statistics), noise from (run.seed, step): samples never change the training."""
        rng = np.random.default_rng([self.cfg.run.seed, self.step])
        noise = host_noise(self.nets.decoder, x.shape[0], rng, self.cfg.run.noise)
        self.nets.encoder.set_train(False)
        try:
            out = self.sample_render(ms.Tensor(x), noise).asnumpy()
        finally:
            self.nets.encoder.set_train(True)
        return [x, out, getattr(self, "held_target", out[:0])]


def train_psp_unpaired(cfg, run_dir, resume=False, max_steps=None, log=print):
    """Train into ``run_dir`` (config.yaml, loss_nets.ckpt, metrics.jsonl, samples/, checkpoints/)
    as stage 1 does: every input checked before any network is built or any file written."""
    for data in (cfg.data, cfg.target):  # neither data folder may hold the run (samples read back)
        check_run_dir(run_dir, resume, data.path)
    check_weight_files(cfg.weights)
    point = ResumePoint(check_resume_point(run_dir)) if resume else None
    pipeline = build_dataset(cfg.data, log=log)  # a data set with no readable image stops here
    target = build_dataset(cfg.target, log=log)
    log(f"{METHOD}: {cfg.steps} steps, train {list(cfg.train)}, source {cfg.data.path} ({pipeline.summary()}), "
        f"target {cfg.target.path} ({target.summary()}), run dir {run_dir}")
    trainer = UnpairedPSPTrainer(cfg, run_dir, log, pipeline=pipeline, target=target)
    return start_run(trainer, cfg, run_dir, point, max_steps)
