"""The quickstart's packaged prior (issue 17) and the export that made it.

* ``builtin:<name>`` in a weights section names a file in modify_ms/assets/prior; an unknown
  name is one line listing the known ones; the whole encoder and its backbone are exclusive.
* tools/export_weights.py writes a stage-1 run's decoder, encoder and discriminator as weight
  files that load strictly (the same arrays) into the networks a config builds, and that
  tools/render_stylegan2.py reads.
* The packaged prior loads into the quickstart's model and reconstructs the built-in photos it
  was trained on (specificity well below the mean image's 1.0): it would fail for a random,
  truncated or mismatched file.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import mindspore as ms

from modify_ms.assets import builtin_weight_names, resolve_weight_path
from modify_ms.config import load_config, save_resolved
from modify_ms.data.builtin import builtin_photos
from modify_ms.eval.specificity import specificity
from modify_ms.models.modify import ModifyNets, Stylizer
from modify_ms.train.checks import WeightsMissingError, check_weight_files
from modify_ms.train.common import LossNets, RunCheckpoints, host_noise, load_pretrained
from modify_ms.train.config import Stage1Config
from modify_ms.utils.checkpoint import read_arrays, save_arrays

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICKSTART = os.path.join(REPO, "yaml", "quickstart.yaml")
TOOL = os.path.join(REPO, "tools", "export_weights.py")
# Measured on the shipped prior (docs/prior.md): 0.12 on these eight photos; the untrained
# networks give ~1.0 (every reconstruction the same picture)
PRIOR_SPECIFICITY = 0.3
TINY_MODEL = ["model.generator.style_dim=16", "model.generator.n_mlp=1", "model.generator.channel_max=8",
              "model.encoder.channels=[16, 16, 16, 16]", "model.discriminator.channel_max=8", "model.remap.n_layers=1",
              "weights.generator=", "weights.encoder="]


def test_builtin_names_resolve_to_packaged_files():
    assert {"prior64_generator", "prior64_encoder"} <= set(builtin_weight_names())
    path = resolve_weight_path("builtin:prior64_generator")
    assert os.path.isfile(path) and os.path.isfile(path + ".json")
    assert resolve_weight_path("weights/g.ckpt") == "weights/g.ckpt"  # plain paths pass through
    with pytest.raises(ValueError, match=r"builtin:nope: no such built-in weight file \(known: .*builtin:prior64_encoder"):
        resolve_weight_path("builtin:nope")


def test_weight_checks_take_either_encoder_file(tmp_path):
    cfg = load_config(QUICKSTART, Stage1Config)
    check_weight_files(cfg.weights)  # the quickstart's builtin: files exist
    with pytest.raises(WeightsMissingError, match="weights.generator: builtin:nope"):
        check_weight_files(load_config(QUICKSTART, Stage1Config, ["weights.generator=builtin:nope"]).weights)
    # require: the whole encoder stands in for the backbone, and the error names the paper's key only
    present = tmp_path / "x.ckpt"
    present.write_bytes(b"")
    base = ["weights.require=true"] + [f"weights.{k}={present}" for k in ("discriminator", "identity", "lpips")]
    with pytest.raises(WeightsMissingError) as err:
        check_weight_files(load_config(QUICKSTART, Stage1Config, base + ["weights.encoder="]).weights)
    assert "weights.encoder_backbone is empty" in str(err.value) and "weights.encoder," not in str(err.value)
    with pytest.raises(ValueError, match="give one of them"):
        load_config(QUICKSTART, Stage1Config, ["weights.encoder_backbone=b.ckpt"])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A stage-1 run folder (config.yaml + one checkpoint) of random tiny networks, no training."""
    run = str(tmp_path_factory.mktemp("export_run"))
    cfg = load_config(QUICKSTART, Stage1Config, TINY_MODEL + [f"run.out_dir={run}"])
    save_resolved(cfg, os.path.join(run, "config.yaml"))
    ms.set_seed(5)
    nets = ModifyNets(cfg.model)
    for _, p in nets.parameters_and_names():  # nothing left at its initial 0 or 1
        p.set_data(ms.Tensor(np.random.default_rng(len(p.name)).normal(0.3, 0.5, p.shape).astype(np.float32)))
    ckpt = RunCheckpoints(run).save(7, nets.groups(), {"stage": 1})
    return run, ckpt, cfg


def test_export_writes_each_network_as_its_own_weight_file(tiny_run, tmp_path):
    run, ckpt, cfg = tiny_run
    out = {n: str(tmp_path / f"{n}.ckpt") for n in ("generator", "encoder", "discriminator")}
    proc = subprocess.run([sys.executable, TOOL, run] + [a for n, p in out.items() for a in (f"--{n}", p)],
                          capture_output=True, text=True, cwd=str(tmp_path), timeout=300)
    assert proc.returncode == 0, proc.stderr
    run_arrays, _ = read_arrays(ckpt)
    for network, group in (("generator", "decoder"), ("encoder", "encoder"), ("discriminator", "discriminator")):
        arrays, meta = read_arrays(out[network])
        expected = {k[len(group) + 1:]: v for k, v in run_arrays.items() if k.startswith(group + "/")}
        assert sorted(arrays) == sorted(expected)
        assert all(np.array_equal(arrays[k], expected[k]) for k in arrays)
        assert meta["num_params"] == len(arrays) and "step 7" in meta["source"]
    # the files load strictly into the networks the same config builds
    weights = [f"weights.generator={out['generator']}", f"weights.encoder={out['encoder']}",
               f"weights.discriminator={out['discriminator']}"]
    fresh_cfg = load_config(QUICKSTART, Stage1Config, TINY_MODEL + weights)
    fresh = ModifyNets(fresh_cfg.model)
    load_pretrained(fresh, LossNets(fresh_cfg.model.loss_nets, fresh_cfg.model.loss_size), fresh_cfg.weights,
                    log=lambda _m: None)
    for name, param in fresh.parameters_and_names():
        group, rest = name.split(".", 1)
        if group in ("decoder", "encoder", "discriminator"):
            assert np.array_equal(param.asnumpy(), run_arrays[f"{group}/{rest}"]), name
    # and the generator renders through the render tool (its sidecar holds the architecture)
    grid = str(tmp_path / "grid.png")
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", "render_stylegan2.py"), "--ckpt",
                           out["generator"], "--seeds", "0-1", "--out", grid], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and os.path.isfile(grid), proc.stderr
    with open(out["encoder"] + ".json", encoding="utf-8") as fh:
        assert json.load(fh)["kwargs"]["channels"] == [16, 16, 16, 16]


def test_whole_encoder_from_a_converted_psp_file(tiny_run, tmp_path):
    """weights.encoder also takes a `python -m weights_convert psp` file: its 'encoder.' entries."""
    _, ckpt, _ = tiny_run
    run_arrays, _ = read_arrays(ckpt)
    psp = {"encoder." + k[len("encoder/"):]: v for k, v in run_arrays.items() if k.startswith("encoder/")}
    psp["latent_avg"] = np.ones((4, 16), np.float32)  # other entries of the pSp file are not the encoder's
    path = str(tmp_path / "psp.ckpt")
    save_arrays(psp, path, {"format": "modify_ms.psp"})
    cfg = load_config(QUICKSTART, Stage1Config, TINY_MODEL + [f"weights.encoder={path}"])
    nets = ModifyNets(cfg.model)
    load_pretrained(nets, LossNets(cfg.model.loss_nets, cfg.model.loss_size), cfg.weights, log=lambda _m: None)
    assert all(np.array_equal(p.asnumpy(), psp["encoder." + n]) for n, p in nets.encoder.parameters_and_names())


@pytest.mark.parametrize("args, message", [
    (["--generator", "g.png"], "g.png: a weight file name ends in .ckpt"),
    (["--generator", "a.ckpt", "--encoder", "a.ckpt"], "two networks would be written to one file"),
    ([], "nothing to export"),
    (["--generator", "RUN_CKPT"], "is an input file"),
])
def test_export_refuses_bad_outputs(tiny_run, tmp_path, args, message):
    before = open(tiny_run[1], "rb").read()
    args = [tiny_run[1] if a == "RUN_CKPT" else a for a in args]  # the run folder's own checkpoint
    proc = subprocess.run([sys.executable, TOOL, tiny_run[0]] + args, capture_output=True, text=True,
                          cwd=str(tmp_path), timeout=300)
    assert open(tiny_run[1], "rb").read() == before
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
    assert os.listdir(tmp_path) == []


def test_packaged_prior_reconstructs_the_builtin_photos():
    cfg = load_config(QUICKSTART, Stage1Config)
    assert cfg.weights.generator == "builtin:prior64_generator" and cfg.weights.encoder == "builtin:prior64_encoder"
    nets = ModifyNets(cfg.model)
    load_pretrained(nets, LossNets(cfg.model.loss_nets, cfg.model.loss_size), cfg.weights, log=lambda _m: None)
    nets.set_train(False)
    photos = builtin_photos(64)
    y = np.stack([photos[i] for i in (0, 1, 10, 30, 50, 70, 90, 101)]).astype(np.float32)
    y = np.ascontiguousarray(y.transpose(0, 3, 1, 2) / 127.5 - 1.0)
    noise = host_noise(nets.decoder, len(y), np.random.default_rng(0), "random")
    recon = Stylizer(nets, nets.encoder)(ms.Tensor(y), noise).asnumpy()
    assert specificity(y, recon) < PRIOR_SPECIFICITY
