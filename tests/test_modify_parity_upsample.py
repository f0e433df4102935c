"""The upsampling between MODIFY's loss resolution and its discriminator (``model.disc_upsample``).

Reference: torch's F.interpolate (nearest, the authors' choice, and bilinear with
align_corners=False), forward, gradient and the double backward the one-sided Lipschitz
penalty takes through it, GRAPH and PYNATIVE. The wiring test checks ModifyNets.critic
feeds the discriminator the nearest-neighbour image by default.
"""
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import mindspore as ms
from mindspore import nn, ops

from modify_ms.config import ConfigError, load_config
from modify_ms.models.modify import CriticUpsample, ModifyNets
from modify_ms.train.config import ModelConfig, Stage1Config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE_IN, SIZE_OUT = 8, 32
TOL = dict(rtol=1e-5, atol=1e-6)  # float32; bilinear sums two products of weights <= 1


def torch_penalty_terms(x, weight, mode):
    """f = sum(weight * tanh(up(x))), its input gradient, and d/dx of sum(grad^2) (double backward)."""
    x = torch.tensor(x, requires_grad=True)
    kwargs = {"align_corners": False} if mode == "bilinear" else {}
    up = F.interpolate(x, size=(SIZE_OUT, SIZE_OUT), mode=mode, **kwargs)
    f = (torch.tensor(weight) * torch.tanh(up)).sum()
    (grad,) = torch.autograd.grad(f, x, create_graph=True)
    (grad2,) = torch.autograd.grad((grad ** 2).sum(), x)
    return up.detach().numpy(), grad.detach().numpy(), grad2.numpy()


class _Critic(nn.Cell):
    def __init__(self, up, weight):
        super().__init__()
        self.up, self.weight = up, ms.Tensor(weight)

    def construct(self, x):
        return (self.weight * ops.tanh(self.up(x))).sum()


class _Penalty(nn.Cell):
    def __init__(self, critic):
        super().__init__()
        self.critic, self.input_grad = critic, ops.GradOperation()

    def construct(self, x):
        grad = self.input_grad(self.critic)(x)
        return (grad ** 2).sum()


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_critic_upsample_matches_torch_interpolate(ms_mode, mode):
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, (2, 3, SIZE_IN, SIZE_IN)).astype(np.float32)
    weight = rng.normal(0, 1, (2, 3, SIZE_OUT, SIZE_OUT)).astype(np.float32)
    up_ref, grad_ref, grad2_ref = torch_penalty_terms(x, weight, mode)
    up = CriticUpsample(SIZE_IN, SIZE_OUT, mode)
    np.testing.assert_allclose(up(ms.Tensor(x)).asnumpy(), up_ref, **TOL)
    critic = _Critic(up, weight)
    np.testing.assert_allclose(ms.grad(critic)(ms.Tensor(x)).asnumpy(), grad_ref, **TOL)
    np.testing.assert_allclose(ms.grad(_Penalty(critic))(ms.Tensor(x)).asnumpy(), grad2_ref, rtol=1e-4, atol=1e-5)


def test_the_two_modes_differ():
    """So the test above can tell which mode the code uses."""
    x = np.random.default_rng(0).uniform(-1, 1, (1, 1, SIZE_IN, SIZE_IN)).astype(np.float32)
    near = torch_penalty_terms(x, np.ones((1, 1, SIZE_OUT, SIZE_OUT), np.float32), "nearest")[0]
    bil = torch_penalty_terms(x, np.ones((1, 1, SIZE_OUT, SIZE_OUT), np.float32), "bilinear")[0]
    assert np.abs(near - bil).max() > 0.05


def test_nearest_is_the_default_and_metfaces_setting():
    assert ModelConfig().disc_upsample == "nearest"
    cfg = load_config(os.path.join(REPO, "yaml", "metfaces.yaml"), Stage1Config, [])
    assert cfg.model.disc_upsample == "nearest"
    with pytest.raises(ConfigError):
        load_config(os.path.join(REPO, "yaml", "metfaces.yaml"), Stage1Config, ["model.disc_upsample=bicubic"])


def test_modify_critic_sees_the_nearest_neighbour_image():
    """ModifyNets with a 128 px decoder and 64 px losses: critic(img) = Dis(nearest x2 of img)."""
    cfg = load_config(os.path.join(REPO, "yaml", "quickstart.yaml"), Stage1Config,
                      ["model.generator.size=128", "model.generator.channel_max=8", "model.generator.style_dim=16",
                       "model.discriminator.channel_max=8", "model.encoder.channels=[16, 16, 16, 16]",
                       "model.remap.n_layers=1"])
    nets = ModifyNets(cfg.model)
    img = np.random.default_rng(1).uniform(-1, 1, (1, 3, 64, 64)).astype(np.float32)
    expected = nets.discriminator(ms.Tensor(img.repeat(2, axis=2).repeat(2, axis=3))).asnumpy()
    np.testing.assert_allclose(nets.critic(ms.Tensor(img)).asnumpy(), expected, rtol=1e-5, atol=1e-6)
