"""MMFS phase 4, zero- and one-shot fine-tuning from a prompt (../BASELINES 5.1, 5.3).

The prompt's CLIP feature is computed once, normalised: a text through the CLIP tokenizer and text
tower (zero-shot), an image through CLIP's own PIL preprocessing and image tower (one-shot). The
Stylizer renders fake = Stylizer(real_A, clip_mapper(prompt feature)); only decoder0..4b and
to_rgb0..4 train (encoder, mapping_z and clip_mapper frozen; the clip mapper's dropout stays on,
as in the official train mode), against
  lambda_st L_ST(fake, real_A)  (DINO self-similarity, DinoStructureLoss)
+ lambda_clip mean(1 - cos(n(CLIP(fake)) - n(CLIP(real_A)), direction))  (DirectionalClipLoss:
  direction n(text) - n(text "photo") for a text, n(image) - batch mean of n(CLIP(real_A)) for an image)
+ lambda_proj |U U^T t - t|  (TokenProjectionLoss on the 4th block's tokens, image prompt only),
Adam lr 2e-4, betas (0.9, 0.999), 200 steps, EMA 0.99 (0.5 / 1 / 100: the official yaml).

* :class:`PromptTuning`: the prompt, the loss cell, its update and EMA cells over a (stylizer,
  stylizer_ema) pair; ``step(photos)``; ``styles()`` the prompt's w+ from the EMA Stylizer.
* :func:`finetune_prompt` (``phase: few_shot``): a run from weights.stylizer (a phase-3 run or a
  converted ``phase3_pretrain_10000.pth``) on the face set (``data``), MMFSTrainer's run machinery.
* :func:`stylize_with_prompt`: the ``mmfs`` stylizer's ``text=`` / ``style_image=``: a phase-4 run
  renders its prompt directly; any other Stylizer is fine-tuned first on the photos given.
"""
import numpy as np
import mindspore as ms
from mindspore import Tensor, nn, ops

from modify_ms.config import ConfigError
from modify_ms.losses.clip_losses import (PROJECTION_LAYERS, DirectionalClipLoss, TokenProjectionLoss, image_prompt,
                                          projection_basis, text_prompt_direction)
from modify_ms.train.common import seed_everything
from modify_ms.train.optim import build_optimizer
from modify_ms.train.steps import UpdateStep

from baselines_ms.blendgan.trainer import EMAUpdate, _Params, copy_params

from .mapping import ClipPhaseTrainer, build_clip
from .networks import Stylizer, decoder_trained
from .trainer import build_structure_loss, train_own_phases

PHASE = "few_shot"
TERMS = ("structure", "clip", "proj")


class PromptError(ConfigError):
    """A prompt that cannot be used (both or neither given, an unreadable image)."""


def read_prompt_image(path):
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, ValueError) as exc:
        raise PromptError(f"{path}: not a readable image ({exc})") from None


class Prompt:
    """The prompt side, once: ``feature`` [1, E] (normalised), the directional loss's ``target``
    and ``source_from_batch``, and for an image the projection ``basis``."""

    def __init__(self, clip, text=None, image=None, source_text="photo"):
        if bool(text) == bool(image):
            raise PromptError("give a text prompt or a style image (one of them)")
        self.text, self.image = text, image
        if text:
            from modify_ms.models.clip_tokenizer import tokenize
            from modify_ms.losses.clip_losses import _normalized

            self.feature = _normalized(clip.encode_text(Tensor(tokenize([text])))).astype(np.float32)
            self.target = text_prompt_direction(clip, text, source_text)
            self.source_from_batch, self.basis = False, None
        else:
            pil = read_prompt_image(image) if isinstance(image, str) else image
            self.feature, tokens = image_prompt(clip, pil, PROJECTION_LAYERS)
            self.target, self.source_from_batch = self.feature, True
            self.basis = projection_basis(tokens)


class FewShotLoss(nn.Cell):
    """``construct(real_a, feature, target, noise)`` -> (total, (structure, clip, proj), fake)."""

    def __init__(self, stylizer, structure, directional, projection, lambdas):
        super().__init__(auto_prefix=False)
        self.stylizer, self.structure, self.directional = stylizer, structure, directional
        self.projection = projection
        self.lambda_st, self.lambda_clip, self.lambda_proj = (float(v) for v in lambdas)

    def construct(self, real_a, feature, target, noise):
        s = self.stylizer
        batch = real_a.shape[0]
        fake = s(real_a, s.styles_from_clip(ops.tile(feature, (batch, 1))), noise)
        st = self.structure(fake, real_a)
        direction = self.directional(fake, real_a, target)
        proj = self.projection(fake) if self.projection is not None else ops.zeros((), ms.float32)
        total = self.lambda_st * st + self.lambda_clip * direction + self.lambda_proj * proj
        return total, (st, direction, proj), ops.stop_gradient(fake)


class PromptTuning:
    """Fine-tuning of ``stylizer``'s decoder towards a prompt, EMA into ``stylizer_ema`` (both
    Stylizers with a clip mapper; ``section`` a config.FewShotConfig)."""

    def __init__(self, stylizer, stylizer_ema, clip, structure, section, text=None, image=None):
        self.stylizer, self.stylizer_ema, self.section = stylizer, stylizer_ema, section
        self.prompt = Prompt(clip, text, image, section.src_text)
        for n, p in stylizer.parameters_and_names():
            p.requires_grad = decoder_trained(n)
        stylizer.set_train(False)
        stylizer.clip_mapper.set_train(True)  # dropout, as the official train mode (weights frozen)
        size = (stylizer.size, stylizer.size)
        directional = DirectionalClipLoss(clip.visual, size, self.prompt.source_from_batch)
        projection = None
        if self.prompt.basis is not None and section.lambda_proj > 0:
            projection = TokenProjectionLoss(clip.visual, size, self.prompt.basis)
        loss = FewShotLoss(stylizer, structure, directional, projection,
                           (section.lambda_st, section.lambda_clip, section.lambda_proj))
        self.params = [p for n, p in stylizer.parameters_and_names() if decoder_trained(n)]
        self.optimizer = build_optimizer(_Params(self.params), section.optim())
        self.update = UpdateStep(loss, [(self.optimizer, self.params)])
        self.ema = EMAUpdate(stylizer_ema, stylizer, section.ema)
        self.feature, self.target = Tensor(self.prompt.feature), Tensor(self.prompt.target)

    def step(self, photos, rng):
        """One update on ``photos`` [B, 3, S, S] (host array); returns (total, terms) on the device."""
        noise = self.stylizer.random_noise(len(photos), rng)
        total, terms, _ = self.update(Tensor(photos), self.feature, self.target, noise)
        self.ema()
        return total, terms

    def styles(self, batch=1):
        """[batch, 10, D] host array: the prompt's w+ through the EMA Stylizer's (eval-mode) clip mapper."""
        ema = self.stylizer_ema
        ema.clip_mapper.set_train(False)
        return ema.styles_from_clip(Tensor(np.repeat(self.prompt.feature, batch, 0))).asnumpy()


# ----------------------------------------------------------------- phase 4 as a run
class FewShotTrainer(ClipPhaseTrainer):
    """Phase 4 as a run: PromptTuning over the run's Stylizer pair, on the face set."""

    phase = PHASE
    progress_keys = ("loss", "clip")
    sample_note = "rows: the photos, then the EMA Stylizer with the prompt's w+"

    def build_phase(self, cfg, log):
        f = cfg.few_shot
        self.tuning = PromptTuning(self.nets.stylizer, self.nets.stylizer_ema, build_clip(cfg, log),
                                   build_structure_loss(cfg, log), f, text=f.text, image=f.image)
        return {PHASE: self.tuning.optimizer}

    def train_step(self, face, art=None):
        total, terms = self.tuning.step(face, self.rng)
        self.step += 1
        return dict({"step": self.step, "phase": PHASE, "loss": total}, **dict(zip(TERMS, terms)))

    def sample_grids(self):
        """{'few_shot': rows [held photos, the EMA Stylizer with the prompt's w+]}; noise from (run.seed, 7)."""
        rng = np.random.default_rng([self.cfg.run.seed, 7])
        photos = self.held[:4]
        ema = self.nets.stylizer_ema
        out = ema(Tensor(photos), Tensor(self.tuning.styles(len(photos))), ema.random_noise(len(photos), rng))
        return {PHASE: [photos, out.asnumpy()]}


def finetune_prompt(cfg, run_dir=None, resume=False, max_steps=None, log=print):
    """Phase 4 into ``run_dir`` (default cfg.run.out_dir): few_shot.text or few_shot.image."""
    f = cfg.few_shot
    if bool(f.text) == bool(f.image):
        raise PromptError("phase few_shot needs few_shot.text or few_shot.image (one of them)")
    if f.image:
        read_prompt_image(f.image)  # a bad prompt stops before anything is built
    return train_own_phases(cfg, run_dir or cfg.run.out_dir, resume=resume, max_steps=max_steps, log=log,
                            trainer_cls=FewShotTrainer)


# ----------------------------------------------------------------- the stylizer's prompts
def tune_on_photos(network, cfg, photos, text=None, image=None, steps=None, batch=None, seed=0, log=None,
                   progress=None):
    """Fine-tune a copy of ``network`` (a Stylizer with a clip mapper) on ``photos`` [N, 3, S, S]
    towards the prompt; ``network`` becomes the EMA Stylizer. Batches of ``batch`` photos drawn
    from ``photos`` by (seed), ``steps`` (default few_shot.steps). Returns the PromptTuning."""
    log = log or (lambda _m: None)
    f = cfg.few_shot
    steps = f.steps if steps is None else int(steps)
    batch = min(len(photos), batch or cfg.data.batch_size)
    seed_everything(seed)
    trained = Stylizer(network.cfg)
    copy_params(trained, network)
    tuning = PromptTuning(trained, network, build_clip(cfg, log), build_structure_loss(cfg, log), f, text, image)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        tuning.step(photos[rng.choice(len(photos), batch, replace=False)], rng)
        if progress is not None:
            progress()
    for p in network.get_parameters():
        p.requires_grad = False
    network.set_train(False)
    return tuning


def stylize_with_prompt(stylizer, photos, text=None, style_image=None, names=None, noise_seed=0):
    """The ``mmfs`` stylizer with ``text=`` / ``style_image=``: [B, 3, P, P] -> [B, 3, Q, Q].
    A phase-4 run (config phase few_shot) renders the prompt with its decoder as it is; any other
    Stylizer is fine-tuned first, once per prompt, on these photos (few_shot settings of its config)."""
    from modify_ms.stylizers import StylizerError, photo_names

    from baselines_ms.jojogan.trainer import resize_batch

    from .stylizer import photo_seed

    network, cfg = stylizer.network, stylizer.cfg
    if network.clip_mapper is None:
        raise StylizerError("mmfs: text= / style_image= need a Stylizer with a clip mapper (a phase-3 or "
                            "phase-4 run or file)")
    needed = ("clip",) if cfg.phase == PHASE else ("clip", "dino")
    missing = [k for k in needed if not getattr(cfg.weights, k)]
    if missing and cfg.weights.require:
        raise StylizerError(f"mmfs: a prompt needs weights.{' and weights.'.join(missing)} (converted files) in the "
                            f"Stylizer's config; for a converted release file use tools/mmfs.py --clip / --dino")
    key = (text, style_image)
    try:
        if getattr(stylizer, "_prompt_tuning", (None,))[0] != key:
            if cfg.phase == PHASE:
                clip = build_clip(cfg, stylizer.log)
                tuning = _Rendered(network, Prompt(clip, text, style_image, cfg.few_shot.src_text))
            else:
                tuning = tune_on_photos(network, cfg, resize_batch(photos, network.size), text, style_image,
                                        seed=stylizer.style_seed, log=stylizer.log)
            stylizer._prompt_tuning = (key, tuning)
    except PromptError as exc:
        raise StylizerError(f"mmfs: {exc}") from None
    tuning = stylizer._prompt_tuning[1]
    names = photo_names(photos, names)
    styles = tuning.styles(len(photos))
    return stylizer.render(photos, styles, [[noise_seed, photo_seed(n)] for n in names])


class _Rendered:
    """A prompt over an already fine-tuned Stylizer (phase-4 run): ``styles`` only."""

    def __init__(self, network, prompt):
        self.stylizer_ema, self.prompt = network, prompt

    styles = PromptTuning.styles


__all__ = ["finetune_prompt", "stylize_with_prompt", "tune_on_photos", "PromptTuning", "Prompt", "FewShotLoss",
           "PromptError"]
