"""Training-time behaviour: a compiled step that trains the pSp encoder through a frozen StyleGAN2 decoder
with L2 + LPIPS + ArcFace identity losses (MODIFY's stage-2 loss on x' = D(E'(x))) changes the encoder's
parameters only. The decoder's, the identity network's and LPIPS' weights, and the identity network's
BatchNorm statistics, are bit-identical afterwards, although the whole step runs in training mode
(set on the parent here: frozen networks must survive a parent's set_train(True)).

What the trainers themselves do (E and E' in training mode, their running statistics moving, the
teacher and ArcFace untouched, renders of outputs in inference mode, reset restoring E''s statistics)
is tested through Stage1Trainer and Stage2Model in tests/test_modify_train.py, not on this hand-built loop.
"""
import numpy as np
import pytest
import mindspore as ms
from mindspore import nn, ops

from modify_ms.losses.identity import IdentityLoss
from modify_ms.losses.lpips import LPIPS
from modify_ms.models.irse import freeze
from modify_ms.models.psp_encoder import GradualStyleEncoder
from modify_ms.models.stylegan2 import Generator

SHALLOW, TINY = (1, 2, 2, 1), (8, 16, 32, 64)


class StylizationLoss(nn.Cell):
    """0.5 L2 + 0.8 LPIPS + 1.0 ID between x and D(E(x)) (the paper's stage-2 weights, adversarial term omitted)."""

    def __init__(self, encoder, decoder, lpips, identity):
        super().__init__()
        self.encoder, self.decoder, self.lpips, self.identity = encoder, decoder, lpips, identity

    def construct(self, x):
        y = self.decoder(self.encoder(x))
        x = ops.avg_pool2d(x, 2, 2)  # losses at the decoder's resolution (MODIFY pools 1024 -> 256)
        return 0.5 * ((y - x) ** 2).mean() + 0.8 * self.lpips(y, x) + self.identity(y, x)


def snapshot(cell):
    return {n: p.asnumpy().copy() for n, p in cell.parameters_and_names()}


@pytest.fixture(scope="module")
def nets():
    ms.set_seed(0)
    encoder = GradualStyleEncoder(8, 64, units=SHALLOW, channels=TINY)  # 64 px in, 8 rows for a 32 px decoder
    decoder = freeze(Generator(32, style_dim=64, n_mlp=1, channel_max=8))
    lpips = LPIPS("alex")
    identity = IdentityLoss(32, 16, units=SHALLOW, channels=TINY, embedding_dim=16)
    rng = np.random.default_rng(0)
    for cell in (identity, lpips):  # random, non-trivial frozen weights and BN statistics
        for name, p in cell.parameters_and_names():
            if name.endswith("moving_variance"):
                p.set_data(ms.Tensor(rng.uniform(0.5, 1.5, p.shape).astype(np.float32)))
            elif name.endswith(("moving_mean", "beta")):
                p.set_data(ms.Tensor(rng.normal(0, 0.1, p.shape).astype(np.float32)))
    return encoder, decoder, lpips, identity


def test_step_trains_only_the_encoder(nets):
    encoder, decoder, lpips, identity = nets
    for frozen in (decoder, lpips, identity):
        assert frozen.trainable_params() == []
    loss_net = StylizationLoss(encoder, decoder, lpips, identity)
    loss_net.set_train(True)
    weights = encoder.trainable_params()
    assert len(weights) == len([p for p in loss_net.trainable_params()])
    optimizer = nn.Adam(weights, learning_rate=1e-3)
    grad_fn = ms.value_and_grad(loss_net, None, weights)

    @ms.jit
    def step(x):
        loss, grads = grad_fn(x)
        optimizer(grads)
        return loss

    before = {name: snapshot(c) for name, c in (("encoder", encoder), ("decoder", decoder), ("lpips", lpips),
                                                  ("identity", identity))}
    x = ms.Tensor(np.random.default_rng(1).uniform(-1, 1, (2, 3, 64, 64)).astype(np.float32))
    losses = [float(step(x).asnumpy()) for _ in range(2)]
    assert all(np.isfinite(losses))
    for name, cell in (("decoder", decoder), ("lpips", lpips), ("identity", identity)):
        after = snapshot(cell)
        changed = [n for n in after if not np.array_equal(after[n], before[name][n])]
        assert not changed, f"frozen {name} changed: {changed[:5]}"
    after = snapshot(encoder)
    trainable = {n for n, p in encoder.parameters_and_names() if p.requires_grad}
    assert len(trainable) == len(weights)
    unchanged = [n for n in trainable if np.array_equal(after[n], before["encoder"][n])]
    assert not unchanged, f"encoder parameters not updated: {unchanged[:5]}"
