"""JoJoGAN's fine-tuning (BASELINES 3.1 steps 1-6) through MODIFY's run machinery.

The references are inverted once with e4e (W+ codes w_ref); each step draws z on the host,
maps it (mapping frozen), mixes the swapped rows (``mix_codes``), renders with fresh noise and
takes one Adam step of the generator's synthesis parameters on the feature loss against the
references. No EMA, no regulariser, batch = the references (the notebook's).

Run folder as stage 1's: config.yaml, metrics.jsonl, samples/ (rows reference | inverted =
original G(w_ref) | stylized = fine-tuned G(w_ref)), checkpoints/ (the fine-tuned generator,
its optimizer, the host RNG), exact resume. The networks that stay frozen are rebuilt from
their weight files; the ones built at random (the quickstart's) and the inverted codes go to
``frozen.ckpt`` once, so a resume and the stylizer use exactly them. The loop, progress bar,
metrics, checkpoint intervals and resume are Stage1Trainer's (``log_step``, ``groups``,
``resume``); only the data (the fixed references, no pipeline) and the samples differ.
"""
import os
import sys

import numpy as np
import mindspore as ms
from mindspore import nn

from modify_ms.train.checks import check_resume_point, check_run_dir
from modify_ms.train.common import (MetricsLog, PendingRecords, ResumePoint, RunCheckpoints, host_noise, progress,
                                    save_grid, seed_everything, setup_runtime, write_resolved_config)
from modify_ms.train.distributed import barrier, worker_rng
from modify_ms.train.memory import apply_recompute
from modify_ms.train.optim import build_optimizer
from modify_ms.train.stage1 import Stage1Trainer
from modify_ms.train.precision import Precision, step_outputs
from modify_ms.utils.checkpoint import CheckpointFileError, fill_cell, named_arrays, read_arrays, save_arrays

from .config import METHOD
from .inputs import read_references
from .networks import (DiscFeatureL1, FineTuneLoss, Invert, PooledLPIPS, StrengthRender, build_discriminator,
                       build_generator, build_lpips, freeze, load_e4e, mean_latent, random_e4e, synthesis_params)

FROZEN_FILE = "frozen.ckpt"
FROZEN_FORMAT = "baselines_ms.jojogan.frozen"
MEAN_LATENT_SAMPLES = 4096  # the random e4e's latent_avg (rosinality's mean_latent uses 10000 on the GPU)


def resize_batch(x, size):
    """[B, 3, H, H] -> [B, 3, size, size] on the host (area when shrinking, bicubic when enlarging)."""
    from modify_ms.data.align import resize_image

    if x.shape[-1] == size:
        return np.ascontiguousarray(x, np.float32)
    return np.stack([resize_image(np.ascontiguousarray(xi.transpose(1, 2, 0)), size, size).transpose(2, 0, 1)
                     for xi in x]).astype(np.float32)


class JoJoNets(nn.Cell):
    """The networks under stable names: ``generator`` (fine-tuned), ``original`` (its frozen start),
    ``encoder`` (e4e), ``discriminator`` (frozen, loss: disc_feat), ``lpips`` (loss: lpips).

    Every network comes from its weight file, or at random from run.seed (the caller seeds first);
    ``from_files`` lists the ones that came from files. The mapping network of ``generator`` is frozen."""

    def __init__(self, cfg, log=print, with_loss=True):
        super().__init__()
        w = cfg.weights
        self.from_files = []
        self.original = freeze(self._filled(build_generator(cfg), w.generator, "original"))
        self.generator = build_generator(cfg)
        fill_cell(self.generator, {n: p.asnumpy() for n, p in self.original.parameters_and_names()},
                  "the original generator")  # the fine-tuning starts from a fresh copy (JoJoGAN's 2021-12-26 fix)
        freeze(self.generator.style)
        if w.e4e:
            encoder, input_size = load_e4e(w.e4e)
            if input_size != cfg.model.loss_size:
                raise CheckpointFileError(f"{w.e4e}: an e4e encoder of input {input_size}, the config's "
                                          f"model.loss_size (the e4e input) is {cfg.model.loss_size}")
            self.encoder = freeze(encoder)
            self.from_files.append("encoder")
        else:
            log("note: no weights.e4e given: a random-init tiny Encoder4Editing (quickstart only: its "
                "inversions are not faithful)")
            avg = mean_latent(self.original, MEAN_LATENT_SAMPLES, cfg.run.seed)
            self.encoder = freeze(random_e4e(cfg, avg))
        self.discriminator = self.lpips = None
        if with_loss and cfg.loss == "disc_feat":
            self.discriminator = freeze(self._filled(build_discriminator(cfg), w.discriminator, "discriminator"))
        elif with_loss:
            self.lpips = build_lpips(cfg, w.lpips)
            if w.lpips:
                self.from_files.append("lpips")
        self.encoder.set_train(False)  # e4e inverts with its running statistics

    def _filled(self, cell, path, name):
        if path:
            arrays, _meta = read_arrays(path)
            fill_cell(cell, arrays, path)
            self.from_files.append(name)
        return cell

    def groups(self):
        """The trained network (run checkpoints)."""
        return {"generator": self.generator}

    def frozen_groups(self):
        """The frozen networks built at random (``frozen.ckpt``)."""
        groups = {"original": self.original, "encoder": self.encoder}
        if self.discriminator is not None:
            groups["discriminator"] = self.discriminator
        if self.lpips is not None:
            groups["lpips"] = self.lpips
        return {k: v for k, v in groups.items() if k not in self.from_files}


def save_frozen(nets, ref_w_plus, run_dir):
    arrays = named_arrays(nets.frozen_groups())
    arrays["ref_w_plus"] = ref_w_plus
    path = os.path.join(run_dir, FROZEN_FILE)
    save_arrays(arrays, path, {"format": FROZEN_FORMAT, "groups": sorted(nets.frozen_groups())})
    return path


def load_frozen(nets, run_dir):
    """Fill the random frozen networks from ``run_dir/frozen.ckpt``; returns the saved W+ codes."""
    path = os.path.join(run_dir, FROZEN_FILE)
    if not os.path.isfile(path):
        raise CheckpointFileError(f"{path}: missing: not a complete {METHOD} run")
    arrays, meta = read_arrays(path)
    if meta.get("format") != FROZEN_FORMAT:
        raise CheckpointFileError(f"{path}: not a {METHOD} frozen-network file")
    codes = arrays.pop("ref_w_plus")
    for group, cell in nets.frozen_groups().items():
        fill_cell(cell, {k[len(group) + 1:]: v for k, v in arrays.items() if k.startswith(group + "/")}, path)
    return codes


class JoJoGANTrainer(Stage1Trainer):
    """Networks, optimizer and step cell of the fine-tuning; ``run()`` drives Stage1Trainer's
    ``log_step`` over a fixed batch (the references)."""

    progress_label = METHOD
    progress_keys = ("loss",)

    def __init__(self, cfg, run_dir, log=print, references=None):
        self.cfg, self.run_dir, self.log = cfg, run_dir, log
        # under msrun every worker fine-tunes on the same references with its own z (worker_rng): the
        # averaged gradient is that of N times the paired samples per step
        self.world = setup_runtime(cfg.run, run_dir, cache_key=METHOD, make_dir=False, distributed=True)
        seed_everything(cfg.run.seed)  # before any network is built: random weights follow run.seed
        self.nets = JoJoNets(cfg, log)
        apply_recompute(self.nets, cfg.run.recompute)  # modify_ms.train.memory
        size = cfg.model.generator.size
        if references is None:
            references = read_references(cfg.style, size, cfg.align)
        self.references = resize_batch(references, size)
        self.invert = Invert(self.nets.encoder)
        self.ref_w_plus = self.invert(ms.Tensor(resize_batch(self.references, cfg.model.loss_size))).asnumpy()
        self.render = StrengthRender(self.nets.original, self.nets.generator)
        self.optimizers = {"generator": build_optimizer(_Params(synthesis_params(self.nets.generator)),
                                                        cfg.optim)}
        self.precision = Precision(cfg.run)  # fp16/bf16 step cell and the fp16 loss scale (groups())
        feature_loss = self.feature_loss()  # a loss network: float32 under fp16/bf16 too
        self.step_cell = self.precision.update_step(
            FineTuneLoss(self.nets.generator, feature_loss, cfg.swap_rows, cfg.mix_alpha),
            [(self.optimizers["generator"], synthesis_params(self.nets.generator))], keep=(feature_loss,))
        self.rng = worker_rng(cfg.run.seed, self.world)
        self.step = 0
        self.ckpts = RunCheckpoints(run_dir, cfg.run.keep_checkpoints)

    def feature_loss(self):
        if self.cfg.loss == "disc_feat":
            return DiscFeatureL1(self.nets.discriminator)
        return PooledLPIPS(self.nets.lpips, self.cfg.model.generator.size, self.cfg.model.loss_size)

    # ----------------------------------------------------------------- state
    def save(self):
        return self.save_state({"method": METHOD})

    def use_frozen(self, codes):
        """The inverted codes saved with the run (a resume inverts nothing anew)."""
        self.ref_w_plus = np.asarray(codes, np.float32)

    # ----------------------------------------------------------------- steps
    def train_step(self, *_unused):
        """One update on the paired set; the record's loss stays on the device."""
        n = len(self.references)
        z = ms.Tensor(self.rng.standard_normal((n, self.cfg.model.generator.style_dim), dtype=np.float32))
        noise = host_noise(self.nets.generator, n, self.rng, self.cfg.run.noise)
        flags = {}  # fp16: overflow flag and count, loss scale
        loss, _img = step_outputs(self.step_cell, self.step_cell(self._ref_codes(), self._targets(), z, noise), flags)
        self.step += 1
        return {"step": self.step, "loss": loss, **flags}

    def _ref_codes(self):
        if getattr(self, "_codes_t", None) is None or self._codes_src is not self.ref_w_plus:
            self._codes_t, self._codes_src = ms.Tensor(self.ref_w_plus), self.ref_w_plus
        return self._codes_t

    def _targets(self):
        if getattr(self, "_targets_t", None) is None:
            self._targets_t = ms.Tensor(self.references)
        return self._targets_t

    # ----------------------------------------------------------------- loop
    def sample(self, metrics, bar):
        """Grid rows: references | inverted (original G(w_ref)) | stylized (fine-tuned G(w_ref)), the
        same noise from (run.seed, step), never from the training stream."""
        noise = host_noise(self.nets.generator, len(self.references),
                           np.random.default_rng([self.cfg.run.seed, self.step]), self.cfg.run.noise)
        codes = self._ref_codes()
        rows = [self.references, self.nets.original(codes, noise).asnumpy(),
                self.nets.generator(codes, noise).asnumpy()]
        if not self.world.main:  # every worker renders (in step with rank 0), rank 0 writes
            return
        path = os.path.join(self.run_dir, "samples", f"step_{self.step:08d}.png")
        save_grid(path, rows)
        metrics.write({"step": self.step, "samples": os.path.relpath(path, self.run_dir)})
        bar.write(f"step {self.step}: samples (reference | inverted | stylized) {path}", file=sys.stderr)

    def run(self, max_steps=None):
        total = self.cfg.total_steps if max_steps is None else min(self.cfg.total_steps, max_steps)
        metrics = None
        if self.world.main:  # rank 0 alone writes the run's files
            metrics = MetricsLog(self.run_dir, resume_step=self.step)
            os.makedirs(os.path.join(self.run_dir, "samples"), exist_ok=True)
        bar = progress(total, self.step, self.progress_label, enabled=self.world.main)
        pending = PendingRecords()
        try:
            while self.step < total:
                self.log_step(self.train_step(), total, bar, metrics, pending)
        finally:
            pending.flush(metrics)
            bar.close()
            if metrics is not None:
                metrics.close()
        barrier()
        return self.step


class _Params:
    """A parameter list as build_optimizer's cell argument (it optimises ``trainable_params()``)."""

    def __init__(self, params):
        self.params = list(params)

    def trainable_params(self):
        return list(self.params)


def train_jojogan(cfg, run_dir, resume=False, max_steps=None, log=print, references=None):
    """Fine-tune into ``run_dir``; every input (run folder, weight files, references, the checkpoint
    to resume) is checked before any network is built or any file written."""
    check_run_dir(run_dir, resume)
    cfg.check_weight_files()
    point = ResumePoint(check_resume_point(run_dir)) if resume else None
    if references is None:
        references = read_references(cfg.style, cfg.model.generator.size, cfg.align)
    log(f"{METHOD}: {cfg.steps} steps on {len(references)} reference(s), swapped rows {list(cfg.swap_rows)}, "
        f"mix_alpha {cfg.mix_alpha}, loss {cfg.loss}, run dir {run_dir}")
    trainer = JoJoGANTrainer(cfg, run_dir, log, references=references)
    if point is not None:
        trainer.use_frozen(load_frozen(trainer.nets, run_dir))
        trainer.resume(point)
    barrier()  # under msrun: every worker has checked its inputs before the run folder appears
    if trainer.world.main:
        os.makedirs(run_dir, exist_ok=True)
        write_resolved_config(cfg, run_dir)
        if point is None:
            save_frozen(trainer.nets, trainer.ref_w_plus, run_dir)
    trainer.run(max_steps)
    return trainer
