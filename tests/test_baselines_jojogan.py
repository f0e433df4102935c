"""JoJoGAN (baselines_ms.jojogan): the defects such a port most likely has.

* The paired set replaces exactly the swapped rows (colour-preserving or not, clipped for small
  generators) and leaves every other row bit-identical to the inverted code; mix_alpha is the
  weight of the reference code (0: the random code, the notebook's default; 1: no change).
* The step objective (paired set -> G -> discriminator-feature L1 over the taps) and its gradient
  on the synthesis parameters match a torch reference written from the maths
  (tests/reference/jojogan_ref.py) in GRAPH and PYNATIVE; forward rel 1e-5, gradients rel 2e-5
  (max abs difference over the reference's max magnitude, float32 on both sides).
* Three fine-tuning steps (UpdateStep, Adam) each lower the loss and move the synthesis network
  only (mapping and discriminator bit-identical); PYNATIVE, to skip a second gradient compile.
* Style strength: 0 is the original generator's output, 1 the fine-tuned one's (atol 1e-6:
  the same ops on the same values), 0.5 the torch feature interpolation (rel 1e-5), which is
  not the blend of the two output images.
* tools/jojogan.py end to end on built-in data (tiny random networks): the run folder, a
  fine-tuned generator in the StyleGAN2 importer's format (synthesis moved, mapping not), one
  stylized image per photo; create_stylizer("jojogan", run) renders what the tool wrote, and so
  does create_stylizer("jojogan", OUT/generator.ckpt, e4e=<converted e4e file>) (atol 1e-5); a
  missing style file is one line with exit code 2 and nothing written.
* slow: the quickstart through tools/train_baseline.py, stopped and resumed, equals an
  uninterrupted run bit for bit.
"""
import json
import os

import numpy as np
import pytest
import mindspore as ms
import torch

from parity_utils import assert_close, copy_torch_to_ms, m, t
from reference import jojogan_ref as jref
from reference import stylegan2_ref as sref
from tiny_run import overrides, run_tool

from modify_ms.config import ConfigError, load_config
from modify_ms.models.stylegan2 import Discriminator, Generator
from modify_ms.train.steps import UpdateStep

from baselines_ms.jojogan.config import JoJoGANConfig, feature_taps, swap_rows
from baselines_ms.jojogan.networks import (DiscFeatureL1, FineTuneLoss, StrengthRender, mix_codes, swap_mask,
                                           synthesis_params)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICKSTART = os.path.join(REPO, "yaml", "baselines", "jojogan_quickstart.yaml")
PAPER = os.path.join(REPO, "yaml", "baselines", "jojogan.yaml")
SIZE, STYLE_DIM, N = 32, 16, 2
ROWS, ALPHA = (5, 7), 0.3  # two of the 8 rows, a blend that keeps both the reference and the random code
FWD_TOL, GRAD_TOL = 1e-5, 2e-5
TINY_TOOL = ["model.generator.style_dim=16", "model.generator.n_mlp=1", "model.generator.channel_max=8",
             "model.encoder.channels=[16, 16, 16, 16]", "model.discriminator.channel_max=8", "steps=1",
             "run.compile_cache=false", "run.mode=pynative"]


def _x(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def torch_generator(seed):
    return sref.randomize_(sref.Generator(SIZE, STYLE_DIM, 1, 1, 8), seed)


def ms_copy(ms_cell, torch_module):
    unfilled = copy_torch_to_ms(ms_cell, torch_module, skip=lambda k: k.endswith("kernel"))
    assert not [u for u in unfilled if not u.endswith("latent_avg")], unfilled
    return ms_cell


@pytest.fixture(scope="module")
def nets():
    """Random torch generators A, B and discriminator, their MindSpore copies, and one batch."""
    g_a, g_b = torch_generator(3), torch_generator(4)
    d_t = sref.randomize_(sref.Discriminator(SIZE, cm=1, cmax=8), 5)
    rng = np.random.default_rng(11)
    ms_a = ms_copy(Generator(SIZE, STYLE_DIM, 1, 1, 8), g_a)
    inputs = dict(ref_w=_x(rng, N, ms_a.n_latent, STYLE_DIM), references=np.tanh(_x(rng, N, 3, SIZE, SIZE)),
                  z=_x(rng, N, STYLE_DIM), noise=[_x(rng, *s) for s in ms_a.noise_shapes(N)])
    return dict(g_a=g_a, g_b=g_b, d_t=d_t, ms_a=ms_a, ms_b=ms_copy(Generator(SIZE, STYLE_DIM, 1, 1, 8), g_b),
                ms_d=ms_copy(Discriminator(SIZE, 1, 8), d_t), **inputs)


def ms_noise(noise):
    return ms.mutable(tuple(m(n) for n in noise))


# ----------------------------------------------------------------- paired set
@pytest.mark.parametrize("preserve_color", [False, True])
def test_paired_set_changes_exactly_the_swapped_rows(preserve_color):
    rng = np.random.default_rng(0)
    ref, mean_w = _x(rng, 3, 18, 4), _x(rng, 3, 4)
    rows = swap_rows(18, preserve_color)
    assert rows == ((9, 11, 15, 16, 17) if preserve_color else tuple(range(7, 18)))
    out = mix_codes(m(ref), m(mean_w), swap_mask(18, rows), 0.0).asnumpy()
    kept = [r for r in range(18) if r not in rows]
    np.testing.assert_array_equal(out[:, kept], ref[:, kept])  # bit-identical to the inverted code
    np.testing.assert_array_equal(out[:, list(rows)], np.broadcast_to(mean_w[:, None], (3, len(rows), 4)))


def test_mix_alpha_is_the_weight_of_the_reference_code():
    rng = np.random.default_rng(1)
    ref, mean_w = _x(rng, 2, 18, 4), _x(rng, 2, 4)
    mask = swap_mask(18, (7, 8, 12))
    np.testing.assert_array_equal(mix_codes(m(ref), m(mean_w), mask, 1.0).asnumpy(), ref)  # 1: nothing swapped
    out = mix_codes(m(ref), m(mean_w), mask, 0.25).asnumpy()
    want = jref.mix_codes(t(ref), t(mean_w), (7, 8, 12), 0.25).numpy()
    np.testing.assert_allclose(out, want, rtol=0, atol=1e-6)
    np.testing.assert_allclose(out[:, 8], 0.25 * ref[:, 8] + 0.75 * mean_w, rtol=0, atol=1e-6)


def test_small_generators_clip_rows_and_taps():
    assert swap_rows(10, False) == (7, 8, 9) and swap_rows(10, True) == (9,)
    assert feature_taps(10) == (1, 3, 4, 5) and feature_taps(5) == (1, 3, 4) and feature_taps(4) == (1, 3)
    cfg = load_config(QUICKSTART, JoJoGANConfig)  # 64 px: 10 rows, a D with fromRGB + 4 ResBlocks
    assert cfg.swap_rows == (7, 8, 9) and cfg.n_latent == 10


@pytest.mark.parametrize("override, message", [("mix_alpha=1.5", "mix_alpha"), ("style=[]", "style"),
                                               ("steps=0", "steps"), ("loss=l2", "loss")])
def test_config_errors_are_one_line(override, message):
    with pytest.raises(ConfigError) as info:
        load_config(QUICKSTART, JoJoGANConfig, [override])
    assert message in str(info.value) and "\n" not in str(info.value)


def test_paper_config_values():
    """The notebook's setup: FFHQ config-f 1024 + its discriminator + e4e, rows 7..17, mix_alpha 0,
    the 4 taps, Adam lr 2e-3 betas (0, 0.99), 300 steps, fresh noise, files required."""
    cfg = load_config(PAPER, JoJoGANConfig)
    assert (cfg.model.generator.size, cfg.model.generator.channel_multiplier, cfg.model.loss_size) == (1024, 2, 256)
    assert cfg.swap_rows == tuple(range(7, 18)) and cfg.mix_alpha == 0.0 and cfg.loss == "disc_feat"
    assert feature_taps(len(range(10))) == (1, 3, 4, 5)  # a 1024 D: fromRGB + 9 ResBlocks
    assert (cfg.optim.kind, cfg.optim.lr, cfg.optim.beta1, cfg.optim.beta2, cfg.steps) == ("adam", 2e-3, 0.0, 0.99, 300)
    assert cfg.run.noise == "random" and cfg.weights.require
    assert cfg.weights.generator and cfg.weights.discriminator and cfg.weights.e4e


# ----------------------------------------------------------------- objective and gradient
def test_step_objective_and_gradient_match_torch(ms_mode, nets):
    taps = feature_taps(len(nets["ms_d"].convs))
    assert taps == (1, 3)  # a 32 px D: fromRGB, ResBlocks 32->16, 16->8, 8->4
    loss_cell = FineTuneLoss(nets["ms_a"], DiscFeatureL1(nets["ms_d"]), ROWS, ALPHA)
    named = [(n, p) for n, p in nets["ms_a"].parameters_and_names()
             if p.requires_grad and not n.startswith("style.")]
    params = synthesis_params(nets["ms_a"])
    assert [id(p) for _, p in named] == [id(p) for p in params]
    grad_fn = ms.value_and_grad(loss_cell, None, params, has_aux=True)
    (loss, _img), grads = grad_fn(m(nets["ref_w"]), m(nets["references"]), m(nets["z"]), ms_noise(nets["noise"]))

    g_t = nets["g_a"]
    g_t.zero_grad()
    loss_t = jref.finetune_loss(g_t, nets["d_t"], t(nets["ref_w"]), t(nets["references"]), t(nets["z"]),
                                [t(n) for n in nets["noise"]], ROWS, ALPHA, taps)
    loss_t.backward()
    assert_close(loss, loss_t.detach(), FWD_TOL, "loss")
    torch_params = dict(g_t.named_parameters())
    for (name, _), grad in zip(named, grads):
        assert torch_params[name].grad is not None, name
        assert_close(grad, torch_params[name].grad, GRAD_TOL, f"grad {name}")
    assert all(torch_params[n].grad is None for n in torch_params if n.startswith("style."))  # mapping: none


def test_finetuning_lowers_the_loss_and_moves_synthesis_only(nets):
    """Three Adam steps (lr 2e-3, betas ~(0, 0.99)) on a fixed paired batch (PYNATIVE: what is
    updated does not depend on the mode, and it skips compiling a second gradient graph)."""
    ms.set_context(mode=ms.PYNATIVE_MODE)
    try:
        _finetune_steps(nets)
    finally:
        ms.set_context(mode=ms.GRAPH_MODE)


def _finetune_steps(nets):
    gen = ms_copy(Generator(SIZE, STYLE_DIM, 1, 1, 8), nets["g_a"])
    from modify_ms.train.optim import build_optimizer

    from baselines_ms.jojogan.trainer import _Params

    cfg = load_config(PAPER, JoJoGANConfig)
    opt = build_optimizer(_Params(synthesis_params(gen)), cfg.optim)  # beta1 0: build_optimizer's
    step = UpdateStep(FineTuneLoss(gen, DiscFeatureL1(nets["ms_d"]), ROWS, ALPHA), [(opt, synthesis_params(gen))])
    before = {n: p.asnumpy().copy() for n, p in gen.parameters_and_names()}
    disc = {n: p.asnumpy().copy() for n, p in nets["ms_d"].parameters_and_names()}
    args = (m(nets["ref_w"]), m(nets["references"]), m(nets["z"]), ms_noise(nets["noise"]))
    losses = [float(step(*args)[0].asnumpy()) for _ in range(3)]
    # measured 1.138, 1.066, 1.003 (seed fixed): each update lowers it
    assert losses[2] < losses[1] < losses[0] and losses[2] < 0.95 * losses[0], losses
    after = dict(gen.parameters_and_names())
    mapping = [n for n in before if n.startswith("style.")]
    assert mapping and all(np.array_equal(before[n], after[n].asnumpy()) for n in mapping), "mapping moved"
    assert any(not np.array_equal(before[n], after[n].asnumpy()) for n in before if n.startswith("convs."))
    assert all(np.array_equal(disc[n], p.asnumpy()) for n, p in nets["ms_d"].parameters_and_names())


# ----------------------------------------------------------------- style strength
def test_strength_interpolates_generator_features(ms_mode, nets):
    render = StrengthRender(nets["ms_a"], nets["ms_b"])
    w, noise = m(nets["ref_w"]), ms_noise(nets["noise"])
    out = {s: render(w, noise, ms.Tensor(s, ms.float32)).asnumpy() for s in (0.0, 0.5, 1.0)}
    np.testing.assert_allclose(out[0.0], nets["ms_a"](w, noise).asnumpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(out[1.0], nets["ms_b"](w, noise).asnumpy(), rtol=0, atol=1e-6)
    with torch.no_grad():
        want = jref.strength_render(nets["g_a"], nets["g_b"], t(nets["ref_w"]), [t(n) for n in nets["noise"]], 0.5)
    assert_close(out[0.5], want, FWD_TOL, "strength 0.5")
    image_blend = 0.5 * (out[0.0] + out[1.0])
    assert np.abs(out[0.5] - image_blend).max() > 0.05 * np.abs(image_blend).max()


# ----------------------------------------------------------------- the one-command tool
def converted_e4e_of_run(run_dir, generator_ckpt, path):
    """A file as ``python -m weights_convert psp e4e_ffhq_encode.pt`` writes one (format modify_ms.psp),
    holding the run's random e4e (frozen.ckpt) and a decoder: what the stylizer's e4e= reads."""
    from modify_ms.utils.checkpoint import read_arrays, save_arrays

    frozen, _ = read_arrays(os.path.join(run_dir, "frozen.ckpt"))
    decoder, dec_meta = read_arrays(generator_ckpt)
    cfg = load_config(os.path.join(run_dir, "config.yaml"), JoJoGANConfig)
    arrays = {"encoder." + k[len("encoder/"):]: v for k, v in frozen.items()
              if k.startswith("encoder/") and k != "encoder/latent_avg"}
    arrays.update({"decoder." + k: v for k, v in decoder.items()})
    arrays["latent_avg"] = frozen["encoder/latent_avg"]
    enc = cfg.model.encoder
    kwargs = {"n_styles": cfg.n_latent, "input_size": cfg.model.loss_size, "num_layers": enc.num_layers,
              "units": list(enc.units), "channels": list(enc.channels), "style_dim": cfg.model.generator.style_dim,
              "progressive_stage": 18}
    save_arrays(arrays, path, {"format": "modify_ms.psp", "start_from_latent_avg": True, "has_latent_avg": True,
                               "encoder": {"module": "modify_ms.models.e4e", "arch": "Encoder4Editing",
                                           "kwargs": kwargs},
                               "decoder": {"module": "modify_ms.models.stylegan2", "arch": "Generator",
                                           "kwargs": dec_meta["kwargs"]}})
    return path


def test_tool_end_to_end_on_builtin_data(tmp_path):
    from weights_convert.stylegan2 import build_from_checkpoint

    from modify_ms.data.imageio import read_image
    from modify_ms.stylizers import StylizerError, create_stylizer, list_stylizers

    from baselines_ms.jojogan.inputs import read_entry

    out = str(tmp_path / "out")
    proc = run_tool(["tools/jojogan.py", "--config", QUICKSTART, "--style", "builtin:painted/0000",
                     "--photos", "builtin:astronaut", "--out", out] + overrides(TINY_TOOL))
    stylized = [os.path.join(out, "stylized", "astronaut.png")]
    assert proc.stdout.split() == [os.path.join(out, "generator.ckpt")] + stylized
    for path in stylized:
        assert read_image(path).shape == (64, 64, 3)
    run_dir = os.path.join(out, "run")
    assert os.path.isfile(os.path.join(run_dir, "samples", "step_00000001.png"))
    assert os.path.isfile(os.path.join(run_dir, "checkpoints", "step_00000001.ckpt"))
    with open(os.path.join(run_dir, "metrics.jsonl")) as fh:
        assert [r["step"] for r in map(json.loads, fh) if "loss" in r] == [1]
    generator, meta = build_from_checkpoint(os.path.join(out, "generator.ckpt"))  # the importer's format
    assert meta["arch"] == "Generator" and generator.size == 64
    from modify_ms.utils.checkpoint import read_arrays

    tuned, _ = read_arrays(os.path.join(out, "generator.ckpt"))
    frozen, _ = read_arrays(os.path.join(run_dir, "frozen.ckpt"))
    moved = {k for k in tuned if not np.array_equal(tuned[k], frozen["original/" + k])}
    assert any(k.startswith("convs.") for k in moved) and not any(k.startswith("style.") for k in moved)

    assert "jojogan" in list_stylizers()
    x = read_entry("builtin:astronaut", 64, "auto")
    e4e_file = converted_e4e_of_run(run_dir, os.path.join(out, "generator.ckpt"), str(tmp_path / "e4e.ckpt"))
    with pytest.raises(StylizerError, match="original="):
        create_stylizer("jojogan", os.path.join(out, "generator.ckpt"), e4e=e4e_file, strength=0.5)
    try:
        from_run = create_stylizer("jojogan", run_dir, run_mode="pynative", output_size=64).stylize(x)
        # the tool's generator.ckpt with the run's encoder as a converted e4e file: the same outputs
        from_files = create_stylizer("jojogan", os.path.join(out, "generator.ckpt"), e4e=e4e_file,
                                     run_mode="pynative").stylize(x)
    finally:
        ms.set_context(mode=ms.GRAPH_MODE)
    mine = np.clip(np.rint((from_run[0].transpose(1, 2, 0) + 1) * 127.5), 0, 255)
    assert np.abs(mine - read_image(stylized[0]).astype(np.float64)).max() <= 1
    np.testing.assert_allclose(from_files, from_run, rtol=0, atol=1e-5)


def test_tool_missing_style_file_is_one_line_exit_2(tmp_path):
    out = tmp_path / "out"
    proc = run_tool(["tools/jojogan.py", "--config", QUICKSTART, "--style", str(tmp_path / "missing.png"),
                     "--photos", "builtin:astronaut", "--out", str(out)], check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "missing.png" in proc.stderr
    assert not out.exists()


@pytest.mark.slow
def test_quickstart_through_train_baseline_resumes_exactly(tmp_path):
    """tools/train_baseline.py on the quickstart (tiny sizes): stopped at step 2 and resumed to 4, the
    fine-tuned generator equals that of an uninterrupted 4-step run (host RNG, optimizer, frozen codes)."""
    from modify_ms.utils.checkpoint import read_arrays

    def run(name, *extra):
        sets = TINY_TOOL + ["steps=4", "run.ckpt_every=2", "run.sample_every=2", f"run.out_dir={tmp_path / name}"]
        return run_tool(["tools/train_baseline.py", "--config", QUICKSTART] + overrides(sets) + list(extra))

    assert "finished at step 2" in run("resumed", "--max-steps", "2").stdout
    assert "finished at step 4" in run_tool(["tools/train_baseline.py", "--resume", str(tmp_path / "resumed")]).stdout
    run("straight")
    final = [read_arrays(str(tmp_path / r / "checkpoints" / "step_00000004.ckpt"))[0] for r in ("resumed", "straight")]
    assert sorted(final[0]) == sorted(final[1])
    for key in final[0]:
        np.testing.assert_array_equal(final[0][key], final[1][key], err_msg=key)
