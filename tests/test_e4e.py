"""Parity of modify_ms's Encoder4Editing (e4e) with the PyTorch reference in tests/reference/e4e_ref.py
(written from the paper: w0 from the coarsest map broadcast to every row, one offset per row from
that row's pyramid level, offsets enabled up to the progressive stage).

Tiny encoder: input 64, one IR-SE unit per block, widths (8, 16, 32, 64), 8 W+ rows, so rows 1-2 read
c3 (4x4), 3-6 read p2 (8x8) and 7 reads p1 (16x16): all three levels and both lateral convs are used.
Every weight random (BatchNorm statistics and PReLU slopes included, none at 0 or 1), inference mode,
the cells loaded through the pSp importer's encoder rules (the same names e4e_ffhq_encode.pt uses).
GRAPH and PYNATIVE: W+ (with a random latent_avg added) and its vector-Jacobian product with respect to
the input and to parameters of every part (input layer, body, w0 head, a p2 head, a p1 head, both
lateral convs). A progressive stage of 2 must leave rows >= 3 exactly equal to w0 and give the lateral
convs and later heads no gradient.

Tolerances: forward 1e-5 of the output's max magnitude (float32); gradients 1e-4 (longer sums in a
different order).
"""
import numpy as np
import pytest
import mindspore as ms
from mindspore import nn

from parity_utils import assert_close, m, t
from reference.e4e_ref import E4EEncoder
from reference.irse_ref import randomize
from modify_ms.models.e4e import Encoder4Editing
from modify_ms.utils.checkpoint import fill_cell
from weights_convert.irse import OPTIONAL
from weights_convert.mapping import map_state_dict, target_shapes_of
from weights_convert.psp import encoder_rules, split_prefix

N_STYLES, SIZE, UNITS, TINY = 8, 64, (1, 1, 1, 1), (8, 16, 32, 64)
FWD, GRAD = 1e-5, 1e-4
# parameters whose gradients are compared: MindSpore name -> torch name
PARAM_GRADS = {
    "input_layer.2.w": "input_layer.2.weight",  # PReLU slope
    "body.2.res_layer.1.weight": "body.2.res_layer.1.weight",
    "styles.0.linear.weight": "styles.0.linear.weight",  # w0: every row
    "styles.0.convs.0.bias": "styles.0.convs.0.bias",
    "styles.1.linear.weight": "styles.1.linear.weight",  # c3 offset
    "styles.5.convs.2.weight": "styles.5.convs.2.weight",  # p2 offset
    "styles.7.linear.bias": "styles.7.linear.bias",  # p1 offset
    "latlayer1.weight": "latlayer1.weight",
    "latlayer2.bias": "latlayer2.bias",
}


def load_from_reference(cell, ref, latent_avg=None):
    """The torch keys get pSp's ``encoder.`` prefix and go through the importer's encoder rules."""
    shapes = {k: v for k, v in target_shapes_of(cell).items() if k != "latent_avg"}
    state = {"encoder." + k: v.detach().numpy() for k, v in ref.state_dict().items()}
    params = map_state_dict(state, {"encoder." + k: v for k, v in shapes.items()}, encoder_rules(),
                            optional=OPTIONAL, source_name="e4e reference")
    params = split_prefix(params, "encoder.")
    if latent_avg is not None:
        params["latent_avg"] = latent_avg
    fill_cell(cell, params, "e4e reference")
    cell.set_train(False)
    return cell


class _Cotangent(nn.Cell):
    """(sum(encoder(x) * cot), encoder(x)): the gradient of the first is the VJP with ``cot``."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def construct(self, x, cot):
        codes = self.net(x)
        return (codes * cot).sum(), codes


@pytest.fixture(scope="module")
def full_pair():
    """Inference stage (every offset), with pSp's start_from_latent_avg."""
    avg = np.random.default_rng(11).standard_normal((N_STYLES, TINY[-1])).astype(np.float32)
    ref = randomize(E4EEncoder(N_STYLES, SIZE, UNITS, TINY, latent_avg=avg), seed=12).eval()
    cell = load_from_reference(Encoder4Editing(N_STYLES, SIZE, units=UNITS, channels=TINY, latent_avg=avg), ref, avg)
    return cell, ref


@pytest.fixture(scope="module")
def stage2_pair(full_pair):
    """Progressive stage 2 (offsets on rows 1 and 2 only), same weights, no latent_avg."""
    ref = E4EEncoder(N_STYLES, SIZE, UNITS, TINY, stage=2).eval()
    ref.load_state_dict(full_pair[1].state_dict())
    cell = load_from_reference(Encoder4Editing(N_STYLES, SIZE, units=UNITS, channels=TINY, progressive_stage=2), ref)
    return cell, ref


def run_both(cell, ref, rng):
    """(MindSpore codes, d/dx, {name: d/dparam}), (torch codes, d/dx, module) for one random batch."""
    x = rng.uniform(-1, 1, (2, 3, SIZE, SIZE)).astype(np.float32)
    cot = rng.standard_normal((2, N_STYLES, TINY[-1])).astype(np.float32)
    named = dict(cell.parameters_and_names())
    weights = [named[k] for k in PARAM_GRADS]
    fn = ms.value_and_grad(_Cotangent(cell), grad_position=0, weights=weights, has_aux=True)
    (_, codes), (dx, dparams) = fn(m(x), m(cot))
    ref.zero_grad()
    xt = t(x).requires_grad_(True)
    codes_t = ref(xt)
    (codes_t * t(cot)).sum().backward()
    return (codes, dx, dict(zip(PARAM_GRADS, dparams))), (codes_t.detach(), xt.grad)


def test_e4e_wplus_and_gradients(ms_mode, full_pair, rng):
    cell, ref = full_pair
    (codes, dx, dparams), (codes_t, dx_t) = run_both(cell, ref, rng)
    assert codes.shape == (2, N_STYLES, TINY[-1])
    assert_close(codes, codes_t, FWD, "e4e W+ + latent_avg")
    assert_close(dx, dx_t, GRAD, "d W+ / d x")
    torch_params = dict(ref.named_parameters())
    for name, grad in dparams.items():
        expected = torch_params[PARAM_GRADS[name]].grad
        assert expected is not None and expected.abs().max() > 0, name
        assert_close(grad, expected, GRAD, f"d W+ / d {name}")
    # an offset really is per row: rows differ from each other and from w0 + latent_avg
    rows = codes.asnumpy() - cell.latent_avg.asnumpy()
    assert np.abs(rows[:, 1:] - rows[:, :1]).min(axis=-1).max() > 0


def test_e4e_progressive_stage_2(ms_mode, stage2_pair, rng):
    cell, ref = stage2_pair
    (codes, dx, dparams), (codes_t, dx_t) = run_both(cell, ref, rng)
    assert_close(codes, codes_t, FWD, "e4e W+ at stage 2")
    assert_close(dx, dx_t, GRAD, "d W+ / d x at stage 2")
    rows = codes.asnumpy()
    np.testing.assert_array_equal(rows[:, 3:], np.broadcast_to(rows[:, :1], rows[:, 3:].shape))  # exactly w0
    assert np.abs(rows[:, 1:3] - rows[:, :1]).max() > 1e-3  # rows 1, 2 carry offsets
    torch_params = dict(ref.named_parameters())
    for name, grad in dparams.items():
        expected = torch_params[PARAM_GRADS[name]].grad
        if name.startswith(("latlayer", "styles.5.", "styles.7.")):  # p2/p1 and their heads are unused
            assert expected is None
            np.testing.assert_array_equal(grad.asnumpy(), 0.0, err_msg=name)
        else:
            assert_close(grad, expected, GRAD, f"d W+ / d {name} at stage 2")


def test_progressive_stage_is_checked():
    for bad in (-1, 19, 2.0, True, None):
        with pytest.raises(ValueError, match="progressive_stage"):
            Encoder4Editing(4, 64, units=UNITS, channels=TINY, progressive_stage=bad)
    assert Encoder4Editing(4, 64, units=UNITS, channels=TINY).progressive_stage == 18
