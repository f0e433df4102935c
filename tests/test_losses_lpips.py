"""LPIPS (v0.1, AlexNet and VGG16): parity of the distance and its gradients w.r.t. both images with
tests/reference/lpips_ref.py, the real pretrained linear layers from the shared fixtures, and the
metric's properties (zero on identical images, symmetric, growing with the perturbation).

Backbones have random weights and biases (no ImageNet weights can be downloaded here); linear layers are
random non-negative in the parity tests and the real v0.1 ones in the property tests.
Tolerances: value rel 1e-5; gradients rel 1e-4 (float32, unit-normalisation divides by small norms).
"""
import os

import numpy as np
import pytest
import torch
import mindspore as ms

from modify_ms.assets import lpips_linear_layers
from parity_utils import assert_close, m, t
from reference.lpips_ref import LPIPSRef, randomize
from modify_ms.losses.lpips import LPIPS
from weights_convert.lpips_weights import convert_lpips, convert_lpips_lin
from modify_ms.utils.checkpoint import fill_cell
from weights_convert.mapping import target_shapes_of
from weights_convert.torch_pickle import load_torch_file

SIZES = {"alex": 64, "vgg": 16}  # smallest inputs that keep every tapped map >= 1x1


def torchvision_state(ref):
    return {k[4:]: v.numpy() for k, v in ref.state_dict().items() if k.startswith("net.")}


def lin_state(ref):
    return {k: v.numpy() for k, v in ref.state_dict().items() if k.startswith("lin")}


@pytest.fixture(scope="module", params=["alex", "vgg"])
def lpips_pair(request):
    net = request.param
    ref = randomize(LPIPSRef(net), seed=21).eval()
    cell = LPIPS(net, reduction="none")
    fill_cell(cell, convert_lpips(lin_state(ref), torchvision_state(ref), target_shapes_of(cell), net), "converted")
    return net, cell, ref


def test_value_and_grad_parity(ms_mode, lpips_pair, rng):
    net, cell, ref = lpips_pair
    s = SIZES[net]
    x = rng.uniform(-1, 1, (2, 3, s, s)).astype(np.float32)
    y = rng.uniform(-1, 1, (2, 3, s, s)).astype(np.float32)
    w = np.array([0.7, 1.3], np.float32)
    xt, yt = t(x).requires_grad_(True), t(y).requires_grad_(True)
    expected = ref(xt, yt)
    (expected * t(w)).sum().backward()
    assert_close(cell(m(x), m(y)), expected, 1e-5, f"LPIPS-{net}")

    def objective(a, b, c):
        return (cell(a, b) * c).sum()

    gx, gy = ms.grad(objective, grad_position=(0, 1))(m(x), m(y), m(w))
    assert_close(gx, xt.grad, 1e-4, f"d LPIPS-{net} / d x")
    assert_close(gy, yt.grad, 1e-4, f"d LPIPS-{net} / d y")


@pytest.fixture(scope="module", params=["alex", "vgg"])
def real_lin(request):
    """LPIPS with the real v0.1 linear layers (random backbone) and the torch reference holding the same."""
    net = request.param
    lin = load_torch_file(lpips_linear_layers(net))
    ref = randomize(LPIPSRef(net), seed=22).eval()
    cell = LPIPS(net, reduction="none")
    params = convert_lpips(lin, torchvision_state(ref), target_shapes_of(cell), net)
    fill_cell(cell, params, "converted")
    with torch.no_grad():
        for k in range(5):
            getattr(ref, f"lin{k}").model[1].weight.copy_(torch.from_numpy(np.array(lin[f"lin{k}.model.1.weight"])))
    return net, cell, ref, lin


def test_real_linear_layers_load(real_lin):
    net, cell, _, lin = real_lin
    chans = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}[net]
    # the same file read by torch itself
    expected = torch.load(lpips_linear_layers(net), map_location="cpu", weights_only=True)
    params = dict(cell.parameters_and_names())
    for k, c in enumerate(chans):
        value = params[f"lin{k}.model.1.weight"].asnumpy()
        assert value.shape == (1, c, 1, 1) and (value >= 0).all()
        np.testing.assert_array_equal(value, expected[f"lin{k}.model.1.weight"].numpy())
    # pSp's renamed layout gives the same parameters
    psp = {f"{k}.1.weight": lin[f"lin{k}.model.1.weight"] for k in range(5)}
    shapes = target_shapes_of(cell)
    a, b = convert_lpips_lin(psp, shapes), convert_lpips_lin(lin, shapes)
    assert all(np.array_equal(a[n], b[n]) for n in a)


def test_properties_with_real_linear_layers(real_lin, rng):
    net, cell, ref, _ = real_lin
    s = SIZES[net]
    x = rng.uniform(-1, 1, (1, 3, s, s)).astype(np.float32)
    noise = rng.standard_normal(x.shape).astype(np.float32)
    assert float(cell(m(x), m(x)).asnumpy()[0]) == 0.0
    y = np.clip(x + 0.3 * noise, -1, 1)
    d_xy, d_yx = float(cell(m(x), m(y)).asnumpy()[0]), float(cell(m(y), m(x)).asnumpy()[0])
    assert d_xy > 0 and abs(d_xy - d_yx) <= 1e-6 * d_xy
    assert_close(cell(m(x), m(y)), ref(t(x), t(y)), 1e-5, f"LPIPS-{net} with real lin layers")
    dists = [float(cell(m(x), m(x + eps * noise)).asnumpy()[0]) for eps in (0.01, 0.05, 0.2, 0.5)]
    assert all(a < b for a, b in zip(dists, dists[1:])), dists


def test_mean_reduction_and_frozen(lpips_pair, rng):
    net, cell, ref = lpips_pair
    assert cell.trainable_params() == []
    mean_cell = LPIPS(net)
    fill_cell(mean_cell, {n: p.asnumpy() for n, p in cell.parameters_and_names()}, "converted")
    s = SIZES[net]
    x = rng.uniform(-1, 1, (3, 3, s, s)).astype(np.float32)
    y = rng.uniform(-1, 1, (3, 3, s, s)).astype(np.float32)
    assert_close(mean_cell(m(x), m(y)), ref(t(x), t(y)).mean(), 1e-5, "batch mean")
    with pytest.raises(ValueError):
        LPIPS("squeeze")
