"""``MMFSConfig``: the typed config of MMFS (Pacific Graphics 2023), the library's sections plus
what is new (the Stylizer, the four training phases, the DINO stand-in). MindSpore-free: tools
validate configs before importing MindSpore.

Values are the paper's where it states them (sec. 4, "Network training"); where the official code
(../BASELINES 5.3) differs, the field comment says which one is the default here and why.
``phase`` is the phase this run starts with; ``then`` lists the phases that follow in the same run
folder (only "base" may follow "encoder": the quickstart runs both).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional, Tuple

from modify_ms.data.config import DataConfig
from modify_ms.models.layout import check_size
from modify_ms.train.checks import WeightsMissingError
from modify_ms.train.config import DiscriminatorConfig, OptimConfig, RunConfig

METHOD = "mmfs"
PHASES = ("encoder", "base", "clip_mapping", "few_shot")
OWN_PHASES = ("encoder", "base")          # trained by trainer.py; the others by mapping.py / prompting.py
N_STYLES = 10                             # style rows: decoder0, to_rgb0, then (a, b, to_rgb) x 4
ENCODER_DOWNSAMPLES = 4                   # the encoder's output is size / 16 (32 x 32 at 512)


@dataclass(frozen=True)
class ClipMapperConfig:
    """CLIPFeats2Wplus: a CLIP feature [B, dim] -> w+ [B, n_tokens, dim] (torch's TransformerEncoder
    defaults: ff 2048, dropout 0.1, pre-norm)."""
    n_tokens: int = N_STYLES
    dim: int = 512
    n_layers: int = 4
    n_heads: int = 8
    ff_dim: int = 2048
    dropout: float = 0.1

    def validate(self):
        if self.n_tokens != N_STYLES:
            raise ValueError(f"clip_mapper.n_tokens must be {N_STYLES} (the Stylizer's style rows), "
                             f"got {self.n_tokens}")
        if min(self.dim, self.n_layers, self.n_heads, self.ff_dim) < 1 or self.dim % self.n_heads:
            raise ValueError(f"clip_mapper: dim, n_layers, n_heads, ff_dim >= 1 and dim % n_heads == 0 required, "
                             f"got {self.dim}, {self.n_layers}, {self.n_heads}, {self.ff_dim}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"clip_mapper.dropout must be in [0, 1), got {self.dropout}")


@dataclass(frozen=True)
class StylizerConfig:
    """The Stylizer (BASELINES 5.2): encoder widths ngf, ngf, 2 ngf, 4 ngf, 8 ngf (ngf 64: 512 at
    32 x 32), decoder channels of StyleGAN2's channel table at size/16 .. size (official: 512, 512,
    256, 128, 64 at 32 .. 512), ``mapping_z`` of n_mlp equalized layers (lr_mlp 0.01). The frozen
    StyleGAN2 of stage I is built with the same size / style_dim / n_mlp / channel settings, so
    its layers copy into the decoder. Narrow values are for CPU smoke runs only."""
    size: int = 512
    ngf: int = 64
    style_dim: int = 512
    n_mlp: int = 8
    channel_multiplier: int = 2
    channel_max: int = 512
    lr_mlp: float = 0.01
    clip_mapper: Optional[ClipMapperConfig] = None

    def validate(self):
        check_size(self.size)
        if self.size < 64:
            raise ValueError(f"stylizer.size must be >= 64 (the decoder starts at size / 16 >= 4), got {self.size}")
        if min(self.ngf, self.style_dim, self.n_mlp, self.channel_multiplier, self.channel_max) < 1:
            raise ValueError("stylizer: ngf, style_dim, n_mlp, channel_multiplier and channel_max must be >= 1")
        if self.clip_mapper is not None and self.clip_mapper.dim != self.style_dim:
            raise ValueError(f"clip_mapper.dim ({self.clip_mapper.dim}) must equal stylizer.style_dim "
                             f"({self.style_dim})")

    @property
    def encoder_size(self):
        return self.size // 2 ** ENCODER_DOWNSAMPLES


@dataclass(frozen=True)
class DinoNetConfig:
    """The structure loss's DINO ViT (``modify_ms.models.dino.DinoConfig``'s fields; that module
    imports MindSpore): ViT-B/8 by default, narrow stand-ins of the same architecture for smoke runs."""
    image_size: int = 224
    patch_size: int = 8
    width: int = 768
    layers: int = 12
    heads: int = 12
    mlp_ratio: float = 4.0

    def validate(self):
        if min(self.image_size, self.patch_size, self.width, self.layers, self.heads) < 1 or self.width % self.heads:
            raise ValueError("dino: sizes >= 1 and width % heads == 0 required")


@dataclass(frozen=True)
class MMFSModel:
    stylizer: StylizerConfig = field(default_factory=StylizerConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)  # ROS D (taps convs[1,3,4,5])
    dino: DinoNetConfig = field(default_factory=DinoNetConfig)


def _check_adam(name, lr, betas, ema):
    if lr <= 0 or not all(0 <= b < 1 for b in betas):
        raise ValueError(f"{name}: lr > 0 and betas in [0, 1) required, got {lr}, {list(betas)}")
    if not 0 <= ema < 1:
        raise ValueError(f"{name}.ema must be in [0, 1), got {ema}")


@dataclass(frozen=True)
class _AdamPhase:
    def optim(self):
        """The phase's Adam as the library's OptimConfig."""
        return OptimConfig(kind="adam", lr=self.lr, beta1=self.betas[0], beta2=self.betas[1])


@dataclass(frozen=True)
class EncoderPhaseConfig(_AdamPhase):
    """Stage I: reconstruct G(z) through E and the decoder with the same z. Paper: 10k iterations,
    lr 1e-3, betas (0.1, 0.999), EMA 0.999 (the code's default lr is 2e-4; the paper's is used)."""
    steps: int = 10000
    lr: float = 1e-3
    betas: Tuple[float, float] = (0.1, 0.999)
    ema: float = 0.999
    lambda_l1: float = 1.0
    lambda_feat: float = 4.0

    def validate(self):
        _check_adam("encoder", self.lr, self.betas, self.ema)
        if self.steps < 0 or min(self.lambda_l1, self.lambda_feat) < 0:
            raise ValueError("encoder: steps and loss weights must be >= 0")


@dataclass(frozen=True)
class BasePhaseConfig(_AdamPhase):
    """Stage II on unpaired photos / art: paper 90k iterations (the released file's), lr 1e-3,
    betas (0.1, 0.999), EMA 0.999; GAN 1, structure 0.5, R1 10 every 16 steps; style mixing 0.5."""
    steps: int = 90000
    lr: float = 1e-3
    betas: Tuple[float, float] = (0.1, 0.999)
    ema: float = 0.999
    lambda_gan: float = 1.0
    lambda_st: float = 0.5
    style_mixing_prob: float = 0.5
    r1: float = 10.0
    d_reg_every: int = 16

    def validate(self):
        _check_adam("base", self.lr, self.betas, self.ema)
        if self.steps < 0 or min(self.lambda_gan, self.lambda_st, self.r1) < 0 or self.d_reg_every < 1:
            raise ValueError("base: steps, loss weights >= 0 and d_reg_every >= 1 required")
        if not 0 <= self.style_mixing_prob <= 1:
            raise ValueError(f"base.style_mixing_prob must be in [0, 1], got {self.style_mixing_prob}")


@dataclass(frozen=True)
class ClipMappingPhaseConfig(_AdamPhase):
    """Phase 3 (B's mapping.py): paper 60k iterations, lr 2e-4, betas (0.9, 0.999) (the code's
    default beta1 is 0.1; the paper's is used), EMA 0.999; L1 1, D-feature 4; mixing 0 (code)."""
    steps: int = 60000
    lr: float = 2e-4
    betas: Tuple[float, float] = (0.9, 0.999)
    ema: float = 0.999
    lambda_l1: float = 1.0
    lambda_feat: float = 4.0
    style_mixing_prob: float = 0.0

    def validate(self):
        _check_adam("clip_mapping", self.lr, self.betas, self.ema)


@dataclass(frozen=True)
class FewShotConfig(_AdamPhase):
    """Phase 4 (B's prompting.py): one-shot (``image``) or zero-shot (``text``) fine-tuning of the
    decoder, 200 iterations, lr 2e-4, betas (0.9, 0.999), EMA 0.99, 0.5 ST + 1 CLIP + 100 PROJ."""
    steps: int = 200
    lr: float = 2e-4
    betas: Tuple[float, float] = (0.9, 0.999)
    ema: float = 0.99
    lambda_st: float = 0.5
    lambda_clip: float = 1.0
    lambda_proj: float = 100.0
    text: Optional[str] = None
    image: Optional[str] = None
    src_text: str = "photo"

    def validate(self):
        _check_adam("few_shot", self.lr, self.betas, self.ema)
        if self.text and self.image:
            raise ValueError("few_shot: give text or image, not both")


@dataclass(frozen=True)
class MMFSWeights:
    """Converted MindSpore files; empty = random (``require: false``, smoke runs only).
    ``stylizer`` / ``discriminator`` of a later phase: a converted MMFS file (python -m
    weights_convert mmfs phase2_pretrain_90000.pth S.ckpt) or an MMFS run folder / checkpoint."""
    stylegan2: str = ""      # stage I's frozen FFHQ G: python -m weights_convert stylegan2 ... --which g_ema
    discriminator: str = ""  # stage I's frozen D (python -m weights_convert stylegan2 ... --which d), or MMFS's
    stylizer: str = ""       # a converted MMFS phase file or an MMFS run (base / clip_mapping / few_shot start here)
    dino: str = ""           # python -m weights_convert dino dino_vitbase8_pretrain.pth dino.ckpt
    clip: str = ""           # python -m weights_convert clip ViT-B-32.pt clip.ckpt (phases 3, 4)
    require: bool = True

    def used(self, phases):
        keys = []
        for phase in phases:
            keys += {"encoder": ["stylegan2", "discriminator"], "base": ["dino"],
                     "clip_mapping": ["stylizer", "discriminator", "clip"],
                     "few_shot": ["stylizer", "dino", "clip"]}[phase]
        if "encoder" not in phases and "base" in phases:
            keys = ["stylizer"] + keys  # stage II starts from a stage-I stylizer
        return tuple(dict.fromkeys(keys))


@dataclass(frozen=True)
class MMFSConfig:
    method: str = METHOD
    phase: str = "encoder"
    then: Tuple[str, ...] = ()
    model: MMFSModel = field(default_factory=MMFSModel)
    weights: MMFSWeights = field(default_factory=MMFSWeights)
    data: DataConfig = field(default_factory=lambda: DataConfig(path="data/ffhq", size=512, batch_size=8,
                                                                flip=False))
    target: DataConfig = field(default_factory=lambda: DataConfig(path="data/aahq", size=512, batch_size=8,
                                                                  flip=False))
    encoder: EncoderPhaseConfig = field(default_factory=EncoderPhaseConfig)
    base: BasePhaseConfig = field(default_factory=BasePhaseConfig)
    clip_mapping: ClipMappingPhaseConfig = field(default_factory=ClipMappingPhaseConfig)
    few_shot: FewShotConfig = field(default_factory=FewShotConfig)
    sample_styles: int = 3   # z's per input in the sample grids
    run: RunConfig = field(default_factory=lambda: RunConfig(out_dir="runs/mmfs", sample_every=1000,
                                                             ckpt_every=5000, log_every=50))

    def validate(self):
        if self.method != METHOD:
            raise ValueError(f"method must be {METHOD!r}, got {self.method!r}")
        if self.phase not in PHASES:
            raise ValueError(f"phase must be one of {list(PHASES)}, got {self.phase!r}")
        chain = self.phases
        if self.then and (self.then != ("base",) or self.phase != "encoder"):
            raise ValueError(f"then: only [base] may follow phase encoder in one run, got phase {self.phase!r}, "
                             f"then {list(self.then)}")
        size = self.model.stylizer.size
        for key, data in (("data", self.data), ("target", self.target)):
            if data.size != size:
                raise ValueError(f"{key}.size ({data.size}) must equal model.stylizer.size ({size})")
        if "base" in chain and self.target.batch_size != self.data.batch_size:
            raise ValueError(f"target.batch_size ({self.target.batch_size}) must equal data.batch_size "
                             f"({self.data.batch_size})")
        if "base" in chain and self.run.mode != "graph":
            raise ValueError("run.mode must be graph for MMFS stage II (R1 is a second-order gradient; "
                             "MindSpore 2.10's PYNATIVE gets it wrong)")
        if self.run.precision != "fp32":
            raise ValueError("run.precision must be fp32 for MMFS")
        if self.sample_styles < 1:
            raise ValueError(f"sample_styles must be >= 1, got {self.sample_styles}")
        if self.phase in ("clip_mapping", "few_shot") and self.model.stylizer.clip_mapper is None:
            raise ValueError(f"phase {self.phase} needs model.stylizer.clip_mapper (a section, {{}} for the defaults)")

    @property
    def phases(self):
        return (self.phase,) + tuple(self.then)

    def phase_section(self, phase):
        return getattr(self, phase)

    @property
    def total_steps(self):
        return sum(self.phase_section(p).steps for p in self.phases)

    def phase_at(self, step):
        """(phase name, its first global step) for a global step of this run."""
        start = 0
        for phase in self.phases:
            steps = self.phase_section(phase).steps
            if step < start + steps:
                return phase, start
            start += steps
        last = self.phases[-1]
        return last, start - self.phase_section(last).steps

    def check_weight_files(self):
        w = self.weights
        for key in ("stylegan2", "discriminator", "stylizer", "dino", "clip"):
            path = getattr(w, key)
            if path and not os.path.exists(path):
                raise WeightsMissingError(f"{path}: weights.{key} not found (see README, 'Pretrained weights')")
        empty = [f"weights.{k}" for k in w.used(self.phases) if not getattr(w, k)]
        if empty and w.require:
            raise WeightsMissingError(f"{', '.join(empty)} {'is' if len(empty) == 1 else 'are'} empty: converted "
                                      f"checkpoints are required (see README, 'Pretrained weights'), or use "
                                      f"yaml/baselines/mmfs_quickstart.yaml (random tiny networks)")
