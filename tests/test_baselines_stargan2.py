"""StarGAN v2's networks and losses against the torch reference written from the mathematics
(tests/reference/stargan2_ref.py): forward and gradients (inputs and parameters), GRAPH and
PYNATIVE (the two generators' GRAPH variants marked slow: their gradient graphs take ~45 s to
compile), at narrow widths with the official depth formulas. Tolerance 1e-5 relative to the
reference's largest magnitude (float32; the deepest net, G with the high-pass path, 2e-5)."""
import numpy as np
import pytest
import mindspore as ms
import torch
from mindspore import nn, ops

from parity_utils import assert_close, copy_torch_to_ms, m, t
from stargan2_modes import mode_graph_slow  # noqa: F401  (fixture)
from reference import stargan2_ref as ref

from baselines_ms.stargan2 import networks as net

B = 2
STYLE, LATENT, K = 8, 4, 2


def paired(ms_cell, torch_module, seed):
    ref.randomize(torch_module, seed)
    missing = copy_torch_to_ms(ms_cell, torch_module, skip=lambda k: k == "hpf.filter")
    assert not missing, missing
    return ms_cell, torch_module


class GradOf(nn.Cell):
    """Gradients of sum(net(*inputs) * cot) w.r.t. the float inputs and every parameter."""

    def __init__(self, cell, n_float):
        super().__init__(auto_prefix=False)
        self.cell, self.n_float = cell, n_float
        self.params = ms.ParameterTuple(cell.trainable_params())
        self.grad = ops.GradOperation(get_all=True, get_by_list=True)

    def construct(self, *args):
        return self.grad(self.objective, self.params)(*args)

    def objective(self, *args):
        cot = args[-1]
        return (self.cell(*args[:-1]) * cot).sum()


def check(ms_cell, torch_module, ms_inputs, torch_inputs, n_float, rel=1e-5):
    torch_module.zero_grad(set_to_none=True)  # module-scoped: the other mode's backward ran before
    torch_inputs = [x.requires_grad_() if i < n_float else x for i, x in enumerate(torch_inputs)]
    expected = torch_module(*torch_inputs)
    out = ms_cell(*ms_inputs)
    assert_close(out, expected, rel, "forward")
    cot = np.random.default_rng(7).standard_normal(tuple(expected.shape)).astype(np.float32)
    (expected * t(cot)).sum().backward()
    input_grads, param_grads = GradOf(ms_cell, n_float)(*ms_inputs, m(cot))
    for i in range(n_float):
        assert_close(input_grads[i], torch_inputs[i].grad, rel, f"grad input {i}")
    torch_params = dict(torch_module.named_parameters())
    # a parameter the output does not use (w_hpf > 0: the decoder's conv1x1) has no torch gradient
    grads = {k: torch.zeros_like(p) if p.grad is None else p.grad for k, p in torch_params.items()}
    scale = max([float(g.abs().max()) for g in grads.values()] + [0.0])
    for p, g in zip(ms_cell.trainable_params(), param_grads):
        expected = grads[p.name]
        if float(expected.abs().max()) < 1e-5 * scale:
            # a bias right before an instance norm: its gradient is 0 up to rounding on both sides
            assert float(np.abs(g.asnumpy()).max()) < 1e-5 * scale, f"grad {p.name} should vanish"
        else:
            assert_close(g, expected, rel, f"grad {p.name}")


def images(size, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (B, 3, size, size)).astype(np.float32)


def styles(seed=1):
    return np.random.default_rng(seed).standard_normal((B, STYLE)).astype(np.float32)


LABELS = np.array([1, 0], np.int32)


@pytest.fixture(scope="module")
def blocks():
    return {
        "resblk": paired(net.ResBlk(6, 10, normalize=True, downsample=True), ref.ResBlk(6, 10, True, True), 1),
        "adain": paired(net.AdainResBlk(10, 6, STYLE, w_hpf=0, upsample=True),
                        ref.AdainResBlk(10, 6, STYLE, 0, True), 2),
        "adain_hpf": paired(net.AdainResBlk(10, 6, STYLE, w_hpf=1, upsample=True),
                            ref.AdainResBlk(10, 6, STYLE, 1, True), 3),
    }


def test_resblk(ms_mode, blocks):
    x = np.random.default_rng(2).standard_normal((B, 6, 8, 8)).astype(np.float32)
    check(*blocks["resblk"], [m(x)], [t(x)], 1)


@pytest.mark.parametrize("which", ["adain", "adain_hpf"])
def test_adain_resblk(ms_mode, blocks, which):
    x = np.random.default_rng(3).standard_normal((B, 10, 4, 4)).astype(np.float32)
    check(*blocks[which], [m(x), m(styles())], [t(x), t(styles())], 2)


def test_high_pass(ms_mode):
    x = np.random.default_rng(4).standard_normal((B, 5, 8, 8)).astype(np.float32)
    check(net.HighPass(2.0), ref.HighPass(2.0), [m(x)], [t(x)], 1)


@pytest.fixture(scope="module")
def generators():
    """w_hpf 0 at 32 px (1 down-block + 2 bottleneck: cheap to compile), w_hpf 1 at 64 px (3 + 2,
    the high-pass skip at 32 and 64 px: both mask channels)."""
    kw = dict(style_dim=STYLE, max_conv_dim=32, first_dim=8)
    return {w: paired(net.Generator(img_size=32 * (1 + w), w_hpf=w, **kw),
                      ref.Generator(img_size=32 * (1 + w), w_hpf=w, **kw), 10 + w) for w in (0, 1)}


def test_generator_depths():
    """The official depth formula: log2(S) - 4 down-blocks (+1 with w_hpf), + 2 at the bottleneck."""
    for size, w_hpf, blocks in ((256, 0, 6), (256, 1, 7), (64, 0, 4), (64, 1, 5)):
        g = net.Generator(img_size=size, style_dim=STYLE, max_conv_dim=16, w_hpf=w_hpf, first_dim=4)
        assert len(g.encode) == len(g.decode) == blocks
    g = net.Generator(img_size=256, style_dim=STYLE, max_conv_dim=16, w_hpf=1, first_dim=4)
    assert g.keep == (False, True, True, True, False, False, False)  # encoder inputs 128, 64, 32 kept
    assert g.skip == (False, False, False, True, True, True, False)  # decoder outputs 32, 64, 128


def test_generator(mode_graph_slow, generators):
    x, s = images(32), styles()
    check(*generators[0], [m(x), m(s)], [t(x), t(s)], 2)


def test_generator_high_pass_path(mode_graph_slow, generators):
    """w_hpf 1 with masks: the residual-only decoder blocks and HPF(mask * cache) at 32 and 64 px."""
    x, s = images(64), styles()
    masks = np.random.default_rng(5).uniform(0, 1, (B, 2, 64, 64)).astype(np.float32)
    check(*generators[1], [m(x), m(s), m(masks)], [t(x), t(s), t(masks)], 3, rel=2e-5)


def test_mapping_network(ms_mode):
    pair = paired(net.MappingNetwork(LATENT, STYLE, K, hidden_dim=16), ref.MappingNetwork(LATENT, STYLE, K, 16), 20)
    z = np.random.default_rng(6).standard_normal((B, LATENT)).astype(np.float32)
    check(*pair, [m(z), m(LABELS)], [t(z), torch.from_numpy(LABELS).long()], 1)


@pytest.mark.parametrize("kind", ["style_encoder", "discriminator"])
def test_trunk_networks(ms_mode, kind):
    if kind == "style_encoder":
        pair = paired(net.StyleEncoder(32, STYLE, K, max_conv_dim=32, first_dim=8),
                      ref.StyleEncoder(32, STYLE, K, 32, 8), 30)
    else:
        pair = paired(net.Discriminator(32, K, max_conv_dim=32, first_dim=8), ref.Discriminator(32, K, 32, 8), 31)
    assert sum(isinstance(c, net.ResBlk) for _, c in pair[0].cells_and_names()) == 3  # log2(32) - 2 down-blocks: 32 -> 4
    x = images(32, 8)
    check(*pair, [m(x), m(LABELS)], [t(x), torch.from_numpy(LABELS).long()], 1)
