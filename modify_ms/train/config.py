"""Typed configs of MODIFY's two stages. Each builder receives only its own section.

YAML files map onto ``Stage1Config`` / ``Stage2Config`` via ``modify_ms.config.load_config``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal, Optional, Tuple

from ..data.config import DataConfig
from ..models.layout import RESOLUTIONS, check_stddev_batch, n_latent_for

NETWORKS = ("encoder", "decoder", "remap")
MAX_WIDTH = 4096  # channels / style dimension: larger ones are typos that would exhaust memory when built
MAX_DEPTH = 64  # MLP layers
MAX_SEED = 2 ** 32 - 1  # numpy's global seed range


def _in_range(name, value, low, high):
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")


@dataclass(frozen=True)
class GeneratorConfig:
    """The StyleGAN2 decoder D (config-f at 1024 in the paper)."""
    size: int = 1024
    style_dim: int = 512
    n_mlp: int = 8
    channel_multiplier: int = 2
    channel_max: int = 512

    def validate(self):
        if self.size not in RESOLUTIONS:
            raise ValueError(f"generator.size must be a power of two in [8, 1024], got {self.size}")
        _in_range("generator.style_dim", self.style_dim, 1, MAX_WIDTH)
        _in_range("generator.channel_max", self.channel_max, 1, MAX_WIDTH)
        _in_range("generator.n_mlp", self.n_mlp, 1, MAX_DEPTH)
        _in_range("generator.channel_multiplier", self.channel_multiplier, 1, 16)


@dataclass(frozen=True)
class EncoderConfig:
    """pSp GradualStyleEncoder over IR-SE (IR-SE50 by default); input at the loss resolution."""
    num_layers: int = 50
    units: Optional[Tuple[int, int, int, int]] = None  # per-block unit counts; None = from num_layers
    channels: Tuple[int, int, int, int] = (64, 128, 256, 512)

    def validate(self):
        if self.units is None and self.num_layers not in (50, 100, 152):
            raise ValueError(f"encoder.num_layers must be 50, 100 or 152, got {self.num_layers}")
        if min(self.channels) < 16:
            raise ValueError("encoder.channels must be >= 16 (squeeze-excitation reduces by 16)")
        if max(self.channels) > MAX_WIDTH:
            raise ValueError(f"encoder.channels must be <= {MAX_WIDTH}, got {list(self.channels)}")
        if self.units is not None and not all(1 <= u <= 64 for u in self.units):
            raise ValueError(f"encoder.units must each be in [1, 64], got {list(self.units)}")


@dataclass(frozen=True)
class RemapConfig:
    """Remapping network M: z -> the last xi W+ rows."""
    xi: int = 9
    n_layers: int = 8
    lr_mul: float = 1.0

    def validate(self):
        if self.xi < 1 or self.n_layers < 1 or self.lr_mul <= 0:
            raise ValueError("remap.xi and remap.n_layers must be >= 1, lr_mul > 0")
        _in_range("remap.n_layers", self.n_layers, 1, MAX_DEPTH)


@dataclass(frozen=True)
class DiscriminatorConfig:
    """StyleGAN2's ResNet discriminator. Minibatch stddev over groups of min(stddev_group, batch)
    samples (0 = the whole batch), stddev_feat features: rosinality's (4, 1); a converted NVlabs
    stylegan2-ada file records its own (8 in paper256/512), and loading it checks they agree."""
    channel_multiplier: int = 2
    channel_max: int = 512
    stddev_group: int = 4
    stddev_feat: int = 1

    def validate(self):
        _in_range("discriminator.channel_multiplier", self.channel_multiplier, 1, 16)
        _in_range("discriminator.channel_max", self.channel_max, 1, MAX_WIDTH)
        _in_range("discriminator.stddev_group", self.stddev_group, 0, 1024)
        _in_range("discriminator.stddev_feat", self.stddev_feat, 0, 64)

    @property
    def group(self):
        """The Discriminator's ``stddev_group`` argument (None: the whole batch)."""
        return self.stddev_group or None


@dataclass(frozen=True)
class LossNetsConfig:
    """The frozen networks of the perceptual and identity losses."""
    lpips_net: Literal["alex", "vgg"] = "alex"
    identity_num_layers: int = 50
    identity_units: Optional[Tuple[int, int, int, int]] = None
    identity_channels: Tuple[int, int, int, int] = (64, 128, 256, 512)

    def validate(self):
        if self.identity_units is None and self.identity_num_layers not in (50, 100, 152):
            raise ValueError(f"loss_nets.identity_num_layers must be 50, 100 or 152, got {self.identity_num_layers}")
        if self.identity_units is not None and not all(1 <= u <= 64 for u in self.identity_units):
            raise ValueError(f"loss_nets.identity_units must each be in [1, 64], got {list(self.identity_units)}")
        if not all(16 <= c <= MAX_WIDTH for c in self.identity_channels):
            raise ValueError(f"loss_nets.identity_channels must each be in [16, {MAX_WIDTH}], "
                             f"got {list(self.identity_channels)}")


@dataclass(frozen=True)
class ModelConfig:
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    remap: RemapConfig = field(default_factory=RemapConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    loss_nets: LossNetsConfig = field(default_factory=LossNetsConfig)
    loss_size: int = 256  # every loss at this resolution (generator output average-pooled), as the authors did
    # how loss-size images go up to the discriminator's resolution: the authors' code uses nearest
    disc_upsample: Literal["nearest", "bilinear"] = "nearest"

    def validate(self):
        if self.loss_size < 64:
            raise ValueError(f"model.loss_size must be a positive multiple of 64, got {self.loss_size}")
        if self.loss_size > self.generator.size or self.generator.size % self.loss_size:
            raise ValueError(f"model.loss_size {self.loss_size} must divide generator.size {self.generator.size}")
        if self.loss_size % 64:
            raise ValueError(f"model.loss_size must be a multiple of 64 (encoder input), got {self.loss_size}")
        n_latent = n_latent_for(self.generator.size)
        if not 1 <= self.remap.xi < n_latent:
            raise ValueError(f"model.remap.xi must be in [1, {n_latent - 1}] for a {self.generator.size} generator")


@dataclass(frozen=True)
class WeightsConfig:
    """Converted MindSpore checkpoints (see README: weights). Empty = random initialisation."""
    generator: str = ""         # python -m weights_convert stylegan2 stylegan2-ffhq-config-f.pt ... --which g_ema
    discriminator: str = ""     # ... --which d
    encoder_backbone: str = ""  # python -m weights_convert irse50 model_ir_se50.pth ...
    # or the whole encoder (body, pyramid and style heads): a converted pSp file (its encoder part),
    # a stage-1 run's E through tools/export_weights.py, or the quickstart's 'builtin:prior64_encoder'
    encoder: str = ""
    identity: str = ""          # the same model_ir_se50.pth, converted for the identity loss
    lpips: str = ""             # LPIPS linear layers + AlexNet/VGG backbone
    require: bool = True        # an empty path is an error (set false for smoke tests)

    def validate(self):
        if self.encoder and self.encoder_backbone:
            raise ValueError("weights.encoder and weights.encoder_backbone both name a file: the whole encoder "
                             "already holds its backbone; give one of them")


@dataclass(frozen=True)
class LossWeights:
    """Stage 1 weights {swap, lpips, adv_r, adv_z, l2, id}, and the authors' optional w-norm of E(y)."""
    swap: float = 0.0
    lpips: float = 0.0
    adv_r: float = 0.0
    adv_z: float = 0.0
    l2: float = 0.0
    id: float = 0.0
    w_norm: float = 0.0  # not in the paper; pSp's / the authors' code weight it 0.005

    def validate(self):
        if min(self.swap, self.lpips, self.adv_r, self.adv_z, self.l2, self.id, self.w_norm) < 0:
            raise ValueError("loss weights must be >= 0")


@dataclass(frozen=True)
class PhaseConfig:
    """A run of ``steps`` iterations with fixed loss weights and an explicit set of trained networks."""
    steps: int = 1
    weights: LossWeights = field(default_factory=LossWeights)
    train: Tuple[str, ...] = ("encoder", "decoder")

    def validate(self):
        if self.steps < 1:
            raise ValueError(f"phase steps must be >= 1, got {self.steps}")
        bad = [n for n in self.train if n not in NETWORKS]
        if bad or not self.train:
            raise ValueError(f"phase train must name networks from {list(NETWORKS)}, got {list(self.train)}")


@dataclass(frozen=True)
class OptimConfig:
    """One optimizer per trained network. 'adam' is the paper's choice (the default); 'ranger' is
    the authors' code's (pSp's training/ranger.py: RAdam + Lookahead + gradient centralisation,
    see modify_ms/train/optim.py). The authors' Ranger runs use betas (0.95, 0.999): to reproduce
    them set kind: ranger AND beta1: 0.95 (beta1 stays 0.9, Adam's default, unless set)."""
    kind: Literal["adam", "ranger"] = "adam"
    lr: float = 1e-4
    beta1: float = 0.9
    beta2: float = 0.999
    # Ranger only (Adam ignores them); the defaults are those of pSp's Ranger
    ranger_eps: float = 1e-5                # added to sqrt(v) (Adam keeps MindSpore's 1e-8)
    lookahead_k: int = 6                    # slow weights sync every k updates
    lookahead_alpha: float = 0.5            # slow <- slow + alpha (fast - slow)
    rectify_threshold: float = 5.0          # RAdam: adaptive steps once rho_t > this, momentum SGD before
    gradient_centralization: bool = True    # subtract the mean of every gradient with more than one axis

    def validate(self):
        if self.lr <= 0 or not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ValueError(f"optim: lr > 0 and betas in [0, 1) required, got lr {self.lr}, "
                             f"betas {self.beta1}, {self.beta2}")
        if not self.ranger_eps > 0:
            raise ValueError(f"optim.ranger_eps must be > 0, got {self.ranger_eps}")
        _in_range("optim.lookahead_k", self.lookahead_k, 1, 10 ** 6)
        if not 0 < self.lookahead_alpha <= 1:  # 0 would throw every k updates away
            raise ValueError(f"optim.lookahead_alpha must be in (0, 1], got {self.lookahead_alpha}")
        rho_inf = 2 / (1 - self.beta2) - 1  # RAdam's largest rho_t
        # below 4 the rectification's sqrt((rho_t - 4) ...) is of a negative number
        if self.kind == "ranger" and not 4 <= self.rectify_threshold < rho_inf:
            raise ValueError(f"optim.rectify_threshold must be in [4, {rho_inf:g}) (2 / (1 - beta2) - 1) "
                             f"for Ranger, got {self.rectify_threshold}")


@dataclass(frozen=True)
class AdversarialConfig:
    """'wgan' is the paper's objective (the default, like every other default here: the paper's),
    'logistic' the authors' code's; both with the one-sided gradient penalty (weight 10)."""
    kind: Literal["wgan", "logistic"] = "wgan"
    gp_weight: float = 10.0

    def validate(self):
        if self.gp_weight < 0:
            raise ValueError(f"adversarial.gp_weight must be >= 0, got {self.gp_weight}")


def precision_error(precision, device):
    """Why ``precision`` cannot run on ``device`` (one line), or "" (train.precision, docs/precision.md)."""
    if precision == "bf16" and device == "CPU":
        return ("run.precision bf16 needs run.device GPU or Ascend: MindSpore 2.10 has no bfloat16 CPU "
                "kernels (use fp16 or fp32 on the CPU)")
    return ""


@dataclass(frozen=True)
class RunConfig:
    out_dir: str = "runs/modify"
    seed: int = 0
    device: Literal["CPU", "GPU", "Ascend"] = "CPU"
    mode: Literal["graph", "pynative"] = "graph"  # pynative only for debugging and quick tests
    noise: Literal["random", "const"] = "random"  # generator noise: fresh per step (authors) or the fixed buffers
    log_every: int = 10
    sample_every: int = 500
    ckpt_every: int = 1000
    keep_checkpoints: int = 3
    compile_cache: bool = True
    compile_cache_dir: str = ""  # "" = <out_dir>/.compile_cache; share one to reuse graphs across runs
    # the device of this process: -1 = the worker's local rank under msrun (DEVICE_ID in a rank-table
    # job), 0 in a single process; set through mindspore.set_device
    device_id: int = -1
    # GRAPH_MODE compilation level ("" = MindSpore's default for the device; O0 kernel by kernel,
    # O1 with operator fusion, O2 whole-graph sinking on Ascend)
    jit_level: Literal["", "O0", "O1", "O2"] = ""
    max_device_memory: str = ""  # e.g. "22GB": the device memory MindSpore may take ("" = its default)
    # data parallel (msrun): the encoder's BatchNorm takes its statistics over the global batch, so
    # N workers at batch_size B train as one process at batch N x B (off: per-device statistics)
    sync_batch_norm: bool = True
    precision: Literal["fp32", "fp16", "bf16"] = "fp32"  # mixed precision through mindspore.amp
    loss_scale: float = 2.0 ** 16  # fp16: initial dynamic loss scale
    loss_scale_window: int = 1000  # fp16: finite steps before the scale doubles (halved on overflow)
    recompute: bool = False  # recompute generator/discriminator blocks in the backward pass (memory)
    # MindSpore's CPU kernel threads (0 = its default pool of 25). 1 makes a CPU run byte-reproducible:
    # with more threads its kernels reduce in varying orders and the same command twice drifts apart
    # (the quickstart: 792 of 970 arrays differed after 60 steps, by up to 0.11). Set once per process.
    cpu_threads: int = 1

    def validate(self):
        if min(self.log_every, self.sample_every, self.ckpt_every, self.keep_checkpoints) < 1:
            raise ValueError("run: log_every, sample_every, ckpt_every and keep_checkpoints must be >= 1")
        _in_range("run.seed", self.seed, 0, MAX_SEED)
        _in_range("run.device_id", self.device_id, -1, 4095)
        _in_range("run.cpu_threads", self.cpu_threads, 0, 1024)
        if not self.loss_scale >= 1 or self.loss_scale_window < 1:
            raise ValueError(f"run.loss_scale must be >= 1 and run.loss_scale_window >= 1, got "
                             f"{self.loss_scale}, {self.loss_scale_window}")
        if self.max_device_memory and not re.fullmatch(r"\d+(\.\d+)?GB", self.max_device_memory):
            raise ValueError(f"run.max_device_memory must look like '22GB', got {self.max_device_memory!r}")
        if precision_error(self.precision, self.device):
            raise ValueError(precision_error(self.precision, self.device))


@dataclass(frozen=True)
class Stage1Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    weights: WeightsConfig = field(default_factory=WeightsConfig)
    data: DataConfig = field(default_factory=lambda: DataConfig(path="builtin:painted", resampled_real=True))
    phases: Tuple[PhaseConfig, ...] = (
        PhaseConfig(150000, LossWeights(swap=0, lpips=0.8, adv_r=0.1, adv_z=0, l2=0.8, id=1), ("encoder", "decoder")),
        PhaseConfig(20000, LossWeights(swap=1.0, lpips=0, adv_r=0, adv_z=0.1, l2=0, id=0),
                    ("encoder", "decoder", "remap")))
    optim: OptimConfig = field(default_factory=OptimConfig)
    adversarial: AdversarialConfig = field(default_factory=AdversarialConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def validate(self):
        if not self.phases:
            raise ValueError("phases: at least one phase is required")
        if self.data.size != self.model.loss_size:
            raise ValueError(f"data.size ({self.data.size}) must equal model.loss_size ({self.model.loss_size})")
        if not self.data.resampled_real:
            raise ValueError("data.resampled_real must be true in stage 1 (the adversarial loss's y')")
        check_stddev_batch(self.data.batch_size, self.model.discriminator.group)

    @property
    def total_steps(self):
        return sum(p.steps for p in self.phases)


@dataclass(frozen=True)
class Stage2Weights:
    """Stage 2 weights (paper: adv 0.01, l2 0.5, lpips 0.8, id 1), and the authors' optional w-norm of E'(x)."""
    adv: float = 0.01
    l2: float = 0.5
    lpips: float = 0.8
    id: float = 1.0
    w_norm: float = 0.0  # not in the paper; the authors' code adds it with weight 0.005

    def validate(self):
        if min(self.adv, self.l2, self.lpips, self.id, self.w_norm) < 0:
            raise ValueError("stage-2 loss weights must be >= 0")


@dataclass(frozen=True)
class Stage2Config:
    stage1: str = ""  # a stage-1 run directory or one of its checkpoints (its model and loss weights are reused)
    mode: Literal["offline", "online", "test-time"] = "test-time"
    weights: Stage2Weights = field(default_factory=Stage2Weights)
    # offline mode's source set; data.size 0 = the stage-1 run's model.loss_size (the only size E' reads)
    data: DataConfig = field(default_factory=lambda: DataConfig(path="builtin:photos", batch_size=1, size=0))
    offline_steps: int = 20000
    test_time_steps: int = 50
    # online: 0 = one update per arriving photo (a folder once, or --watch); N = the paper's online
    # training, the photos replayed in order for N updates (20k over 2000), then every output rewritten
    online_updates: int = 0
    optim: OptimConfig = field(default_factory=OptimConfig)
    adversarial: AdversarialConfig = field(default_factory=AdversarialConfig)
    # run.out_dir: stylize's work folder (metrics, stage-2 checkpoints, compile cache; --work-dir);
    # "" = one per stage-1 run, mode and output under the per-user cache folder, never beside an output
    run: RunConfig = field(default_factory=lambda: RunConfig(out_dir=""))

    def validate(self):
        if self.offline_steps < 1 or self.test_time_steps < 1:
            raise ValueError("offline_steps and test_time_steps must be >= 1")
        if self.online_updates < 0:
            raise ValueError(f"online_updates must be >= 0, got {self.online_updates}")
