"""Mixed precision (run.precision, modify_ms/train/precision.py) on tiny stage-1 trainers, GRAPH_MODE.

One fp32 and one fp16 trainer per module (one tiny phase: L2 + LPIPS + ID, no adversarial term:
the discriminator's fp16 graphs would double the compilation time; docs/precision.md has the
measured run with them). Checks: fp16 trains with losses within 1e-2 (relative) of fp32 but not equal
to them (the casts are really there); an overflow is skipped (weights, Adam moments and step
counters bit for bit), counted and halves the scale, and the next finite step updates; the loss
scale is in the run checkpoint and comes back on resume; fp32 steps have no scaler and no casts;
unscaling is exact enough that one SGD step equals float32's; bf16 is refused on the CPU in one line.
"""
import numpy as np
import pytest
import mindspore as ms
from mindspore import nn, ops

from modify_ms.config import ConfigError
from modify_ms.train.common import ResumePoint, host_record
from modify_ms.train.precision import DynamicLossScale, Precision, keep_float32
from modify_ms.train.stage1 import Stage1Trainer
from modify_ms.train.steps import CriticLoss

from test_modify_train import tiny_stage1_config

PHASE = "phases=[{steps: 8, weights: {lpips: 0.8, l2: 0.8, id: 1.0}, train: [encoder, decoder]}]"
SMALL = [PHASE]
STEPS = 3
TERMS = ("loss", "l2", "lpips", "id")
# fp16 vs fp32 over the first STEPS steps (measured: at most 1.9e-3 relative, docs/precision.md)
REL_TOL = 1e-2


def _batches(cfg):
    from modify_ms.data.dataset import build_dataset

    pipeline = build_dataset(cfg.data, log=lambda _m: None)
    return [pipeline.arrays(b) for b in pipeline.dataset.create_tuple_iterator(output_numpy=True, num_epochs=1)]


def _trainer(tmp_path_factory, precision):
    run_dir = str(tmp_path_factory.mktemp(precision))
    cfg = tiny_stage1_config(run_dir, SMALL + [f"run.precision={precision}"])
    trainer = Stage1Trainer(cfg, run_dir, log=lambda _m: None)
    batches = _batches(cfg)
    records = [host_record(trainer.train_step(*batches[i % len(batches)])) for i in range(STEPS)]
    return dict(trainer=trainer, batches=batches, records=records)


@pytest.fixture(scope="module")
def fp32(tmp_path_factory):
    return _trainer(tmp_path_factory, "fp32")


@pytest.fixture(scope="module")
def fp16(tmp_path_factory):
    return _trainer(tmp_path_factory, "fp16")


def _state(trainer):
    """Every trained value of the generator side: E and D weights, their Adam moments, step
    counters and beta powers (BatchNorm running statistics aside: the forward moves them)."""
    cells = {"encoder": trainer.nets.encoder, "decoder": trainer.nets.decoder,
             "optim.encoder": trainer.optimizers["encoder"], "optim.decoder": trainer.optimizers["decoder"]}
    return {f"{g}/{n}": p.asnumpy().copy() for g, cell in cells.items() for n, p in cell.parameters_and_names()
            if not n.endswith(("moving_mean", "moving_variance"))}


def test_fp16_losses_track_fp32(fp32, fp16):
    for a, b in zip(fp32["records"], fp16["records"]):
        for key in TERMS:
            assert b[key] == pytest.approx(a[key], rel=REL_TOL, abs=1e-4), (a["step"], key)
    diffs = [abs(b[k] - a[k]) for a, b in zip(fp32["records"], fp16["records"]) for k in TERMS]
    assert max(diffs) > 5e-5, "fp16 gave float32's losses: the step computes in float32"
    assert all(r["overflow"] in (0.0, 1.0) and r["loss_scale"] >= 1 for r in fp16["records"])


def test_fp16_keeps_master_weights_and_losses_float32(fp16):
    trainer = fp16["trainer"]
    assert all(p.dtype == ms.float32 for p in trainer.nets.get_parameters())
    g_step, d_step = trainer.phase_cells(0)
    assert g_step.scaler is trainer.precision.scales["generator"] and d_step is None
    assert hasattr(g_step.loss_cell, "amp_strategy")  # amp.auto_mixed_precision(..., "auto")
    # the cells that must compute in float32 carry the flag the amp strategy honours
    flagged = [c for _, c in trainer.nets.cells_and_names() if c.get_flags().get("fp32")]
    names = {type(c).__name__ for c in flagged}
    assert {"PixelNorm", "EqualLinear", "BatchNorm2d"} <= names, names
    assert trainer.loss_nets.lpips.get_flags().get("fp32") and trainer.loss_nets.identity.get_flags().get("fp32")
    assert not trainer.nets.decoder.get_flags().get("fp32") and not trainer.nets.discriminator.get_flags().get("fp32")


def test_a_gradient_penalty_keeps_the_critic_step_float32(fp16):
    trainer = fp16["trainer"]
    step = trainer.precision.critic_step(CriticLoss(trainer.nets, "wgan", 10.0),
                                         [(trainer.optimizers["discriminator"],
                                           trainer.nets.discriminator.trainable_params())])
    assert step.scaler is None and not hasattr(step.loss_cell, "amp_strategy")


def test_an_overflow_is_skipped_counted_and_halves_the_scale(fp16):
    trainer = fp16["trainer"]
    scaler = trainer.precision.scales["generator"]
    y, y_real = fp16["batches"][0]
    before = _state(trainer)
    count = int(scaler.overflows.asnumpy())
    # a scale whose scaled gradients overflow float16 (max 65504) in the backward pass
    scaler.scale.assign_value(ms.Tensor(2.0 ** 40, ms.float32))
    raw = trainer.train_step(y, y_real)
    assert raw["loss"].dtype == ms.float32 and raw["lpips"].dtype == ms.float32  # losses stay float32
    record = host_record(raw)
    assert record["overflow"] == 1.0 and record["overflows"] == count + 1
    assert float(scaler.scale.asnumpy()) == 2.0 ** 39 == record["loss_scale"]
    assert int(scaler.overflows.asnumpy()) == count + 1 and int(scaler.good_steps.asnumpy()) == 0
    after = _state(trainer)
    assert [n for n in before if not np.array_equal(before[n], after[n])] == []
    scaler.scale.assign_value(ms.Tensor(2.0 ** 8, ms.float32))  # the next step at a scale that fits
    record = host_record(trainer.train_step(y, y_real))
    assert record["overflow"] == 0.0 and record["overflows"] == count + 1
    moved = _state(trainer)
    assert any(not np.array_equal(after[n], moved[n]) for n in after if n.startswith("encoder/"))
    assert any(not np.array_equal(after[n], moved[n]) for n in after if n.startswith("optim.encoder/"))


def test_the_loss_scale_is_checkpointed_and_resumed(fp16):
    trainer = fp16["trainer"]
    scaler = trainer.precision.scales["generator"]
    scaler.scale.assign_value(ms.Tensor(1024.0, ms.float32))
    path = trainer.save()
    point = ResumePoint(path)
    assert point.arrays["loss_scale.generator/scale"] == 1024.0
    assert {"loss_scale.generator/overflows", "loss_scale.discriminator/good_steps"} <= set(point.arrays)
    saved_overflows = int(scaler.overflows.asnumpy())
    scaler.scale.assign_value(ms.Tensor(2.0, ms.float32))
    scaler.overflows.assign_value(ms.Tensor(0, ms.int32))
    trainer.resume(point)
    assert float(scaler.scale.asnumpy()) == 1024.0 and int(scaler.overflows.asnumpy()) == saved_overflows


def test_fp32_steps_have_no_scaler_and_no_casts(fp32):
    trainer = fp32["trainer"]
    assert trainer.precision.groups() == {} and not any(k.startswith("loss_scale") for k in trainer.groups())
    g_step, _ = trainer.phase_cells(0)
    assert g_step.scaler is None and g_step.grad_fn is not None
    assert not hasattr(g_step.loss_cell, "amp_strategy")  # amp.auto_mixed_precision was never applied
    assert not any(c.get_flags().get("fp32") or c.get_flags().get("fp16") for _, c in trainer.nets.cells_and_names())
    assert not any(k.startswith(("overflow", "d_overflow", "loss_scale")) for k in fp32["records"][0])


class _ConvLoss(nn.Cell):
    def __init__(self):
        super().__init__()
        self.weight = ms.Parameter(ms.Tensor(np.random.default_rng(0).normal(size=(4, 3, 3, 3)).astype(np.float32)),
                                   name="toy.weight")

    def construct(self, x):
        out = ops.conv2d(x, self.weight, pad_mode="pad", padding=1)
        return (out * out).mean().astype(ms.float32), out


class _Run:
    loss_scale, loss_scale_window, device = 2.0 ** 12, 2, "CPU"

    def __init__(self, precision):
        self.precision = precision


def _one_sgd_step(precision):
    loss = _ConvLoss()
    start = loss.weight.asnumpy().copy()
    opt = nn.SGD([loss.weight], learning_rate=0.1)
    prec = Precision(_Run(precision))
    step = prec.update_step(loss, [(opt, [loss.weight])])
    x = ms.Tensor(np.random.default_rng(1).normal(size=(2, 3, 8, 8)).astype(np.float32))
    out = step(x)
    return loss.weight.asnumpy() - start, out, prec


def test_one_loss_scaled_sgd_step_equals_float32s():
    """SGD (unlike Adam) is not scale-invariant: a scale left on the gradients moves 4096x further."""
    delta32, (_, low32), _ = _one_sgd_step("fp32")
    delta16, ((_, low16), (overflow, _, scale)), _ = _one_sgd_step("fp16")
    assert low32.dtype == ms.float32 and low16.dtype == ms.float16  # fp16: the conv really ran in float16
    assert not bool(overflow.asnumpy()) and float(scale.asnumpy()) == 2.0 ** 12
    np.testing.assert_allclose(delta16, delta32, rtol=2e-2, atol=1e-5)


class _Adjust(nn.Cell):
    def __init__(self, scaler):
        super().__init__()
        self.scaler = scaler

    def construct(self, finite):
        return self.scaler.adjust(finite)


def test_the_scale_doubles_after_a_window_of_finite_steps_and_halves_on_overflow():
    scaler = DynamicLossScale(8.0, 2, "toy")
    adjust = _Adjust(scaler)
    seen = [float(adjust(ms.Tensor(f))[2].asnumpy()) for f in (True, True, True, False, False, False, False)]
    assert seen == [8.0, 16.0, 16.0, 8.0, 4.0, 2.0, 1.0]  # never below 1
    assert int(scaler.overflows.asnumpy()) == 4 and int(scaler.good_steps.asnumpy()) == 0


def test_keep_float32_marks_modulation_norms_and_loss_networks(fp16):
    from modify_ms.nn.modulated import ModulatedConv2d

    convs = [c for _, c in fp16["trainer"].nets.decoder.cells_and_names() if isinstance(c, ModulatedConv2d)]
    assert convs and all(c.modulation.get_flags().get("fp32") and not c.get_flags().get("fp32") for c in convs)
    assert keep_float32(nn.SequentialCell([nn.Dense(2, 2)])) == 0


def test_bf16_is_refused_on_the_cpu_in_one_line(tmp_path):
    with pytest.raises((ConfigError, ValueError)) as info:
        tiny_stage1_config(str(tmp_path), ["run.precision=bf16"])
    message = str(info.value)
    assert "bf16" in message and "GPU or Ascend" in message and "\n" not in message
    with pytest.raises(ValueError, match="GPU or Ascend"):
        Precision(_Run("bf16"))


def test_stage2_reset_reaches_the_optimizer_state_of_a_loss_scaled_step():
    """Stage2Model.reset (test-time mode: every photo starts again from stage 1) on an fp16 step:
    the Adam state lives inside the step's overflow branch, which Parameter.assign_value does not
    reach in MindSpore 2.10 (the replay would continue from the old moments and step counter)."""
    from types import SimpleNamespace

    from modify_ms.train.stage2 import Stage2Model

    loss = _ConvLoss()
    opt = nn.Adam([loss.weight], learning_rate=0.1)
    prec = Precision(_Run("fp16"))
    step = prec.update_step(loss, [(opt, [loss.weight])])
    groups = {"net": loss, "optim": opt, **prec.groups()}
    model = SimpleNamespace(groups=lambda: groups, updates=0,
                            _initial={id(p): p.asnumpy().copy() for c in groups.values() for p in c.get_parameters()})
    x = ms.Tensor(np.random.default_rng(1).normal(size=(2, 3, 8, 8)).astype(np.float32))
    first = [float(step(x)[0][0].asnumpy()) for _ in range(3)]
    Stage2Model.reset(model)
    assert [float(step(x)[0][0].asnumpy()) for _ in range(3)] == first
