"""StarGAN v2 behind modify_ms.stylizers' interface: x -> G_ema(x, s) into a target domain.

``create_stylizer("stargan2", path, target="art", reference="", psi=1.0)``, ``path`` one of
* a StarGAN v2 run folder (tools/train_baseline.py) or one of its checkpoints: its EMA networks
  (what the official sampling and evaluation use), domains named by the run's ``domain_names``;
* a converted official checkpoint (``python -m weights_convert stargan2 100000_nets_ema.ckpt``):
  domains by index (celeba_hq: 0 female, 1 male; afhq: 0 cat, 1 dog, 2 wildlife).

Latent-guided (no ``reference``): s = lerp(s_avg, F(z, y), psi), s_avg the mean of F over 10,000 z
(the official debug images' psi), one z per photo drawn from (noise_seed, photo name or pixels);
``variants`` gives K of them. Reference-guided: s = E(reference image, y) for every photo. Outputs
are clamped to [-1, 1] (the official ``denormalize`` clamps when saving). A w_hpf > 0 model (celeba_hq)
takes its masks from the FAN converted with it (``wing.HeatmapMasks`` of each photo, as the official
sampling's ``fan.get_heatmap``).
"""
import os
import zlib

import numpy as np

from modify_ms.stylizers import StylizerError, check_photos, load_run, photo_names
from modify_ms.utils.checkpoint import CheckpointFileError

from .config import METHOD, StarGAN2Config

AVG_SAMPLES = 10000


class StarGAN2Stylizer:
    multimodal = True

    def __init__(self, run_or_checkpoint, target="", reference="", psi=1.0, run_mode="", device="", log=None):
        import dataclasses

        from modify_ms.train.common import setup_runtime
        from modify_ms.train.config import RunConfig

        if os.path.isdir(run_or_checkpoint) or os.path.isfile(os.path.join(
                os.path.dirname(os.path.dirname(os.path.abspath(run_or_checkpoint))), "config.yaml")):
            cfg, checkpoint = load_run(run_or_checkpoint, StarGAN2Config, f"{METHOD} run")
            run = dataclasses.replace(cfg.run, compile_cache=False, mode=run_mode or cfg.run.mode,
                                      device=device or cfg.run.device)
            setup_runtime(run, "", make_dir=False)
            self._from_run(cfg, checkpoint)
        else:
            setup_runtime(RunConfig(mode=run_mode or "graph", device=device or "CPU", compile_cache=False), "",
                          make_dir=False)
            self._from_file(run_or_checkpoint)
        self.target = self._domain(target)
        self.psi = float(psi)
        self.reference = self._read_reference(reference) if reference else None

    def _from_run(self, cfg, checkpoint):
        from modify_ms.train.common import load_checkpoint_into

        from .networks import StarGAN2Nets

        nets = StarGAN2Nets(cfg.model, len(cfg.domains), with_training=False)
        load_checkpoint_into(checkpoint, nets.groups(), partial=True)
        self.generator, self.mapping, self.encoder = nets.generator_ema, nets.mapping_network_ema, nets.style_encoder_ema
        self.masks = nets.masks  # w_hpf > 0: the run's FAN (saved with its checkpoints)
        self.domain_names, self.size, self.seed = list(cfg.domain_names), cfg.model.img_size, cfg.run.seed

    def _from_file(self, path):
        from modify_ms.utils.checkpoint import fill_cell, read_arrays
        from weights_convert.stargan2 import FORMAT, NETWORKS, build_networks

        if not os.path.isfile(path):
            raise CheckpointFileError(f"{path}: no such {METHOD} run folder or converted checkpoint")
        arrays, meta = read_arrays(path)
        if meta.get("format") != FORMAT:
            raise CheckpointFileError(f"{path}: not a converted StarGAN v2 checkpoint (sidecar format "
                                      f"{meta.get('format')!r}; convert with python -m weights_convert stargan2)")
        kwargs = meta["kwargs"]
        cells = build_networks(kwargs)
        for name in NETWORKS:
            fill_cell(cells[name], arrays, path, prefix=f"{name}/")
        if kwargs["w_hpf"] > 0:  # celeba_hq: the generator's masks come from the file's FAN
            from .wing import FAN, HeatmapMasks

            if "fan" not in meta.get("networks", []):
                raise StylizerError(f"{path}: a w_hpf > 0 StarGAN v2 model needs its FAN (convert the official "
                                    f"100000_nets_ema.ckpt, which carries it)")
            fan = FAN()
            fill_cell(fan, arrays, path, prefix="fan/")
            self.masks = HeatmapMasks(fan)
        self.generator, self.mapping, self.encoder = (cells[n] for n in NETWORKS)
        self.domain_names = [str(i) for i in range(kwargs["num_domains"])]
        self.size, self.seed = kwargs["img_size"], 777

    def _domain(self, target):
        names = self.domain_names
        if target in ("", None):
            return len(names) - 1
        if str(target) in names:
            return names.index(str(target))
        raise StylizerError(f"target must be one of the domains {names}, got {target!r}")

    def _read_reference(self, path):
        from modify_ms.data.imageio import read_image
        from modify_ms.data.prepare import fit_square, to_model_array

        return to_model_array(fit_square(read_image(path), self.size, "center"))[None]

    def _styles(self, zs):
        """lerp(s_avg, F(z, target), psi) for each z [N, latent]."""
        import mindspore as ms

        y = ms.Tensor(np.full(len(zs), self.target, np.int32))
        s = self.mapping(ms.Tensor(zs.astype(np.float32)), y).asnumpy()
        if self.psi == 1.0:
            return s
        if not hasattr(self, "_s_avg"):
            z = np.random.default_rng([self.seed, 4]).standard_normal((AVG_SAMPLES, zs.shape[1])).astype(np.float32)
            self._s_avg = self.mapping(ms.Tensor(z), ms.Tensor(np.full(AVG_SAMPLES, self.target, np.int32))).asnumpy(
            ).mean(axis=0)
        return self._s_avg + self.psi * (s - self._s_avg)

    masks = None  # HeatmapMasks of a w_hpf > 0 model

    def _render(self, x, s):
        import mindspore as ms

        x = ms.Tensor(x)
        extra = () if self.masks is None else (self.masks(x),)
        return np.clip(self.generator(x, ms.Tensor(s.astype(np.float32)), *extra).asnumpy(), -1.0, 1.0)

    def _check(self, x):
        x = check_photos(x)
        if x.shape[-1] != self.size:
            raise StylizerError(f"photos are {x.shape[-1]} px, the model's frame is {self.size} px")
        return x

    def _zs(self, x, names, k, seed):
        latent = self.mapping.latent_dim
        return [np.random.default_rng([seed, zlib.crc32(n.encode())]).standard_normal((k, latent))
                for n in photo_names(x, names)]

    def stylize(self, x, names=None, noise_seed=0):
        """x [B, 3, P, P] in [-1, 1] -> G_ema(x, s) [B, 3, P, P] in the target domain."""
        import mindspore as ms

        x = self._check(x)
        if self.reference is not None:
            y = ms.Tensor(np.array([self.target], np.int32))
            s = self.encoder(ms.Tensor(self.reference), y).asnumpy()
            return self._render(x, np.repeat(s, len(x), axis=0))
        zs = np.concatenate(self._zs(x, names, 1, noise_seed))
        return self._render(x, self._styles(zs))

    def variants(self, x, k, names=None, seed=None, noise_seed=0):
        """[B, K, 3, P, P]: K latent-guided outputs of each photo (K z drawn from (seed, photo))."""
        x = self._check(x)
        seed = self.seed if seed is None else seed
        out = [self._render(np.repeat(xi[None], k, axis=0), self._styles(z))
               for xi, z in zip(x, self._zs(x, names, k, seed))]
        return np.stack(out)


def register():
    from modify_ms.stylizers import register_stylizer

    register_stylizer(METHOD, StarGAN2Stylizer,
                      "StarGAN v2 (CVPR 2020): multi-domain image-to-image translation, latent- or reference-guided")
