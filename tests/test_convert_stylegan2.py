"""weights_convert.stylegan2: rosinality / stylegan2-ada layouts -> MindSpore StyleGAN2.

Coverage: every key of the real-layout manifests (rosinality G/D 256 and 1024,
ADA G/D 256) maps onto exactly one MindSpore parameter of the right shape and
back (1024 by shapes only, no network built). End to end: the PyTorch
reference (tests/reference/stylegan2_ref.py, rosinality layout) is torch.saved
as a rosinality training checkpoint, converted with the CLI, rebuilt in
MindSpore and must render what torch renders (max-abs error relative to the
reference's magnitude < 1e-5, float32).
"""
import argparse
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from reference import stylegan2_ref as ref
from weights_convert import stylegan2 as sg2
from weights_convert.__main__ import main as cli_main
from weights_convert.errors import MappingError
from weights_convert.mapping import map_state_dict, target_shapes_of

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
K1, K4 = sg2.fir_kernel(1.0), sg2.fir_kernel(4.0)


def _is_kernel(key):
    return key.endswith("kernel") or key.endswith("resample_filter")


def _kernel_for(key):
    return K4 if key.endswith("blur.kernel") or key.endswith("upsample.kernel") else K1


def _target(manifest, generator):
    shapes = {k: tuple(v) for k, v in manifest.items() if not _is_kernel(k)}
    if generator:
        shapes["latent_avg"] = (512,)
    return shapes


# (manifest, rules, target manifest, generator?)
CASES = {
    "rosinality_g_256": (sg2.rosinality_generator_rules(), "rosinality_g_256", True),
    "rosinality_g_1024": (sg2.rosinality_generator_rules(), "rosinality_g_1024", True),
    "rosinality_d_256": (sg2.rosinality_discriminator_rules(), "rosinality_d_256", False),
    "rosinality_d_1024": (sg2.rosinality_discriminator_rules(), "rosinality_d_1024", False),
    "nvlabs_ada_G_256": (sg2.ada_generator_rules(), "rosinality_g_256", True),
    "nvlabs_ada_D_256": (sg2.ada_discriminator_rules(256), "rosinality_d_256", False),
}


def _source(manifest, with_latent_avg, seed=0):
    """Arrays with the manifest's shapes: distinct small-random values, exact kernels."""
    rng = np.random.default_rng(seed)
    src = {}
    for key, shape in manifest.items():
        if _is_kernel(key):
            src[key] = _kernel_for(key).astype(np.float32)
        else:  # one random number per tensor keeps 1024 cheap yet tells tensors apart
            src[key] = np.full(shape, rng.standard_normal(), np.float32)
    if with_latent_avg:
        src["latent_avg"] = rng.standard_normal(512).astype(np.float32)
    return src


@pytest.fixture(scope="module")
def sources(key_manifests):
    return {name: _source(key_manifests[name], name.startswith("rosinality_g")) for name in CASES}


@pytest.mark.parametrize("name", list(CASES))
def test_every_key_maps_both_ways(key_manifests, sources, name):
    rules, target_name, generator = CASES[name]
    target = _target(key_manifests[target_name], generator)
    src = sources[name]
    out = map_state_dict(src, target, rules, source_name=name)
    assert list(out) == list(target)  # every target filled (map_state_dict also checked every key used)
    # values arrive unchanged, only reshaped: each target value is one source tensor
    src_values = {float(v.flat[0]) for k, v in src.items() if not _is_kernel(k) and v.size}
    assert all(float(v.flat[0]) in src_values for v in out.values())
    if name.startswith("rosinality"):
        for key in target:
            np.testing.assert_array_equal(out[key], src[key])


def test_ada_generator_transforms(key_manifests, sources):
    src = sources["nvlabs_ada_G_256"]
    out = map_state_dict(src, _target(key_manifests["rosinality_g_256"], True), sg2.ada_generator_rules())
    pairs = {
        "style.1.weight": "mapping.fc0.weight", "style.8.bias": "mapping.fc7.bias",
        "latent_avg": "mapping.w_avg", "input.input": "synthesis.b4.const",
        "conv1.conv.weight": "synthesis.b4.conv1.weight", "conv1.noise.weight": "synthesis.b4.conv1.noise_strength",
        "conv1.activate.bias": "synthesis.b4.conv1.bias", "to_rgb1.bias": "synthesis.b4.torgb.bias",
        "convs.0.conv.weight": "synthesis.b8.conv0.weight", "convs.3.conv.modulation.bias": "synthesis.b16.conv1.affine.bias",
        "convs.11.conv.weight": "synthesis.b256.conv1.weight", "to_rgbs.5.conv.weight": "synthesis.b256.torgb.weight",
        "noises.noise_0": "synthesis.b4.conv1.noise_const", "noises.noise_1": "synthesis.b8.conv0.noise_const",
        "noises.noise_2": "synthesis.b8.conv1.noise_const", "noises.noise_12": "synthesis.b256.conv1.noise_const",
    }
    for target, source in pairs.items():
        np.testing.assert_array_equal(out[target].ravel(), src[source].ravel(), err_msg=target)
    assert out["conv1.noise.weight"].shape == (1,) and out["to_rgb1.bias"].shape == (1, 3, 1, 1)


def test_ada_discriminator_blocks(key_manifests, sources):
    src = sources["nvlabs_ada_D_256"]
    out = map_state_dict(src, _target(key_manifests["rosinality_d_256"], False), sg2.ada_discriminator_rules(256))
    pairs = {"convs.0.0.weight": "b256.fromrgb.weight", "convs.0.1.bias": "b256.fromrgb.bias",
             "convs.1.conv1.0.weight": "b256.conv0.weight", "convs.1.conv2.2.bias": "b256.conv1.bias",
             "convs.6.skip.1.weight": "b8.skip.weight", "final_conv.0.weight": "b4.conv.weight",
             "final_linear.0.weight": "b4.fc.weight", "final_linear.1.bias": "b4.out.bias"}
    for target, source in pairs.items():
        np.testing.assert_array_equal(out[target], src[source], err_msg=target)


def test_ada_discriminator_minibatch_std_from_paper256_kwargs(sources):
    """paper256 records epilogue_kwargs.mbstd_group_size=8; b4.conv's 513 inputs = 512 + 1 stddev channel."""
    src = sources["nvlabs_ada_D_256"]
    paper256 = {"epilogue_kwargs": {"mbstd_group_size": 8, "mbstd_num_channels": 1}}
    assert sg2.infer_discriminator_kwargs(src, "nvlabs-ada", paper256) == {
        "size": 256, "channel_multiplier": 2, "channel_max": 512, "stddev_group": 8, "stddev_feat": 1}
    with pytest.raises(ValueError, match="mbstd_num_channels=4 but b4.conv.weight has 513 input channels"):
        sg2.infer_discriminator_kwargs(src, "nvlabs-ada", {"epilogue_kwargs": {"mbstd_num_channels": 4}})


def _first_param_key(src):
    return next(k for k in src if not _is_kernel(k) and k != "latent_avg")


@pytest.mark.parametrize("name", list(CASES))
def test_missing_extra_wrong_shape_and_kernel_are_named(key_manifests, sources, name):
    rules, target_name, generator = CASES[name]
    target = _target(key_manifests[target_name], generator)
    base = sources[name]
    key = _first_param_key(base)

    missing = {k: v for k, v in base.items() if k != key}
    with pytest.raises(MappingError) as info:
        map_state_dict(missing, target, rules, source_name=name)
    assert len(info.value.unfilled) == 1 and not info.value.unused

    extra = dict(base, **{"extra.layer.weight": np.zeros(3, np.float32)})
    with pytest.raises(MappingError) as info:
        map_state_dict(extra, target, rules, source_name=name)
    assert info.value.unused == ["extra.layer.weight"]

    wrong = dict(base, **{key: np.zeros(np.shape(base[key])[:-1] + (7,), np.float32)})
    with pytest.raises(MappingError) as info:
        map_state_dict(wrong, target, rules, source_name=name)
    assert info.value.mentions(key) and len(info.value.shape_mismatches) == 1

    kernel_key = next(k for k in base if _is_kernel(k))
    bad_kernel = dict(base, **{kernel_key: base[kernel_key] * 2})
    with pytest.raises(MappingError) as info:
        map_state_dict(bad_kernel, target, rules, source_name=name)
    assert info.value.mentions(kernel_key)


@pytest.mark.parametrize("name, layout, expected", [
    ("rosinality_g_256", "rosinality", dict(size=256, style_dim=512, n_mlp=8, channel_multiplier=2, channel_max=512)),
    ("rosinality_g_1024", "rosinality", dict(size=1024, style_dim=512, n_mlp=8, channel_multiplier=2, channel_max=512)),
    ("nvlabs_ada_G_256", "nvlabs-ada", dict(size=256, style_dim=512, n_mlp=8, channel_multiplier=2, channel_max=512)),
    ("rosinality_d_256", "rosinality", dict(size=256, channel_multiplier=2, channel_max=512)),
    ("rosinality_d_1024", "rosinality", dict(size=1024, channel_multiplier=2, channel_max=512)),
    ("nvlabs_ada_D_256", "nvlabs-ada", dict(size=256, channel_multiplier=2, channel_max=512)),
])
def test_infer_architecture(sources, name, layout, expected):
    infer = sg2.infer_generator_kwargs if "_g_" in name.lower() else sg2.infer_discriminator_kwargs
    assert infer(sources[name], layout) == expected
    label = sg2.detect_layout({k: v for k, v in sources[name].items() if k != "latent_avg"})
    assert label is not None and f"size={expected['size']}" in label


def test_matches_the_mindspore_models_at_256(key_manifests):
    from modify_ms.models.stylegan2 import Discriminator, Generator

    assert target_shapes_of(Generator(256)) == {
        "latent_avg": (512,), **_target(key_manifests["rosinality_g_256"], False)}
    assert target_shapes_of(Discriminator(256)) == _target(key_manifests["rosinality_d_256"], False)


# ------------------------------------------------------------------ end to end
TINY = dict(size=16, sdim=16, n_mlp=2, cm=2, cmax=16)


@pytest.fixture(scope="module")
def torch_nets():
    g_ema = ref.Generator(TINY["size"], TINY["sdim"], TINY["n_mlp"], TINY["cm"], TINY["cmax"])
    g = ref.Generator(TINY["size"], TINY["sdim"], TINY["n_mlp"], TINY["cm"], TINY["cmax"])
    d = ref.Discriminator(TINY["size"], TINY["cm"], TINY["cmax"])
    for seed, net in enumerate((g_ema, g, d)):
        ref.randomize_(net, seed)
    return g_ema, g, d


def _training_checkpoint(torch_nets, path, fmt, with_latent_avg=True):
    g_ema, g, d = torch_nets
    opt = torch.optim.Adam(g.parameters(), lr=0.002)
    obj = {"g": g.state_dict(), "d": d.state_dict(), "g_ema": g_ema.state_dict(),
           "g_optim": opt.state_dict(), "d_optim": opt.state_dict(),
           "args": argparse.Namespace(size=TINY["size"], lr=0.002, r1=np.float64(10.0)),
           "ada_aug_p": 0.0}
    if with_latent_avg:
        obj["latent_avg"] = torch.randn(TINY["sdim"], generator=torch.Generator().manual_seed(5))
    torch.save(obj, path, _use_new_zipfile_serialization=(fmt == "zip"))
    return obj


@pytest.fixture
def pynative():
    import mindspore as ms

    ms.set_context(mode=ms.PYNATIVE_MODE)  # the conversion, not the graph compiler, is under test here
    yield
    ms.set_context(mode=ms.GRAPH_MODE)


def _assert_close(actual, expected, rel=1e-5):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape
    err = np.abs(actual - expected).max() / max(np.abs(expected).max(), 1e-12)
    assert err < rel, f"relative error {err:.3g}"


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_rosinality_generator_end_to_end(tmp_path, torch_nets, pynative, capsys, fmt):
    import mindspore as ms

    src, dst = str(tmp_path / "train.pt"), str(tmp_path / "g_ema.ckpt")
    saved = _training_checkpoint(torch_nets, src, fmt)
    assert cli_main(["stylegan2", src, dst]) == 0
    out = capsys.readouterr().out
    assert "Generator(size=16, style_dim=16, n_mlp=2, channel_multiplier=2, channel_max=16" in out
    assert "g_optim (optimizer state)" in out and "args (training arguments)" in out

    model, meta = sg2.build_from_checkpoint(dst)
    assert meta["which"] == "g_ema" and meta["latent_avg"] == "from the checkpoint"
    np.testing.assert_array_equal(model.latent_avg.asnumpy(), saved["latent_avg"].numpy())
    g_ema = torch_nets[0]
    w_plus = np.random.default_rng(3).standard_normal((2, g_ema.n_latent, TINY["sdim"])).astype(np.float32)
    with torch.no_grad():
        expected = g_ema(torch.from_numpy(w_plus)).numpy()
    _assert_close(model(ms.Tensor(w_plus)).asnumpy(), expected)


def test_rosinality_discriminator_end_to_end(tmp_path, torch_nets, pynative):
    import mindspore as ms

    src, dst = str(tmp_path / "train.pt"), str(tmp_path / "d.ckpt")
    _training_checkpoint(torch_nets, src, "zip")
    meta = sg2.convert_stylegan2(src, dst, which="d")
    assert meta["arch"] == "Discriminator" and meta["kwargs"]["size"] == 16
    model, _ = sg2.build_from_checkpoint(dst)
    img = np.random.default_rng(4).standard_normal((4, 3, 16, 16)).astype(np.float32)
    with torch.no_grad():
        expected = torch_nets[2](torch.from_numpy(img)).numpy()
    _assert_close(model(ms.Tensor(img)).asnumpy(), expected)


def test_latent_avg_estimated_when_absent(tmp_path, torch_nets, pynative):
    src, dst = str(tmp_path / "train.pt"), str(tmp_path / "g.ckpt")
    _training_checkpoint(torch_nets, src, "zip", with_latent_avg=False)
    meta = sg2.convert_stylegan2(src, dst, which="g")
    assert meta["latent_avg"].startswith("estimated")
    model, _ = sg2.build_from_checkpoint(dst)
    z = np.random.default_rng(0).standard_normal((sg2.LATENT_AVG_SAMPLES, TINY["sdim"])).astype(np.float32)
    with torch.no_grad():
        expected = torch_nets[1].mapping(torch.from_numpy(z)).mean(0).numpy()
    _assert_close(model.latent_avg.asnumpy(), expected)


def test_bare_state_dict_and_inspect(tmp_path, torch_nets, capsys):
    src = str(tmp_path / "d_only.pt")
    torch.save(torch_nets[2].state_dict(), src)
    assert cli_main(["inspect", src]) == 0
    out = capsys.readouterr().out
    assert "rosinality Discriminator size=16, channel_multiplier=2, channel_max=16" in out
    with pytest.raises(Exception, match="bare discriminator"):
        sg2.read_stylegan2(src, which="g_ema")


def test_cli_errors_are_one_line_exit_2(tmp_path, torch_nets):
    src, dst = str(tmp_path / "g_extra.pt"), str(tmp_path / "out.ckpt")
    sd = dict(torch_nets[0].state_dict())
    sd["extra.weight"] = torch.ones(2)
    torch.save({"g_ema": sd, "latent_avg": torch.zeros(TINY["sdim"])}, src)
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.run([sys.executable, "-m", "weights_convert", "stylegan2", src, dst],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "unused source keys: extra.weight" in lines[0], proc.stderr
    assert not os.path.exists(dst)
    # in-process: a missing file and a wrong --size (a MappingError on shapes) also exit 2
    assert cli_main(["stylegan2", str(tmp_path / "missing.pt"), dst]) == 2
    good = str(tmp_path / "g.pt")
    torch.save({"g_ema": torch_nets[0].state_dict(), "latent_avg": torch.zeros(TINY["sdim"])}, good)
    assert cli_main(["stylegan2", good, dst, "--size", "32"]) == 2
    assert not os.path.exists(dst)
