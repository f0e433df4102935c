"""run.recompute (modify_ms.train.memory): recomputation changes memory, never results.

Two tiny stage-1 trainers from the same seed, recompute off and on, take the same two steps
of a phase with every term (E, D and M trained, y_r and y_z rendered, the discriminator
step on both fakes with its gradient penalty). Their losses and final weights (networks and
optimizer moments) must agree to float32 round-off: rtol 1e-5, atol 1e-6 (measured: the
losses agree to the last bit but one, 760 of 940 arrays differ by at most 1.1e-6 after two
steps: the recomputed graph sums some gradients in another order).
The marks are checked too: with recompute on every StyledConv / ToRGB / ResBlock of the
trainer's networks is marked and no IR-SE unit is; with it off nothing is. The memory
itself is measured (docs/memory.md), never asserted.
"""
import numpy as np
import pytest

from modify_ms.models.irse import BottleneckIR
from modify_ms.models.stylegan2 import ResBlock, StyledConv, ToRGB
from modify_ms.train.memory import apply_recompute, is_recomputed, recomputed_blocks
from modify_ms.train.stage1 import Stage1Trainer
from modify_ms.train.steps import STAGE1_TERMS

from test_modify_train import snapshot, tiny_stage1_config

STEPS = 2
BATCH = 2
ALL_TERMS = ("phases=[{steps: 4, weights: {lpips: 0.8, adv_r: 0.1, l2: 0.8, id: 1.0, swap: 1.0, adv_z: 0.1},"
             " train: [encoder, decoder, remap]}]")
RTOL, ATOL = 1e-5, 1e-6


def train(tmp_path, recompute):
    """(trainer, [host records]) after STEPS steps on seeded images."""
    run_dir = str(tmp_path / f"recompute_{recompute}")
    cfg = tiny_stage1_config(run_dir, [ALL_TERMS, f"data.batch_size={BATCH}", f"run.recompute={recompute}"])
    trainer = Stage1Trainer(cfg, run_dir, log=lambda _m: None)
    rng = np.random.default_rng(7)
    size = cfg.model.loss_size
    records = []
    for _ in range(STEPS):
        y, y_real = (rng.uniform(-1, 1, (BATCH, 3, size, size)).astype(np.float32) for _ in range(2))
        record = trainer.train_step(y, y_real)
        records.append({k: float(v.asnumpy()) for k, v in record.items() if k in STAGE1_TERMS + ("loss", "d_loss")})
    return trainer, records


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("recompute")
    return {flag: train(tmp, flag) for flag in (False, True)}


def blocks_of(nets, kinds):
    return [(n, c) for n, c in nets.cells_and_names() if isinstance(c, kinds)]


def test_blocks_are_marked_only_when_on(runs):
    on, off = runs[True][0].nets, runs[False][0].nets
    blocks = blocks_of(on, (StyledConv, ToRGB, ResBlock))
    # the tiny 64 px generator: conv1 + 2 StyledConv per resolution 8..64, to_rgb1 + 4 ToRGB; Dis: 4 ResBlocks
    assert len(blocks) == 1 + 8 + 1 + 4 + 4
    assert [n for n, c in blocks if not is_recomputed(c)] == []
    assert [n for n, c in blocks_of(on, BottleneckIR) if is_recomputed(c)] == []  # BatchNorm side effects
    assert [n for n, c in blocks_of(off, (StyledConv, ToRGB, ResBlock)) if is_recomputed(c)] == []
    assert len(recomputed_blocks(on)) == len(blocks)
    assert apply_recompute(on, True) == 0  # marked once: a second call marks nothing again


def test_same_losses_and_weights(runs):
    (t_off, rec_off), (t_on, rec_on) = runs[False], runs[True]
    for a, b in zip(rec_off, rec_on):
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_allclose(b[k], a[k], rtol=RTOL, atol=ATOL, err_msg=k)
    assert rec_off[0]["d_loss"] != 0.0 and rec_off[0]["swap"] != 0.0  # both steps and y_z really ran
    for group, cell in t_off.groups().items():
        before = snapshot(cell)
        after = snapshot(t_on.groups()[group])
        assert before.keys() == after.keys(), group
        for name in before:
            np.testing.assert_allclose(after[name], before[name], rtol=RTOL, atol=ATOL, err_msg=f"{group} {name}")
