"""The identity loss at 256 px looks at exactly the face box [35:223, 32:220] (pSp / the authors'
code), average-pooled to 112 x 112 (torch AdaptiveAvgPool2d), in the fast suite.

The real IR-SE50 at 256 px is the slow test_losses_identity.py::test_full_arcface_at_256; here the
ArcFace is tiny (1 unit per stage, 16 channels, 16-d embedding) with random weights, BatchNorm
statistics and PReLU slopes, but the image is the real 256 px and the face the real 112 px. The
torch reference below writes the crop and the pooling out itself. Checks: value and input-gradient
parity (both modes); the gradient is exactly zero outside the box and nonzero on each of its
edges; a pixel just outside an edge leaves the loss bit-identical, one just inside changes it.
Tolerances: value rel 1e-5, gradient rel 1e-4 (float32, ~10 layers, pooling, normalisation).
"""
import numpy as np
import pytest
import mindspore as ms
import torch.nn.functional as F

from parity_utils import assert_close, m, t
from reference.irse_ref import ArcFace, randomize
from modify_ms.losses.identity import IdentityLoss
from modify_ms.utils.checkpoint import fill_cell
from weights_convert.irse import convert_arcface
from weights_convert.mapping import target_shapes_of

SIZE, FACE = 256, 112
TOP, BOTTOM, LEFT, RIGHT = 35, 223, 32, 220  # rows [35, 223), columns [32, 220) of a 256 image
UNITS, CHANNELS, EMB = (1, 1, 1, 1), (16, 16, 16, 16), 16


def reference_loss(facenet, pred, target):
    """1 - cos of ArcFace embeddings of the cropped, 112-pooled faces (target detached), batch mean."""
    def embed(x):
        return facenet(F.adaptive_avg_pool2d(x[:, :, TOP:BOTTOM, LEFT:RIGHT], FACE))
    return (1 - (embed(pred) * embed(target).detach()).sum(1)).mean()


@pytest.fixture(scope="module")
def loss_pair():
    facenet = ArcFace(FACE, units=UNITS, channels=CHANNELS, emb=EMB)
    randomize(facenet, seed=31).eval()
    cell = IdentityLoss(SIZE, FACE, units=UNITS, channels=CHANNELS, embedding_dim=EMB)
    state = {k: v.numpy() for k, v in facenet.state_dict().items()}
    fill_cell(cell, convert_arcface(state, target_shapes_of(cell), "facenet."), "converted")
    return cell, facenet


@pytest.fixture(scope="module")
def pair():
    rng = np.random.default_rng(32)
    target = rng.uniform(-1, 1, (2, 3, SIZE, SIZE)).astype(np.float32)
    pred = np.clip(target + 0.3 * rng.standard_normal(target.shape).astype(np.float32), -1, 1)
    return pred, target


def test_value_and_gradient_match_the_reference_crop(ms_mode, loss_pair, pair):
    cell, facenet = loss_pair
    pred, target = pair
    pt = t(pred).requires_grad_(True)
    expected = reference_loss(facenet, pt, t(target))
    expected.backward()
    assert_close(cell(m(pred), m(target)), expected, 1e-5, "identity loss at 256")
    def objective(p, q):
        return cell(p, q)

    grad = ms.grad(objective)(m(pred), m(target))
    assert_close(grad, pt.grad, 1e-4, "d loss / d pred at 256")
    grad = grad.asnumpy()
    inside = np.zeros(grad.shape, bool)
    inside[:, :, TOP:BOTTOM, LEFT:RIGHT] = True
    assert not np.any(grad[~inside]), "gradient outside the face box"
    for edge in (grad[:, :, TOP, LEFT:RIGHT], grad[:, :, BOTTOM - 1, LEFT:RIGHT],
                 grad[:, :, TOP:BOTTOM, LEFT], grad[:, :, TOP:BOTTOM, RIGHT - 1]):
        assert np.all(edge != 0), "an edge of the face box gets no gradient"


# (row, column) just inside each edge of the box, mid-way along it
INSIDE = [(TOP, 120), (BOTTOM - 1, 120), (130, LEFT), (130, RIGHT - 1)]


def test_only_pixels_inside_the_box_change_the_loss(loss_pair, pair):
    """Everything outside the box replaced (prediction and target): the loss is bit-identical. One
    pixel just inside any edge changed in the prediction, or in the target: the loss changes."""
    cell, _ = loss_pair
    pred, target = pair

    def loss(p, q):
        return float(cell(m(p), m(q)).asnumpy())

    base = loss(pred, target)
    outside = np.ones(pred.shape, bool)
    outside[:, :, TOP:BOTTOM, LEFT:RIGHT] = False
    noise = np.random.default_rng(33).uniform(-1, 1, pred.shape).astype(np.float32)
    assert loss(np.where(outside, noise, pred), np.where(outside, -noise, target)) == base
    for row, col in INSIDE:
        changed = pred.copy()
        changed[:, :, row, col] = 0.5 - changed[:, :, row, col]
        assert loss(changed, target) != base, ("pred", row, col)
    changed = target.copy()
    for row, col in INSIDE:
        changed[:, :, row, col] = 0.5 - changed[:, :, row, col]
    assert loss(pred, changed) != base, "target"
