"""Trainer-level checks that fail on the defects a MODIFY trainer is most likely to have.

One tiny stage-1 trainer (64 px, narrow channels, the TINY sizes of test_modify_train; GRAPH_MODE,
as a real run) and one stage-2 model built from its run are shared by the module, so each step
cell compiles once. Stage 1 runs two phases: phase 0 {l2, lpips, id, swap} trains E only, phase 1
{swap} (the same swap weight) trains D and M only. The swap term sends gradient into E, D and M
(y_z = D({w_l, M(z)}) is re-encoded), so phase 1 shows that D and M do receive gradient from a
term of phase 0's objective, and phase 0 must still leave them bit-identical.

* (a) Training through ``Stage1Trainer.train_step`` moves every BatchNorm running statistic of E
  (training mode, as pSp / the authors' coach) while the loss networks, ArcFace (whose BatchNorm
  statistics are asserted to exist) and LPIPS, stay bit-identical in every parameter although
  both ran. This extends test_modify_train's test_stage1_trains_the_encoder_in_training_mode,
  which checks ArcFace over a whole schedule but never LPIPS, nor per phase.
* (b) Stage 2's discriminator "real" is the teacher render D(E(x)) (paper 2.2, E "fixed to
  provide pseudo ground truth in the adversarial loss"), not x and not the student's D(E'(x)):
  a spy takes the discriminator step's place and its inputs are compared with ``teacher_render``.
  Stage 2 runs in PYNATIVE (run.mode=pynative): what is passed as "real" does not depend on the
  mode, and two updates op by op cost far less than compiling the step (GRAPH_MODE is restored).
* (c) A phase trains exactly its ``train`` networks (a trainer that ignored ``phase.train``
  would update D and M in phase 0, E in phase 1).

Tolerance: equality checks are bit-exact (``np.array_equal``); the teacher-render comparison is
rtol/atol 1e-5 (the same render run twice, float32 CPU kernels).
"""
import os

import numpy as np
import pytest
import mindspore as ms

from modify_ms.config import load_config
from modify_ms.train.config import Stage1Config, Stage2Config
from modify_ms.train.common import save_loss_nets, write_resolved_config
from modify_ms.train.stage1 import Stage1Trainer
from modify_ms.train import stage2
from test_modify_train import REPO, TINY

BATCH, SIZE, STEPS = 2, 64, 2
DEFECT_PHASES = (f"phases=[{{steps: {STEPS}, weights: {{l2: 0.8, lpips: 0.8, id: 1.0, swap: 1.0}}, train: [encoder]}},"
                 f" {{steps: {STEPS}, weights: {{swap: 1.0}}, train: [decoder, remap]}}]")


# Parameters are keyed by their path in the cell (parameters_and_names): Parameter.name can
# change when a step cell that holds them is built.
def snapshot(cell):
    """Every parameter (trainable or not: BatchNorm statistics included) by name."""
    return {n: p.asnumpy().copy() for n, p in cell.parameters_and_names()}


def trainable(cell):
    return {n: p.asnumpy().copy() for n, p in cell.parameters_and_names() if p.requires_grad}


def statistics(values):
    return {n: v for n, v in values.items() if n.endswith(("moving_mean", "moving_variance"))}


def moved(before, after):
    return sorted(n for n in before if not np.array_equal(before[n], after[n]))


def on_host(record):
    """A step record with device scalars (the trainer may return losses still on the device) as floats."""
    return {k: float(v.asnumpy()) if isinstance(v, ms.Tensor) else v for k, v in record.items()}


def images(rng, n=BATCH):
    return rng.uniform(-1, 1, (n, 3, SIZE, SIZE)).astype(np.float32)


def stage1_networks(trainer):
    nets = trainer.nets
    return {"encoder": nets.encoder, "decoder": nets.decoder, "remap": nets.remap_net,
            "discriminator": nets.discriminator, "arcface": trainer.loss_nets.identity,
            "lpips": trainer.loss_nets.lpips}


@pytest.fixture(scope="module")
def stage1(tmp_path_factory):
    """The trainer after both phases, with full snapshots before phase 0, after it, after phase 1;
    its run folder is a valid stage-1 run (config, loss networks, checkpoint) for stage 2."""
    run_dir = str(tmp_path_factory.mktemp("defects_stage1"))
    overrides = [s for s in TINY if not s.startswith("phases=")] + [DEFECT_PHASES, f"run.out_dir={run_dir}"]
    cfg = load_config(os.path.join(REPO, "yaml", "quickstart.yaml"), Stage1Config, overrides)
    trainer = Stage1Trainer(cfg, run_dir, log=lambda _m: None)
    rng = np.random.default_rng(21)
    nets = stage1_networks(trainer)
    snaps, records = [{k: snapshot(v) for k, v in nets.items()}], []
    for _phase in range(2):
        for _ in range(STEPS):
            records.append(on_host(trainer.train_step(images(rng), images(rng))))
        snaps.append({k: snapshot(v) for k, v in nets.items()})
    write_resolved_config(cfg, run_dir)
    save_loss_nets(trainer.loss_nets, run_dir)
    trainer.save()
    return dict(trainer=trainer, snaps=snaps, records=records, run_dir=run_dir)


def trainable_names(stage1, key):
    return {n for n, p in stage1_networks(stage1["trainer"])[key].parameters_and_names() if p.requires_grad}


# ----------------------------------------------------------------------------- (a)
def test_stage1_moves_encoder_statistics_and_no_loss_network(stage1):
    """Phase 0 (E trained) moves every running statistic of E; ArcFace and LPIPS keep every
    parameter bit-identical, though each ran (nonzero loss terms) in every step of phase 0."""
    before, after_phase0, end = stage1["snaps"]
    assert [r["phase"] for r in stage1["records"]] == [0] * STEPS + [1] * STEPS
    for record in stage1["records"][:STEPS]:
        assert record["lpips"] > 0 and record["id"] > 0 and record["swap"] > 0, record
    encoder_stats = statistics(before["encoder"])
    assert encoder_stats, "E has no BatchNorm running statistics"
    assert moved(encoder_stats, statistics(after_phase0["encoder"])) == sorted(encoder_stats)
    assert statistics(before["arcface"]), "ArcFace has no BatchNorm statistics: the check below would be empty"
    for key in ("arcface", "lpips"):
        assert before[key], key
        assert not moved(before[key], end[key]), f"{key} changed during stage-1 training"


# ----------------------------------------------------------------------------- (c)
def test_phase_trains_exactly_its_networks(stage1):
    """Phase 0 (train [encoder]) changes E's weights and leaves D and M bit-identical; phase 1
    (train [decoder, remap], the swap term alone) shows that D and M do get gradient from that
    term of phase 0, and leaves E's weights bit-identical (its running statistics may move: E
    runs in training mode). No adversarial weight, so the discriminator never changes."""
    before, after_phase0, end = stage1["snaps"]
    for phase, (start, stop), trained in ((0, (before, after_phase0), ("encoder",)),
                                          (1, (after_phase0, end), ("decoder", "remap"))):
        for key in ("encoder", "decoder", "remap"):
            names = trainable_names(stage1, key)
            changed = moved({n: start[key][n] for n in names}, stop[key])
            if key in trained:
                assert changed, f"phase {phase}: {key} is in train but did not change"
            else:
                assert not changed, f"phase {phase}: {key} is not in train but changed: {changed[:3]}"
        assert not moved(start["discriminator"], stop["discriminator"]), f"phase {phase}: discriminator"


# ----------------------------------------------------------------------------- (b)
class StepSpy:
    """Stands in for the discriminator step: records the host values of its inputs and returns
    zeros (d_loss, mean real logit) without running it, so the gradient-penalty graph (double
    backward, the dearest compile here) is never built: only its inputs are under test."""

    def __init__(self):
        self.calls = []

    def __call__(self, *inputs):
        self.calls.append([tuple(v.asnumpy() for v in a) if isinstance(a, (tuple, list)) else a.asnumpy()
                           for a in inputs])
        zero = ms.Tensor(0.0, ms.float32)
        return zero, zero


@pytest.fixture(scope="module")
def stage2_spied(stage1, tmp_path_factory):
    """Stage 2 from the stage-1 run in PYNATIVE, fixed generator noise (run.noise=const) so a
    render can be repeated, and a spy for the discriminator step. LPIPS and ID weights 0: E''s
    objective is not under test; adv stays > 0 (it decides whether a discriminator step exists)."""
    out = str(tmp_path_factory.mktemp("defects_stage2"))
    cfg = load_config(os.path.join(REPO, "yaml", "ffhq_stylize.yaml"), Stage2Config,
                      [f"stage1={stage1['run_dir']}", "run.compile_cache=false", "run.noise=const",
                       "optim.lr=0.001", "weights.lpips=0", "weights.id=0", "run.mode=pynative"])
    try:
        model = stage2.Stage2Model(cfg, out, log=lambda _m: None)  # sets the process's mode
        assert model.d_step is not None, "stage 2 with adv > 0 must train the discriminator"
        model.d_step = StepSpy()
        yield model
    finally:
        ms.set_context(mode=ms.GRAPH_MODE)


def test_stage2_discriminator_real_is_the_teacher_render(stage2_spied):
    """Each update's discriminator "real" equals teacher_render(x) = D(E(x)) with the teacher E
    frozen: the same array in both updates although E' (and so D(E'(x))) changed in between,
    and far from x itself."""
    model = stage2_spied
    x = images(np.random.default_rng(22))
    model.reset(seed_key=7)
    student = trainable(model.student)
    spy = model.d_step
    spy.calls.clear()
    for _ in range(2):
        model.update(x)
    assert moved(student, trainable(model.student)), "E' did not train"
    teacher = model.teacher_render(ms.Tensor(x), model.noise(BATCH)).asnumpy()
    assert len(spy.calls) == 2
    for i, (real, fakes, _alpha) in enumerate(spy.calls):
        assert real.shape == x.shape
        np.testing.assert_allclose(real, teacher, rtol=1e-5, atol=1e-5, err_msg=f"update {i}: real != D(E(x))")
        assert np.abs(real - x).mean() > 0.05, f"update {i}: the real looks like x itself"
        assert len(fakes) == 1 and fakes[0].shape == x.shape
    # the fake of the second update is D(E'(x)) with E' already updated once: not the teacher's render
    assert np.abs(spy.calls[1][1][0] - teacher).max() > 1e-4
