"""Unpaired pSp (baselines_ms.psp_unpaired): the defects such a baseline most likely has.

One tiny trainer (64 px, the TINY sizes of test_modify_train, batch 2) in PYNATIVE: a few
updates op by op cost far less than compiling the steps, and what is passed where does not
depend on the mode (GRAPH_MODE is restored after the module). Its discriminator step is a spy
(records its inputs, returns zeros) so the gradient-penalty graph is never built: only what the
discriminator is given is under test.

* The discriminator's "real" is a batch of the TARGET set, batch for batch the target stream's
  (fails if it were x, D(E(x)) or another source batch), through the trainer's real loop
  (Stage1Trainer.run with the paired pipeline), which also writes samples and a checkpoint.
* The encoder-side L2 / LPIPS / ID are between the input x and x' = D(E(x)) (fails if any were
  computed against the target image), and only ``train``'s networks move (train [encoder]: the
  decoder stays bit-identical).
* create_stylizer("psp-unpaired", run) renders what the trainer's E and D render.
* The paper config states its values; inconsistent batch sizes are a one-line ConfigError.
* the quickstart through the real command line (tools/train_baseline.py), stopped and resumed.

Tolerance: loss values rtol 1e-4 / atol 1e-5 (the same float32 forward recomputed op by op);
the stylizer round trip atol 1e-5; equality checks bit-exact.
"""
import json
import os

import numpy as np
import pytest
import mindspore as ms

from modify_ms.config import ConfigError, load_config
from modify_ms.data.dataset import build_dataset
from modify_ms.train.common import host_noise, save_loss_nets, write_resolved_config
from test_modify_train import REPO, TINY

from baselines_ms.psp_unpaired.config import UnpairedPSPConfig
from baselines_ms.psp_unpaired.trainer import UnpairedPSPTrainer, target_batches

QUICKSTART = os.path.join(REPO, "yaml", "baselines", "psp_unpaired_quickstart.yaml")
PAPER = os.path.join(REPO, "yaml", "baselines", "psp_unpaired.yaml")
BATCH, SIZE, RUN_STEPS = 2, 64, 2
TINY_PSP = [s for s in TINY if not s.startswith("phases=")] + [
    "target.num_workers=1", "target.multiprocessing=false", "target.max_images=12",
    f"data.batch_size={BATCH}", f"target.batch_size={BATCH}", "model.discriminator.stddev_group=2",
    "losses.adv=0.1", "train=[encoder]", "run.mode=pynative", "run.noise=const", "optim.lr=0.001"]


class StepSpy:
    """Stands in for the discriminator step: records its inputs' host values, returns zeros."""

    def __init__(self):
        self.calls = []

    def __call__(self, real, fakes, alpha):
        self.calls.append((real.asnumpy(), tuple(f.asnumpy() for f in fakes)))
        zero = ms.Tensor(0.0, ms.float32)
        return zero, zero


def snapshot(cell):
    return {n: p.asnumpy().copy() for n, p in cell.parameters_and_names() if p.requires_grad}


def moved(before, cell):
    after = snapshot(cell)
    return [n for n in before if not np.array_equal(before[n], after[n])]


def source_batches(cfg, n):
    pipeline = build_dataset(cfg.data, log=lambda _m: None)
    it = pipeline.dataset.create_tuple_iterator(output_numpy=True, num_epochs=1)
    return [pipeline.arrays(next(it))[0] for _ in range(n)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The trainer after RUN_STEPS steps of its own loop (spy in the discriminator's place), with
    the reference render of its final E and D (inference mode, noise seed 0) for the stylizer."""
    run_dir = str(tmp_path_factory.mktemp("psp_unpaired"))
    cfg = load_config(QUICKSTART, UnpairedPSPConfig, TINY_PSP + [f"run.out_dir={run_dir}"])
    try:
        trainer = UnpairedPSPTrainer(cfg, run_dir, log=lambda _m: None)
        trainer.d_step = spy = StepSpy()
        write_resolved_config(cfg, run_dir)
        save_loss_nets(trainer.loss_nets, run_dir)
        trainer.run(RUN_STEPS)
        x = source_batches(cfg, 1)[0]
        trainer.nets.encoder.set_train(False)
        noise = host_noise(trainer.nets.decoder, BATCH, np.random.default_rng(0), cfg.run.noise)
        reference = trainer.sample_render(ms.Tensor(x), noise).asnumpy()
        trainer.nets.encoder.set_train(True)
        yield dict(trainer=trainer, spy=spy, cfg=cfg, run_dir=run_dir, x=x, reference=reference)
    finally:
        ms.set_context(mode=ms.GRAPH_MODE)


def test_discriminator_real_is_the_target_stream(trained):
    """Each step's real is the target stream's batch of that step; never the source photos x of
    the step, nor the fake D(E(x)) the same step passes."""
    cfg, spy = trained["cfg"], trained["spy"]
    assert len(spy.calls) == RUN_STEPS
    target = build_dataset(cfg.target, log=lambda _m: None)
    stream = target_batches(target, cfg.target, 0)
    sources = source_batches(cfg, RUN_STEPS)
    for step, ((real, fakes), x) in enumerate(zip(spy.calls, sources)):
        np.testing.assert_array_equal(real, next(stream), err_msg=f"step {step}: real is not the target batch")
        assert real.shape == x.shape == fakes[0].shape == (BATCH, 3, SIZE, SIZE)
        assert np.abs(real - x).mean() > 0.05, f"step {step}: the real looks like the source photos"
        assert np.abs(real - fakes[0]).mean() > 0.05, f"step {step}: the real looks like D(E(x))"
    # the stream continues where a resumed run starts: batch k from start k equals batch k from 0
    np.testing.assert_array_equal(next(target_batches(target, cfg.target, 1)), spy.calls[1][0])


def test_run_writes_the_stage_machinery_files(trained):
    run_dir = trained["run_dir"]
    assert os.path.isfile(os.path.join(run_dir, "samples", f"step_{RUN_STEPS:08d}.png"))
    assert os.path.isfile(os.path.join(run_dir, "checkpoints", f"step_{RUN_STEPS:08d}.ckpt"))
    with open(os.path.join(run_dir, "metrics.jsonl")) as fh:
        lines = [json.loads(l) for l in fh]
    losses = [l for l in lines if "loss" in l]
    assert [l["step"] for l in losses] == list(range(1, RUN_STEPS + 1))
    assert all(l["l2"] > 0 and l["lpips"] > 0 and l["id"] > 0 and l["adv"] != 0 for l in losses)


def test_encoder_loss_is_between_input_and_output(trained):
    """The step's L2, LPIPS and ID equal those of (x, D(E(x))) recomputed before the step (E in
    training mode, the fixed noise buffers), and not those of (target, D(E(x))): the target is a
    constant image far from x. train [encoder]: E moves, the decoder stays bit-identical."""
    trainer = trained["trainer"]
    rng = np.random.default_rng(5)
    x = rng.uniform(-1, 1, (BATCH, 3, SIZE, SIZE)).astype(np.float32)
    target = np.full_like(x, 0.8)
    noise = host_noise(trainer.nets.decoder, BATCH, trainer.rng, "const")
    trainer.nets.encoder.set_train(True)
    out = trainer.sample_render(ms.Tensor(x), noise)
    lpips, identity = trainer.loss_nets.lpips, trainer.loss_nets.identity
    want = {"l2": float(((x - out.asnumpy()) ** 2).mean()), "lpips": float(lpips(out, ms.Tensor(x)).asnumpy()),
            "id": float(identity(out, ms.Tensor(x)).asnumpy())}
    wrong_l2 = float(((target - out.asnumpy()) ** 2).mean())  # the target is far from x: a loss against it differs
    encoder, decoder = snapshot(trainer.nets.encoder), snapshot(trainer.nets.decoder)
    record = {k: float(v.asnumpy()) if isinstance(v, ms.Tensor) else v
              for k, v in trainer.train_step(x, target).items()}
    for key in want:
        np.testing.assert_allclose(record[key], want[key], rtol=1e-4, atol=1e-5, err_msg=key)
    assert abs(want["l2"] - wrong_l2) > 0.05, "the target is not far enough from x for the test to tell them apart"
    assert moved(encoder, trainer.nets.encoder), "E did not train"
    assert not moved(decoder, trainer.nets.decoder), "the decoder trained although train is [encoder]"


def test_stylizer_renders_the_run(trained):
    """create_stylizer('psp-unpaired', run dir) = the trainer's D(E(x)) at the checkpoint."""
    from modify_ms.stylizers import create_stylizer, list_stylizers

    assert "psp-unpaired" in list_stylizers()
    stylizer = create_stylizer("psp-unpaired", trained["run_dir"], run_mode="pynative")
    assert not stylizer.multimodal
    out = stylizer.stylize(trained["x"])
    assert out.shape == trained["x"].shape
    np.testing.assert_allclose(out, trained["reference"], atol=1e-5)


def test_paper_config_values():
    """The paper's data (2000 FFHQ photos / MetFaces) and MODIFY's stage-2 values as the
    stated assumptions: 256 px losses into config-f 1024, IR-SE50, {0.5, 0.8, 1, 0.01}, Adam
    (0.9, 0.999) lr 1e-4, batch 4, 20k steps, the decoder frozen, pretrained files required."""
    cfg = load_config(PAPER, UnpairedPSPConfig)
    assert (cfg.model.generator.size, cfg.model.loss_size, cfg.model.encoder.num_layers) == (1024, 256, 50)
    w = cfg.losses
    assert (w.l2, w.lpips, w.id, w.adv, w.w_norm) == (0.5, 0.8, 1.0, 0.01, 0.0)
    assert (cfg.optim.kind, cfg.optim.lr, cfg.optim.beta1, cfg.optim.beta2) == ("adam", 1e-4, 0.9, 0.999)
    assert (cfg.data.batch_size, cfg.target.batch_size, cfg.steps, cfg.train) == (4, 4, 20000, ("encoder",))
    assert "ffhq" in cfg.data.path and "metfaces" in cfg.target.path
    assert cfg.weights.require and cfg.weights.generator and cfg.weights.encoder_backbone
    assert cfg.adversarial.kind == "wgan"


@pytest.mark.parametrize("override, message", [("target.batch_size=2", "target.batch_size"),
                                               ("train=[remap]", "train must name"),
                                               ("target.size=128", "target.size")])
def test_config_errors_are_one_line(override, message):
    with pytest.raises(ConfigError) as info:
        load_config(QUICKSTART, UnpairedPSPConfig, [override])
    assert message in str(info.value) and "\n" not in str(info.value)


def test_quickstart_command_line(tmp_path):
    """tools/train_baseline.py on the quickstart config (tiny sizes), stopped at step 4 and resumed
    to 6: samples, checkpoints and metrics in the run folder; then the run stylizes through the registry."""
    from tiny_run import overrides, run_tool

    run_dir = str(tmp_path / "run")
    sets = [s for s in TINY_PSP if not s.startswith(("run.mode", "run.noise"))] + [
        "steps=6", "run.sample_every=3", "run.ckpt_every=2", f"run.out_dir={run_dir}", "train=[encoder, decoder]",
        # the resumed invocation loads the first one's compiled graphs
        "run.compile_cache=true", f"run.compile_cache_dir={tmp_path / 'compile_cache'}"]
    first = run_tool(["tools/train_baseline.py", "--config", QUICKSTART, "--max-steps", "4"] + overrides(sets))
    assert "finished at step 4" in first.stdout
    resumed = run_tool(["tools/train_baseline.py", "--resume", run_dir])
    assert "finished at step 6" in resumed.stdout
    # every sample_every steps, and where a run stops (--max-steps 4, the end at 6)
    assert sorted(os.listdir(os.path.join(run_dir, "samples"))) == [f"step_0000000{s}.png" for s in (3, 4, 6)]
    with open(os.path.join(run_dir, "metrics.jsonl")) as fh:
        steps = [json.loads(l)["step"] for l in fh if '"loss"' in l]
    assert steps == list(range(1, 7))
    bad = run_tool(["tools/train_baseline.py", "--config", QUICKSTART, "--set", "target.batch_size=3"], check=False)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0
