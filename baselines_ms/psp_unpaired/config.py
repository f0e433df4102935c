"""``UnpairedPSPConfig``: the typed config of unpaired pSp, composed of the library's sections.

Nothing here is new but the composition: the model, weight files, data, loss weights,
optimizer, adversarial objective and run sections are MODIFY's own classes. ``data`` is the
source set (photos x, as in stage 2), ``target`` the style set whose images are the
discriminator's "real"; ``losses`` are stage 2's weights {adv, l2, lpips, id, w_norm};
``train`` says which of E and D the encoder-side step updates (the discriminator always
trains when losses.adv > 0). The remapping net M of ``model.remap`` is built but never used.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Tuple

from modify_ms.data.config import DataConfig
from modify_ms.models.layout import check_stddev_batch
from modify_ms.train.config import (AdversarialConfig, ModelConfig, OptimConfig, RunConfig, Stage2Weights,
                                    WeightsConfig)

METHOD = "psp-unpaired"
TRAINABLE = ("encoder", "decoder")


@dataclass(frozen=True)
class UnpairedPSPConfig:
    method: Literal["psp-unpaired"] = METHOD
    model: ModelConfig = field(default_factory=ModelConfig)
    weights: WeightsConfig = field(default_factory=WeightsConfig)
    data: DataConfig = field(default_factory=lambda: DataConfig(path="builtin:photos"))     # source photos x
    target: DataConfig = field(default_factory=lambda: DataConfig(path="builtin:painted"))  # real style images
    losses: Stage2Weights = field(default_factory=Stage2Weights)
    train: Tuple[str, ...] = ("encoder",)  # pSp's default train_decoder=False
    steps: int = 20000
    optim: OptimConfig = field(default_factory=OptimConfig)
    adversarial: AdversarialConfig = field(default_factory=AdversarialConfig)
    run: RunConfig = field(default_factory=lambda: RunConfig(out_dir="runs/psp_unpaired"))

    def validate(self):
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        bad = [n for n in self.train if n not in TRAINABLE]
        if bad or not self.train or len(set(self.train)) != len(self.train):
            raise ValueError(f"train must name distinct networks from {list(TRAINABLE)}, got {list(self.train)}")
        size = self.model.loss_size
        for key, data in (("data", self.data), ("target", self.target)):
            if data.size != size:
                raise ValueError(f"{key}.size ({data.size}) must equal model.loss_size ({size})")
            if data.resampled_real:
                raise ValueError(f"{key}.resampled_real must be false: the discriminator's real comes from target")
        if self.target.batch_size != self.data.batch_size:
            # the Lipschitz penalty interpolates each output with a target image of the same index
            raise ValueError(f"target.batch_size ({self.target.batch_size}) must equal data.batch_size "
                             f"({self.data.batch_size})")
        check_stddev_batch(self.data.batch_size, self.model.discriminator.group)

    @property
    def total_steps(self):
        return self.steps
