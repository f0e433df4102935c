"""Parity of the IR-SE backbones (ArcFace embedding, body features) and the pSp GradualStyleEncoder
against the PyTorch reference in tests/reference/irse_ref.py (written from the mathematics).

Random weights everywhere, BatchNorm statistics and PReLU slopes included; the MindSpore cells are
loaded through the importers' rule tables (weights_convert.irse / .psp), so these tests also check
the name mapping. Tiny widths with the real IR-SE50 depth (3, 4, 14, 3 units: the FPN taps after
units 6, 20, 23 are exercised) for the W+ forward; gradients use a shallow body (1, 2, 2, 1 units)
because compiling the backward of 24 units costs ~20 s on 2 cores; full-width runs are marked slow.

Tolerances: forward rel 1e-5 of the output's max magnitude (float32, ~60 layers); input gradients
rel 1e-4 (backward sums over many more terms in a different order).
"""
import numpy as np
import pytest
import torch
import mindspore as ms

from parity_utils import assert_close, m, t
from reference.irse_ref import UNITS, ArcFace, PSPEncoder, randomize
from modify_ms.models.irse import IRSEBackbone, units_for
from modify_ms.models.layout import n_latent_for
from modify_ms.models.psp_encoder import GradualStyleEncoder
from weights_convert.irse import OPTIONAL, convert_arcface
from modify_ms.utils.checkpoint import fill_cell
from weights_convert.mapping import map_state_dict, target_shapes_of
from weights_convert.psp import encoder_rules, split_prefix

TINY = (8, 16, 32, 64)
SHALLOW = (1, 2, 2, 1)
FWD, GRAD = 1e-5, 1e-4


@pytest.fixture
def pynative():
    """Single-mode checks (the graph path of the same layers is covered by the ms_mode tests)."""
    ms.set_context(mode=ms.PYNATIVE_MODE)
    yield
    ms.set_context(mode=ms.GRAPH_MODE)


def numpy_state(module):
    return {k: v.detach().numpy() for k, v in module.state_dict().items()}


def load_arcface(cell, ref):
    fill_cell(cell, convert_arcface(numpy_state(ref), target_shapes_of(cell)), "converted")
    return cell


def load_encoder(cell, ref):
    """Torch PSPEncoder keys get pSp's ``encoder.`` prefix and go through the pSp encoder rules."""
    state = {"encoder." + k: v for k, v in numpy_state(ref).items()}
    shapes = {"encoder." + k: v for k, v in target_shapes_of(cell).items()}
    params = map_state_dict(state, shapes, encoder_rules(), optional=OPTIONAL, source_name="ref")
    fill_cell(cell, split_prefix(params, "encoder."), "converted")
    return cell


@pytest.fixture(scope="module")
def arcface_pair():
    ref = randomize(ArcFace(32, SHALLOW, TINY, emb=16), seed=1).eval()
    cell = load_arcface(IRSEBackbone(32, units=SHALLOW, channels=TINY, embedding_dim=16), ref)
    cell.set_train(False)
    return cell, ref


@pytest.fixture(scope="module")
def encoder_pair():
    """Real IR-SE50 depth, tiny widths."""
    ref = randomize(PSPEncoder(8, 64, UNITS[50], TINY), seed=2).eval()
    cell = load_encoder(GradualStyleEncoder(8, 64, units=UNITS[50], channels=TINY), ref)
    cell.set_train(False)
    return cell, ref


@pytest.fixture(scope="module")
def shallow_encoder_pair():
    """Shallow body, with pSp's start_from_latent_avg (a random mean latent added to every row)."""
    ref = randomize(PSPEncoder(8, 64, SHALLOW, TINY), seed=5).eval()
    avg = np.random.default_rng(6).standard_normal((8, 64)).astype(np.float32)
    cell = GradualStyleEncoder(8, 64, units=SHALLOW, channels=TINY, latent_avg=avg)
    shapes = target_shapes_of(cell)
    del shapes["latent_avg"]
    state = {"encoder." + k: v for k, v in numpy_state(ref).items()}
    params = map_state_dict(state, {"encoder." + k: v for k, v in shapes.items()}, encoder_rules(),
                            optional=OPTIONAL, source_name="ref")
    fill_cell(cell, dict(split_prefix(params, "encoder."), latent_avg=avg), "converted")
    cell.set_train(False)
    return cell, ref, avg


def input_grad(fn, x, r):
    def objective(x_, r_):
        return (fn(x_) * r_).sum()
    return ms.grad(objective)(x, r)


def torch_input_grad(module, x, r):
    xt = t(x).requires_grad_(True)
    (module(xt) * t(r)).sum().backward()
    return xt.grad


def test_arcface_embedding_and_grad(ms_mode, arcface_pair, rng):
    cell, ref = arcface_pair
    x = rng.uniform(-1, 1, (2, 3, 32, 32)).astype(np.float32)
    r = rng.standard_normal((2, 16)).astype(np.float32)
    out = cell(m(x))
    assert_close(out, ref(t(x)), FWD, "embedding")
    assert np.allclose(np.linalg.norm(out.asnumpy(), axis=1), 1.0, atol=1e-5)
    assert_close(input_grad(cell, m(x), m(r)), torch_input_grad(ref, x, r), GRAD, "d embedding / d x")


def test_backbone_features(pynative, arcface_pair, rng):
    cell, ref = arcface_pair
    x = rng.uniform(-1, 1, (1, 3, 32, 32)).astype(np.float32)
    assert_close(cell.features(m(x)), ref.features(t(x)), FWD, "body features")


def test_encoder_wplus(pynative, encoder_pair, rng):
    """Real depth (taps after units 6, 20, 23). 8 rows: 0-2 from the 16x-downsampled map, 3-6 from 8x, 7 from
    4x (all three FPN levels). PYNATIVE only: compiling 24 units costs ~20 s; the graph path of the same
    encoder code runs in test_encoder_wplus_grad_with_latent_avg[graph] (shallow body)."""
    cell, ref = encoder_pair
    x = rng.uniform(-1, 1, (2, 3, 64, 64)).astype(np.float32)
    out = cell(m(x))
    assert out.shape == (2, 8, 64)
    assert_close(out, ref(t(x)), FWD, "W+")


def test_encoder_wplus_grad_with_latent_avg(ms_mode, shallow_encoder_pair, rng):
    cell, ref, avg = shallow_encoder_pair
    x = rng.uniform(-1, 1, (2, 3, 64, 64)).astype(np.float32)
    r = rng.standard_normal((2, 8, 64)).astype(np.float32)
    assert_close(cell(m(x)), ref(t(x)).detach().numpy() + avg, FWD, "W+ + latent_avg (shallow)")
    assert_close(input_grad(cell, m(x), m(r)), torch_input_grad(ref, x, r), GRAD, "d W+ / d x")
    assert not cell.latent_avg.requires_grad


def test_taps_and_rows():
    assert units_for(50) == (3, 4, 14, 3) and units_for(100) == (3, 13, 30, 3) and units_for(152) == (3, 8, 36, 3)
    enc = GradualStyleEncoder(6, 64, units=UNITS[50], channels=TINY)
    assert (enc.tap_c1, enc.tap_c2, enc.tap_c3) == (6, 20, 23)
    assert n_latent_for(1024) == 18 and n_latent_for(256) == 14 and n_latent_for(16) == 6
    # heads: 16x-map rows need log2(S/16) stride-2 convs, 4x-map rows log2(S/4)
    names = target_shapes_of(GradualStyleEncoder(18, 256, units=(1, 1, 1, 1), channels=TINY))
    assert "styles.0.convs.6.weight" in names and "styles.0.convs.8.weight" not in names
    assert "styles.3.convs.8.weight" in names and "styles.17.convs.10.weight" in names
    with pytest.raises(ValueError):
        units_for(34)


@pytest.mark.parametrize("depth", [100, 152])
def test_deeper_backbones_map_strictly(depth):
    """IR-SE100/152 (tiny widths): every torch key maps onto exactly one parameter and back."""
    ref = ArcFace(16, UNITS[depth], TINY, emb=8)
    cell = IRSEBackbone(16, num_layers=depth, channels=TINY, embedding_dim=8)
    params = convert_arcface(numpy_state(ref), target_shapes_of(cell))
    assert len(params) == len([k for k in ref.state_dict() if not k.endswith("num_batches_tracked")])


def test_ir_without_se(pynative, rng):
    ref = randomize(ArcFace(16, (1, 2, 2, 1), TINY, emb=8, se=False), seed=3).eval()
    cell = load_arcface(IRSEBackbone(16, mode="ir", units=(1, 2, 2, 1), channels=TINY, embedding_dim=8), ref)
    cell.set_train(False)
    x = rng.uniform(-1, 1, (2, 3, 16, 16)).astype(np.float32)
    assert_close(cell(m(x)), ref(t(x)), FWD, "IR embedding")


@pytest.mark.slow
def test_full_width_irse50_parity(rng):
    """Real IR-SE50 (64..512 channels, 24 units) at 64x64 input and the ArcFace embedding at 112, batch 1."""
    ref = randomize(ArcFace(112), seed=4).eval()
    cell = load_arcface(IRSEBackbone(112), ref)
    cell.set_train(False)
    x = rng.uniform(-1, 1, (1, 3, 64, 64)).astype(np.float32)
    assert_close(cell.features(m(x)), ref.features(t(x)), FWD, "IR-SE50 features at 64")
    x = rng.uniform(-1, 1, (1, 3, 112, 112)).astype(np.float32)
    assert_close(cell(m(x)), ref(t(x)), FWD, "ArcFace embedding at 112")


@pytest.mark.slow
def test_full_psp_encoder_at_256(rng):
    """The real pSp encoder (IR-SE50, 18 heads of 512 channels) on one 256x256 image."""
    ref = randomize(PSPEncoder(18, 256), seed=7).eval()
    cell = load_encoder(GradualStyleEncoder(), ref)
    cell.set_train(False)
    x = rng.uniform(-1, 1, (1, 3, 256, 256)).astype(np.float32)
    with torch.no_grad():
        expected = ref(t(x))
    assert_close(cell(m(x)), expected, FWD, "pSp W+ at 256")
