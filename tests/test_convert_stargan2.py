"""Importer of StarGAN v2's released checkpoints (``weights_convert/stargan2.py``).

* The REAL layouts (modify_ms/assets/manifests/baseline_key_manifests.json: celeba_hq and afhq
  ``100000_nets_ema.ckpt``, 520 and 177 entries, and the ``_nets.ckpt`` training files with the
  discriminator) map strictly onto the full-size MindSpore networks (every key used, the high-pass
  filter checked against its derived value, every parameter filled, shapes checked), the
  configuration read from the shapes is the official one, and the torch reference's own state
  dicts have exactly those keys and shapes.
* End to end through the CLI (a real subprocess): narrow torch reference networks saved with
  torch.save in the official top-level layout (w_hpf 0 with the discriminator; w_hpf 1 with a
  ``fan`` entry of the real wing layout), converted, loaded, and run against torch: latent- and
  reference-guided outputs, the high-pass path with masks, the discriminator (1e-5 relative).
* A missing key, an unknown key and a ``fan`` entry that is not the wing layout are refused with
  one line and exit code 2.
"""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from parity_utils import assert_close, m, t
from reference import stargan2_ref as ref
from test_convert_e4e_jojogan import shape_only_init

from weights_convert import stargan2 as sg2
from weights_convert.mapping import map_state_dict, target_shapes_of

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYOUTS = {"stargan_v2_afhq_100000_nets_ema_ckpt": (0.0, 3, False),
           "stargan_v2_celeba_hq_100000_nets_ema_ckpt": (1.0, 2, False),
           "stargan_v2_afhq_100000_nets_ckpt": (0.0, 3, True),
           "stargan_v2_celeba_hq_100000_nets_ckpt": (1.0, 2, True)}


@pytest.fixture(scope="module")
def manifests():
    from modify_ms.assets import key_manifests

    return key_manifests("baseline")


def parts_of(keys, w_hpf):
    """{network: {key: zeros of the real shape}} (pages never touched), the real high-pass filter."""
    parts = {}
    for key, shape in keys.items():
        net, name = key.split("/", 1)
        parts.setdefault(net, {})[name] = np.zeros(shape, np.float32)
    if w_hpf:
        parts["generator"]["hpf.filter"] = sg2.hpf_kernel(w_hpf)
    return parts


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_real_layout_maps_strictly(manifests, layout):
    w_hpf, domains, with_d = LAYOUTS[layout]
    parts = sg2.stargan2_parts(parts_of(manifests[layout]["keys"], w_hpf), layout)
    kwargs = sg2.infer_kwargs(parts, layout)
    assert kwargs == {"img_size": 256, "style_dim": 64, "latent_dim": 16, "max_conv_dim": 512, "w_hpf": w_hpf,
                      "first_dim": 64, "hidden_dim": 512, "num_domains": domains}
    with shape_only_init():
        if "fan" in parts:
            fan = sg2.convert_fan(parts["fan"], layout)  # every parameter filled; num_batches_tracked dropped
            assert len(fan) == sum(not k.endswith("num_batches_tracked") for k in parts["fan"]) == 281
        cells = sg2.build_networks(kwargs, with_d)
    assert sorted(cells) == sorted(k for k in parts if k != "fan")
    for name, cell in cells.items():
        mapped = map_state_dict(parts[name], target_shapes_of(cell), sg2.network_rules(name, w_hpf), source_name=name)
        assert len(mapped) == len(target_shapes_of(cell))


@pytest.mark.parametrize("layout", ["stargan_v2_celeba_hq_100000_nets_ckpt", "stargan_v2_afhq_100000_nets_ckpt"])
def test_reference_has_the_real_layout(manifests, layout):
    """The torch reference written from the mathematics builds exactly the released keys and shapes."""
    w_hpf, domains, _ = LAYOUTS[layout]
    nets = {"generator": ref.Generator(256, 64, 512, w_hpf), "mapping_network": ref.MappingNetwork(16, 64, domains),
            "style_encoder": ref.StyleEncoder(256, 64, domains, 512), "discriminator": ref.Discriminator(256, domains, 512)}
    have = {f"{n}/{k}": list(v.shape) for n, net in nets.items() for k, v in net.state_dict().items()}
    want = {k: v for k, v in manifests[layout]["keys"].items() if not k.startswith("fan/")}
    assert have == want


def tiny_nets(w_hpf, seed):
    size = 64 if w_hpf else 32
    nets = {"generator": ref.Generator(size, 8, 16, w_hpf, first_dim=4),
            "mapping_network": ref.MappingNetwork(4, 8, 2, 16),
            "style_encoder": ref.StyleEncoder(size, 8, 2, 16, first_dim=4),
            "discriminator": ref.Discriminator(size, 2, 16, first_dim=4)}
    for i, net in enumerate(nets.values()):
        ref.randomize(net, seed + i)
    return nets, size


def cli(*args):
    return subprocess.run([sys.executable, "-m", "weights_convert", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def saved(tmp_path_factory, manifests):
    """(w_hpf -> (torch nets, size, src path)) of tiny files in the official layouts."""
    folder = tmp_path_factory.mktemp("stargan2")
    fan = ref.randomize_fan(ref.FAN(), 60)
    wing = fan.state_dict()
    assert {k: list(v.shape) for k, v in wing.items()} == \
        {k[len("state_dict/"):]: v for k, v in manifests[sg2.WING_LAYOUT]["keys"].items()}  # the real layout
    out = {}
    for w_hpf, name in ((0, "100000_nets.ckpt"), (1, "100000_nets_ema.ckpt")):
        nets, size = tiny_nets(w_hpf, 40 + 10 * w_hpf)
        obj = {n: net.state_dict() for n, net in nets.items() if not (w_hpf and n == "discriminator")}
        if w_hpf:
            obj["fan"] = wing
        path = str(folder / f"w{w_hpf}_{name}")
        torch.save(obj, path)
        out[w_hpf] = (nets, size, path, obj)
    wing_path = str(folder / "wing.ckpt")
    torch.save({"state_dict": wing, "epoch": 7}, wing_path)
    out["wing"] = (fan, wing_path)
    return out


def load_converted(path):
    from modify_ms.utils.checkpoint import fill_cell, read_arrays

    arrays, meta = read_arrays(path)
    cells = sg2.build_networks(meta["kwargs"], sg2.DISCRIMINATOR in meta["networks"])
    for name, cell in cells.items():
        fill_cell(cell, arrays, path, prefix=f"{name}/")
    return cells, meta


@pytest.mark.parametrize("w_hpf", [0, pytest.param(1, marks=pytest.mark.slow)])  # 1: with the full-size FAN
def test_cli_converts_and_matches_torch(saved, tmp_path, w_hpf):
    nets, size, src, _ = saved[w_hpf]
    dst = str(tmp_path / "sg2.ckpt")
    result = cli("stargan2", src, dst)
    assert result.returncode == 0, result.stderr
    cells, meta = load_converted(dst)
    assert meta["format"] == sg2.FORMAT and meta["kwargs"]["w_hpf"] == w_hpf and meta["ema"] == bool(w_hpf)
    assert ("fan" in meta["networks"]) == bool(w_hpf)
    rng = np.random.default_rng(5)
    x = rng.uniform(-1, 1, (2, 3, size, size)).astype(np.float32)
    z = rng.standard_normal((2, 4)).astype(np.float32)
    y = np.array([1, 0], np.int32)
    masks = rng.uniform(0, 1, (2, 2, size, size)).astype(np.float32) if w_hpf else None
    yt = torch.from_numpy(y).long()
    with torch.no_grad():
        s_lat, s_ref = nets["mapping_network"](t(z), yt), nets["style_encoder"](t(x), yt)
        want_lat = nets["generator"](t(x), s_lat, None if masks is None else t(masks))
        want_ref = nets["generator"](t(x), s_ref, None if masks is None else t(masks))
    extra = () if masks is None else (m(masks),)
    got_lat = cells["generator"](m(x), cells["mapping_network"](m(z), m(y)), *extra)
    got_ref = cells["generator"](m(x), cells["style_encoder"](m(x), m(y)), *extra)
    assert_close(got_lat, want_lat, 1e-5, "latent-guided output")
    assert_close(got_ref, want_ref, 1e-5, "reference-guided output")
    if not w_hpf:
        with torch.no_grad():
            want_d = nets["discriminator"](t(x), yt)
        assert_close(cells["discriminator"](m(x), m(y)), want_d, 1e-5, "discriminator")


def test_cli_refuses_bad_files(saved, tmp_path):
    _, _, _, obj = saved[0]
    cases = {
        "missing": {**obj, "generator": {k: v for k, v in obj["generator"].items() if k != "to_rgb.2.bias"}},
        "extra": {**obj, "style_encoder": {**obj["style_encoder"], "unshared.0.extra": torch.zeros(3)}},
        "fan": {**obj, "fan": {"conv1.weight": torch.zeros(3)}},
        "top": {**obj, "optims": {}},
    }
    for case, bad in cases.items():
        src, dst = str(tmp_path / f"{case}.ckpt"), str(tmp_path / f"{case}_out.ckpt")
        torch.save(bad, src)
        result = cli("stargan2", src, dst)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), (case, result.stderr)
        assert not os.path.exists(dst), case
        if case == "missing":
            assert "to_rgb.2.bias" in lines[0]  # the message names the key


def test_converted_model_stylizes_through_the_registry(saved, tmp_path):
    """create_stylizer('stargan2', converted file): G(x, F(z, target)) with the stylizer's z per photo."""
    import zlib

    from modify_ms.stylizers import StylizerError, create_stylizer

    nets, size, src, _ = saved[0]
    dst = str(tmp_path / "afhq_like.ckpt")
    assert cli("stargan2", src, dst).returncode == 0
    stylizer = create_stylizer("stargan2", dst, target="1")
    x = np.random.default_rng(9).uniform(-1, 1, (2, 3, size, size)).astype(np.float32)
    names = ["a.png", "b.png"]
    out = stylizer.stylize(x, names=names, noise_seed=3)
    z = np.concatenate([np.random.default_rng([3, zlib.crc32(n.encode())]).standard_normal((1, 4)) for n in names])
    with torch.no_grad():
        s = nets["mapping_network"](t(z.astype(np.float32)), torch.tensor([1, 1]))
        want = nets["generator"](t(x), s).clamp(-1, 1)
    assert_close(out, want, 1e-5, "stylized")
    ks = stylizer.variants(x[:1], 2, names=names[:1])
    assert ks.shape == (1, 2, 3, size, size) and np.abs(ks[0, 0] - ks[0, 1]).mean() > 1e-3  # two z, two outputs
    with pytest.raises(StylizerError, match="target must be one of"):
        create_stylizer("stargan2", dst, target="7")


@pytest.mark.slow  # the full-size FAN: two graph compilations (~60 s on the shared machine)
def test_wing_file_and_w_hpf_model_stylize_with_fan_masks(saved, tmp_path):
    """wing.ckpt converts to the FAN alone (its heatmaps = torch's); a converted w_hpf 1 file
    stylizes with the masks of its own FAN, as the official sampling does."""
    import zlib

    from modify_ms.stylizers import create_stylizer
    from modify_ms.utils.checkpoint import fill_cell, read_arrays

    from baselines_ms.stargan2.wing import FAN

    fan_t, wing_path = saved["wing"]
    dst = str(tmp_path / "wing.ckpt")
    assert cli("stargan2", wing_path, dst).returncode == 0
    arrays, meta = read_arrays(dst)
    assert meta["format"] == sg2.FAN_FORMAT and meta["ignored_source_entries"] == ["epoch"]
    fan = FAN()
    fill_cell(fan, arrays, dst, prefix="fan/")
    x01 = np.random.default_rng(2).uniform(0, 1, (1, 3, 256, 256)).astype(np.float32)
    with torch.no_grad():
        assert_close(fan(m(x01)), fan_t(t(x01)), 1e-5, "converted FAN")
    nets, size, src, _ = saved[1]
    model = str(tmp_path / "celeba_like.ckpt")
    assert cli("stargan2", src, model).returncode == 0
    x = np.random.default_rng(4).uniform(-1, 1, (1, 3, size, size)).astype(np.float32)
    out = create_stylizer("stargan2", model, target="0").stylize(x, names=["a.png"], noise_seed=1)
    z = np.random.default_rng([1, zlib.crc32(b"a.png")]).standard_normal((1, 4)).astype(np.float32)
    with torch.no_grad():
        masks = ref.fan_masks(fan_t, t(x))
        want = nets["generator"](t(x), nets["mapping_network"](t(z), torch.tensor([0])), masks).clamp(-1, 1)
    np.testing.assert_allclose(out, want.numpy(), rtol=0, atol=1e-4)
