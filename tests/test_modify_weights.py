"""The README's weight path, end to end: PyTorch files in the real layouts -> `python -m
weights_convert` -> a stage-1 config that requires them -> the networks hold those values.

Random weights (nothing real can be downloaded here) in the real key layouts, tiny widths;
no graph is compiled (loading only). The LPIPS linear layers are the real pretrained ones.
"""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from modify_ms.assets import lpips_linear_layers
from reference import irse_ref, lpips_ref, stylegan2_ref
from test_modify_train import REPO, tiny_stage1_config


WIDTHS = (16, 24, 32, 48)
ARCH = ["model.encoder.channels=[16, 24, 32, 48]", "model.loss_nets.identity_channels=[16, 24, 32, 48]"]


def convert(*args):
    proc = subprocess.run([sys.executable, "-m", "weights_convert", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    d = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    g = stylegan2_ref.randomize_(stylegan2_ref.Generator(64, 32, 1, 1, 16), 1)
    disc = stylegan2_ref.randomize_(stylegan2_ref.Discriminator(64, 1, 16), 2)
    latent_avg = torch.randn(32)
    torch.save({"g_ema": g.state_dict(), "d": disc.state_dict(), "latent_avg": latent_avg}, d / "sg2.pt")
    # widths that change at every block, so the importer can infer the block structure
    arcface = irse_ref.randomize(irse_ref.ArcFace(112, units=(1, 1, 1, 1), channels=WIDTHS), 3)
    torch.save(arcface.state_dict(), d / "ir_se.pth")
    alex = lpips_ref.randomize(lpips_ref.TorchvisionNet("alex"), 4)
    torch.save(alex.state_dict(), d / "alexnet.pth")
    paths = {k: str(d / f"{k}.ckpt") for k in ("generator", "discriminator", "encoder_backbone", "identity", "lpips")}
    convert("stylegan2", str(d / "sg2.pt"), paths["generator"], "--which", "g_ema")
    convert("stylegan2", str(d / "sg2.pt"), paths["discriminator"], "--which", "d")
    convert("irse50", str(d / "ir_se.pth"), paths["identity"], "--target", "identity", "--image-size", "64")
    convert("irse50", str(d / "ir_se.pth"), paths["encoder_backbone"], "--target", "encoder")
    convert("lpips", paths["lpips"], "--net", "alex", "--lin", lpips_linear_layers("alex"),
            "--backbone", str(d / "alexnet.pth"))
    return paths, dict(g=g, d=disc, latent_avg=latent_avg, arcface=arcface, alex=alex)


def test_stage1_config_loads_every_converted_file(converted, tmp_path):
    from modify_ms.train.stage1 import Stage1Trainer

    paths, ref = converted
    cfg = tiny_stage1_config(str(tmp_path), ARCH + [f"weights.{k}={v}" for k, v in paths.items()]
                             + ["weights.require=true"])
    trainer = Stage1Trainer(cfg, str(tmp_path), log=lambda _m: None)
    nets = trainer.nets
    dec = dict(nets.decoder.parameters_and_names())
    np.testing.assert_array_equal(dec["convs.2.conv.weight"].asnumpy(), ref["g"].state_dict()["convs.2.conv.weight"])
    np.testing.assert_array_equal(dec["noises.noise_3"].asnumpy(), ref["g"].state_dict()["noises.noise_3"])
    np.testing.assert_array_equal(dec["latent_avg"].asnumpy(), ref["latent_avg"].numpy())
    # E outputs offsets from the decoder's mean latent (the authors' latent space): E has none of its own
    assert "latent_avg" not in dict(nets.encoder.parameters_and_names())
    disc = dict(nets.discriminator.parameters_and_names())
    np.testing.assert_array_equal(disc["final_linear.0.weight"].asnumpy(), ref["d"].state_dict()["final_linear.0.weight"])
    enc = dict(nets.encoder.parameters_and_names())
    arc = ref["arcface"].state_dict()
    np.testing.assert_array_equal(enc["body.1.res_layer.1.weight"].asnumpy(), arc["body.1.res_layer.1.weight"])
    np.testing.assert_array_equal(enc["body.1.res_layer.0.moving_mean"].asnumpy(), arc["body.1.res_layer.0.running_mean"])
    ident = dict(trainer.loss_nets.identity.parameters_and_names())
    np.testing.assert_array_equal(ident["facenet.input_layer.0.weight"].asnumpy(), arc["input_layer.0.weight"])
    lp = dict(trainer.loss_nets.lpips.parameters_and_names())
    lin = torch.load(lpips_linear_layers("alex"), map_location="cpu")
    np.testing.assert_array_equal(lp["lin2.model.1.weight"].asnumpy(), lin["lin2.model.1.weight"].numpy())


def test_a_missing_weight_file_is_one_clear_error(converted, tmp_path):
    from modify_ms.train.common import WeightsMissingError
    from modify_ms.train.stage1 import Stage1Trainer

    paths, _ = converted
    cfg = tiny_stage1_config(str(tmp_path), ARCH + [f"weights.{k}={v}" for k, v in paths.items()]
                             + ["weights.require=true", "weights.identity=/nowhere/arcface.ckpt"])
    with pytest.raises(WeightsMissingError, match="/nowhere/arcface.ckpt: identity weights not found"):
        Stage1Trainer(cfg, str(tmp_path), log=lambda _m: None)
    cfg = tiny_stage1_config(str(tmp_path), ["weights.require=true"])
    with pytest.raises(WeightsMissingError, match="weights.generator is empty"):
        Stage1Trainer(cfg, str(tmp_path), log=lambda _m: None)
