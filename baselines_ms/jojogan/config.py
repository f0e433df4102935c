"""``JoJoGANConfig``: the typed config of JoJoGAN, composed of the library's sections.

``model`` is MODIFY's ModelConfig read as: ``generator`` the StyleGAN2 that is fine-tuned,
``discriminator`` the frozen network whose features are the loss, ``encoder`` the e4e
encoder's backbone sizes (only when it is built at random: a converted e4e file brings its
own), ``loss_nets.lpips_net`` the LPIPS of ``loss: lpips``, ``loss_size`` the e4e input (and
LPIPS) resolution; ``remap`` and the identity network are not used. ``optim`` and ``run`` are
the library's sections with JoJoGAN's values (Adam lr 2e-3, betas (0, 0.99); 300 steps, the
notebook's). MindSpore-free: tools validate configs before importing it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal, Tuple

from modify_ms.models.layout import n_latent_for
from modify_ms.train.checks import WeightsMissingError
from modify_ms.train.config import ModelConfig, OptimConfig, RunConfig

METHOD = "jojogan"
# the notebook's id_swap for a 1024 generator (18 W+ rows): the colour-preserving rows, and 7.. for the rest
PRESERVE_COLOR_ROWS = (9, 11, 15, 16, 17)
FIRST_STYLE_ROW = 7
# JoJoGAN's Discriminator taps: the outputs of convs[1], convs[3], convs[4], convs[5] (convs[0] is the
# 1x1 fromRGB ConvLayer, the others ResBlocks); the paper's "after resblock 2, 4, 5, 6" (1-based)
FEATURE_TAPS = (1, 3, 4, 5)


def swap_rows(n_latent, preserve_color):
    """The W+ rows replaced by random codes in the paired set (the notebook's ``id_swap``).

    The notebook's rows are those of an 18-row (1024 px) generator; a smaller generator has
    rows 0 .. n_latent-1 only, and the rows it does not have are dropped (clipped, not
    rescaled: row r keeps its meaning of "the r-th style input", which is what a converted
    small generator's row r is too). A 64 px generator (10 rows): [9] colour-preserving, [7, 8, 9]
    otherwise."""
    rows = PRESERVE_COLOR_ROWS if preserve_color else tuple(range(FIRST_STYLE_ROW, 18))
    return tuple(r for r in rows if r < n_latent)


def feature_taps(n_blocks):
    """The discriminator taps a network with ``n_blocks`` entries in ``convs`` has (a 1024 px one
    has 10; a small one lacks the deep taps, which are dropped: 64 px -> (1, 3, 4))."""
    return tuple(t for t in FEATURE_TAPS if t < n_blocks)


@dataclass(frozen=True)
class JoJoGANWeights:
    """Converted MindSpore checkpoints. Empty = random initialisation (``require: false``, smoke tests)."""
    generator: str = ""      # python -m weights_convert stylegan2 stylegan2-ffhq-config-f.pt G.ckpt --which g_ema
    discriminator: str = ""  # ... --which d (the notebook loads ckpt["d"]; only its convs are used)
    e4e: str = ""            # converted e4e_ffhq_encode.pt (weights_convert/psp.py)
    lpips: str = ""          # loss: lpips only (empty: the packaged linear layers over a random backbone)
    require: bool = True     # an empty path (of a network the config uses) is an error

    def used(self, loss):
        keys = ["generator", "discriminator", "e4e"] if loss == "disc_feat" else ["generator", "e4e", "lpips"]
        return tuple(keys)


@dataclass(frozen=True)
class JoJoGANConfig:
    method: Literal["jojogan"] = METHOD
    model: ModelConfig = field(default_factory=ModelConfig)
    weights: JoJoGANWeights = field(default_factory=JoJoGANWeights)
    # the style references: aligned faces (image files, builtin:astronaut, or one built-in set
    # member as data sources name it, e.g. builtin:painted/0003); predict.py takes up to 4
    style: Tuple[str, ...] = ()
    align: Literal["none", "auto", "dlib"] = "auto"  # FFHQ alignment of the references (auto: when dlib is there)
    preserve_color: bool = False  # the notebook's id_swap [9, 11, 15, 16, 17] instead of 7..17 (see swap_rows)
    # mix_alpha: the weight of the reference's own code in the swapped rows of the paired set,
    # row = mix_alpha * w_ref + (1 - mix_alpha) * mapping(z). It is the notebook's internal alpha,
    # which is 1 - its UI "alpha" (UI default 1.0 -> mix_alpha 0: every swapped row is the random
    # code). It shapes the training batch only; the paper's output control is the stylizer's strength.
    mix_alpha: float = 0.0
    loss: Literal["disc_feat", "lpips"] = "disc_feat"  # the code's (and paper's) choice / the paper's LPIPS
    steps: int = 300  # the notebook's num_iter (predict.py: 200; the paper: 200-500)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=2e-3, beta1=0.0, beta2=0.99))
    run: RunConfig = field(default_factory=lambda: RunConfig(out_dir="runs/jojogan", sample_every=100,
                                                             ckpt_every=100, log_every=10))

    def validate(self):
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if not 0.0 <= self.mix_alpha <= 1.0:
            raise ValueError(f"mix_alpha must be in [0, 1], got {self.mix_alpha}")
        if not self.style or any(not s for s in self.style):
            raise ValueError("style must name one or more reference images (aligned faces)")

    @property
    def n_latent(self):
        return n_latent_for(self.model.generator.size)

    @property
    def swap_rows(self):
        return swap_rows(self.n_latent, self.preserve_color)

    @property
    def total_steps(self):
        return self.steps

    def check_weight_files(self):
        """Every weight file named exists; none the config uses is empty unless ``weights.require``
        is false. One line (WeightsMissingError), before any network is built."""
        used = self.weights.used(self.loss)
        for key in used:
            path = getattr(self.weights, key)
            if path and not os.path.isfile(path):
                raise WeightsMissingError(f"{path}: weights.{key} not found (see README, 'Pretrained weights')")
        empty = [f"weights.{k}" for k in used if not getattr(self.weights, k)]
        if empty and self.weights.require:
            raise WeightsMissingError(f"{', '.join(empty)} {'is' if len(empty) == 1 else 'are'} empty: converted "
                                      f"checkpoints are required (see README, 'Pretrained weights'), or use "
                                      f"yaml/baselines/jojogan_quickstart.yaml (random tiny networks)")
