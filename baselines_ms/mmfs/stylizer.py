"""MMFS behind modify_ms.stylizers' interface, as the official ``test.py`` (phase 2) does it: the
photo resized to the Stylizer's size, styles from a random z through ``mapping_z``, fresh noise,
output in [-1, 1]; here z and noise are seeded per photo (by its name, or its pixels), so a
result can be reproduced.

``create_stylizer("mmfs", path, style_seed=0, ...)``, ``path`` one of
* an MMFS run folder (tools/train_baseline.py) or one of its checkpoints: its ``stylizer_ema``;
* a converted MMFS file (python -m weights_convert mmfs phase2_pretrain_90000.pth S.ckpt).
Multi-modal: ``variants(x, k)`` draws k z's per photo. ``text=`` / ``style_image=``: text- or
image-guided stylization through the CLIP mapping, by ``baselines_ms.mmfs.prompting.
stylize_with_prompt(stylizer, x, text=..., style_image=..., names=..., noise_seed=...)`` (imported
when asked for; it renders with ``render``).
"""
import os

import numpy as np

from modify_ms.stylizers import StylizerError, check_photos, load_run, photo_names

from .config import METHOD, MMFSConfig


def photo_seed(name):
    from modify_ms.train.stage2 import photo_key

    return photo_key(name)


class MMFSStylizer:
    """``style_seed``: the z of each photo comes from (style_seed, photo name); ``output_size``: 0 =
    the input photos' size; ``text`` / ``style_image``: prompt-guided (module doc)."""

    multimodal = True

    def __init__(self, run_or_checkpoint, style_seed=0, text="", style_image="", output_size=0, run_mode="",
                 device="", log=None):
        self.log = log or (lambda _msg: None)
        if text and style_image:
            raise StylizerError("mmfs: give text= or style_image=, not both")
        is_run = os.path.isdir(run_or_checkpoint) or os.path.isfile(os.path.join(
            os.path.dirname(os.path.dirname(os.path.abspath(run_or_checkpoint))), "config.yaml"))
        if is_run:
            self._from_run(run_or_checkpoint, run_mode, device)
        else:
            self._from_file(run_or_checkpoint, run_mode, device)
        self.network.set_train(False)
        self.size = self.network.size
        self.style_seed, self.output_size = int(style_seed), int(output_size)
        self.text, self.style_image = text, style_image

    # ----------------------------------------------------------------- building
    def _runtime(self, run_cfg, run_mode, device):
        import dataclasses

        from modify_ms.train.common import setup_runtime

        setup_runtime(dataclasses.replace(run_cfg, compile_cache=False, mode=run_mode or run_cfg.mode,
                                          device=device or run_cfg.device), "", make_dir=False)

    def _from_run(self, path, run_mode, device):
        from modify_ms.train.common import load_checkpoint_into, seed_everything

        from .networks import Stylizer

        self.cfg, checkpoint = load_run(path, MMFSConfig, f"{METHOD} run")
        self._runtime(self.cfg.run, run_mode, device)
        seed_everything(self.cfg.run.seed)
        self.network = Stylizer(self.cfg.model.stylizer)
        load_checkpoint_into(checkpoint, {"stylizer_ema": self.network}, partial=True)

    def _from_file(self, path, run_mode, device):
        from modify_ms.train.config import RunConfig
        from modify_ms.utils.checkpoint import CheckpointFileError
        from weights_convert.mmfs import build_stylizer

        if not os.path.isfile(path):
            raise CheckpointFileError(f"{path}: no such {METHOD} run folder or converted MMFS file")
        self._runtime(RunConfig(mode="graph", device="CPU"), run_mode, device)
        self.network, self.cfg = build_stylizer(path)

    # ----------------------------------------------------------------- rendering
    def render(self, x, styles, noise_seeds):
        """x [B, 3, P, P], styles [B, 10, D] (host arrays), one noise seed per photo -> [B, 3, Q, Q]."""
        import mindspore as ms

        from baselines_ms.jojogan.trainer import resize_batch

        inputs = resize_batch(x, self.size)
        out = []
        for i in range(len(x)):  # batch 1: one compiled graph whatever the number of photos
            noise = self.network.random_noise(1, np.random.default_rng(noise_seeds[i]))
            out.append(self.network(ms.Tensor(inputs[i:i + 1]), ms.Tensor(styles[i:i + 1].astype(np.float32)),
                                    noise).asnumpy())
        return resize_batch(np.concatenate(out), self.output_size or x.shape[-1])

    def styles_for(self, z):
        import mindspore as ms

        return self.network.styles_from_z(ms.Tensor(z.astype(np.float32))).asnumpy()

    def _codes(self, name, k, seed):
        return np.random.default_rng([seed, photo_seed(name)]).standard_normal((k, self.network.style_dim))

    def _prompted(self, x, names, noise_seed):
        try:
            from .prompting import stylize_with_prompt
        except ImportError:
            raise StylizerError("mmfs: text= / style_image= need baselines_ms/mmfs/prompting.py "
                                "(stylize_with_prompt), which is not installed") from None
        return stylize_with_prompt(self, x, text=self.text or None, style_image=self.style_image or None,
                                   names=names, noise_seed=noise_seed)

    def stylize(self, x, names=None, noise_seed=0):
        """x [B, 3, P, P] in [-1, 1] -> [B, 3, Q, Q] (Q = output_size or P)."""
        x = check_photos(x)
        if self.text or self.style_image:
            return self._prompted(x, names, noise_seed)
        names = photo_names(x, names)
        z = np.concatenate([self._codes(n, 1, self.style_seed) for n in names])
        return self.render(x, self.styles_for(z), [[noise_seed, photo_seed(n)] for n in names])

    def variants(self, x, k, names=None, seed=None, noise_seed=0):
        """[B, K, 3, Q, Q]: K random stylizations of each photo (z from (seed, photo name))."""
        x = check_photos(x)
        seed = self.style_seed if seed is None else seed
        out = []
        for i, name in enumerate(photo_names(x, names)):
            styles = self.styles_for(self._codes(name, k, seed))
            out.append(self.render(np.repeat(x[i:i + 1], k, axis=0), styles,
                                   [[noise_seed, photo_seed(name), j] for j in range(k)]))
        return np.stack(out)


def register():
    from modify_ms.stylizers import register_stylizer

    register_stylizer(METHOD, MMFSStylizer,
                      "MMFS (Pacific Graphics 2023): a spatial encoder into StyleGAN2's S/16 layer; random "
                      "stylization from z (text= / style_image=: through the CLIP mapping)")
