"""Mixed precision of the training steps (run.precision: fp32 | fp16 | bf16), through mindspore.amp.

* fp32 (the default): nothing here touches a step; ``Precision.update_step`` builds exactly the
  UpdateStep a float32 run always had (no scaler, no casts).
* fp16 / bf16: the generator-side loss cell runs under ``amp.auto_mixed_precision(..., "auto")``:
  convolutions and matrix products in the low type, reductions MindSpore lists as unsafe (rsqrt,
  softplus, exp, log, norms, ...) in float32, everything else in the type of its inputs. The cells
  that must stay float32 are marked ``to_float(float32)`` (``keep_float32``), which the auto
  strategy honours: StyleGAN2's style modulation (so the demodulation that follows multiplies and
  sums float32 weights), PixelNorm, BatchNorm, the loss networks (LPIPS, ArcFace). Parameters
  stay float32 (master weights: casts happen at the use), and so do the loss values and gradients.
* fp16 only: dynamic loss scaling (``DynamicLossScale``): the objective is multiplied by the scale
  inside the differentiated function, the gradients are divided by it, and an update whose
  gradients are not all finite is skipped (the optimizers do not run: weights, moments and step
  counters stay as they were), counted and halves the scale; ``loss_scale_window`` finite steps in
  a row double it. The scale lives in Parameters, so run checkpoints carry it (``groups``).
* The discriminator's update stays float32 whenever it has a gradient penalty (``critic_step``):
  the penalty differentiates the critic with respect to its input inside the step, and MindSpore
  2.10 ignores a ``to_float(float32)`` on cells inside that inner gradient (the critic there runs
  in whatever precision the enclosing step gives it), while ``to_float`` on the penalty would reach
  the shared discriminator and make it float32 in every step. See docs/precision.md.
* The optimizers of a loss-scaled step run inside its overflow branch, and MindSpore 2.10 does not
  carry ``Parameter.assign_value`` of a value only that branch uses (the optimizer states) into the
  compiled step: write such state with ``ops.assign`` once the step has compiled (Stage2Model.reset).
* bf16 has no CPU kernels in MindSpore 2.10 (a bfloat16 MatMul fails kernel selection): the config
  refuses bf16 on the CPU (``check_precision``); on GPU/Ascend it needs no loss scale (float32's
  exponent range).
"""
import mindspore as ms
from mindspore import Parameter, Tensor, amp, nn, ops

from ..losses.identity import IdentityLoss
from ..losses.lpips import LPIPS
from ..nn.modulated import ModulatedConv2d
from ..nn.norm import CrossDeviceBatchNorm, PixelNorm
from .config import precision_error
from .steps import UpdateStep

LOW_TYPES = {"fp16": ms.float16, "bf16": ms.bfloat16}
# cells kept whole in float32 (normalisations, loss networks); ModulatedConv2d keeps its modulation
FLOAT32_CELLS = (LPIPS, IdentityLoss, PixelNorm, nn.BatchNorm1d, nn.BatchNorm2d, CrossDeviceBatchNorm)
SIDES = ("generator", "discriminator")
RECORD_PREFIX = {"generator": "", "discriminator": "d_"}


def check_precision(precision, device):
    """One-line ValueError for a precision the device cannot run (bf16 on the CPU), as the config's
    validation gives (a RunConfig built in code may skip it)."""
    if precision not in ("fp32",) + tuple(LOW_TYPES):
        raise ValueError(f"run.precision must be fp32, fp16 or bf16, got {precision!r}")
    if precision_error(precision, device):
        raise ValueError(precision_error(precision, device))


def keep_float32(cell, extra=()):
    """Mark the cells under ``cell`` that must compute in float32 (module doc); ``extra``: more
    cells to keep whole (a baseline's own loss network). Returns how many were marked."""
    marked = 0
    for _, sub in cell.cells_and_names():
        if isinstance(sub, FLOAT32_CELLS):
            sub.to_float(ms.float32)
            marked += 1
        elif isinstance(sub, ModulatedConv2d):
            sub.modulation.to_float(ms.float32)  # styles float32 -> the demodulation sums float32 weights
            marked += 1
    for sub in extra:
        sub.to_float(ms.float32)
        marked += 1
    return marked


def mixed_precision(loss_cell, dtype, keep=()):
    """``loss_cell`` (changed in place and returned) computing in ``dtype`` under amp's auto
    strategy, with the cells of ``keep_float32`` in float32."""
    keep_float32(loss_cell, keep)
    return amp.auto_mixed_precision(loss_cell, "auto", dtype)


class ScaledObjective(nn.Cell):
    """A loss cell's outputs with its objective times the loss scale in front:
    (objective * scale, objective, ...): value_and_grad differentiates the first only."""

    def __init__(self, loss_cell, scaler):
        super().__init__(auto_prefix=False)
        self.loss_cell, self.scaler = loss_cell, scaler

    def construct(self, *inputs):
        outputs = self.loss_cell(*inputs)
        return (outputs[0].astype(ms.float32) * self.scaler.scale,) + outputs


class DynamicLossScale(nn.Cell):
    """The loss scale of one update step, its count of finite steps in a row and the number of
    skipped (overflowed) steps, as Parameters (checkpointed with the run).

    ``adjust(finite)``: a finite step counts; ``window`` in a row double the scale (kept finite);
    an overflow halves it (never below 1), restarts the count and adds one to ``overflows``.
    Returns (overflow flag, overflows so far, the scale of the next step), fresh tensors."""

    def __init__(self, scale, window, name):
        super().__init__(auto_prefix=False)
        self.side, self.window = name, int(window)
        self.scale = Parameter(Tensor(float(scale), ms.float32), name=f"loss_scale.{name}.scale", requires_grad=False)
        self.good_steps = Parameter(Tensor(0, ms.int32), name=f"loss_scale.{name}.good_steps", requires_grad=False)
        self.overflows = Parameter(Tensor(0, ms.int32), name=f"loss_scale.{name}.overflows", requires_grad=False)

    def objective(self, loss_cell):
        return ScaledObjective(loss_cell, self)

    def finite(self, grads):
        """True when every gradient is finite (after the workers' reduction, so all agree)."""
        return amp.all_finite(grads)

    def unscale(self, grads):
        inverse = 1.0 / self.scale
        return tuple(g * inverse.astype(g.dtype) for g in grads)

    def adjust(self, finite):
        good = ops.select(finite, self.good_steps + 1, ops.zeros_like(self.good_steps))
        grow = good >= self.window
        doubled = self.scale * 2.0
        scale = ops.select(finite,
                           ops.select(grow & ops.isfinite(doubled), doubled, self.scale),
                           ops.maximum(self.scale / 2.0, ops.ones_like(self.scale)))
        good = ops.select(grow, ops.zeros_like(good), good)
        overflow = ops.logical_not(finite)
        overflows = self.overflows + overflow.astype(ms.int32)
        ops.assign(self.scale, scale)
        ops.assign(self.good_steps, good)
        ops.assign(self.overflows, overflows)
        return overflow, overflows, scale


class Precision:
    """The run's precision (RunConfig.precision, loss_scale, loss_scale_window): builds update
    steps and owns their loss scales (one per side, kept across phases and step cells)."""

    def __init__(self, run_cfg):
        check_precision(run_cfg.precision, run_cfg.device)
        self.name = run_cfg.precision
        self.dtype = LOW_TYPES.get(run_cfg.precision)
        self.scales = {}
        if run_cfg.precision == "fp16":
            self.scales = {side: DynamicLossScale(run_cfg.loss_scale, run_cfg.loss_scale_window, side)
                           for side in SIDES}

    @property
    def mixed(self):
        return self.dtype is not None

    def update_step(self, loss_cell, optimizers, side="generator", keep=()):
        """UpdateStep of ``loss_cell``: the plain float32 step, or mixed precision with this side's
        loss scale (fp16). ``keep``: more cells of the loss to keep in float32."""
        if not self.mixed:
            return UpdateStep(loss_cell, optimizers)
        return UpdateStep(mixed_precision(loss_cell, self.dtype, keep), optimizers, scaler=self.scales.get(side))

    def critic_step(self, critic_loss, optimizers):
        """The discriminator's UpdateStep: float32 when it has a gradient penalty (module doc)."""
        if critic_loss.gp_weight > 0:
            return UpdateStep(critic_loss, optimizers)
        return self.update_step(critic_loss, optimizers, "discriminator")

    def groups(self):
        """{'loss_scale.generator': cell, ...} for run checkpoints (empty in fp32 and bf16)."""
        return {f"loss_scale.{side}": cell for side, cell in self.scales.items()}


def step_outputs(step, result, record):
    """The loss cell's outputs from an UpdateStep's ``result``; a loss-scaled step's overflow flag,
    overflow count and next scale go into ``record`` (keys ``overflow``, ``overflows``,
    ``loss_scale``; ``d_``-prefixed for the discriminator), still on the device."""
    scaler = getattr(step, "scaler", None)  # (a test's stand-in for a step has none)
    if scaler is None:
        return result
    outputs, (overflow, overflows, scale) = result
    prefix = RECORD_PREFIX[scaler.side]
    record.update({prefix + "overflow": overflow, prefix + "overflows": overflows, prefix + "loss_scale": scale})
    return outputs
