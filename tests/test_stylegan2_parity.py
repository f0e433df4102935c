"""StyleGAN2 layers and networks against the PyTorch reference written from the mathematics.

Every case: random weights (biases, noise strengths, modulation biases away from 0/1),
the same inputs and noise, forward output and gradients w.r.t. inputs and all
parameters, in GRAPH_MODE and PYNATIVE. Tolerance: max-abs error relative to the
reference's max magnitude < 1e-5 forward (2e-5 for gradients, which sum over more
float32 terms).
"""
import numpy as np
import pytest
import mindspore as ms
import torch
from mindspore import nn

from parity_utils import assert_close, copy_torch_to_ms, m, t
from reference import stylegan2_ref as ref
from modify_ms import nn as msnn
from modify_ms.models import stylegan2 as sg

FWD_TOL, GRAD_TOL = 1e-5, 2e-5


class _LossCell(nn.Cell):
    """sum(net(*inputs) * cotangent): a scalar whose gradient is the VJP with ``cotangent``."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def construct(self, cot, *inputs):
        out = self.net(*inputs)
        return (out * cot).sum()


def _ms_value_and_grads(cell, inputs, cot):
    named = [(n, p) for n, p in cell.parameters_and_names() if p.requires_grad]
    params = [p for _, p in named]
    loss = _LossCell(cell)
    fn = ms.value_and_grad(loss, grad_position=tuple(range(1, len(inputs) + 1)), weights=params)
    value, (in_grads, p_grads) = fn(m(cot), *[m(x) for x in inputs])
    if not isinstance(in_grads, tuple):  # a single grad_position comes back unwrapped
        in_grads = (in_grads,)
    return value, in_grads, {n: g for (n, _), g in zip(named, p_grads)}


def _check(ms_cell, torch_mod, inputs, seed=0, rename=lambda k: k):
    ref.randomize_(torch_mod, seed)
    unfilled = copy_torch_to_ms(ms_cell, torch_mod, rename=rename, skip=lambda k: k.endswith("kernel"))
    assert not [u for u in unfilled if not u.endswith("latent_avg")], unfilled
    t_in = [t(x).requires_grad_(True) for x in inputs]
    out = torch_mod(*t_in)
    cot = np.random.default_rng(seed + 1).standard_normal(out.shape).astype(np.float32)
    (out * t(cot)).sum().backward()

    ms_out = ms_cell(*[m(x) for x in inputs])
    assert_close(ms_out, out, FWD_TOL, "forward")
    _, in_grads, p_grads = _ms_value_and_grads(ms_cell, inputs, cot)
    for i, (g, x) in enumerate(zip(in_grads, t_in)):
        assert_close(g, x.grad, GRAD_TOL, f"grad input {i}")
    for name, p in torch_mod.named_parameters():
        if p.grad is None:  # unused by this forward (the mapping net when W+ is given): zero in MindSpore
            assert not np.any(p_grads[rename(name)].asnumpy()), name
            continue
        assert_close(p_grads[rename(name)], p.grad, GRAD_TOL, f"grad {name}")


R = np.random.default_rng(7)


def _x(*shape):
    return R.standard_normal(shape).astype(np.float32)


class _Upsample(torch.nn.Module):
    def forward(self, x):
        return ref.upfirdn2d(x, ref.fir_kernel() * 4, up=2, pad=(2, 1))


class _Blur(torch.nn.Module):
    def __init__(self, pad):
        super().__init__()
        self.pad = pad

    def forward(self, x):
        return ref.upfirdn2d(x, ref.fir_kernel(), pad=self.pad)


class _MsApplyNoise(nn.Cell):
    """StyledConv with an explicit noise input, as the generator calls it."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def construct(self, x, style, noise):
        return self.layer(x, style, noise)


LAYER_CASES = {
    "equal_linear_lr_mul": (lambda: msnn.EqualLinear(8, 6, lr_mul=0.01, activation="fused_lrelu"),
                            lambda: ref.EqualLinear(8, 6, lr_mul=0.01, act=True), [(3, 8)]),
    "equal_conv_3x3": (lambda: msnn.EqualConv2d(4, 5, 3, padding=1), lambda: ref.EqualConv(4, 5, 3, padding=1),
                       [(2, 4, 6, 6)]),
    "blur_pad_2_1": (lambda: msnn.Blur(pad=(2, 1)), lambda: _Blur((2, 1)), [(2, 3, 7, 7)]),
    "upsample_2x": (lambda: msnn.Upsample(), lambda: _Upsample(), [(2, 3, 5, 5)]),
    "modconv_demod": (lambda: msnn.ModulatedConv2d(4, 6, 3, 8), lambda: ref.ModConv(4, 6, 3, 8), [(3, 4, 6, 6), (3, 8)]),
    "modconv_up": (lambda: msnn.ModulatedConv2d(4, 6, 3, 8, upsample=True), lambda: ref.ModConv(4, 6, 3, 8, up=True),
                   [(2, 4, 5, 5), (2, 8)]),
    "modconv_rgb_nodemod": (lambda: msnn.ModulatedConv2d(4, 3, 1, 8, demodulate=False),
                            lambda: ref.ModConv(4, 3, 1, 8, demod=False), [(2, 4, 6, 6), (2, 8)]),
    "styled_conv_up_noise": (lambda: _MsApplyNoise(sg.StyledConv(4, 6, 3, 8, upsample=True)),
                             lambda: ref.StyledConv(4, 6, 8, up=True), [(2, 4, 4, 4), (2, 8), (2, 1, 8, 8)]),
    "to_rgb_skip": (lambda: sg.ToRGB(4, 8), lambda: ref.ToRGB(4, 8), [(2, 4, 8, 8), (2, 8), (2, 3, 4, 4)]),
}


@pytest.mark.parametrize("case", sorted(LAYER_CASES))
def test_layer_parity(case, ms_mode):
    make_ms, make_torch, shapes = LAYER_CASES[case]
    torch.manual_seed(0)
    ms_cell, torch_mod = make_ms(), make_torch()
    rename = (lambda k: "layer." + k) if case.startswith("styled_conv") else (lambda k: k)
    _check(ms_cell, torch_mod, [_x(*s) for s in shapes], rename=rename)


SMALL = dict(size=16, style_dim=16, n_mlp=2, channel_multiplier=1, channel_max=8)


class _GenFromNoise(nn.Cell):
    def __init__(self, g):
        super().__init__()
        self.g = g

    def construct(self, w_plus, *noise):
        return self.g(w_plus, noise)


class _TorchGenFromNoise(torch.nn.Module):
    def __init__(self, g):
        super().__init__()
        self.g = g

    def forward(self, w_plus, *noise):
        return self.g(w_plus, list(noise))


def test_generator_parity(ms_mode):
    torch.manual_seed(0)
    g_ms = sg.Generator(SMALL["size"], SMALL["style_dim"], SMALL["n_mlp"], SMALL["channel_multiplier"],
                        SMALL["channel_max"])
    g_t = ref.Generator(SMALL["size"], SMALL["style_dim"], SMALL["n_mlp"], SMALL["channel_multiplier"],
                        SMALL["channel_max"])
    noise = [_x(*s) for s in g_ms.noise_shapes(2)]
    inputs = [_x(2, g_ms.n_latent, SMALL["style_dim"])] + noise
    _check(_GenFromNoise(g_ms), _TorchGenFromNoise(g_t), inputs, seed=3)


def test_generator_mapping_and_const_noise(ms_mode):
    """z -> mapping -> W broadcast to every layer, rendered with the fixed noise buffers."""
    torch.manual_seed(0)
    g_ms = sg.Generator(**SMALL)
    g_t = ref.randomize_(ref.Generator(SMALL["size"], SMALL["style_dim"], SMALL["n_mlp"], 1, SMALL["channel_max"]), 5)
    copy_torch_to_ms(g_ms, g_t, skip=lambda k: k.endswith("kernel"))
    z = _x(3, SMALL["style_dim"])
    w_t = g_t.mapping(t(z))
    img_t = g_t(w_t[:, None].repeat(1, g_t.n_latent, 1))
    w_ms = g_ms.mapping(m(z))
    assert_close(w_ms, w_t.detach(), FWD_TOL, "mapping")
    assert_close(g_ms(w_ms), img_t.detach(), FWD_TOL, "render")


def test_discriminator_parity(ms_mode):
    torch.manual_seed(0)
    d_ms = sg.Discriminator(16, channel_multiplier=1, channel_max=8)
    d_t = ref.Discriminator(16, cm=1, cmax=8)
    _check(d_ms, d_t, [_x(4, 3, 16, 16)], seed=11)


def test_discriminator_batch_of_one(ms_mode):
    """Stage 2 runs batch 1: the stddev group is a single sample (variance 0, finite gradients)."""
    torch.manual_seed(0)
    _check(sg.Discriminator(16, channel_multiplier=1, channel_max=8), ref.Discriminator(16, cm=1, cmax=8),
           [_x(1, 3, 16, 16)], seed=12)


def test_discriminator_features_and_stddev_groups(ms_mode):
    """Block activations match, and the std group is min(B, 4) (batch 2 and 8)."""
    torch.manual_seed(0)
    d_ms = sg.Discriminator(16, channel_multiplier=1, channel_max=8)
    d_t = ref.randomize_(ref.Discriminator(16, cm=1, cmax=8), 2)
    copy_torch_to_ms(d_ms, d_t, skip=lambda k: k.endswith("kernel"))
    for batch in (2, 8):
        x = _x(batch, 3, 16, 16)
        out_t, feats_t = d_t(t(x), return_features=True)
        out_ms, feats_ms = d_ms(m(x), return_features=True)
        assert_close(out_ms, out_t.detach(), FWD_TOL, f"logits B={batch}")
        assert len(feats_ms) == len(feats_t) == 3
        for i, (a, b) in enumerate(zip(feats_ms, feats_t)):
            assert_close(a, b.detach(), FWD_TOL, f"feature {i}")


# ------------------------------------------------------------------ minibatch stddev (NVlabs' group rule)
class _MinibatchStd(nn.Cell):
    def __init__(self, group, feat):
        super().__init__()
        self.group, self.feat = group, feat

    def construct(self, x):
        return sg.minibatch_stddev(x, self.group, self.feat)


class _CotangentLoss(nn.Cell):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def construct(self, x, cot):
        return (self.net(x) * cot).sum()


# (group_size, num_channels, batch): 8 and None differ from rosinality's min(B, 4) at batch 8;
# at batch 6 group 8 gives min(8, 6) = 6 and None the whole batch
MBSTD_CASES = [(4, 1, 8), (8, 1, 8), (None, 1, 8), (8, 1, 6), (None, 1, 6), (2, 2, 8), (8, 1, 1)]


@pytest.mark.parametrize("group, feat, batch", MBSTD_CASES, ids=[f"G{g}-F{f}-B{b}" for g, f, b in MBSTD_CASES])
def test_minibatch_std_matches_nvlabs(ms_mode, group, feat, batch):
    """Forward and input gradient of the layer against NVlabs' MinibatchStdLayer (rel 1e-5)."""
    x = _x(batch, 4, 3, 3) + np.arange(batch, dtype=np.float32)[:, None, None, None] * 0.3
    x_t = t(x).requires_grad_(True)
    out_t = ref.nvlabs_minibatch_std(x_t, group, feat)
    cot = np.random.default_rng(batch).standard_normal(out_t.shape).astype(np.float32)
    (out_t * t(cot)).sum().backward()
    layer = _MinibatchStd(group, feat)
    assert_close(layer(m(x)), out_t.detach(), 1e-5, "forward")
    grad = ms.grad(_CotangentLoss(layer), grad_position=0)(m(x), m(cot))
    assert_close(grad, x_t.grad, 1e-5, "grad input")


def test_minibatch_std_batch_the_group_does_not_divide(ms_mode):
    """Batch 6, group 4: NVlabs' reshape fails, and so does the layer; the host-side check the
    trainers run first names batch and group in one ValueError line."""
    x = _x(6, 4, 3, 3)
    with pytest.raises(RuntimeError):
        ref.nvlabs_minibatch_std(t(x), 4)
    with pytest.raises(Exception):
        _MinibatchStd(4, 1)(m(x))
    with pytest.raises(ValueError, match=r"batch 6 is not divisible by the group size 4 \(min\(stddev_group=4"):
        sg.check_stddev_batch(6, 4)
    assert sg.check_stddev_batch(8, 4) == 4 and sg.check_stddev_batch(3, 4) == 3 and sg.check_stddev_batch(6, None) == 6


NVLABS_D_CASES = [(8, 1, 8), (None, 2, 6)]


@pytest.mark.parametrize("group, feat, batch", NVLABS_D_CASES, ids=[f"G{g}-F{f}-B{b}" for g, f, b in NVLABS_D_CASES])
def test_discriminator_nvlabs_minibatch_std(ms_mode, group, feat, batch):
    """Discriminator(stddev_group, stddev_feat) against the reference with NVlabs' layer."""
    torch.manual_seed(0)
    d_ms = sg.Discriminator(16, channel_multiplier=1, channel_max=8, stddev_group=group, stddev_feat=feat)
    d_t = ref.Discriminator(16, cm=1, cmax=8, nvlabs_mbstd=(group, feat))
    _check(d_ms, d_t, [_x(batch, 3, 16, 16)], seed=13)


def test_discriminator_refuses_bad_stddev_settings():
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="stddev_group must be a positive int or None"):
            sg.Discriminator(16, channel_multiplier=1, channel_max=8, stddev_group=bad)
    with pytest.raises(ValueError, match="stddev_feat must be an int >= 0"):
        sg.Discriminator(16, channel_multiplier=1, channel_max=8, stddev_feat=-1)
