"""JoJoGAN behind modify_ms.stylizers' interface: x -> G_strength(e4e(x)).

``create_stylizer("jojogan", path, strength=1.0, ...)``, ``path`` one of
* a JoJoGAN run folder (tools/train_baseline.py, tools/jojogan.py's OUT/run) or one of its
  checkpoints: the fine-tuned generator of that checkpoint; the original generator and e4e from
  the run's weight files or its frozen.ckpt;
* a converted fine-tuned generator file (StyleGAN2 sidecar: tools/jojogan.py's
  OUT/generator.ckpt, or a released jojo.pt through weights_convert/jojogan.py), with
  ``e4e=`` a converted e4e file and, for a strength other than 1, ``original=`` the converted
  FFHQ generator it was fine-tuned from.
"""
import os

import numpy as np

from modify_ms.stylizers import StylizerError, check_photos, load_run
from modify_ms.utils.checkpoint import CheckpointFileError

from .config import METHOD, JoJoGANConfig

GENERATOR_FORMATS = ("modify_ms.stylegan2", "modify_ms.jojogan")


def generator_file(path, what):
    """A Generator built from a converted checkpoint's sidecar (kwargs) and filled from it."""
    from modify_ms.models.stylegan2 import Generator
    from modify_ms.utils.checkpoint import fill_cell, read_arrays

    arrays, meta = read_arrays(path)
    if meta.get("format") not in GENERATOR_FORMATS or meta.get("arch", "Generator") != "Generator":
        raise CheckpointFileError(f"{path}: not a converted StyleGAN2 generator ({what}; sidecar format "
                                  f"{meta.get('format')!r}, arch {meta.get('arch')!r})")
    generator = Generator(**meta["kwargs"])
    fill_cell(generator, arrays, path)
    return generator


class JoJoGANStylizer:
    """One output per photo (not multi-modal). ``strength``: the paper's style strength (0 = the
    original generator, 1 = the fine-tuned one, in between feature interpolation). ``output_size``:
    0 = the input photos' size (the interface's contract), else e.g. the generator's resolution.
    ``noise_seed``: the generator noise of the outputs (fixed: deterministic)."""

    multimodal = False

    def __init__(self, run_or_checkpoint, strength=1.0, e4e="", original="", output_size=0, run_mode="",
                 device="", log=None):
        log = log or (lambda _msg: None)
        if not 0.0 <= float(strength) <= 1.0:
            raise StylizerError(f"strength must be in [0, 1], got {strength}")
        if os.path.isdir(run_or_checkpoint) or os.path.isfile(os.path.join(
                os.path.dirname(os.path.dirname(os.path.abspath(run_or_checkpoint))), "config.yaml")):
            if e4e or original:
                raise StylizerError("e4e= and original= are for a converted generator file, not a run")
            self._from_run(run_or_checkpoint, run_mode, device, log)
        else:
            if float(strength) != 1.0 and not original:
                raise StylizerError("a strength other than 1 needs original= (the converted generator "
                                    "the file was fine-tuned from)")
            self._from_generator_file(run_or_checkpoint, e4e, original, run_mode, device)
        self._finish(float(strength), int(output_size))

    @classmethod
    def from_trainer(cls, trainer, strength=1.0, output_size=0):
        """The networks a JoJoGANTrainer holds, as they are (no rebuilding, no recompiling)."""
        self = cls.__new__(cls)
        self.noise_mode, self.encoder_size = trainer.cfg.run.noise, trainer.cfg.model.loss_size
        self.generator, self.invert, self.render = trainer.nets.generator, trainer.invert, trainer.render
        self._finish(float(strength), int(output_size))
        return self

    def _from_run(self, path, run_mode, device, log):
        import dataclasses

        from modify_ms.train.common import load_checkpoint_into, seed_everything, setup_runtime

        from .networks import Invert, StrengthRender
        from .trainer import JoJoNets, load_frozen

        cfg, checkpoint = load_run(path, JoJoGANConfig, f"{METHOD} run")
        run = dataclasses.replace(cfg.run, compile_cache=False, mode=run_mode or cfg.run.mode,
                                  device=device or cfg.run.device)
        setup_runtime(run, "", make_dir=False)
        seed_everything(cfg.run.seed)
        cfg.check_weight_files()
        nets = JoJoNets(cfg, log=lambda _m: None, with_loss=False)
        run_dir = os.path.dirname(os.path.dirname(os.path.abspath(checkpoint)))
        load_frozen(nets, run_dir)
        load_checkpoint_into(checkpoint, nets.groups(), partial=True)
        self.noise_mode, self.encoder_size = cfg.run.noise, cfg.model.loss_size
        self.generator, self.invert = nets.generator, Invert(nets.encoder)
        self.render = StrengthRender(nets.original, nets.generator)

    def _from_generator_file(self, path, e4e, original, run_mode, device):
        from modify_ms.train.common import setup_runtime
        from modify_ms.train.config import RunConfig

        from .networks import Invert, StrengthRender, freeze, load_e4e

        if not os.path.isfile(path):
            raise CheckpointFileError(f"{path}: no such {METHOD} run folder or generator file")
        if not e4e:
            raise StylizerError(f"{path}: a generator file needs e4e= (a converted e4e_ffhq_encode.pt) "
                                f"to invert photos")
        setup_runtime(RunConfig(mode=run_mode or "graph", device=device or "CPU", compile_cache=False), "",
                      make_dir=False)
        self.generator = freeze(generator_file(path, "the fine-tuned generator"))
        base = freeze(generator_file(original, "the original generator")) if original else self.generator
        encoder, self.encoder_size = load_e4e(e4e)
        freeze(encoder).set_train(False)
        self.noise_mode = "random"
        self.invert, self.render = Invert(encoder), StrengthRender(base, self.generator)

    def _finish(self, strength, output_size):
        self.strength, self.output_size = strength, output_size
        # photos are aligned at the generator's resolution, as the notebook aligns at 1024 (e4e
        # then sees them resized to its own input)
        self.size = self.generator.size

    def stylize(self, x, names=None, noise_seed=0):
        """x [B, 3, P, P] in [-1, 1] -> [B, 3, Q, Q], Q = output_size or P: e4e inversion of x (resized
        to the encoder's input), rendered at ``strength``."""
        import mindspore as ms

        from modify_ms.train.common import host_noise

        from .trainer import resize_batch

        x = check_photos(x)
        codes = self.invert(ms.Tensor(resize_batch(x, self.encoder_size)))
        noise = host_noise(self.generator, len(x), np.random.default_rng(noise_seed), self.noise_mode)
        if self.strength == 1.0:  # the fine-tuned generator alone: the render's output at 1, at half the cost
            out = self.generator(codes, noise).asnumpy()
        else:
            out = self.render(codes, noise, ms.Tensor(self.strength, ms.float32)).asnumpy()
        return resize_batch(out, self.output_size or x.shape[-1])


def register():
    from modify_ms.stylizers import register_stylizer

    register_stylizer(METHOD, JoJoGANStylizer,
                      "JoJoGAN (ECCV 2022): one-shot, StyleGAN2 fine-tuned on a few style references, e4e inversion")
