"""MMFS phase 3, the CLIP mapping (../BASELINES 5.1, 5.3): ``train_clip_mapping(cfg, run_dir, ...)``.

The phase-2 Stylizer (weights.stylizer: a converted release file or an MMFS run) is frozen except
its ``clip_mapper``. Each step: real_B = Stylizer(real_A, w(z)) with a random z (style mixing with
probability clip_mapping.style_mixing_prob, 0 as the official default) and no gradient; feats =
n(CLIP_image(ClipImageInput(real_B))) (CLIP frozen, n = L2 normalisation); fake =
Stylizer(real_A, clip_mapper(feats)); loss = lambda_l1 L1(fake, real_B) + lambda_feat sum over D
taps convs[1, 3, 4, 5] of L1(D_l(fake), D_l(real_B)) with the phase-2 D frozen. Only clip_mapper
moves (dropout on in training): Adam lr 2e-4, betas (0.9, 0.999) (paper), EMA 0.999.

The frozen Stylizer renders real_B: the official code uses G_ema, whose every layer but the
clip mapper equals G's in this phase, and styles_from_z does not read the clip mapper.
Checkpoint groups as trainer.py (``stylizer``, ``stylizer_ema``, ``discriminator``) plus
``optim.clip_mapping``; the ``mmfs`` stylizer reads the run's ``stylizer_ema``.
"""
import numpy as np
import mindspore as ms
from mindspore import Tensor, nn, ops

from modify_ms.losses.clip_losses import l2_normalize
from modify_ms.models.clip import CLIP, ClipConfig, ClipImageInput, load_clip
from modify_ms.models.irse import freeze
from modify_ms.train.common import RunCheckpoints, seed_everything, setup_runtime
from modify_ms.train.distributed import worker_rng
from modify_ms.train.optim import build_optimizer
from modify_ms.train.stage1 import Stage1Trainer
from modify_ms.train.steps import UpdateStep

from baselines_ms.blendgan.trainer import EMAUpdate, _Params, copy_params

from .config import METHOD, N_STYLES
from .steps import feature_l1, l1
from .trainer import MMFSNets, MMFSTrainer, load_weights, train_own_phases

PHASE = "clip_mapping"
TERMS = ("l1", "feat")


def stand_in_clip_config(embed_dim):
    """A random CLIP of the real ViT-B/32 architecture at width 32, 32-px input, 4 image blocks (the
    token-projection loss reads the 4th), 2 text blocks (smoke runs without weights.clip); the
    tokenizer's full vocabulary and 77-token context."""
    return ClipConfig(embed_dim=embed_dim, image_resolution=32, vision_layers=4, vision_width=32,
                      vision_patch_size=8, vision_heads=4, transformer_width=32, transformer_heads=4,
                      transformer_layers=2)


def build_clip(cfg, log=print):
    """The frozen CLIP of weights.clip (python -m weights_convert clip), or a random stand-in."""
    dim = cfg.model.stylizer.style_dim
    if cfg.weights.clip:
        clip = load_clip(cfg.weights.clip)
        if clip.visual.proj.shape[-1] != dim:
            raise ValueError(f"{cfg.weights.clip}: CLIP embedding {clip.visual.proj.shape[-1]} != "
                             f"model.stylizer.style_dim {dim}")
    else:
        log("note: no weights.clip: a random tiny CLIP stand-in (smoke run only)")
        clip = CLIP(stand_in_clip_config(dim))
    return freeze(clip)


class ClipEmbedding(nn.Cell):
    """n(CLIP_image(preprocess(x))) for [-1, 1] images of ``in_size``, no gradient (CLIP frozen)."""

    def __init__(self, clip_visual, in_size):
        super().__init__()
        self.input = ClipImageInput(in_size, clip_visual.vit.input_size[0])
        self.visual = clip_visual

    def construct(self, x):
        return ops.stop_gradient(l2_normalize(self.visual(self.input(x))))


class ClipMappingLoss(nn.Cell):
    """``construct(real_a, z1, z2, cutoff, noise_target, noise_fake)`` -> (total, (l1, feat), real_b, fake)."""

    def __init__(self, stylizer, clip_embedding, discriminator, lambda_l1=1.0, lambda_feat=4.0):
        super().__init__(auto_prefix=False)
        self.stylizer, self.embed, self.discriminator = stylizer, clip_embedding, discriminator
        self.lambda_l1, self.lambda_feat = float(lambda_l1), float(lambda_feat)

    def construct(self, real_a, z1, z2, cutoff, noise_target, noise_fake):
        s = self.stylizer
        real_b = ops.stop_gradient(s(real_a, s.mix_styles(z1, z2, cutoff), noise_target))
        fake = s(real_a, s.styles_from_clip(self.embed(real_b)), noise_fake)
        rec = l1(fake, real_b)
        feat = feature_l1(self.discriminator, fake, real_b) if self.lambda_feat > 0 else ops.zeros((), ms.float32)
        return self.lambda_l1 * rec + self.lambda_feat * feat, (rec, feat), real_b, ops.stop_gradient(fake)


def mapper_trained(name):
    return name.startswith("clip_mapper.")


class ClipPhaseTrainer(MMFSTrainer):
    """Phases 3 and 4 on MMFSTrainer's run machinery (data loop over the face set, checkpoints,
    resume, metrics): the networks from weights.stylizer, D frozen; ``build_phase`` (subclasses)
    sets up the phase's cells and returns its optimizers."""

    phase = None

    def __init__(self, cfg, run_dir, log=print, pipeline=None, target=None, start_step=0):
        self.cfg, self.run_dir, self.log = cfg, run_dir, log
        self.pipeline, self.target = pipeline, target
        self.world = setup_runtime(cfg.run, run_dir, cache_key=f"{METHOD}-{self.phase}", make_dir=False)
        seed_everything(cfg.run.seed)
        self.nets = MMFSNets(cfg)
        self.generator = None
        load_weights(self.nets, None, cfg, log)
        copy_params(self.nets.stylizer_ema, self.nets.stylizer)
        freeze(self.nets.discriminator)  # phases 3 and 4 never step D
        self.optimizers = self.build_phase(cfg, log)
        self.rng = worker_rng(cfg.run.seed, self.world)
        self.step = 0
        self.ckpts = RunCheckpoints(run_dir, cfg.run.keep_checkpoints)

    def build_phase(self, cfg, log):  # abstract: ClipMappingTrainer, prompting.FewShotTrainer
        raise NotImplementedError(f"{type(self).__name__} must define build_phase")

    def log_step(self, record, total, bar, metrics, pending):
        # the progress keys are the subclass's own (MMFSTrainer.log_step switches them per stage)
        Stage1Trainer.log_step(self, record, total, bar, metrics, pending)


class ClipMappingTrainer(ClipPhaseTrainer):
    """Phase 3: only the clip mapper trains (dropout on)."""

    phase = PHASE
    progress_keys = ("loss", "l1")
    sample_note = "rows: the photos, the frozen Stylizer's target with one z, the EMA Stylizer from its CLIP feature"

    def build_phase(self, cfg, log):
        s = self.nets.stylizer
        params = [p for n, p in s.parameters_and_names() if mapper_trained(n)]
        for n, p in s.parameters_and_names():
            p.requires_grad = mapper_trained(n)
        s.clip_mapper.set_train(True)  # dropout as in the official train mode
        self.clip = build_clip(cfg, log)
        p3 = cfg.clip_mapping
        size = cfg.model.stylizer.size
        loss = ClipMappingLoss(s, ClipEmbedding(self.clip.visual, (size, size)), self.nets.discriminator,
                               p3.lambda_l1, p3.lambda_feat)
        optimizer = build_optimizer(_Params(params), p3.optim())
        self.cells = {"step": UpdateStep(loss, [(optimizer, params)]),
                      "ema": EMAUpdate(self.nets.stylizer_ema, s, p3.ema)}
        return {PHASE: optimizer}

    def draw(self, batch):
        """(z1, z2, cutoff, noise for real_B, noise for the fake) from the run's host stream."""
        sd = self.cfg.model.stylizer.style_dim
        z1, z2 = (Tensor(self.rng.standard_normal((batch, sd), dtype=np.float32)) for _ in range(2))
        mix = self.rng.random() < self.cfg.clip_mapping.style_mixing_prob
        cutoff = Tensor(int(self.rng.integers(1, N_STYLES)) if mix else N_STYLES, ms.int32)
        s = self.nets.stylizer
        return z1, z2, cutoff, s.random_noise(batch, self.rng), s.random_noise(batch, self.rng)

    def train_step(self, face, art=None):
        total, terms, _, _ = self.cells["step"](Tensor(face), *self.draw(len(face)))
        self.cells["ema"]()
        self.step += 1
        return dict({"step": self.step, "phase": PHASE, "loss": total}, **dict(zip(TERMS, terms)))

    def sample_grids(self):
        """{'clip_mapping': rows [held photos, the frozen Stylizer's target with one z, the EMA
        Stylizer from the target's CLIP feature]}; draws from (run.seed, 7)."""
        rng = np.random.default_rng([self.cfg.run.seed, 7])
        s, ema = self.nets.stylizer, self.nets.stylizer_ema
        photos = Tensor(self.held[:4])
        k = photos.shape[0]
        z = Tensor(np.repeat(rng.standard_normal((1, self.cfg.model.stylizer.style_dim), dtype=np.float32), k, 0))
        target = s(photos, s.styles_from_z(z), s.random_noise(k, rng))
        feats = self.cells["step"].loss_cell.embed(target)
        out = ema(photos, ema.styles_from_clip(feats), ema.random_noise(k, rng))
        return {PHASE: [self.held[:4], target.asnumpy(), out.asnumpy()]}


def train_clip_mapping(cfg, run_dir=None, resume=False, max_steps=None, log=print):
    """Phase 3 into ``run_dir`` (default cfg.run.out_dir); every input checked first."""
    if cfg.model.stylizer.clip_mapper is None:
        raise ValueError("phase clip_mapping needs model.stylizer.clip_mapper")
    return train_own_phases(cfg, run_dir or cfg.run.out_dir, resume=resume, max_steps=max_steps, log=log,
                            trainer_cls=ClipMappingTrainer)


__all__ = ["train_clip_mapping", "ClipMappingTrainer", "ClipMappingLoss", "ClipEmbedding", "build_clip",
           "stand_in_clip_config"]
