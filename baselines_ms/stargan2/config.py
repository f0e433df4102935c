"""``StarGAN2Config``: the typed config of StarGAN v2 (``main.py``'s arguments, BASELINES 6.3).

``domains`` are the image sets, one per domain, in label order (the official code's sorted
sub-folders); for MODIFY's comparison: [photos, art]. Each domain's ``path``, ``size`` (must be
``model.img_size``), ``align``, ``crop``, ``max_images`` and ``flip`` are used; ``batch_size``
is the top-level one (sources and references are drawn across domains, not per set).
MindSpore-free: tools validate configs before importing it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Tuple

from modify_ms.data.config import DataConfig
from modify_ms.train.config import RunConfig

METHOD = "stargan2"


@dataclass(frozen=True)
class StarGAN2ModelConfig:
    img_size: int = 256
    style_dim: int = 64
    latent_dim: int = 16
    max_conv_dim: int = 512
    w_hpf: float = 0.0       # 0: no high-pass skip (afhq); 1: with FAN masks (celeba_hq; needs fan_weights)
    first_dim: int = 0       # 0: the official 2**14 // img_size (a narrower value: tests, quickstart)
    hidden_dim: int = 512    # the mapping network's width (hard-coded 512 officially)

    def validate(self):
        if self.img_size < 32 or self.img_size & (self.img_size - 1):
            raise ValueError(f"model.img_size must be a power of two >= 32, got {self.img_size}")
        for key in ("style_dim", "latent_dim", "max_conv_dim", "hidden_dim"):
            if not 1 <= getattr(self, key) <= 4096:
                raise ValueError(f"model.{key} must be in [1, 4096], got {getattr(self, key)}")
        if not 0 <= self.first_dim <= 4096 or self.w_hpf < 0:
            raise ValueError("model.first_dim must be in [0, 4096] and model.w_hpf >= 0")


@dataclass(frozen=True)
class StarGAN2Losses:
    lambda_reg: float = 1.0   # R1 on real images
    lambda_sty: float = 1.0   # style reconstruction
    lambda_ds: float = 1.0    # diversity sensitive (initial value; celeba_hq 1, afhq 2)
    lambda_cyc: float = 1.0   # cycle consistency
    ds_iter: int = 100000     # lambda_ds decays linearly to 0 over these iterations

    def validate(self):
        if min(self.lambda_reg, self.lambda_sty, self.lambda_ds, self.lambda_cyc) < 0 or self.ds_iter < 0:
            raise ValueError("losses: the lambdas and ds_iter must be >= 0")


@dataclass(frozen=True)
class StarGAN2Optim:
    """One Adam per network (torch's Adam: L2 weight decay added to the gradient)."""
    lr: float = 1e-4          # G, E, D
    f_lr: float = 1e-6        # the mapping network
    beta1: float = 0.0
    beta2: float = 0.99
    weight_decay: float = 1e-4

    def validate(self):
        if self.lr <= 0 or self.f_lr <= 0 or not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1) \
                or self.weight_decay < 0:
            raise ValueError("optim: lr, f_lr > 0, betas in [0, 1), weight_decay >= 0 required")


@dataclass(frozen=True)
class StarGAN2Config:
    method: Literal["stargan2"] = METHOD
    model: StarGAN2ModelConfig = field(default_factory=StarGAN2ModelConfig)
    domains: Tuple[DataConfig, ...] = (DataConfig(path="builtin:photos"), DataConfig(path="builtin:painted"))
    domain_names: Tuple[str, ...] = ("photo", "art")
    batch_size: int = 8
    rand_crop: float = 0.5    # probability of RandomResizedCrop(scale [0.8, 1], ratio [0.9, 1.1])
    steps: int = 100000       # total_iters
    ema_beta: float = 0.999
    fan_weights: str = ""     # model.w_hpf > 0: the converted wing file (or a converted celeba_hq file)
    losses: StarGAN2Losses = field(default_factory=StarGAN2Losses)
    optim: StarGAN2Optim = field(default_factory=StarGAN2Optim)
    run: RunConfig = field(default_factory=lambda: RunConfig(out_dir="runs/stargan2", seed=777))

    def validate(self):
        if len(self.domains) < 2:
            raise ValueError(f"domains must name at least 2 image sets, got {len(self.domains)}")
        if len(self.domain_names) != len(self.domains) or len(set(self.domain_names)) != len(self.domain_names):
            raise ValueError(f"domain_names must give one distinct name per domain ({len(self.domains)}), "
                             f"got {list(self.domain_names)}")
        for i, data in enumerate(self.domains):
            if data.size != self.model.img_size:
                raise ValueError(f"domains[{i}].size ({data.size}) must equal model.img_size ({self.model.img_size})")
        if self.batch_size < 1 or self.steps < 1 or not 0 <= self.rand_crop <= 1 or not 0 <= self.ema_beta <= 1:
            raise ValueError("batch_size and steps must be >= 1, rand_crop and ema_beta in [0, 1]")
        if self.model.w_hpf > 0 and not self.fan_weights:
            raise ValueError("model.w_hpf > 0 needs fan_weights: the FAN (wing) converted with python -m "
                             "weights_convert stargan2 wing.ckpt FAN.ckpt (the official --wing_path)")
        if self.run.precision != "fp32":
            raise ValueError("run.precision: StarGAN v2 trains in fp32 only here")

    @property
    def total_steps(self):
        return self.steps

    def check_weight_files(self):
        """StarGAN v2 trains from scratch (he_init); with w_hpf > 0 the frozen FAN's file must exist."""
        import os

        from modify_ms.train.checks import WeightsMissingError

        if self.model.w_hpf > 0 and not os.path.isfile(self.fan_weights):
            raise WeightsMissingError(f"{self.fan_weights}: fan_weights not found (convert wing.ckpt with "
                                      f"python -m weights_convert stargan2)")
