"""Unpaired pSp behind modify_ms.stylizers' interface: x -> D(E(x)) from a training run."""
import numpy as np

from modify_ms.stylizers import check_photos, load_run

from .config import METHOD, UnpairedPSPConfig


class UnpairedPSPStylizer:
    """E and D of an unpaired-pSp run (its folder or one of its checkpoints), E on its running
    statistics (pSp's inference); one output per photo (not multi-modal). ``noise_seed``: the
    generator noise of the outputs (fixed: deterministic). ``run_mode`` (graph / pynative) and
    ``device`` (CPU / GPU / Ascend): the run's own unless given."""

    multimodal = False

    def __init__(self, run_or_checkpoint, run_mode="", device="", log=None):
        import dataclasses

        from modify_ms.models.modify import ModifyNets, Stylizer
        from modify_ms.train.common import load_checkpoint_into, setup_runtime

        self.cfg, self.checkpoint = load_run(run_or_checkpoint, UnpairedPSPConfig, f"{METHOD} run")
        run = dataclasses.replace(self.cfg.run, compile_cache=False, mode=run_mode or self.cfg.run.mode,
                                  device=device or self.cfg.run.device)
        setup_runtime(run, "", make_dir=False)
        self.nets = ModifyNets(self.cfg.model)
        groups = self.nets.groups()
        load_checkpoint_into(self.checkpoint, {k: groups[k] for k in ("encoder", "decoder")}, partial=True)
        self.nets.set_train(False)
        self.render = Stylizer(self.nets, self.nets.encoder)

    def stylize(self, x, names=None, noise_seed=0):
        """x [B, 3, P, P] in [-1, 1] -> D(E(x)) [B, 3, P, P] (P: the run's model.loss_size)."""
        import mindspore as ms

        from modify_ms.train.common import host_noise

        x = check_photos(x)
        rng = np.random.default_rng(noise_seed)
        return self.render(ms.Tensor(x), host_noise(self.nets.decoder, len(x), rng, self.cfg.run.noise)).asnumpy()


def register():
    from modify_ms.stylizers import register_stylizer

    register_stylizer(METHOD, UnpairedPSPStylizer,
                      "unpaired pSp (MODIFY sec. 3.1): pSp trained with a discriminator on target images")
