"""``optim.kind``: Adam (default) and the authors' Ranger (modify_ms/train/optim.py).

Ranger is checked against tests/reference/ranger_ref.py (float64 torch, written from the
maths) after every one of 13 steps: steps 1-5 are RAdam's momentum-SGD steps (rho_t <= 5),
6-13 rectified Adam steps, lookahead syncs at 6 and 12; gradient centralisation on a 4-d and
a 2-d parameter, none on the 1-d one. The optimizer runs inside the real ``UpdateStep`` (a
loss whose gradient is the test's chosen one), GRAPH_MODE and PYNATIVE. The parameters are
changed after the optimizer is built and before its first step (as stage 2 copies E into E'),
so the slow weights must come from the first step as in pSp.

Tolerance: float32 against float64, |ms - ref| <= 2e-6 + 1e-5 |ref| (parameters ~1, steps ~lr).
"""
import numpy as np
import pytest
import mindspore as ms
from mindspore import nn

from modify_ms.config import ConfigError, from_dict
from modify_ms.train.config import OptimConfig
from modify_ms.train.optim import Ranger, RangerSchedule, build_optimizer
from modify_ms.train.steps import UpdateStep
from modify_ms.utils.checkpoint import fill_cell, named_arrays
from reference.ranger_ref import radam_scalars, ranger_run

SHAPES = {"conv.weight": (4, 3, 2, 2), "dense.weight": (5, 3), "bias": (6,)}
SCALES = (0.05, 1.0, 3.0)  # gradient magnitudes apart, so a momentum step is not an Adam step
STEPS, LR, RESUME_AT = 13, 0.03, 7
ATOL, RTOL = 2e-6, 1e-5
RANGER = OptimConfig(kind="ranger", lr=LR, beta1=0.95, beta2=0.999)  # the authors' betas


def _draw(rng, shape, low, high):
    sign = rng.choice((-1.0, 1.0), size=shape)
    return (sign * rng.uniform(low, high, size=shape)).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    built = [_draw(rng, s, 0.2, 0.9) for s in SHAPES.values()]     # values at construction
    start = [_draw(rng, s, 0.2, 0.9) for s in SHAPES.values()]     # values at the first step
    # an offset per parameter so centralisation changes the gradients a lot
    grads = [[(scale * (_draw(rng, s, 0.1, 0.9) + 0.4)).astype(np.float32)
              for s, scale in zip(SHAPES.values(), SCALES)] for _ in range(STEPS)]
    return built, start, grads


class Params(nn.Cell):
    def __init__(self, values):
        super().__init__()
        self.conv_weight, self.dense_weight, self.bias = (
            ms.Parameter(ms.Tensor(v), name=n) for n, v in zip(SHAPES, values))


class LinearLoss(nn.Cell):
    """sum_i <G_i, p_i>: its gradient with respect to p_i is G_i, chosen by the test."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def construct(self, g_conv, g_dense, g_bias):
        loss = (self.net.conv_weight * g_conv).sum() + (self.net.dense_weight * g_dense).sum() + \
            (self.net.bias * g_bias).sum()
        return loss, loss


def make_step(values, cfg):
    net = Params(values)
    opt = build_optimizer(net, cfg)
    return net, opt, UpdateStep(LinearLoss(net), [(opt, net.trainable_params())])


def set_values(net, values):
    for p, v in zip(net.trainable_params(), values):
        p.assign_value(ms.Tensor(v))


def run_steps(step, grads):
    for g in grads:
        step(*(ms.Tensor(x) for x in g))


def assert_matches(net, expected, what):
    for p, ref in zip(net.trainable_params(), expected):
        np.testing.assert_allclose(p.asnumpy(), ref.numpy(), rtol=RTOL, atol=ATOL, err_msg=f"{what}: {p.name}")


def test_schedule_crosses_the_threshold_at_step_6():
    """The run below covers both RAdam branches (a guard on the test's own premise)."""
    assert [radam_scalars(t, 0.95, 0.999, 5.0)[0] for t in range(1, 8)] == [False] * 5 + [True] * 2


@pytest.mark.parametrize("beta1,beta2", [(0.95, 0.999), (0.9, 0.99)])
def test_schedule_matches_reference_over_a_long_run(beta1, beta2):
    """RAdam's step size and branch from the on-device step counter, from step 1 to a million
    (float32: rho_t and 1 - beta^t without cancellation; measured worst 2.3e-6 relative)."""
    schedule = RangerSchedule(beta1, beta2, 5.0)
    for t in [*range(1, 31), 100, 1000, 10 ** 4, 10 ** 5, 10 ** 6]:
        step_size, rectified = schedule(ms.Tensor(float(t), ms.float32))
        ref_rectified, ref_step_size = radam_scalars(t, beta1, beta2, 5.0)
        assert float(rectified.asnumpy()) == float(ref_rectified), t
        np.testing.assert_allclose(float(step_size.asnumpy()), ref_step_size, rtol=5e-6, err_msg=str(t))


def test_ranger_matches_reference_every_step(ms_mode, data):
    built, start, grads = data
    net, opt, step = make_step(built, RANGER)
    assert isinstance(opt, Ranger)
    set_values(net, start)  # after construction: the slow copy must be of these
    history, _ = ranger_run(start, grads, LR)
    for t, g in enumerate(grads):
        run_steps(step, [g])
        assert_matches(net, history[t], f"{ms_mode} step {t + 1}")
    assert int(opt.global_step.asnumpy()[0]) == STEPS


def test_ranger_options_reach_the_update(data):
    """Other k, alpha, eps, beta1, threshold and no centralisation (GRAPH_MODE)."""
    built, _, grads = data
    cfg = OptimConfig(kind="ranger", lr=0.02, beta1=0.9, beta2=0.99, ranger_eps=1e-3, lookahead_k=4,
                      lookahead_alpha=0.3, rectify_threshold=4.5, gradient_centralization=False)
    net, _, step = make_step(built, cfg)
    run_steps(step, grads[:9])
    history, _ = ranger_run(built, grads[:9], 0.02, beta1=0.9, beta2=0.99, eps=1e-3, k=4, alpha=0.3,
                            threshold=4.5, gradient_centralization=False)
    assert_matches(net, history[-1], "options")


def test_checkpoint_round_trip_continues_the_run(data):
    """State after 7 steps -> named_arrays -> fill_cell into a fresh, already compiled optimizer;
    6 more steps equal the uninterrupted reference run (GRAPH_MODE)."""
    built, start, grads = data
    history, state = ranger_run(built, grads[:RESUME_AT], LR)
    net_a, opt_a, step_a = make_step(built, RANGER)
    run_steps(step_a, grads[:RESUME_AT])
    arrays = named_arrays({"optim": opt_a})
    names = [f"optim/{prefix}{n}" for prefix in ("", "exp_avg.", "exp_avg_sq.", "slow.") for n in SHAPES]
    assert sorted(arrays) == sorted(names + ["optim/global_step", "optim/learning_rate"])
    for key in ("exp_avg", "exp_avg_sq", "slow"):
        for n, ref in zip(SHAPES, state[key]):
            np.testing.assert_allclose(arrays[f"optim/{key}.{n}"], ref.numpy(), rtol=RTOL, atol=ATOL,
                                       err_msg=f"{key}.{n}")

    net_b, opt_b, step_b = make_step(start, RANGER)
    run_steps(step_b, grads[:1])  # compiled and moved on before the restore
    fill_cell(opt_b, arrays, "round trip", prefix="optim/")
    run_steps(step_b, grads[RESUME_AT:])
    full, _ = ranger_run(built, grads, LR)
    assert int(opt_b.global_step.asnumpy()[0]) == STEPS
    assert_matches(net_b, full[-1], "resumed")


def test_adam_is_the_default_and_builds_nn_adam():
    assert OptimConfig().kind == "adam"
    net = Params([np.full(s, 0.3, np.float32) for s in SHAPES.values()])
    opt = build_optimizer(net, OptimConfig(lr=3e-4, beta1=0.8, beta2=0.99))
    assert type(opt) is nn.Adam
    assert [p.name for p in opt.parameters] == list(SHAPES)
    np.testing.assert_allclose(opt.learning_rate.asnumpy(), 3e-4, rtol=1e-6)
    np.testing.assert_allclose([opt.beta1.asnumpy(), opt.beta2.asnumpy()], [0.8, 0.99], rtol=1e-6)


def test_adam_with_beta1_zero_is_torch_adam(data):
    """JoJoGAN's betas (0, 0.99): nn.Adam refuses beta1 = 0; build_optimizer's stand-in must give
    torch.optim.Adam(betas=(0, 0.99))'s parameters after every step (float64 reference)."""
    import torch

    _built, start, _ = data
    # gradients away from 0: nn.Adam adds eps to sqrt(v) before the bias correction, torch after,
    # which shows for |g| near eps whatever beta1 is (not what this test is about)
    rng = np.random.default_rng(11)
    grads = [[_draw(rng, s, 0.1, 1.0) for s in SHAPES.values()] for _ in range(4)]
    net, _opt, step = make_step(start, OptimConfig(lr=LR, beta1=0.0, beta2=0.99))
    ref = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in start]
    ref_opt = torch.optim.Adam(ref, lr=LR, betas=(0.0, 0.99), eps=1e-8)
    for t, g in enumerate(grads):
        run_steps(step, [g])
        for p, gi in zip(ref, g):
            p.grad = torch.tensor(gi, dtype=torch.float64)
        ref_opt.step()
        assert_matches(net, [p.detach() for p in ref], f"step {t + 1}")


@pytest.mark.parametrize("bad", [
    {"kind": "sgd"},
    {"kind": "ranger", "lookahead_k": 0},
    {"kind": "ranger", "lookahead_alpha": 0.0},
    {"kind": "ranger", "lookahead_alpha": 1.5},
    {"kind": "ranger", "ranger_eps": 0.0},
    {"kind": "ranger", "rectify_threshold": 3.5},     # sqrt of a negative number in the rectification
    {"kind": "ranger", "beta2": 0.5},                 # rho_inf = 3: never rectified
    {"kind": "ranger", "gradient_centralization": "yes"},
])
def test_config_refuses_bad_values(bad):
    with pytest.raises(ConfigError):
        from_dict(OptimConfig, bad)


def test_config_accepts_the_authors_settings():
    cfg = from_dict(OptimConfig, {"kind": "ranger", "beta1": 0.95})
    assert (cfg.lookahead_k, cfg.lookahead_alpha, cfg.rectify_threshold, cfg.ranger_eps) == (6, 0.5, 5.0, 1e-5)
