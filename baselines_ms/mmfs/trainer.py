"""MMFS training (../BASELINES 5.1, 5.3): ``train_mmfs(cfg, run_dir, ...)`` dispatches on ``cfg.phase``.

"encoder" (stage I): a frozen StyleGAN2 G (weights.stylegan2) renders real = hardtanh(G(z)); the
Stylizer, whose mapping_z and decoder1a..to_rgb4 are G's layers (``copy_stylegan_layers``, frozen),
reconstructs it with the same z; only the encoder, decoder0 and to_rgb0 train, against L1 and the
features of the frozen D (weights.discriminator). No data are read for the loss; the face set gives
the sample grids' inputs.
"base" (stage II): every Stylizer parameter trains (clip_mapper excluded) on photos (data) against
art (target): non-saturating logistic loss + lambda_st DINO structure loss, style mixing; D trains
with 0.5 x the logistic loss and the lazy R1 (after every 16th step); its Adam has rosinality's
lazy-regularisation correction (lr c, betas ^ c, c = 16 / 17). As the official optimize_parameters:
the Stylizer's update, then D's on the same (detached) fakes, then R1.
"clip_mapping" / "few_shot" run B's ``mapping.train_clip_mapping`` / ``prompting.finetune_prompt``.

Checkpoint groups: "stylizer", "stylizer_ema" (samples and the ``mmfs`` stylizer), "discriminator",
and the optimizers ("optim.encoder", "optim.base", "optim.discriminator").
"""
import dataclasses
import inspect
import itertools
import os
import sys

import numpy as np
import mindspore as ms
from mindspore import Tensor, nn

from modify_ms.config import ConfigError
from modify_ms.data.dataset import DataPipeline, build_dataset
from modify_ms.models.irse import freeze
from modify_ms.models.stylegan2 import Discriminator, Generator
from modify_ms.train.checks import check_resume_point, check_run_dir
from modify_ms.train.common import (ResumePoint, RunCheckpoints, host_noise, optimizer_groups, resolve_checkpoint,
                                    save_grid, seed_everything, setup_runtime, worker_data_config,
                                    write_resolved_config)
from modify_ms.train.distributed import barrier, worker_rng
from modify_ms.train.optim import build_optimizer
from modify_ms.train.stage1 import Stage1Trainer
from modify_ms.train.steps import UpdateStep
from modify_ms.utils.checkpoint import fill_cell, read_arrays

from baselines_ms.blendgan.trainer import EMAUpdate, _Params, adam_for_lazy_reg, copy_params
from baselines_ms.psp_unpaired.trainer import PairedPipeline, target_batches

from .config import METHOD, N_STYLES, OWN_PHASES
from .networks import Stylizer, copy_stylegan_layers, stage1_trained
from .steps import STAGE1_TERMS, STAGE2_TERMS, LazyR1Loss, Stage1Loss, Stage2DiscriminatorLoss, Stage2GeneratorLoss

GROUPS = ("stylizer", "stylizer_ema", "discriminator")
SAMPLE_COLUMNS = 4
DELEGATED = {"clip_mapping": ("mapping", "train_clip_mapping"), "few_shot": ("prompting", "finetune_prompt")}


# ----------------------------------------------------------------- networks
def build_generator(cfg):
    """The StyleGAN2 G of stage I, with the Stylizer's size and widths (its layers are copied)."""
    s = cfg.model.stylizer
    return Generator(s.size, s.style_dim, s.n_mlp, s.channel_multiplier, s.channel_max, s.lr_mlp)


def build_discriminator(cfg):
    d = cfg.model.discriminator
    return Discriminator(cfg.model.stylizer.size, d.channel_multiplier, d.channel_max, stddev_group=d.group,
                         stddev_feat=d.stddev_feat)


def build_structure_loss(cfg, log=print):
    """DinoStructureLoss over weights.dino (converted ViT-B/8), or a random DINO of model.dino's widths."""
    from modify_ms.losses.structure import DinoStructureLoss
    from modify_ms.models.dino import DinoConfig, DinoInput, dino_vit, load_dino

    size = cfg.model.stylizer.size
    in_size = DinoInput((size, size)).out_size
    if cfg.weights.dino:
        dino = load_dino(cfg.weights.dino, input_size=in_size)
    else:
        log("note: no weights.dino: the structure loss uses a random DINO stand-in (smoke run only)")
        dino = dino_vit(DinoConfig(**dataclasses.asdict(cfg.model.dino)), input_size=in_size)
    return DinoStructureLoss(dino, (size, size))


class MMFSNets(nn.Cell):
    """``stylizer`` (trained), ``stylizer_ema`` (its moving average), ``discriminator``."""

    def __init__(self, cfg):
        super().__init__()
        self.stylizer = Stylizer(cfg.model.stylizer)
        self.stylizer_ema = Stylizer(cfg.model.stylizer)
        self.discriminator = build_discriminator(cfg)
        for p in self.stylizer_ema.get_parameters():
            p.requires_grad = False

    def groups(self):
        return {name: getattr(self, name) for name in GROUPS}


def load_mmfs_file(nets, path, log=print):
    """Fill the networks from a converted MMFS file (python -m weights_convert mmfs) or an MMFS run
    (folder or checkpoint): ``stylizer_ema`` and ``discriminator``; the trained stylizer starts as
    the EMA one, as every official phase starts from the previous one's G_ema_model. A file's
    clip_mapper is skipped by a Stylizer without one; a Stylizer with one keeps it random when the
    file has none (the official phase-3 strict=False load)."""
    ckpt = resolve_checkpoint(path)
    arrays, _ = read_arrays(ckpt)

    def mapper_entry(key):
        return key.split("/", 1)[-1].startswith("clip_mapper.")

    if nets.stylizer.clip_mapper is None and any(mapper_entry(k) for k in arrays):
        log(f"note: {path}: its clip_mapper is not loaded (model.stylizer.clip_mapper is not set)")
        arrays = {k: v for k, v in arrays.items() if not mapper_entry(k)}
    for group in ("stylizer_ema", "discriminator"):
        fill_cell(getattr(nets, group), arrays, ckpt, prefix=f"{group}/", allow_missing=("clip_mapper.",))
    copy_params(nets.stylizer, nets.stylizer_ema)


def load_weights(nets, generator, cfg, log=print):
    """The files cfg.weights names (config.MMFSWeights); random where empty (smoke runs)."""
    w = cfg.weights
    if w.stylizer:
        load_mmfs_file(nets, w.stylizer, log)
    if generator is not None:
        if w.stylegan2:
            arrays, _ = read_arrays(w.stylegan2)
            fill_cell(generator, arrays, w.stylegan2)
        else:
            log("note: no weights.stylegan2: stage I reconstructs a random StyleGAN2's images (smoke run)")
    if w.discriminator:
        arrays, _ = read_arrays(w.discriminator)
        fill_cell(nets.discriminator, arrays, w.discriminator)
    elif not w.stylizer:
        log("note: no weights.discriminator: the feature loss / stage II start from a random D (smoke run)")


# ----------------------------------------------------------------- trainer
class MMFSTrainer(Stage1Trainer):
    """Networks, optimizers and step cells of stage I and II; ``run()`` is Stage1Trainer's loop
    over the face set (each batch paired with the art set's next batch when stage II is in the run)."""

    progress_label = METHOD
    sample_note = ("styles: first row the inputs, then one z per row; reconstruction: G(z), then the Stylizer's "
                   "reconstruction")

    def __init__(self, cfg, run_dir, log=print, pipeline=None, target=None, start_step=0):
        self.cfg, self.run_dir, self.log = cfg, run_dir, log
        self.pipeline, self.target = pipeline, target
        self.world = setup_runtime(cfg.run, run_dir, cache_key=f"{METHOD}-{cfg.phase_at(start_step)[0]}",
                                   make_dir=False)
        seed_everything(cfg.run.seed)  # before any network is built: random weights follow run.seed
        self.nets = MMFSNets(cfg)
        self.generator = freeze(build_generator(cfg)) if "encoder" in cfg.phases else None
        load_weights(self.nets, self.generator, cfg, log)
        if self.generator is not None:
            n = copy_stylegan_layers(self.nets.stylizer, self.generator)
            log(f"stage I: {n} StyleGAN2 tensors copied into mapping_z and decoder1a..to_rgb4 (frozen)")
        copy_params(self.nets.stylizer_ema, self.nets.stylizer)
        self.structure = build_structure_loss(cfg, log) if "base" in cfg.phases else None
        s = self.nets.stylizer
        self.params = {"encoder": [p for n, p in s.parameters_and_names() if stage1_trained(n)],
                       "base": [p for n, p in s.parameters_and_names() if not n.startswith("clip_mapper.")],
                       "discriminator": list(self.nets.discriminator.get_parameters())}
        d_optim = adam_for_lazy_reg(cfg.base.optim(), cfg.base.d_reg_every)
        self.optimizers = {"encoder": build_optimizer(_Params(self.params["encoder"]), cfg.encoder.optim()),
                           "base": build_optimizer(_Params(self.params["base"]), cfg.base.optim()),
                           "discriminator": build_optimizer(_Params(self.params["discriminator"]), d_optim)}
        self.step_cells, self.current = {}, None
        self.rng = worker_rng(cfg.run.seed, self.world)
        self.step = 0
        self.ckpts = RunCheckpoints(run_dir, cfg.run.keep_checkpoints)

    # ----------------------------------------------------------------- phases
    def set_phase(self, phase):
        """requires_grad as the phase trains (stage I: encoder, decoder0, to_rgb0; stage II: the
        whole Stylizer and D); its step cells built on first use."""
        if phase == self.current:
            return self.step_cells[phase]
        trained = {id(p) for p in self.params[phase]}
        for p in self.nets.stylizer.get_parameters():
            p.requires_grad = id(p) in trained
        for p in self.params["discriminator"]:
            p.requires_grad = phase == "base"
        if phase not in self.step_cells:
            nets, opt, cfg = self.nets, self.optimizers, self.cfg
            if phase == "encoder":
                e = cfg.encoder
                loss = Stage1Loss(self.generator, nets.stylizer, nets.discriminator, e.lambda_l1, e.lambda_feat)
                cells = {"step": UpdateStep(loss, [(opt["encoder"], self.params["encoder"])])}
            else:
                b = cfg.base
                loss = Stage2GeneratorLoss(nets.stylizer, nets.discriminator, self.structure, b.lambda_gan, b.lambda_st)
                d_pairs = [(opt["discriminator"], self.params["discriminator"])]
                cells = {"step": UpdateStep(loss, [(opt["base"], self.params["base"])]),
                         "d": UpdateStep(Stage2DiscriminatorLoss(nets.discriminator), d_pairs),
                         "r1": UpdateStep(LazyR1Loss(nets.discriminator, b.r1, b.d_reg_every), d_pairs)}
            # over the parameters this phase trains (requires_grad now); the others are equal already
            cells["ema"] = EMAUpdate(nets.stylizer_ema, nets.stylizer, cfg.phase_section(phase).ema)
            self.step_cells[phase] = cells
        self.current = phase
        return self.step_cells[phase]

    def groups(self):
        groups = self.nets.groups()
        groups.update(optimizer_groups(self.optimizers))
        return groups

    def save(self):
        return self.save_state({"method": METHOD})

    def train_step(self, face, art):
        phase, start = self.cfg.phase_at(self.step)
        if phase == "base" and self.step == start and start > 0:
            # stage II after stage I in this run: from stage I's EMA Stylizer (the official phase 2
            # loads the phase-1 file's G_ema_model); a resume past this step has it in its checkpoint
            copy_params(self.nets.stylizer, self.nets.stylizer_ema)
        cells = self.set_phase(phase)
        record = self.encoder_step(cells, len(face)) if phase == "encoder" else self.base_step(cells, face, art, start)
        cells["ema"]()
        self.step += 1
        return record

    def styles_z(self, batch):
        return Tensor(self.rng.standard_normal((batch, self.cfg.model.stylizer.style_dim), dtype=np.float32))

    def encoder_step(self, cells, batch):
        z = self.styles_z(batch)
        noise_g = host_noise(self.generator, batch, self.rng, self.cfg.run.noise)
        noise_s = self.nets.stylizer.random_noise(batch, self.rng)
        total, terms, _, _ = cells["step"](z, noise_g, noise_s)
        return dict({"step": self.step + 1, "phase": "encoder", "loss": total}, **dict(zip(STAGE1_TERMS, terms)))

    def mixing(self, batch):
        """(z1, z2, cutoff): two z's split at a row in [1, 9] with probability style_mixing_prob, else one z."""
        z1, z2 = self.styles_z(batch), self.styles_z(batch)
        mix = self.rng.random() < self.cfg.base.style_mixing_prob
        cutoff = int(self.rng.integers(1, N_STYLES)) if mix else N_STYLES
        return z1, z2, Tensor(cutoff, ms.int32)

    def base_step(self, cells, face, art, start):
        batch = len(face)
        z1, z2, cutoff = self.mixing(batch)
        noise = self.nets.stylizer.random_noise(batch, self.rng)
        total, terms, fake = cells["step"](Tensor(face), z1, z2, cutoff, noise)
        art_t = Tensor(art)
        d_loss, d_real = cells["d"](art_t, fake)
        record = {"step": self.step + 1, "phase": "base", "loss": total, "d_loss": d_loss, "d_real": d_real}
        record.update(zip(STAGE2_TERMS, terms))
        if (self.step - start + 1) % self.cfg.base.d_reg_every == 0:  # after the 16th, 32nd ... step (official)
            record["r1"] = cells["r1"](art_t)[1]
        return record

    def log_step(self, record, total, bar, metrics, pending):
        self.progress_keys = ("loss", "l1") if record.get("phase") == "encoder" else ("loss", "d_loss")
        super().log_step(record, total, bar, metrics, pending)

    # ----------------------------------------------------------------- data
    def epoch_pipeline(self):
        pipeline, skip = super().epoch_pipeline()
        fields = {f.name: getattr(pipeline, f.name) for f in dataclasses.fields(DataPipeline)}
        if "base" not in self.cfg.phases:  # stage I alone reads no art
            return PairedPipeline(**fields, targets=itertools.repeat(None)), skip
        if self.target is None:
            self.target = build_dataset(self.cfg.target, log=self.log)
        target_cfg = worker_data_config(self.cfg.target, self.world, len(self.target.source))
        # the step-th step gets the step-th art batch: a resumed run sees what an uninterrupted one does
        return PairedPipeline(**fields, targets=target_batches(self.target, target_cfg, self.step)), skip

    # ----------------------------------------------------------------- samples
    def sample_grids(self):
        """{'styles': rows [held photos, stylizer_ema(photos, z_j) for j < sample_styles]} and, with
        stage I's G, {'reconstruction': rows [G(z), stylizer_ema(G(z), z)]}; z and noise from
        (run.seed, 7), so the grids never move the training stream."""
        ema, cfg = self.nets.stylizer_ema, self.cfg
        rng = np.random.default_rng([cfg.run.seed, 7])
        sd = cfg.model.stylizer.style_dim
        photos = self.held[:SAMPLE_COLUMNS]
        k = len(photos)
        rows = [photos]
        for _ in range(cfg.sample_styles):
            z = Tensor(np.repeat(rng.standard_normal((1, sd), dtype=np.float32), k, axis=0))
            rows.append(ema(Tensor(photos), ema.styles_from_z(z), ema.random_noise(k, rng)).asnumpy())
        grids = {"styles": rows}
        if self.generator is not None:
            z = Tensor(rng.standard_normal((k, sd), dtype=np.float32))
            g = self.generator
            real = np.clip(g(g.mapping(z), host_noise(g, k, rng, cfg.run.noise)).asnumpy(), -1, 1)
            recon = ema(Tensor(real), ema.styles_from_z(z), ema.random_noise(k, rng)).asnumpy()
            grids["reconstruction"] = [real, recon]
        return grids

    def sample(self, metrics, bar):
        grids = self.sample_grids()
        if not self.world.main:
            return
        paths = {}
        for kind, rows in grids.items():
            path = os.path.join(self.run_dir, "samples", f"step_{self.step:08d}_{kind}.png")
            save_grid(path, rows)
            paths[kind] = os.path.relpath(path, self.run_dir)
        metrics.write({"step": self.step, "samples": paths})
        bar.write(f"step {self.step}: samples {', '.join(paths.values())} ({self.sample_note})", file=sys.stderr)


def train_own_phases(cfg, run_dir, resume=False, max_steps=None, log=print, trainer_cls=None):
    """Stage I and/or II (or phase 3: ``trainer_cls`` mapping.ClipMappingTrainer) into ``run_dir``:
    every input checked before any network is built or file written."""
    check_run_dir(run_dir, resume, cfg.data.path)
    if "base" in cfg.phases:
        check_run_dir(run_dir, resume, cfg.target.path)
    cfg.check_weight_files()
    point = ResumePoint(check_resume_point(run_dir)) if resume else None
    pipeline = build_dataset(cfg.data, log=log)
    target = build_dataset(cfg.target, log=log) if "base" in cfg.phases else None
    steps = ", ".join(f"{p} {cfg.phase_section(p).steps}" for p in cfg.phases)
    log(f"{METHOD}: phases {steps} steps; faces {cfg.data.path} ({pipeline.summary()})"
        + (f", art {cfg.target.path} ({target.summary()})" if target is not None else "") + f", run dir {run_dir}")
    trainer = (trainer_cls or MMFSTrainer)(cfg, run_dir, log, pipeline=pipeline, target=target,
                                           start_step=point.step if point else 0)
    if point is not None:
        trainer.resume(point)
    barrier()
    if trainer.world.main:
        os.makedirs(run_dir, exist_ok=True)
        write_resolved_config(cfg, run_dir)
    trainer.run(max_steps)
    return trainer


def _delegate(fn, cfg, **kwargs):
    """Call B's phase function with the keyword arguments it declares."""
    params = inspect.signature(fn).parameters
    return fn(cfg, **{k: v for k, v in kwargs.items() if k in params})


def train_mmfs(cfg, run_dir=None, resume=False, max_steps=None, log=print):
    """Train ``cfg.phase`` (and ``cfg.then``) into ``run_dir`` (default cfg.run.out_dir)."""
    run_dir = run_dir or cfg.run.out_dir
    if cfg.phase in OWN_PHASES:
        return train_own_phases(cfg, run_dir, resume=resume, max_steps=max_steps, log=log)
    module, name = DELEGATED[cfg.phase]
    try:
        fn = getattr(__import__(f"baselines_ms.mmfs.{module}", fromlist=[name]), name)
    except ModuleNotFoundError as exc:
        if exc.name != f"baselines_ms.mmfs.{module}":
            raise
        raise ConfigError(f"phase {cfg.phase} not available (baselines_ms/mmfs/{module}.py is not installed)") from None
    return _delegate(fn, cfg, run_dir=run_dir, resume=resume, max_steps=max_steps, log=log)
