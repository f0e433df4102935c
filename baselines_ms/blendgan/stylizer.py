"""BlendGAN behind modify_ms.stylizers' interface: a real photo stylized as the official
``style_transfer_folder.py`` does it: W+ = pSp(photo) (+ latent_avg), z_s = E_style(style image)
(reference-guided) or z_s ~ N(0, I) (latent-guided), output G(W+, z_s, i) with the generator's
stored noise (``randomize_noise=False``).

``create_stylizer("blendgan", path, style="ref.png", index=6, ...)``, ``path`` one of
* a BlendGAN run folder (tools/train_baseline.py) or one of its checkpoints: its ``g_ema``; the
  face encoder from ``psp_encoder=`` or the run's weights.psp_encoder, else a random tiny pSp
  built from run.seed (quickstart only: it inverts nothing faithfully);
* a converted ``blendgan.pt`` (python -m weights_convert blendgan blendgan.pt G.ckpt), with
  ``psp_encoder=`` a converted ``psp_encoder.pt``.
Multi-modal: ``variants(x, k)`` draws k latent style codes per photo.
"""
import os

import numpy as np

from modify_ms.stylizers import StylizerError, check_photos, load_run

from .config import DEFAULT_INDEX, METHOD, BlendGANConfig

MEAN_LATENT_SAMPLES = 4096


def photo_seed(name):
    from modify_ms.train.stage2 import photo_key

    return photo_key(name)


class BlendGANStylizer:
    """``style``: a reference image (file or built-in member, e.g. builtin:painted/0003) for
    reference-guided outputs; empty: latent-guided (z_s from the photo's name and ``style_seed``).
    ``index``: the blending indicator i (0 full stylization .. L natural face; the paper's 6).
    ``output_size``: 0 = the input photos' size."""

    multimodal = True

    def __init__(self, run_or_checkpoint, style="", index=DEFAULT_INDEX, psp_encoder="", style_seed=0,
                 output_size=0, run_mode="", device="", log=None):
        self.log = log or (lambda _msg: None)
        is_run = os.path.isdir(run_or_checkpoint) or os.path.isfile(os.path.join(
            os.path.dirname(os.path.dirname(os.path.abspath(run_or_checkpoint))), "config.yaml"))
        if is_run:
            self._from_run(run_or_checkpoint, psp_encoder, run_mode, device)
        else:
            self._from_files(run_or_checkpoint, psp_encoder, run_mode, device)
        n_latent = self.generator.n_latent
        if not 0 <= int(index) <= n_latent:
            raise StylizerError(f"index must be in [0, {n_latent}] (the blending indicator), got {index}")
        self.index, self.style_seed, self.output_size = int(index), int(style_seed), int(output_size)
        self.size = self.generator.size
        self.style = style
        self.z_style = self._reference_code(style) if style else None

    # ----------------------------------------------------------------- building
    def _runtime(self, run_cfg, run_mode, device):
        import dataclasses

        from modify_ms.train.common import setup_runtime

        setup_runtime(dataclasses.replace(run_cfg, compile_cache=False, mode=run_mode or run_cfg.mode,
                                          device=device or run_cfg.device), "", make_dir=False)

    def _from_run(self, path, psp_encoder, run_mode, device):
        from modify_ms.train.common import load_checkpoint_into, seed_everything

        from .networks import BlendGenerator
        from .trainer import generator_kwargs

        cfg, checkpoint = load_run(path, BlendGANConfig, f"{METHOD} run")
        self._runtime(cfg.run, run_mode, device)
        seed_everything(cfg.run.seed)
        self.generator = BlendGenerator(**generator_kwargs(cfg))
        load_checkpoint_into(checkpoint, {"g_ema": self.generator}, partial=True)
        psp = psp_encoder or cfg.weights.psp_encoder
        if psp:
            self._load_encoder(psp)
        else:
            self.log("note: no psp_encoder: a random tiny pSp encoder (quickstart only: not an inversion)")
            self.encoder, self.encoder_size = self._random_encoder(cfg), cfg.model.encoder_size

    def _from_files(self, path, psp_encoder, run_mode, device):
        from modify_ms.train.config import RunConfig
        from modify_ms.utils.checkpoint import CheckpointFileError
        from weights_convert.blendgan import build_generator

        if not os.path.isfile(path):
            raise CheckpointFileError(f"{path}: no such {METHOD} run folder or converted blendgan.pt")
        if not psp_encoder:
            raise StylizerError(f"{path}: a converted blendgan.pt needs psp_encoder= (a converted psp_encoder.pt)")
        self._runtime(RunConfig(mode="graph", device="CPU"), run_mode, device)
        self.generator, _ = build_generator(path)
        self._load_encoder(psp_encoder)

    def _load_encoder(self, path):
        from weights_convert.blendgan import build_psp_encoder

        self.encoder, meta = build_psp_encoder(path)
        self.encoder.set_train(False)
        self.encoder_size = int(meta["kwargs"]["input_size"])
        if self.encoder.n_styles != self.generator.n_latent:
            raise StylizerError(f"{path}: the pSp encoder gives {self.encoder.n_styles} W+ rows, the generator "
                                f"takes {self.generator.n_latent}")

    def _random_encoder(self, cfg):
        import mindspore as ms

        from modify_ms.models.psp_encoder import GradualStyleEncoder

        z = np.random.default_rng(cfg.run.seed).standard_normal((MEAN_LATENT_SAMPLES, self.generator.style_dim))
        avg = self.generator.face_w(ms.Tensor(z.astype(np.float32))).asnumpy().mean(axis=0)
        e = cfg.model.encoder
        encoder = GradualStyleEncoder(self.generator.n_latent, cfg.model.encoder_size, e.num_layers, units=e.units,
                                      channels=tuple(e.channels), style_dim=self.generator.style_dim, latent_avg=avg)
        encoder.set_train(False)
        return encoder

    def _reference_code(self, entry):
        import mindspore as ms

        from baselines_ms.jojogan.inputs import read_entry

        image = read_entry(entry, self.size, "none")
        return self.generator.embedder(ms.Tensor(image)).asnumpy()

    # ----------------------------------------------------------------- rendering
    def _render(self, x, z_style):
        import mindspore as ms

        from baselines_ms.jojogan.trainer import resize_batch

        from .networks import face_rows

        w_plus = self.encoder(ms.Tensor(resize_batch(x, self.encoder_size)))
        out = self.generator(w_plus, ms.Tensor(z_style.astype(np.float32)),
                             face_rows(self.generator.n_latent, self.index)).asnumpy()
        return resize_batch(out, self.output_size or x.shape[-1])

    def _latent_codes(self, name, k, seed):
        return np.random.default_rng([seed, photo_seed(name)]).standard_normal((k, self.generator.style_dim))

    def stylize(self, x, names=None, noise_seed=0):
        """x [B, 3, P, P] in [-1, 1] -> [B, 3, Q, Q] (Q = output_size or P)."""
        from modify_ms.stylizers import photo_names

        x = check_photos(x)
        if self.z_style is not None:
            codes = np.repeat(self.z_style, len(x), axis=0)
        else:
            codes = np.concatenate([self._latent_codes(n, 1, self.style_seed) for n in photo_names(x, names)])
        return self._render(x, codes)

    def variants(self, x, k, names=None, seed=None, noise_seed=0):
        """[B, K, 3, Q, Q]: K latent-guided stylizations of each photo (z_s from (seed, photo name))."""
        from modify_ms.stylizers import photo_names

        x = check_photos(x)
        seed = self.style_seed if seed is None else seed
        return np.stack([self._render(np.repeat(x[i:i + 1], k, axis=0), self._latent_codes(n, k, seed))
                         for i, n in enumerate(photo_names(x, names))])


def register():
    from modify_ms.stylizers import register_stylizer

    register_stylizer(METHOD, BlendGANStylizer,
                      "BlendGAN (NeurIPS 2021): arbitrary styles from one model, style encoder + weighted blending, "
                      "pSp inversion of the photo")
