"""BlendGAN's training behaviour (baselines_ms/blendgan/trainer.py) on a tiny 32 px configuration.

Default (no compilation): the embedding queue gives negatives from earlier batches only (the
first batch: its own codes rolled), wraps as a ring; the style encoder's augmentation is affine
only (a uniform colour stays exactly that colour).
Slow (compiles every step cell, ~2-4 min on 2 cores): a run of 3 style-encoder steps and 6 GAN
steps with R1 and the path-length penalty every 2 steps: the blending weights the renders use stay
in [0, 1] (and moved); D_face is fed G at i = L and D_style G at i = 0 (the fakes equal those renders);
the queue holds the artistic batches' codes; g_ema carries the trained style encoder; sample grids
and checkpoints are written, a resume continues; the ``blendgan`` stylizer loads the run (reference-
and latent-guided, variants); one-shot fine-tuning from the run on one reference.
"""
import os

import numpy as np
import pytest

from baselines_ms.blendgan.trainer import LatentQueue, random_resized_crop


class _State:
    def __init__(self, size, dim):
        import mindspore as ms

        self.queue = ms.Parameter(ms.Tensor(np.zeros((size, dim), np.float32)), requires_grad=False)
        self.count = ms.Parameter(ms.Tensor(np.zeros(1, np.float32)), requires_grad=False)


def test_latent_queue_negatives_come_from_earlier_batches():
    rng = np.random.default_rng(0)
    queue = LatentQueue(_State(5, 3))
    first = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(queue.negatives(first, rng), np.roll(first, 1, axis=0))  # empty: own, rolled
    queue.push(first)
    second = 100 + np.arange(9, dtype=np.float32).reshape(3, 3)
    neg = queue.negatives(second, rng)
    assert all(any((row == f).all() for f in first) for row in neg)  # only the earlier batch's codes
    queue.push(second)
    assert len(queue) == 5
    third = 200 + np.zeros((40, 3), np.float32)
    neg = queue.negatives(third, rng)
    seen = {tuple(r) for r in neg}
    assert seen <= {tuple(r) for r in np.concatenate([first, second])} and len(seen) == 5  # all five drawn
    queue.push(np.full((4, 3), 7.0, np.float32))  # the ring overwrites the oldest
    assert queue.count == 9 and (queue.codes == 7.0).all(axis=1).sum() == 4
    single = LatentQueue(_State(4, 3)).negatives(np.ones((1, 3), np.float32), rng)
    assert single.shape == (1, 3) and not (single == 1).all()  # a batch of one: a latent code


def test_augmentation_is_affine_only():
    rng = np.random.default_rng(1)
    flat = np.ones((2, 3, 16, 16), np.float32) * np.array([0.3, -0.5, 0.9], np.float32).reshape(1, 3, 1, 1)
    np.testing.assert_allclose(random_resized_crop(flat, rng), flat, atol=1e-6)  # colours never change
    x = rng.standard_normal((2, 3, 16, 16)).astype(np.float32)
    out = random_resized_crop(x, rng)
    assert out.shape == x.shape and not np.allclose(out, x)


# ------------------------------------------------------------------ a tiny run (slow)
TINY = ["model.generator.size=32", "model.generator.style_dim=16", "model.generator.n_mlp=2",
        "model.generator.channel_multiplier=1", "model.generator.channel_max=16",
        "model.discriminator.channel_multiplier=1", "model.discriminator.channel_max=16",
        "model.style_encoder.vgg_widths=[4, 6, 8, 8, 8]", "model.style_encoder.input_size=32",
        "model.encoder.units=[1, 1, 1, 1]", "model.encoder.channels=[16, 24, 32, 16]", "model.encoder_size=64",
        "data.size=32", "target.size=32", "data.batch_size=2", "target.batch_size=2", "data.num_workers=1",
        "target.num_workers=1", "data.max_images=8", "target.max_images=8", "style_encoder_steps=3",
        "style_encoder_batch=4", "steps=6", "queue_size=8", "regularization.d_reg_every=2",
        "regularization.g_reg_every=2", "sample_indices=[8, 3, 0]", "run.log_every=1", "run.sample_every=9",
        "run.ckpt_every=3", "run.compile_cache=false"]


def tiny_config(out_dir, extra=()):
    from baselines_ms.blendgan.config import BlendGANConfig
    from modify_ms.config import load_config

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return load_config(os.path.join(repo, "yaml", "baselines", "blendgan_quickstart.yaml"), BlendGANConfig,
                       TINY + [f"run.out_dir={out_dir}"] + list(extra))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from baselines_ms.blendgan.trainer import train_blendgan

    out = str(tmp_path_factory.mktemp("blendgan") / "run")
    cfg = tiny_config(out)
    trainer = train_blendgan(cfg, out, max_steps=6, log=lambda _m: None)
    return cfg, out, trainer


@pytest.mark.slow
def test_run_writes_and_resumes(run):
    import json

    from baselines_ms.blendgan.trainer import train_blendgan

    cfg, out, trainer = run
    lines = [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl"))]
    assert [l["phase"] for l in lines if "phase" in l] == [0, 0, 0, 1, 1, 1]
    assert all(np.isfinite(l["nt_xent"]) for l in lines if l.get("phase") == 0)
    gan = [l for l in lines if l.get("phase") == 1]
    assert "r1" in gan[0] and "path" in gan[0] and "r1" not in gan[1] and "r1" in gan[2]
    assert sorted(os.listdir(os.path.join(out, "checkpoints"))) == ["latest.json", "step_00000003.ckpt",
                                                                     "step_00000003.ckpt.json", "step_00000006.ckpt",
                                                                     "step_00000006.ckpt.json"]
    resumed = train_blendgan(cfg, out, resume=True, log=lambda _m: None)
    assert resumed.step == 9
    assert {"step_00000009_latent.png", "step_00000009_reference.png"} <= set(os.listdir(os.path.join(out, "samples")))
    assert len(resumed.queue) == 8  # 6 GAN steps x batch 2 pushed into a queue of 8, the resume restored it


@pytest.mark.slow
def test_blending_weights_and_what_each_discriminator_sees(run):
    import mindspore as ms

    from baselines_ms.blendgan.networks import face_rows
    from baselines_ms.blendgan.trainer import GeneratorLoss

    cfg, _, trainer = run
    g = trainer.nets.generator
    weights = g.add_weight.asnumpy()
    assert not np.allclose(weights, 1.0)  # the updates moved them
    g.clamped_weights()  # what the next render does first
    stored = g.add_weight.asnumpy()
    assert stored.min() >= 0.0 and stored.max() <= 1.0
    np.testing.assert_array_equal(stored, np.clip(weights, 0, 1))
    # the step's three fakes are G at i = L (-> D_face), G at i = 0 with z_s (-> D_style), G at i = 0 with z_s^-
    rng = np.random.default_rng(3)
    z1 = ms.Tensor(rng.standard_normal((2, 16), dtype=np.float32))
    zs, zn = (ms.Tensor(rng.standard_normal((2, 16), dtype=np.float32)) for _ in range(2))
    noise = g.generator.random_noise(6, rng)
    loss = GeneratorLoss(trainer.nets)
    _, _, (face, style, neg) = loss(z1, z1, ms.Tensor(g.n_latent, ms.int32), zs, zn, noise)
    w = g.face_w(z1)
    per = [ms.mutable(tuple(n[k * 2:(k + 1) * 2] for n in noise)) for k in range(3)]
    np.testing.assert_allclose(face.asnumpy(), g(w, zs, face_rows(g.n_latent, g.n_latent), per[0]).asnumpy(),
                               atol=1e-5)
    np.testing.assert_allclose(face.asnumpy(), g.generator(w, per[0]).asnumpy(), atol=1e-5)
    np.testing.assert_allclose(style.asnumpy(), g(w, zs, face_rows(g.n_latent, 0), per[1]).asnumpy(), atol=1e-5)
    np.testing.assert_allclose(neg.asnumpy(), g(w, zn, face_rows(g.n_latent, 0), per[2]).asnumpy(), atol=1e-5)
    # g_ema carries the style encoder trained in phase 1 (frozen in phase 2)
    for (name, a), (_, b) in zip(trainer.nets.g_ema.embedder.parameters_and_names(), g.embedder.parameters_and_names()):
        np.testing.assert_array_equal(a.asnumpy(), b.asnumpy(), err_msg=name)


@pytest.mark.slow
def test_stylizer_and_one_shot(run, tmp_path):
    from baselines_ms.blendgan.trainer import train_blendgan
    from modify_ms.stylizers import create_stylizer

    cfg, out, _ = run
    x = np.tanh(np.random.default_rng(4).standard_normal((2, 3, 32, 32))).astype(np.float32)
    ref = create_stylizer("blendgan", out, style="builtin:painted/0001", index=3)
    y = ref.stylize(x, names=["a", "b"])
    assert y.shape == x.shape and np.isfinite(y).all()
    latent = create_stylizer("blendgan", out, index=0)
    v = latent.variants(x[:1], 3, names=["a"])
    assert v.shape == (1, 3, 3, 32, 32) and not np.allclose(v[0, 0], v[0, 1])
    face = create_stylizer("blendgan", out, style="builtin:painted/0001", index=8).stylize(x, names=["a", "b"])
    face2 = create_stylizer("blendgan", out, style="builtin:painted/0002", index=8).stylize(x, names=["a", "b"])
    np.testing.assert_array_equal(face, face2)  # i = L: the style has no say
    shot = str(tmp_path / "oneshot")
    one = tiny_config(shot, ["one_shot.reference=builtin:painted/0005", f"one_shot.start_from={out}",
                             "style_encoder_steps=0", "steps=2", "data.batch_size=1", "target.batch_size=1"])
    trainer = train_blendgan(one, shot, log=lambda _m: None)
    assert trainer.step == 2 and (trainer.queue.codes[:2] == trainer.queue.codes[0]).all()  # z_s: the reference's


def test_training_config_errors_are_one_line(tmp_path):
    """The paper config without its weight files, and a PYNATIVE training run: one line, exit 2, nothing written."""
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = str(tmp_path / "run")
    cmd = [sys.executable, "tools/train_baseline.py", "--config", "yaml/baselines/blendgan.yaml",
           "--set", f"run.out_dir={out}", "--set", "run.mode=pynative"]
    proc = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, env=dict(os.environ, GLOG_v="3"))
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1
    assert "run.mode must be graph" in proc.stderr and not os.path.exists(out)


@pytest.mark.slow
def test_stylize_tool_with_method_blendgan(run, tmp_path):
    """tools/stylize.py --method blendgan on the run: the output and --variants files, as for MODIFY."""
    import subprocess
    import sys

    _, out, _ = run
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    dst = str(tmp_path / "out")
    cmd = [sys.executable, "tools/stylize.py", "--method", "blendgan", "--run", out, "--input", "builtin:astronaut",
           "--output-dir", dst, "--variants", "2", "--opt", "style=builtin:painted/0003", "--opt", "index=4"]
    proc = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, env=dict(os.environ, GLOG_v="3"))
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(dst)) == ["astronaut.png", "astronaut_k0.png", "astronaut_k1.png", "astronaut_variants.png"]
    bad = subprocess.run(cmd[:-2] + ["--opt", "index=99"], cwd=repo, capture_output=True, text=True)
    errors = [line for line in bad.stderr.splitlines() if line.startswith("error: ")]
    assert bad.returncode == 2 and len(errors) == 1 and "blending indicator" in errors[0]
    assert "Traceback" not in bad.stderr
