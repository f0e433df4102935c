"""StarGAN v2's training (``core/solver.py:Solver.train``) through MODIFY's run machinery.

Each iteration draws a batch on the host (``data.DomainSampler``: sources, two references of the
target domain, labels) and z, z2 ~ N(0, I), then runs the official four updates and the EMA
(``steps``): D (latent), D (reference), G+F+E (latent), G (reference), EMA of G, F, E with
``ema_beta``; lambda_ds follows ``steps.ds_weight``. With model.w_hpf > 0 (the CelebA-HQ setting)
the frozen FAN of ``fan_weights`` gives every update the masks of the sources, and the cycle those
of the fake (``wing.HeatmapMasks``), as the official solver's ``fan.get_heatmap``. Separate Adam optimisers (lr, f_lr for F,
betas, weight decay of ``optim``). The networks start as the official ones do (he_init, the
EMA copies from torch's default initialisation), from run.seed.

Run folder as stage 1's: config.yaml, metrics.jsonl (one line per logged step: each update's
terms, ``lambda_ds``), samples/ (rows: sources | EMA latent-guided output per domain, fixed z |
references of the last domain | EMA reference-guided output), checkpoints/ (every network, the
EMA copies, the optimizers, the host RNG), exact resume. The loop's logging, checkpoint intervals
and resume are Stage1Trainer's (``log_step``, ``save_state``, ``resume``).
"""
import os
import sys

import numpy as np
import mindspore as ms
from mindspore import nn

from modify_ms.train.checks import check_resume_point, check_run_dir
from modify_ms.train.common import (MetricsLog, PendingRecords, ResumePoint, RunCheckpoints, optimizer_groups,
                                    progress, save_grid, seed_everything, setup_runtime, write_resolved_config)
from modify_ms.train.distributed import barrier, worker_rng
from modify_ms.train.optim import ADAM_BETA1_ZERO
from modify_ms.train.stage1 import Stage1Trainer
from modify_ms.train.steps import UpdateStep

from .config import METHOD
from .data import DomainSampler, open_domains
from .networks import StarGAN2Nets
from .steps import D_TERMS, G_TERMS, DiscriminatorLoss, GeneratorLoss, MovingAverage, ds_weight

HELD_IMAGES = 4  # sample grid columns


def build_adam(params, lr, optim_cfg):
    """torch.optim.Adam(params, lr, betas, weight_decay) (L2 decay added to the gradient)."""
    beta1 = optim_cfg.beta1 if optim_cfg.beta1 > 0 else ADAM_BETA1_ZERO
    return nn.Adam(params, learning_rate=lr, beta1=beta1, beta2=optim_cfg.beta2,
                   weight_decay=optim_cfg.weight_decay)


class StarGAN2Updates:
    """The four step cells and the EMA update of one iteration over ``nets`` (a StarGAN2Nets)."""

    def __init__(self, nets, cfg):
        o, w = cfg.optim, cfg.losses
        self.optimizers = {name: build_adam(getattr(nets, name).trainable_params(),
                                            o.f_lr if name == "mapping_network" else o.lr, o)
                           for name in ("generator", "mapping_network", "style_encoder", "discriminator")}
        params = {name: getattr(nets, name).trainable_params() for name in self.optimizers}

        def pairs(*names):
            return [(self.optimizers[n], params[n]) for n in names]

        self.d_latent = UpdateStep(DiscriminatorLoss(nets, "latent", w.lambda_reg), pairs("discriminator"))
        self.d_reference = UpdateStep(DiscriminatorLoss(nets, "reference", w.lambda_reg), pairs("discriminator"))
        self.g_latent = UpdateStep(GeneratorLoss(nets, "latent", w.lambda_sty, w.lambda_cyc),
                                   pairs("generator", "mapping_network", "style_encoder"))
        self.g_reference = UpdateStep(GeneratorLoss(nets, "reference", w.lambda_sty, w.lambda_cyc),
                                      pairs("generator"))
        self.ema = MovingAverage([(getattr(nets, n), getattr(nets, f"{n}_ema")) for n in StarGAN2Nets.EMA],
                                 cfg.ema_beta)
        self.losses, self.masks = w, nets.masks

    def __call__(self, batch, z, z2, step):
        """One iteration; returns the record (device scalars) without the step number."""
        x, y_org, y_trg = (ms.Tensor(batch[k]) for k in ("x_real", "y_org", "y_trg"))
        x_ref, x_ref2 = ms.Tensor(batch["x_ref"]), ms.Tensor(batch["x_ref2"])
        z, z2 = ms.Tensor(z), ms.Tensor(z2)
        lambda_ds = ds_weight(step, self.losses.lambda_ds, self.losses.ds_iter)
        lam = ms.Tensor(lambda_ds, ms.float32)
        masks = () if self.masks is None else (self.masks(x),)  # w_hpf > 0: the FAN masks of the sources
        record = {}
        for name, (total, terms) in (("d_latent", self.d_latent(x, y_org, y_trg, z, *masks)),
                                     ("d_ref", self.d_reference(x, y_org, y_trg, x_ref, *masks))):
            record[name] = total
            record.update({f"{name}_{k}": v for k, v in zip(D_TERMS, terms)})
        for name, (total, terms) in (("g_latent", self.g_latent(x, y_org, y_trg, z, z2, lam, *masks)),
                                     ("g_ref", self.g_reference(x, y_org, y_trg, x_ref, x_ref2, lam, *masks))):
            record[name] = total
            record.update({f"{name}_{k}": v for k, v in zip(G_TERMS, terms)})
        self.ema()
        record["lambda_ds"] = lambda_ds
        return record


def load_fan(fan, path):
    """Fill the frozen FAN from a converted file's ``fan/`` group (a wing file or a celeba_hq file)."""
    from modify_ms.utils.checkpoint import CheckpointFileError, fill_cell, read_arrays

    arrays, _meta = read_arrays(path)
    if not any(k.startswith("fan/") for k in arrays):
        raise CheckpointFileError(f"{path}: no FAN in this file (convert wing.ckpt with python -m weights_convert stargan2)")
    fill_cell(fan, arrays, path, prefix="fan/")


class StarGAN2Trainer(Stage1Trainer):
    """Networks, optimizers and updates; ``run()`` drives Stage1Trainer's ``log_step``."""

    progress_label = METHOD
    progress_keys = ("d_latent", "g_latent", "g_latent_sty", "g_latent_cyc")

    def __init__(self, cfg, run_dir, log=print, domains=None):
        self.cfg, self.run_dir, self.log = cfg, run_dir, log
        self.world = setup_runtime(cfg.run, run_dir, cache_key=METHOD, make_dir=False)
        seed_everything(cfg.run.seed)
        domains = domains if domains is not None else open_domains(cfg, log)
        self.sampler = DomainSampler(domains, cfg.model.img_size, cfg.rand_crop, partner_seed=cfg.run.seed)
        self.nets = StarGAN2Nets(cfg.model, len(domains))
        self.nets.init_weights(cfg.run.seed)
        if self.nets.fan is not None:
            load_fan(self.nets.fan, cfg.fan_weights)
        self.updates = StarGAN2Updates(self.nets, cfg)
        self.optimizers = self.updates.optimizers
        self.rng = worker_rng(cfg.run.seed, self.world)
        self.step = 0
        self.ckpts = RunCheckpoints(run_dir, cfg.run.keep_checkpoints)
        self.held = self.held_batch(domains)

    def held_batch(self, domains):
        """Fixed sources (the first domain's) and references (the last domain's), unaugmented."""
        from modify_ms.data.dataset import held_images

        size = self.cfg.model.img_size
        (src, src_cfg), (ref, ref_cfg) = domains[0], domains[-1]
        x, refs = held_images(src, size, src_cfg.crop, HELD_IMAGES), held_images(ref, size, ref_cfg.crop, HELD_IMAGES)
        n = min(len(x), len(refs))
        return x[:n], refs[:n]

    # ----------------------------------------------------------------- state
    def groups(self):
        groups = self.nets.groups()
        groups.update(optimizer_groups(self.optimizers))
        return groups

    def save(self):
        return self.save_state({"method": METHOD})

    # ----------------------------------------------------------------- steps
    def train_step(self, *_unused):
        cfg = self.cfg
        batch = self.sampler.batch(self.rng, cfg.batch_size)
        z, z2 = (self.rng.standard_normal((cfg.batch_size, cfg.model.latent_dim), dtype=np.float32) for _ in range(2))
        record = {"step": self.step + 1}
        record.update(self.updates(batch, z, z2, self.step))
        self.step += 1
        return record

    # ----------------------------------------------------------------- samples
    def sample_rows(self):
        """[sources, G_ema(x, F_ema(z, k)) for each domain k, references, G_ema(x, E_ema(ref))]; z from
        (run.seed) only: the same at every sample, never from the training stream."""
        nets, (x, refs) = self.nets, self.held
        n, k = len(x), self.nets.num_domains
        z = ms.Tensor(np.random.default_rng([self.cfg.run.seed, 3]).standard_normal(
            (n, self.cfg.model.latent_dim), dtype=np.float32))
        xt = ms.Tensor(x)
        masks = () if nets.masks is None else (nets.masks(xt),)
        rows = [x]
        for domain in range(k):
            y = ms.Tensor(np.full(n, domain, np.int32))
            rows.append(nets.generator_ema(xt, nets.mapping_network_ema(z, y), *masks).asnumpy())
        y_ref = ms.Tensor(np.full(n, k - 1, np.int32))
        rows += [refs, nets.generator_ema(xt, nets.style_encoder_ema(ms.Tensor(refs), y_ref), *masks).asnumpy()]
        return [np.clip(r, -1, 1) for r in rows]

    def sample(self, metrics, bar):
        rows = self.sample_rows()
        path = os.path.join(self.run_dir, "samples", f"step_{self.step:08d}.png")
        save_grid(path, rows)
        metrics.write({"step": self.step, "samples": os.path.relpath(path, self.run_dir)})
        bar.write(f"step {self.step}: samples (sources | latent-guided per domain | references | "
                  f"reference-guided) {path}", file=sys.stderr)

    # ----------------------------------------------------------------- loop
    def run(self, max_steps=None):
        total = self.cfg.total_steps if max_steps is None else min(self.cfg.total_steps, max_steps)
        metrics = MetricsLog(self.run_dir, resume_step=self.step)
        os.makedirs(os.path.join(self.run_dir, "samples"), exist_ok=True)
        bar = progress(total, self.step, self.progress_label)
        pending = PendingRecords()
        try:
            while self.step < total:
                self.log_step(self.train_step(), total, bar, metrics, pending)
        finally:
            pending.flush(metrics)
            bar.close()
            metrics.close()
        return self.step


def train_stargan2(cfg, run_dir, resume=False, max_steps=None, log=print, domains=None):
    """Train into ``run_dir``; every input (run folder, domains' images, the checkpoint to resume)
    is checked before any network is built or any file written."""
    for data in cfg.domains:
        check_run_dir(run_dir, resume, data.path)
    cfg.check_weight_files()
    point = ResumePoint(check_resume_point(run_dir)) if resume else None
    domains = domains if domains is not None else open_domains(cfg, log)
    log(f"{METHOD}: {cfg.steps} iterations, batch {cfg.batch_size}, domains "
        + ", ".join(f"{name} ({d.path}: {len(src)} images)" for name, (src, d) in zip(cfg.domain_names, domains))
        + f", run dir {run_dir}")
    trainer = StarGAN2Trainer(cfg, run_dir, log, domains=domains)
    if point is not None:
        trainer.resume(point)
    barrier()
    os.makedirs(run_dir, exist_ok=True)
    write_resolved_config(cfg, run_dir)
    trainer.run(max_steps)
    return trainer
