"""``BlendGANConfig``: the typed config of BlendGAN, composed of the library's sections plus what
is new (style encoder, blending, the three discriminators' regularisation, the latent queue,
one-shot fine-tuning). MindSpore-free: tools validate configs before importing MindSpore.

Paper values (NeurIPS 2021, appendix A.1; ../BASELINES 4.3) are in yaml/baselines/blendgan.yaml;
what the paper does not state is marked ASSUMPTION there and in the field comments here.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal, Tuple

from modify_ms.data.config import DataConfig
from modify_ms.models.layout import check_stddev_batch, n_latent_for
from modify_ms.train.checks import WeightsMissingError
from modify_ms.train.config import DiscriminatorConfig, EncoderConfig, GeneratorConfig, OptimConfig, RunConfig

METHOD = "blendgan"
DEFAULT_INDEX = 6  # the paper's blending indicator for qualitative results (sec. 4.1)


@dataclass(frozen=True)
class StyleEncoderConfig:
    """E_style: VGG-19 widths (the real ones, or narrow for CPU smoke runs), the input it pools to,
    the predictor depth (4) and the projection head depth (the paper's 2)."""
    vgg_widths: Tuple[int, int, int, int, int] = (64, 128, 256, 512, 512)
    input_size: int = 256
    n_mlp: int = 4
    head_layers: int = 2


@dataclass(frozen=True)
class BlendGANModel:
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)  # all three
    style_encoder: StyleEncoderConfig = field(default_factory=StyleEncoderConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)  # pSp face encoder (stylizing photos)
    encoder_size: int = 256  # pSp's input (the official PSPEncoder pools to 256)


@dataclass(frozen=True)
class BlendGANWeights:
    """Converted MindSpore checkpoints; empty = random (``require: false``, smoke runs)."""
    generator: str = ""      # FFHQ StyleGAN2 g_ema: python -m weights_convert stylegan2 stylegan2-ffhq-config-f.pt G.ckpt
    discriminator: str = ""  # FFHQ StyleGAN2 d (D_face starts from it): ... --which d
    vgg19: str = ""          # python -m weights_convert blendgan vgg19-dcbe5e1e.pth vgg19.ckpt
    style_encoder: str = ""  # a converted style_encoder.pt: the style-encoder phase is then skipped
    blendgan: str = ""       # a converted blendgan.pt: the whole G (one-shot fine-tuning starts here)
    psp_encoder: str = ""    # a converted psp_encoder.pt (stylizing photos; empty: random tiny pSp)
    require: bool = True

    def used(self):
        return ("generator", "discriminator", "vgg19") if not self.blendgan else ("blendgan", "discriminator")


@dataclass(frozen=True)
class RegularizationConfig:
    """rosinality's values (the paper keeps "most hyper-parameters" of that code)."""
    r1: float = 10.0
    d_reg_every: int = 16
    path_regularize: float = 2.0
    path_batch_shrink: int = 2
    path_decay: float = 0.01
    g_reg_every: int = 4
    mixing: float = 0.9
    ema_decay: float = 0.5 ** (32 / (10 * 1000))


@dataclass(frozen=True)
class OneShotConfig:
    """Appendix A.5: style encoder frozen, G and the three discriminators trained on ONE reference
    (D_style and D_style_latent see only it; D_face still sees the face set), 1000 steps at batch 1.
    ``start_from``: a BlendGAN run (folder or checkpoint) to fine-tune; else weights.blendgan."""
    reference: str = ""  # an image file or a built-in member (builtin:painted/0003); empty: not one-shot
    start_from: str = ""


@dataclass(frozen=True)
class BlendGANConfig:
    method: Literal["blendgan"] = METHOD
    model: BlendGANModel = field(default_factory=BlendGANModel)
    weights: BlendGANWeights = field(default_factory=BlendGANWeights)
    data: DataConfig = field(default_factory=lambda: DataConfig(path="data/ffhq", size=1024, batch_size=8))
    target: DataConfig = field(default_factory=lambda: DataConfig(path="data/aahq", size=1024, batch_size=8))
    # the style-encoder phase (SimCLR on the artistic set) before the GAN phase
    style_encoder_steps: int = 500000
    style_encoder_batch: int = 256
    style_encoder_optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=0.002, beta1=0.0, beta2=0.99))
    temperature: float = 0.1   # ASSUMPTION: the paper names tau without a value (SimCLR v2's 0.1)
    crop_scale: Tuple[float, float] = (0.5, 1.0)  # ASSUMPTION: SimCLR's random resized crop (+ flip), no colour
    steps: int = 200000        # GAN phase
    queue_size: int = 1024     # ASSUMPTION: the paper's embedding queue has no stated length
    regularization: RegularizationConfig = field(default_factory=RegularizationConfig)
    sample_indices: Tuple[int, ...] = (18, 12, 6, 0)  # blending indicators of the sample grids (clipped to L)
    one_shot: OneShotConfig = field(default_factory=OneShotConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=0.002, beta1=0.0, beta2=0.99))
    run: RunConfig = field(default_factory=lambda: RunConfig(out_dir="runs/blendgan", sample_every=1000,
                                                             ckpt_every=5000, log_every=50))

    def validate(self):
        if self.steps < 1 or self.style_encoder_steps < 0:
            raise ValueError(f"steps must be >= 1 and style_encoder_steps >= 0, got {self.steps}, "
                             f"{self.style_encoder_steps}")
        if self.style_encoder_batch < 2:
            raise ValueError(f"style_encoder_batch must be >= 2 (NT-Xent needs negatives), got {self.style_encoder_batch}")
        if self.temperature <= 0 or self.queue_size < 1:
            raise ValueError(f"temperature must be > 0 and queue_size >= 1, got {self.temperature}, {self.queue_size}")
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < lo <= hi <= 1, got {list(self.crop_scale)}")
        size = self.model.generator.size
        for key, data in (("data", self.data), ("target", self.target)):
            if data.size != size:
                raise ValueError(f"{key}.size ({data.size}) must equal model.generator.size ({size})")
        if self.target.batch_size != self.data.batch_size:
            raise ValueError(f"target.batch_size ({self.target.batch_size}) must equal data.batch_size "
                             f"({self.data.batch_size})")
        reg = self.regularization
        if reg.path_batch_shrink < 1 or reg.d_reg_every < 1 or reg.g_reg_every < 1:
            raise ValueError("regularization: path_batch_shrink, d_reg_every and g_reg_every must be >= 1")
        if self.run.mode != "graph":
            raise ValueError("run.mode must be graph for BlendGAN training (second-order gradients: R1 and the "
                             "path-length penalty; MindSpore 2.10's PYNATIVE gets them wrong)")
        if self.run.precision != "fp32":
            raise ValueError("run.precision must be fp32 for BlendGAN")
        check_stddev_batch(self.data.batch_size, self.model.discriminator.group)
        if self.one_shot.reference and self.style_encoder_steps:
            raise ValueError("one_shot: the style encoder is frozen; set style_encoder_steps: 0")

    @property
    def n_latent(self):
        return n_latent_for(self.model.generator.size)

    @property
    def total_steps(self):
        return self.style_encoder_steps + self.steps

    def check_weight_files(self):
        w = self.weights
        for key in ("generator", "discriminator", "vgg19", "style_encoder", "blendgan", "psp_encoder"):
            path = getattr(w, key)
            if path and not os.path.isfile(path):
                raise WeightsMissingError(f"{path}: weights.{key} not found (see README, 'Pretrained weights')")
        start = self.one_shot.start_from
        if start and not os.path.exists(start):
            raise WeightsMissingError(f"{start}: one_shot.start_from not found (a BlendGAN run folder or checkpoint)")
        empty = [f"weights.{k}" for k in w.used() if not getattr(w, k)]
        if self.one_shot.reference and not (w.blendgan or start):
            empty.append("weights.blendgan (or one_shot.start_from)")
        if empty and w.require:
            raise WeightsMissingError(f"{', '.join(empty)} {'is' if len(empty) == 1 else 'are'} empty: converted "
                                      f"checkpoints are required (see README, 'Pretrained weights'), or use "
                                      f"yaml/baselines/blendgan_quickstart.yaml (random tiny networks)")
