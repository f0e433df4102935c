"""Data parallel stage 1 under msrun, 2 CPU workers over loopback (train.distributed).

The proof of gradient averaging, sharding and cross-device BatchNorm: 2 workers at batch 2
train as one process at batch 4 over the same samples. Every loss of every step and every
array of the final checkpoint (networks, BatchNorm statistics, Adam moments) agree within
float32 tolerance. The distributed run is stopped after 2 steps and resumed through msrun,
so the same comparison proves its resume; its run folder holds each output once (rank 0's),
and resuming it without msrun is one line naming the worker count.

The minibatch stddev groups (2) equal the per-device batch: worker r's batch holds global
positions r, r + 2 of a step, the same pairs that one process's groups of 2 over a batch of
4 form (positions i and i + 2).
"""
import json
import os
import subprocess
import sys

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn

from test_modify_train import REPO, TINY
from modify_ms.commands.bench_distributed import free_port
from tiny_run import overrides, run_tool

STEPS = 3
DP_STAGE1 = [s for s in TINY if not s.startswith(("phases=", "data.max_images", "run.compile_cache"))] + [
    f"phases=[{{steps: {STEPS}, weights: {{lpips: 0.8, adv_r: 0.1, l2: 0.8, id: 1.0, swap: 1.0, adv_z: 0.1}},"
    " train: [encoder, decoder, remap]}]",
    "data.max_images=8", "model.discriminator.stddev_group=2", "run.ckpt_every=2", "run.sample_every=2",
    "run.log_every=1",
    # Ranger's first steps are momentum SGD (RAdam's rectification starts later): the weights are a
    # smooth function of the gradients. Adam's first steps are lr x sign(g), which turns the float32
    # noise of a near-zero gradient entry into a +-lr difference and would hide what is compared.
    "optim.kind=ranger",
    # the quickstart's M width and lr when ARRAY_TOL was measured (its later xi 2, lr 1e-3 leave the
    # encoder's upper style heads near-zero gradients, whose float noise the relative check amplifies)
    # (and M's lr multiplier 1: the quickstart's 30 came later too)
    "model.remap.xi=4", "model.remap.lr_mul=1.0", "optim.lr=0.003"]
LOSS_KEYS = ("loss", "l2", "lpips", "id", "adv_r", "adv_z", "swap", "d_loss", "d_real")
# float32: the two runs sum the same terms in another order (the two halves of the batch, then
# the AllReduce), and CPU kernels are not bit-reproducible run to run
LOSS_RTOL, LOSS_ATOL = 1e-4, 1e-6
# of each array's scale (its largest magnitude at step 2 or 3: a value crossing zero keeps its
# scale): float32 sums of the batch in another order, carried through three updates; the largest
# measured is 1e-3 (Adam's second moment of a noise strength). Without the gradient averaging Adam's
# moments, which are running gradient means, differ by their own size.
ARRAY_TOL = 3e-3


def msrun(args, log_dir):
    cmd = ["msrun", "--worker_num=2", "--local_worker_num=2", f"--master_port={free_port()}",
           f"--log_dir={log_dir}", "--join=True"] + args
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, PYTHONUNBUFFERED="1"))
    logs = {name: open(os.path.join(log_dir, name), encoding="utf-8", errors="replace").read()
            for name in sorted(os.listdir(log_dir)) if name.startswith("worker_")}
    assert proc.returncode == 0, (proc.stdout[-2000:], {k: v[-3000:] for k, v in logs.items()})
    return logs


def losses(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as fh:
        lines = [json.loads(l) for l in fh if l.strip()]
    return [l for l in lines if "loss" in l], lines


def final_arrays(run_dir):
    from modify_ms.utils.checkpoint import read_arrays
    from modify_ms.train.common import RunCheckpoints

    return read_arrays(RunCheckpoints(run_dir).latest())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("dp")
    dp_dir, single_dir = str(root / "dp"), str(root / "single")
    base = ["tools/train_modify.py", "--config", "yaml/quickstart.yaml"]
    logs_first = msrun(base + overrides(DP_STAGE1 + ["data.batch_size=2", f"run.out_dir={dp_dir}"])
                       + ["--max-steps", "2"], str(root / "logs1"))
    logs_resumed = msrun(["tools/train_modify.py", "--resume", dp_dir], str(root / "logs2"))
    run_tool(base + overrides(DP_STAGE1 + ["data.batch_size=4", f"run.out_dir={single_dir}",
                                           "run.compile_cache=false"]))
    return dict(dp=dp_dir, single=single_dir, logs_first=logs_first, logs_resumed=logs_resumed)


def test_two_workers_train_as_one_process_at_twice_the_batch(runs):
    dp, _ = losses(runs["dp"])
    single, _ = losses(runs["single"])
    assert [l["step"] for l in dp] == [l["step"] for l in single] == list(range(1, STEPS + 1))
    for a, b in zip(dp, single):
        for key in LOSS_KEYS:
            np.testing.assert_allclose(a[key], b[key], rtol=LOSS_RTOL, atol=LOSS_ATOL, err_msg=f"step {a['step']} {key}")
    from modify_ms.utils.checkpoint import read_arrays

    dp_arrays, dp_meta = final_arrays(runs["dp"])
    single_arrays, single_meta = final_arrays(runs["single"])
    assert dp_meta["step"] == single_meta["step"] == STEPS
    assert dp_meta["world_size"] == 2 and single_meta["world_size"] == 1
    assert sorted(dp_arrays) == sorted(single_arrays)
    moving = [k for k in dp_arrays if "moving_" in k]
    assert moving, "the encoder's BatchNorm statistics are part of the comparison"
    earlier, _ = read_arrays(os.path.join(runs["single"], "checkpoints", "step_00000002.ckpt"))
    errors = {}
    for key, value in single_arrays.items():
        scale = max(np.abs(value).max(), np.abs(earlier[key]).max())
        error = np.abs(dp_arrays[key] - value).max()
        errors[key] = float(error / scale) if scale > 0 else float(error > 0)
    worst = sorted(errors.items(), key=lambda kv: -kv[1])[:5]
    assert worst[0][1] <= ARRAY_TOL, worst


def test_distributed_run_writes_each_output_once_from_rank_0(runs):
    run_dir = runs["dp"]
    _, lines = losses(run_dir)
    steps = [l["step"] for l in lines if "loss" in l]
    assert steps == sorted(set(steps)), "every step logged once, resumed without duplicates"
    assert [l["step"] for l in lines if "specificity" in l] == [2, 3]
    assert sorted(os.listdir(os.path.join(run_dir, "samples"))) == ["step_00000002.png", "step_00000003.png"]
    ckpts = sorted(f for f in os.listdir(os.path.join(run_dir, "checkpoints")) if f.endswith(".ckpt"))
    assert ckpts == ["step_00000002.ckpt", "step_00000003.ckpt"]
    assert not [f for f in os.listdir(run_dir) if f.endswith(".tmp") or ".tmp." in f]
    caches = sorted(os.listdir(os.path.join(run_dir, ".compile_cache")))
    assert caches == ["stage1-phase0-rank0", "stage1-phase0-rank1"], caches
    for logs in (runs["logs_first"], runs["logs_resumed"]):
        assert len(logs) == 2 and all("Traceback" not in text for text in logs.values())
    assert "resumed from" in runs["logs_resumed"]["worker_1.log"]  # every worker resumes


def test_resuming_with_another_worker_count_is_one_line(runs):
    proc = run_tool(["tools/train_modify.py", "--resume", runs["dp"]], check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].endswith("resume it with msrun --worker_num=2"), proc.stderr[-500:]


def test_offline_stage2_trains_on_two_workers_and_rank_0_writes_the_outputs(runs, tmp_path):
    from test_modify_cli import _photo_folder

    photos, out, work = tmp_path / "in", tmp_path / "out", tmp_path / "work"
    _photo_folder(str(photos), [("a.png", "builtin:astronaut"), ("b.png", "builtin:grace_hopper")])
    logs = msrun(["tools/stylize.py", "--stage1", runs["dp"], "--mode", "offline", "--input", str(photos),
                  "--output-dir", str(out), "--align", "none", "--work-dir", str(work)]
                 + overrides([f"data.path={photos}", "data.batch_size=1", "data.num_workers=1",
                              "data.multiprocessing=false", "offline_steps=2"]), str(tmp_path / "logs"))
    assert sorted(os.listdir(out)) == ["a.png", "b.png"]
    assert os.path.isfile(work / "stylize_checkpoints" / "step_00000002.ckpt")
    (settings,) = os.listdir(work / "compile_cache")  # one folder per stage-2 graph settings (stylize.graph_settings)
    assert sorted(os.listdir(work / "compile_cache" / settings)) == ["stage2-offline-rank0", "stage2-offline-rank1"]
    assert all("Traceback" not in text for text in logs.values())
    assert str(out / "a.png") in logs["worker_0.log"] and str(out / "a.png") not in logs["worker_1.log"]


def test_test_time_stylize_under_a_launcher_is_one_line(runs, tmp_path):
    """The environment msrun gives a worker, without msrun: refused before anything is built."""
    env = dict(os.environ, MS_ROLE="MS_WORKER", MS_WORKER_NUM="2", RANK_ID="1", DEVICE_ID="1")
    proc = subprocess.run([sys.executable, "tools/stylize.py", "--stage1", runs["dp"], "--input", "builtin:astronaut",
                           "--output", str(tmp_path / "o.png")], cwd=REPO, capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith("error: mode test-time: only offline stage 2")
    assert not os.path.exists(tmp_path / "o.png")


# ----------------------------------------------------------------- the pieces, without msrun
MSRUN_ENV = {"MS_ROLE": "MS_WORKER", "MS_WORKER_NUM": "4", "RANK_ID": "2", "DEVICE_ID": "2"}
RANK_TABLE_ENV = {"RANK_TABLE_FILE": "/cluster/rank_table_8p.json", "RANK_SIZE": "8", "RANK_ID": "5",
                  "DEVICE_ID": "5"}


@pytest.mark.parametrize("environ, worker, size, device", [
    ({}, False, 1, 0),
    (MSRUN_ENV, True, 4, 2),
    ({**MSRUN_ENV, "MS_ROLE": "MS_SCHED"}, False, 1, 0),  # msrun's scheduler is not a worker
    (RANK_TABLE_ENV, True, 8, 5),
    ({**RANK_TABLE_ENV, "RANK_SIZE": "1"}, False, 1, 0),  # a one-device rank table is a single process
    ({"DEVICE_ID": "3"}, False, 1, 0),  # a stray DEVICE_ID does not pick the device of a plain process
])
def test_the_launch_is_read_from_the_environment(environ, worker, size, device):
    from modify_ms.train.distributed import device_id_for, launched_as_worker, launched_world_size

    assert launched_as_worker(environ) is worker
    assert launched_world_size(environ) == size
    assert device_id_for(-1, environ) == device
    assert device_id_for(7, environ) == 7  # run.device_id, when set, wins


def test_per_sample_draws_do_not_depend_on_the_number_of_workers():
    """A step's samples get the same z whether one process draws the global batch of 4 or two
    workers draw 2 each (worker r holds positions r, r + 2), and another step gets others."""
    from modify_ms.train.distributed import World, sample_rngs, stack_draws

    def draw(step, batch, world):
        return stack_draws(sample_rngs(7, 1, step, batch, world), lambda g: g.standard_normal(5))

    single = draw(3, 4, World())
    rank0, rank1 = draw(3, 2, World(2, 0, 0)), draw(3, 2, World(2, 1, 1))
    np.testing.assert_array_equal(single[0::2], rank0)
    np.testing.assert_array_equal(single[1::2], rank1)
    assert not np.allclose(draw(4, 4, World()), single)
    assert not np.allclose(stack_draws(sample_rngs(7, 2, 3, 4, World()), lambda g: g.standard_normal(5)), single)


def test_resuming_a_single_process_run_under_msrun_is_refused_before_building():
    from modify_ms.train.distributed import check_world_size
    from modify_ms.utils.checkpoint import CheckpointFileError

    check_world_size(4, "run/ckpt", MSRUN_ENV)
    with pytest.raises(CheckpointFileError, match="trained with 1 worker.*resumed with 4.*single process"):
        check_world_size(1, "run/ckpt", MSRUN_ENV)


def _batch_norm(rng, channels=5):
    bn = nn.BatchNorm2d(channels, eps=1e-5, momentum=0.9)
    for param, (low, high) in ((bn.gamma, (0.5, 1.5)), (bn.beta, (-0.5, 0.5)), (bn.moving_mean, (-0.5, 0.5)),
                               (bn.moving_variance, (0.5, 1.5))):
        param.set_data(ms.Tensor(rng.uniform(low, high, channels).astype(np.float32)))
    return bn


class Weighted(nn.Cell):
    """sum(norm(x) * weights): a scalar whose gradient reaches every output element differently."""

    def __init__(self, norm, weights):
        super().__init__()
        self.norm, self.weights = norm, weights

    def construct(self, x):
        return (self.norm(x) * self.weights).sum()


def test_cross_device_batch_norm_on_one_worker_is_batch_norm(ms_mode):
    """Forward, input and parameter gradients, and the moving statistics after one training step
    (the momentum convention and the unbiased variance) against nn.BatchNorm2d."""
    from modify_ms.nn.norm import CrossDeviceBatchNorm

    data = np.random.default_rng(1)
    x = ms.Tensor((data.standard_normal((3, 5, 4, 4)) * 2 + 1).astype(np.float32))
    weights = ms.Tensor(data.standard_normal((3, 5, 4, 4)).astype(np.float32))
    results = []
    for cell in (_batch_norm(np.random.default_rng(0)), CrossDeviceBatchNorm(_batch_norm(np.random.default_rng(0)), 1)):
        cell.set_train(True)
        grad_fn = ms.value_and_grad(Weighted(cell, weights), 0, cell.trainable_params())
        value, (grad_x, grad_params) = grad_fn(x)
        results.append([value.asnumpy(), grad_x.asnumpy(), *[g.asnumpy() for g in grad_params],
                        cell.moving_mean.asnumpy(), cell.moving_variance.asnumpy()])
    for name, ref, ours in zip(("value", "grad x", "grad gamma", "grad beta", "moving mean", "moving var"), *results):
        np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5, err_msg=name)
    assert not np.allclose(results[0][-1], _batch_norm(np.random.default_rng(0)).moving_variance.asnumpy())


def test_sync_batch_norms_keeps_every_parameter_name():
    from modify_ms.models.irse import IRSEBackbone
    from modify_ms.nn.norm import CrossDeviceBatchNorm, sync_batch_norms

    body = IRSEBackbone(input_size=16, units=(1, 1, 1, 1), channels=(16, 16, 16, 16))  # BatchNorm1d stays
    before = [(name, p.name) for name, p in body.parameters_and_names()]
    count = sum(isinstance(c, nn.BatchNorm2d) for _, c in body.cells_and_names())
    assert sync_batch_norms(body, 2) == count > 0
    assert not any(isinstance(c, nn.BatchNorm2d) for _, c in body.cells_and_names())
    assert sum(isinstance(c, CrossDeviceBatchNorm) for _, c in body.cells_and_names()) == count
    assert [(name, p.name) for name, p in body.parameters_and_names()] == before


@pytest.mark.parametrize("override, message", [
    ("run.device_id=-2", "run.device_id must be in"),
    ("run.max_device_memory=22G", "run.max_device_memory must look like '22GB'"),
    ("run.loss_scale=0.5", "run.loss_scale must be >= 1"),
    ("run.jit_level=O3", "jit_level"),
])
def test_device_settings_are_checked_in_one_line(override, message, tmp_path):
    from modify_ms.config import ConfigError, load_config
    from modify_ms.train.config import Stage1Config

    with pytest.raises((ConfigError, ValueError), match=message):
        load_config(os.path.join(REPO, "yaml", "quickstart.yaml"), Stage1Config, [override])


def test_a_process_keeps_its_device():
    """The runtime of this test process already runs on CPU 0: asking for it again is fine, another
    device id is one line (MindSpore sets the device once per process)."""
    from modify_ms.config import ConfigError
    from modify_ms.train.common import select_device

    (ms.Tensor(np.ones(2, np.float32)) + 1).asnumpy()
    select_device("CPU", 0)
    with pytest.raises(ConfigError, match="run.device CPU:1: this process already runs on CPU:0"):
        select_device("CPU", 1)
