"""BlendGAN training (the part the authors did not release), from the paper (sec. 3.1-3.4, A.1, A.5).

Phase 1, ``style_encoder_steps``: the style encoder's predictor and projection head learn by
NT-Xent on two affine-only augmentations (random resized crop and flip, no colour change) of each
artistic image; the VGG-19 stays frozen.
Phase 2, ``steps``: the style encoder is frozen; per step, with z_s = E_style(x_s) of the artistic
batch and z_s^- drawn from the queue of earlier batches' codes:
    G:  softplus(-D_face(G_{i=L}(z_f))) + softplus(-D_style(G_{i=0}(z_f, z_s)))
        + softplus(-D_style_latent(G_{i=0}(z_f, z_s^-), z_s^-))
    D:  the same three non-saturating logistic terms on (FFHQ vs G_{i=L}), (AAHQ vs G_{i=0}) and
        ((x_s, z_s) vs (G_{i=0}(z_f, z_s^-), z_s^-))  (paper eq. 6-10),
with rosinality's regularisers: R1 on the three discriminators every d_reg_every steps and the
path-length penalty every g_reg_every steps, the lazy-regularisation Adam correction
(lr c, beta2^c, c = k / (k + 1)), style mixing of z_f, and the EMA generator ``g_ema``.

Readings (the paper is silent; yaml/baselines/blendgan.yaml marks them): the fake pair of eq. 8 is
(G(z_f, z_s^-), z_s^-) - the image generated FROM the queue code, as a projection discriminator's
conditional fake (a G made from z_s but judged with z_s^- would be pushed away from its own style);
the first step's negatives (empty queue) are the batch's own codes rolled by one (a batch of one:
z ~ N(0, I), a latent-guided code); the discriminators are updated after G, on the fakes G's step
rendered (rosinality renders them anew before G's step); the path-length penalty is taken on the
stylized (i = 0) render's W+.

One-shot fine-tuning (``one_shot.reference``): phase 2 only, from ``one_shot.start_from`` (a run)
or ``weights.blendgan``; D_style and D_style_latent (and z_s) see only the reference.
"""
import dataclasses
import math
import os
import sys

import numpy as np
import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops

from modify_ms.data.dataset import DataPipeline, build_dataset, held_images
from modify_ms.models.stylegan2 import Discriminator
from modify_ms.train.checks import check_resume_point, check_run_dir
from modify_ms.train.common import (ResumePoint, RunCheckpoints, host_noise, load_checkpoint_into, optimizer_groups,
                                    resolve_checkpoint, save_grid, seed_everything, setup_runtime, worker_data_config,
                                    write_resolved_config)
from modify_ms.train.distributed import barrier, worker_rng
from modify_ms.train.optim import build_optimizer
from modify_ms.train.stage1 import HELD_IMAGES, Stage1Trainer
from modify_ms.train.steps import UpdateStep
from modify_ms.utils.checkpoint import CheckpointFileError, fill_cell, read_arrays

from baselines_ms.psp_unpaired.trainer import PairedPipeline, target_batches

from .config import METHOD
from .networks import (BlendGenerator, ContrastiveLoss, PathLengthPenalty, ProjectionDiscriminator, ProjectionHead,
                       R1Penalty, d_logistic, face_rows, g_nonsaturating)

GAN_TERMS = ("g_face", "g_style", "g_style_latent")
D_TERMS = ("d_face", "d_style", "d_style_latent")
SAMPLE_COLUMNS = 4


# ----------------------------------------------------------------- networks
def generator_kwargs(cfg):
    g, se = cfg.model.generator, cfg.model.style_encoder
    return dict(size=g.size, style_dim=g.style_dim, n_mlp=g.n_mlp, channel_multiplier=g.channel_multiplier,
                channel_max=g.channel_max, embedder_mlp=se.n_mlp, vgg_widths=tuple(se.vgg_widths),
                style_input_size=se.input_size)


def discriminator(cfg, projection=False):
    g, d = cfg.model.generator, cfg.model.discriminator
    if projection:
        return ProjectionDiscriminator(g.size, g.style_dim, d.channel_multiplier, d.channel_max, d.group, d.stddev_feat)
    return Discriminator(g.size, d.channel_multiplier, d.channel_max, stddev_group=d.group, stddev_feat=d.stddev_feat)


class TrainState(nn.Cell):
    """Host-managed state saved with the run: the embedding queue (ring buffer of the last
    ``size`` style codes, ``count`` codes pushed so far) and the path-length running mean."""

    def __init__(self, size, style_dim):
        super().__init__()
        self.queue = Parameter(Tensor(np.zeros((size, style_dim), np.float32)), name="queue", requires_grad=False)
        self.count = Parameter(Tensor(np.zeros(1, np.float32)), name="count", requires_grad=False)
        self.mean_path_length = Parameter(Tensor(np.zeros(1, np.float32)), name="mean_path_length",
                                          requires_grad=False)
        self.size = size


class LatentQueue:
    """The paper's embedding queue (sec. 3.3) on the host, backed by TrainState's parameters."""

    def __init__(self, state):
        self.state = state
        self.codes = state.queue.asnumpy().copy()
        self.count = int(state.count.asnumpy()[0])

    def __len__(self):
        return min(self.count, len(self.codes))

    def negatives(self, z_style, rng):
        """One earlier code per sample, drawn uniformly from the queue (before this batch is pushed)."""
        n = len(self)
        if n:
            return self.codes[rng.integers(0, n, size=len(z_style))]
        if len(z_style) > 1:  # the first batch: another image's code of the same batch
            return np.roll(z_style, 1, axis=0)
        return rng.standard_normal(z_style.shape).astype(np.float32)

    def push(self, z_style):
        for z in z_style:
            self.codes[self.count % len(self.codes)] = z
            self.count += 1

    def sync(self):
        """Write the host copy into the saved parameters (before a checkpoint)."""
        self.state.queue.set_data(Tensor(self.codes))
        self.state.count.set_data(Tensor(np.array([self.count], np.float32)))


class BlendNets(nn.Cell):
    """``generator`` (trained), ``g_ema`` (its moving average: samples and stylizers), ``d_face``,
    ``d_style``, ``d_style_latent``, the projection ``head`` of the style encoder, and ``state``."""

    def __init__(self, cfg):
        super().__init__()
        kwargs = generator_kwargs(cfg)
        self.generator = BlendGenerator(**kwargs)
        self.g_ema = BlendGenerator(**kwargs)
        self.d_face = discriminator(cfg)
        self.d_style = discriminator(cfg)
        self.d_style_latent = discriminator(cfg, projection=True)
        self.head = ProjectionHead(cfg.model.generator.style_dim, cfg.model.style_encoder.head_layers)
        self.state = TrainState(cfg.queue_size, cfg.model.generator.style_dim)
        for p in self.g_ema.get_parameters():
            p.requires_grad = False

    def groups(self):
        return {"generator": self.generator, "g_ema": self.g_ema, "d_face": self.d_face, "d_style": self.d_style,
                "d_style_latent": self.d_style_latent, "head": self.head, "state": self.state}


def copy_params(dst, src):
    """dst <- src, parameter by parameter (same structure)."""
    values = {n: p.asnumpy() for n, p in src.parameters_and_names()}
    fill_cell(dst, values, "a copy")


def load_weights(nets, cfg, log):
    """Fill the networks from the converted files ``cfg.weights`` names (module doc of config)."""
    from weights_convert.blendgan import load_vgg19

    w = cfg.weights
    g = nets.generator
    if w.blendgan:
        arrays, meta = read_arrays(w.blendgan)
        if meta.get("format") != "modify_ms.blendgan":
            raise CheckpointFileError(f"{w.blendgan}: not a converted blendgan.pt (python -m weights_convert blendgan)")
        fill_cell(g, arrays, w.blendgan)
    else:
        if w.generator:
            arrays, _ = read_arrays(w.generator)
            fill_cell(g.generator, arrays, w.generator)  # G starts from FFHQ StyleGAN2 (paper A.1)
        else:
            log("note: no weights.generator: the face generator starts at random (smoke run)")
        if w.style_encoder:
            arrays, _ = read_arrays(w.style_encoder)
            fill_cell(g.embedder, arrays, w.style_encoder)
        elif w.vgg19:
            load_vgg19(g.embedder.vgg, w.vgg19)
        else:
            log("note: no weights.vgg19: the style encoder's VGG-19 is random (smoke run only)")
    if w.discriminator:
        arrays, _ = read_arrays(w.discriminator)
        fill_cell(nets.d_face, arrays, w.discriminator)  # D_face starts from FFHQ StyleGAN2's D (paper A.1)


# ----------------------------------------------------------------- loss cells
class GeneratorLoss(nn.Cell):
    """G's three adversarial terms; one synthesis pass over [face (i = L); stylized (i = 0, z_s);
    stylized (i = 0, z_s^-)]. Returns (total, terms, (face, stylized, stylized from z_s^-))."""

    def __init__(self, nets):
        super().__init__(auto_prefix=False)
        self.nets = nets
        self.all_rows = face_rows(nets.generator.n_latent, 0)

    def construct(self, z1, z2, cutoff, z_style, z_neg, noise):
        g = self.nets.generator
        w_face = g.generator.mix(g.face_w(z1), g.face_w(z2), cutoff)
        w_style = g.blended(w_face, z_style, self.all_rows)
        w_neg = g.blended(w_face, z_neg, self.all_rows)
        b = z1.shape[0]
        images = g.generator(ops.concat((w_face, w_style, w_neg), axis=0), noise)
        face, style, neg = images[:b], images[b:2 * b], images[2 * b:]
        terms = (g_nonsaturating(self.nets.d_face(face)), g_nonsaturating(self.nets.d_style(style)),
                 g_nonsaturating(self.nets.d_style_latent(neg, z_neg)))
        fakes = (ops.stop_gradient(face), ops.stop_gradient(style), ops.stop_gradient(neg))
        return terms[0] + terms[1] + terms[2], terms, fakes


class DiscriminatorLoss(nn.Cell):
    """D_face only ever sees natural faces (i = L), D_style only stylized ones (i = 0)."""

    def __init__(self, nets):
        super().__init__(auto_prefix=False)
        self.nets = nets

    def construct(self, real_face, real_style, z_style, fake_face, fake_style, fake_neg, z_neg):
        n = self.nets
        terms = (d_logistic(n.d_face(real_face), n.d_face(fake_face)),
                 d_logistic(n.d_style(real_style), n.d_style(fake_style)),
                 d_logistic(n.d_style_latent(real_style, z_style), n.d_style_latent(fake_neg, z_neg)))
        return terms[0] + terms[1] + terms[2], terms


class R1Loss(nn.Cell):
    """(r1 / 2) * (R1 of each discriminator at its real input) * d_reg_every (rosinality's lazy R1)."""

    def __init__(self, nets, r1, every):
        super().__init__(auto_prefix=False)
        self.face, self.style = R1Penalty(nets.d_face), R1Penalty(nets.d_style)
        self.style_latent = R1Penalty(nets.d_style_latent)
        self.weight = float(r1) / 2 * every

    def construct(self, real_face, real_style, z_style):
        total = self.face(real_face) + self.style(real_style) + self.style_latent(real_style, z_style)
        return self.weight * total, total


class PathLengthLoss(nn.Cell):
    """path_regularize * g_reg_every * the path-length penalty of the stylized render (i = 0)."""

    def __init__(self, nets, weight, every, decay):
        super().__init__(auto_prefix=False)
        self.generator = nets.generator
        self.penalty = PathLengthPenalty(nets.generator.generator, decay)
        self.all_rows = face_rows(nets.generator.n_latent, 0)
        self.weight = float(weight) * every

    def construct(self, z1, z2, cutoff, z_style, img_noise, noise, mean_path_length):
        g = self.generator
        w = g.blended(g.generator.mix(g.face_w(z1), g.face_w(z2), cutoff), z_style, self.all_rows)
        penalty, mean = self.penalty(w, img_noise, noise, mean_path_length)
        return self.weight * penalty, penalty, mean


class EMAUpdate(nn.Cell):
    """g_ema <- decay g_ema + (1 - decay) G (rosinality's accumulate), one graph, over G's trained
    parameters; the frozen style encoder is copied once when its phase ends (copy_params)."""

    def __init__(self, ema, model, decay):
        super().__init__(auto_prefix=False)
        names = [n for n, p in model.parameters_and_names() if p.requires_grad and not n.startswith("embedder.")]
        ema_params = dict(ema.parameters_and_names())
        model_params = dict(model.parameters_and_names())
        self.ema = ms.ParameterTuple([ema_params[n] for n in names])
        self.src = ms.ParameterTuple([model_params[n] for n in names])
        self.decay = float(decay)

    def construct(self):
        for e, s in zip(self.ema, self.src):
            ops.assign(e, self.decay * e + (1.0 - self.decay) * s)
        return True


class Embed(nn.Cell):
    """z_s = E_style(x) without gradients (the official get_z_embed)."""

    def __init__(self, generator):
        super().__init__(auto_prefix=False)
        self.encoder = generator.embedder

    def construct(self, x):
        return ops.stop_gradient(self.encoder(x))


# ----------------------------------------------------------------- augmentation
def random_resized_crop(images, rng, scale=(0.5, 1.0), ratio=(3 / 4, 4 / 3)):
    """SimCLR's random resized crop + horizontal flip on the host: affine only, colours untouched.
    [B, 3, R, R] float32 -> same shape."""
    import cv2

    b, _, h, w = images.shape
    out = np.empty_like(images)
    for k in range(b):
        area = h * w * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        cw = int(round(min(w, math.sqrt(area * aspect))))
        ch = int(round(min(h, math.sqrt(area / aspect))))
        x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        crop = images[k, :, y0:y0 + ch, x0:x0 + cw].transpose(1, 2, 0)
        crop = cv2.resize(np.ascontiguousarray(crop), (w, h), interpolation=cv2.INTER_LINEAR)
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        out[k] = crop.transpose(2, 0, 1)
    return out


def adam_for_lazy_reg(optim_cfg, every):
    """rosinality's correction for lazily regularised updates: lr c, betas ^ c, c = every / (every + 1)."""
    c = every / (every + 1)
    return dataclasses.replace(optim_cfg, lr=optim_cfg.lr * c, beta1=optim_cfg.beta1 ** c, beta2=optim_cfg.beta2 ** c)


class _Params:
    def __init__(self, params):
        self.params = list(params)

    def trainable_params(self):
        return list(self.params)


def reference_batch(entry, size, batch):
    """The one-shot reference as [batch, 3, size, size] (repeated)."""
    from baselines_ms.jojogan.inputs import read_entry

    return np.repeat(read_entry(entry, size, "none"), batch, axis=0)


# ----------------------------------------------------------------- trainer
class BlendGANTrainer(Stage1Trainer):
    """Networks, optimizers and step cells of both phases; ``run()`` is Stage1Trainer's loop over
    the face set, each batch paired with the artistic set's next batch."""

    progress_label = METHOD

    def __init__(self, cfg, run_dir, log=print, pipeline=None, target=None):
        self.cfg, self.run_dir, self.log = cfg, run_dir, log
        self.pipeline, self.target = pipeline, target
        self.world = setup_runtime(cfg.run, run_dir, cache_key=METHOD, make_dir=False)
        seed_everything(cfg.run.seed)  # before any network is built: random weights follow run.seed
        self.nets = BlendNets(cfg)
        load_weights(self.nets, cfg, log)
        if cfg.one_shot.start_from:
            load_checkpoint_into(resolve_checkpoint(cfg.one_shot.start_from),
                                 {k: v for k, v in self.nets.groups().items() if k != "state"}, partial=True)
        else:
            copy_params(self.nets.g_ema, self.nets.generator)
        g = self.nets.generator
        embedder = {id(p) for p in g.embedder.get_parameters()}
        self.encoder_params = list(g.embedder.predictor.trainable_params()) + list(self.nets.head.trainable_params())
        self.g_params = [p for p in g.trainable_params() if id(p) not in embedder]
        reg = cfg.regularization
        g_optim = adam_for_lazy_reg(cfg.optim, reg.g_reg_every)
        d_optim = adam_for_lazy_reg(cfg.optim, reg.d_reg_every)
        self.d_params = [p for d in (self.nets.d_face, self.nets.d_style, self.nets.d_style_latent)
                         for p in d.trainable_params()]
        self.optimizers = {"generator": build_optimizer(_Params(self.g_params), g_optim),
                           "discriminators": build_optimizer(_Params(self.d_params), d_optim)}
        if cfg.style_encoder_steps:
            self.optimizers["style_encoder"] = build_optimizer(_Params(self.encoder_params), cfg.style_encoder_optim)
        self.queue = LatentQueue(self.nets.state)
        self.step_cells = None
        self.rng = worker_rng(cfg.run.seed, self.world)
        self.step = 0
        self.ckpts = RunCheckpoints(run_dir, cfg.run.keep_checkpoints)
        self.reference = None
        if cfg.one_shot.reference:
            self.reference = reference_batch(cfg.one_shot.reference, cfg.model.generator.size, cfg.data.batch_size)

    # ----------------------------------------------------------------- steps (built on first use)
    def cells(self):
        if self.step_cells is None:
            cfg, nets, reg = self.cfg, self.nets, self.cfg.regularization
            opt = self.optimizers
            cells = {"embed": Embed(nets.generator),
                     "g": UpdateStep(GeneratorLoss(nets), [(opt["generator"], self.g_params)]),
                     "d": UpdateStep(DiscriminatorLoss(nets), [(opt["discriminators"], self.d_params)]),
                     "r1": UpdateStep(R1Loss(nets, reg.r1, reg.d_reg_every), [(opt["discriminators"], self.d_params)]),
                     "path": UpdateStep(PathLengthLoss(nets, reg.path_regularize, reg.g_reg_every, reg.path_decay),
                                        [(opt["generator"], self.g_params)]),
                     "ema": EMAUpdate(nets.g_ema, nets.generator, reg.ema_decay)}
            if "style_encoder" in opt:
                cells["encoder"] = UpdateStep(ContrastiveLoss(nets.generator.embedder, nets.head, cfg.temperature),
                                              [(opt["style_encoder"], self.encoder_params)])
            self.step_cells = cells
        return self.step_cells

    def groups(self):
        self.queue.sync()
        groups = self.nets.groups()
        groups.update(optimizer_groups(self.optimizers))
        return groups

    def save(self):
        return self.save_state({"method": METHOD})

    def resume(self, point):
        super().resume(point)
        self.queue = LatentQueue(self.nets.state)

    def train_step(self, face, art):
        if self.step < self.cfg.style_encoder_steps:
            return self.encoder_step()
        return self.gan_step(face, art if self.reference is None else self.reference)

    def encoder_step(self):
        images = next(self.encoder_batches())
        lo_hi = tuple(self.cfg.crop_scale)
        v1, v2 = (random_resized_crop(images, self.rng, lo_hi) for _ in range(2))
        loss, cosine = self.cells()["encoder"](Tensor(v1), Tensor(v2))
        self.step += 1
        if self.step == self.cfg.style_encoder_steps:  # the frozen encoder of phase 2: g_ema's is the same
            copy_params(self.nets.g_ema.embedder, self.nets.generator.embedder)
        return {"step": self.step, "phase": 0, "nt_xent": loss, "positive_cosine": cosine}

    def mixing(self, batch):
        """(z1, z2, cutoff): style mixing with probability regularization.mixing (rosinality)."""
        s, n_latent = self.cfg.model.generator.style_dim, self.nets.generator.n_latent
        z1 = self.rng.standard_normal((batch, s), dtype=np.float32)
        z2 = self.rng.standard_normal((batch, s), dtype=np.float32)
        cutoff = int(self.rng.integers(1, n_latent)) if self.rng.random() < self.cfg.regularization.mixing \
            else n_latent
        return Tensor(z1), Tensor(z2), Tensor(cutoff, ms.int32)

    def gan_step(self, face, art):
        cells, cfg, reg = self.cells(), self.cfg, self.cfg.regularization
        b = face.shape[0]
        art_t = Tensor(art)
        z_style = cells["embed"](art_t)
        z_style_np = z_style.asnumpy()
        z_neg = Tensor(self.queue.negatives(z_style_np, self.rng))
        self.queue.push(z_style_np)
        z1, z2, cutoff = self.mixing(b)
        noise = host_noise(self.nets.generator.generator, 3 * b, self.rng, cfg.run.noise)
        g_loss, g_terms, fakes = cells["g"](z1, z2, cutoff, z_style, z_neg, noise)
        d_loss, d_terms = cells["d"](Tensor(face), art_t, z_style, *fakes, z_neg)
        record = {"step": self.step + 1, "phase": 1, "g_loss": g_loss, "d_loss": d_loss}
        record.update(zip(GAN_TERMS, g_terms))
        record.update(zip(D_TERMS, d_terms))
        gan_step = self.step - cfg.style_encoder_steps
        if gan_step % reg.d_reg_every == 0:
            record["r1"] = cells["r1"](Tensor(face), art_t, z_style)[1]
        if gan_step % reg.g_reg_every == 0:
            pb = max(1, b // reg.path_batch_shrink)
            size = cfg.model.generator.size
            p1, p2, pcut = self.mixing(pb)
            img_noise = Tensor((self.rng.standard_normal((pb, 3, size, size)) / math.sqrt(size * size))
                               .astype(np.float32))
            pnoise = host_noise(self.nets.generator.generator, pb, self.rng, cfg.run.noise)
            _, penalty, mean = cells["path"](p1, p2, pcut, z_style[:pb], img_noise, pnoise,
                                             Tensor(self.nets.state.mean_path_length.asnumpy().reshape(())))
            self.nets.state.mean_path_length.set_data(mean.reshape(1))
            record["path"] = penalty
        cells["ema"]()
        self.step += 1
        return record

    # ----------------------------------------------------------------- data
    def target_pipeline(self):
        if self.target is None:
            self.target = build_dataset(self.cfg.target, log=self.log)
        return self.target

    def encoder_batches(self):
        """The style-encoder phase's stream of artistic batches (style_encoder_batch images)."""
        if getattr(self, "_encoder_batches", None) is None:
            target = self.target_pipeline()
            data_cfg = dataclasses.replace(self.cfg.target, batch_size=self.cfg.style_encoder_batch)
            self._encoder_batches = target_batches(target, worker_data_config(data_cfg, self.world, len(target.source)),
                                                   self.step)
        return self._encoder_batches

    def epoch_pipeline(self):
        pipeline, skip = super().epoch_pipeline()
        target = self.target_pipeline()
        if not hasattr(self, "held_target"):
            self.held_target = held_images(target.source, self.cfg.target.size, self.cfg.target.crop, HELD_IMAGES)
        fields = {f.name: getattr(pipeline, f.name) for f in dataclasses.fields(DataPipeline)}
        target_cfg = worker_data_config(self.cfg.target, self.world, len(target.source))
        # one artistic batch per step of either phase: a resumed run sees what an uninterrupted one does
        return PairedPipeline(**fields, targets=target_batches(target, target_cfg, self.step)), skip

    # ----------------------------------------------------------------- samples
    def sample_grids(self):
        """(latent-guided rows, reference-guided rows) of g_ema across cfg.sample_indices: fixed z_f and
        latent z_s from (run.seed, 'samples'), the held artistic images as references."""
        g = self.nets.g_ema
        n_latent, k = g.n_latent, SAMPLE_COLUMNS
        rng = np.random.default_rng([self.cfg.run.seed, 5])
        z_face = Tensor(rng.standard_normal((k, g.style_dim), dtype=np.float32))
        z_latent = Tensor(rng.standard_normal((k, g.style_dim), dtype=np.float32))
        noise = host_noise(g.generator, k, rng, self.cfg.run.noise)
        refs = self.reference[:1].repeat(k, 0) if self.reference is not None else self.held_target[:k]
        if len(refs) < k:
            refs = np.resize(refs, (k,) + refs.shape[1:])
        if getattr(self, "embed_ema", None) is None:
            self.embed_ema = Embed(g)
        z_ref = self.embed_ema(Tensor(refs))
        w = g.face_w(z_face)
        indices = sorted({min(i, n_latent) for i in self.cfg.sample_indices}, reverse=True)
        latent = [g(w, z_latent, face_rows(n_latent, i), noise).asnumpy() for i in indices]
        reference = [refs] + [g(w, z_ref, face_rows(n_latent, i), noise).asnumpy() for i in indices]
        return indices, latent, reference

    def sample(self, metrics, bar):
        indices, latent, reference = self.sample_grids()
        if not self.world.main:
            return
        paths = {}
        for kind, rows in (("latent", latent), ("reference", reference)):
            path = os.path.join(self.run_dir, "samples", f"step_{self.step:08d}_{kind}.png")
            save_grid(path, rows)
            paths[kind] = path
        metrics.write({"step": self.step, "indices": indices,
                       "samples": {k: os.path.relpath(v, self.run_dir) for k, v in paths.items()}})
        bar.write(f"step {self.step}: samples (rows: blending indicator {indices}; reference grid: first row the "
                  f"references) {paths['latent']}, {paths['reference']}", file=sys.stderr)

    def log_step(self, record, total, bar, metrics, pending):
        self.progress_keys = ("nt_xent",) if record.get("phase") == 0 else ("g_loss", "d_loss")
        super().log_step(record, total, bar, metrics, pending)


def train_blendgan(cfg, run_dir, resume=False, max_steps=None, log=print):
    """Train into ``run_dir`` (config.yaml, metrics.jsonl, samples/, checkpoints/): every input
    checked before any network is built or any file written."""
    for data in (cfg.data, cfg.target):
        check_run_dir(run_dir, resume, data.path)
    cfg.check_weight_files()
    point = ResumePoint(check_resume_point(run_dir)) if resume else None
    if cfg.one_shot.reference:
        reference_batch(cfg.one_shot.reference, cfg.model.generator.size, 1)  # a bad reference stops here
    pipeline = build_dataset(cfg.data, log=log)
    target = build_dataset(cfg.target, log=log)
    log(f"{METHOD}: {cfg.style_encoder_steps} style-encoder steps then {cfg.steps} GAN steps; faces {cfg.data.path} "
        f"({pipeline.summary()}), art {cfg.target.path} ({target.summary()})"
        + (f", one-shot reference {cfg.one_shot.reference}" if cfg.one_shot.reference else "") + f", run dir {run_dir}")
    trainer = BlendGANTrainer(cfg, run_dir, log, pipeline=pipeline, target=target)
    if point is not None:
        trainer.resume(point)
    barrier()
    if trainer.world.main:
        os.makedirs(run_dir, exist_ok=True)
        write_resolved_config(cfg, run_dir)
    trainer.run(max_steps)
    return trainer
