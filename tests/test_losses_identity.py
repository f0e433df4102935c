"""ArcFace identity loss: parity (value and input gradient) with tests/reference/identity_ref.py, the crop
box, and that the loss is frozen (no trainable params, BatchNorm in inference mode even when the parent
is set to training, weights and statistics untouched by a training step).

Tiny IR-SE (1, 2, 2, 1 units, widths 8..64, 16-d embedding, face 32x32 from a 64x64 image) with random
weights, BatchNorm statistics and PReLU slopes. Tolerances: value rel 1e-5; gradient rel 1e-4 (float32
backward through ~20 layers, crop, adaptive pooling and the normalisation).
"""
import numpy as np
import pytest
import mindspore as ms
from mindspore import nn

from parity_utils import assert_close, m, t
from reference.identity_ref import IdentityLossRef
from reference.irse_ref import randomize
from modify_ms.losses.identity import IdentityLoss, crop_box
from weights_convert.irse import convert_arcface
from modify_ms.utils.checkpoint import fill_cell
from weights_convert.mapping import target_shapes_of

SHALLOW, TINY = (1, 2, 2, 1), (8, 16, 32, 64)


@pytest.fixture(scope="module")
def loss_pair():
    ref = IdentityLossRef(64, 32, units=SHALLOW, channels=TINY, emb=16)
    randomize(ref.facenet, seed=11).eval()
    cell = IdentityLoss(64, 32, units=SHALLOW, channels=TINY, embedding_dim=16)
    state = {k: v.numpy() for k, v in ref.facenet.state_dict().items()}
    fill_cell(cell, convert_arcface(state, target_shapes_of(cell), "facenet."), "converted")
    return cell, ref


def images(rng, n=2, size=64):
    x = rng.uniform(-1, 1, (n, 3, size, size)).astype(np.float32)
    return x, np.clip(x + 0.3 * rng.standard_normal(x.shape).astype(np.float32), -1, 1)


def test_crop_box():
    assert crop_box(256) == (35, 223, 32, 220)
    assert crop_box(1024) == (140, 892, 128, 880)
    assert crop_box(64) == (9, 56, 8, 55)


def test_value_and_grad_parity(ms_mode, loss_pair, rng):
    cell, ref = loss_pair
    target, pred = images(rng)
    value = cell(m(pred), m(target))
    pt = t(pred).requires_grad_(True)
    expected = ref(pt, t(target))
    expected.backward()
    assert_close(value, expected, 1e-5, "identity loss")
    assert 0.0 < float(value.asnumpy()) < 2.0

    def objective(p, q):
        return cell(p, q)

    assert_close(ms.grad(objective)(m(pred), m(target)), pt.grad, 1e-4, "d loss / d pred")


def test_same_image_gives_zero(loss_pair, rng):
    cell, _ = loss_pair
    x, _ = images(rng)
    assert abs(float(cell(m(x), m(x)).asnumpy())) < 1e-6


class Parent(nn.Cell):
    def __init__(self, loss):
        super().__init__()
        self.head = nn.Dense(4, 4)
        self.loss = loss

    def construct(self, a, b):
        return self.loss(a, b)


def test_frozen_in_training_parent(loss_pair, rng):
    """Parent in training mode: same value as inference, no trainable params, statistics untouched."""
    cell, ref = loss_pair
    assert cell.trainable_params() == []
    assert all(not p.requires_grad for p in cell.get_parameters())
    before = {n: p.asnumpy().copy() for n, p in cell.parameters_and_names()}
    target, pred = images(rng, n=3)
    parent = Parent(cell)
    parent.set_train(True)
    value = parent(m(pred), m(target))
    expected = ref(t(pred), t(target)).item()  # reference in eval mode: running statistics
    assert_close(value, np.float32(expected), 1e-5, "loss inside a training parent")
    after = {n: p.asnumpy() for n, p in cell.parameters_and_names()}
    assert all(np.array_equal(before[n], after[n]) for n in before)
    assert [p.name for p in parent.trainable_params()] == ["head.weight", "head.bias"]
    cell.set_train(False)


@pytest.mark.slow
def test_full_arcface_at_256(rng):
    """Real IR-SE50 (25088 -> 512 output layer) on a 256 image, batch 1."""
    ref = IdentityLossRef(256)
    randomize(ref.facenet, seed=12).eval()
    cell = IdentityLoss(256)
    state = {k: v.numpy() for k, v in ref.facenet.state_dict().items()}
    fill_cell(cell, convert_arcface(state, target_shapes_of(cell), "facenet."), "converted")
    target, pred = images(rng, n=1, size=256)
    assert_close(cell(m(pred), m(target)), ref(t(pred), t(target)), 1e-5, "full identity loss")
