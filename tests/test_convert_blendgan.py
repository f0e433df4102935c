"""Importers of BlendGAN's released files (weights_convert/blendgan.py) and torchvision's VGG-19.

* The REAL key lists (modify_ms/assets/manifests/baseline_key_manifests.json: ``blendgan_pt`` 228,
  ``blendgan_style_encoder_pt`` 40, ``blendgan_psp_encoder_pt`` 622, ``torchvision_vgg19_state_dict``
  38): every key matches exactly one rule and the rule targets are exactly the MindSpore
  parameters (names, on a narrow network of the same structure: cheap); the full-size shapes
  through the strict mapping are the slow test (~20 s, 3 GB: the 610,304 x 512 matrix).
* End to end: tiny files in the real layouts written by ``torch.save`` go through the CLI as a
  subprocess: the whole generator on random weights (embedded style encoder included), converted,
  renders as the torch reference does for i = 0, 6-like and L (rel 2e-5), reference-guided z_s
  included; the style encoder and VGG-19 (and, slow, the psp encoder) encode as torch does; a missing
  key, an extra key, a bad shape and the wrong ``--what`` each exit 2 with one line.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from parity_utils import assert_close, m, t
from reference import blendgan_ref as ref
from weights_convert.mapping import target_shapes_of

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE, SDIM, N_MLP, CM, CMAX = 32, 16, 2, 1, 16
WIDTHS, EMBED_MLP = (4, 6, 8, 8, 8), 3


@pytest.fixture(scope="module")
def baseline():
    from modify_ms.assets import key_manifests

    return key_manifests("baseline")


def rule_targets(keys, rules):
    """{source key: target name or None (consumed)}; each key must match exactly one rule."""
    out = {}
    for key in keys:
        hits = [(r, r.regex.fullmatch(key)) for r in rules]
        hits = [(r, mm) for r, mm in hits if mm]
        assert len(hits) == 1, (key, hits)
        rule, mm = hits[0]
        out[key] = None if rule.target is None else rule.target_name(mm)
    return out


def strip(keys, prefix):
    return [k[len(prefix):] for k in keys if k.startswith(prefix)]


def test_real_generator_key_list_names(baseline):
    """blendgan.pt's 228 g_ema keys (+ latent_avg) onto a BlendGenerator(1024) of the same structure."""
    from baselines_ms.blendgan.networks import BlendGenerator
    from weights_convert.blendgan import generator_rules

    entry = baseline["blendgan_pt"]
    keys = strip(entry["keys"], "g_ema/") + ["latent_avg"]
    assert len(keys) == 229
    targets = rule_targets(keys, generator_rules())
    loaded = {v for v in targets.values() if v is not None}
    narrow = BlendGenerator(1024, 8, 8, 1, 8, embedder_mlp=4, vgg_widths=(1, 1, 1, 1, 1), style_input_size=32)
    assert loaded == set(target_shapes_of(narrow))
    assert len(loaded) == len([v for v in targets.values() if v is not None])  # none filled twice
    assert sum(v is None for v in targets.values()) == 8 + 8  # FIR kernels: 8 upsampling convs + 8 ToRGB skips (consumed, checked)


def test_real_other_key_lists_names(baseline):
    from baselines_ms.blendgan.networks import StyleEncoder
    from modify_ms.models.psp_encoder import GradualStyleEncoder
    from modify_ms.models.vgg import VGG19Features
    from weights_convert.blendgan import Rule, style_encoder_rules, vgg19_rules
    from weights_convert.psp import encoder_rules

    se = baseline["blendgan_style_encoder_pt"]["keys"]
    targets = rule_targets(list(se), style_encoder_rules())
    assert set(targets.values()) == set(target_shapes_of(StyleEncoder(8, 4, (1, 1, 1, 1, 1), 32)))

    vgg = baseline["torchvision_vgg19_state_dict"]["keys"]
    targets = rule_targets(list(vgg), vgg19_rules())
    assert {v for v in targets.values() if v} == set(target_shapes_of(VGG19Features((1, 1, 1, 1, 1))))
    assert sum(v is None for v in targets.values()) == 6  # the classifier: consumed, shape-checked

    psp = [k for k in strip(baseline["blendgan_psp_encoder_pt"]["keys"], "state_dict/")
           if not k.endswith("num_batches_tracked")] + ["latent_avg"]
    targets = rule_targets(psp, encoder_rules() + [Rule(r"latent_avg", "latent_avg")])
    shapes = target_shapes_of(GradualStyleEncoder(18, 256, units=(1, 1, 1, 1), channels=(8, 8, 8, 8),
                                                  latent_avg=np.zeros((18, 8), np.float32)))
    assert {v[len("encoder."):] if v.startswith("encoder.") else v for v in targets.values()} >= \
        {k for k in shapes if not k.startswith("body.")}


@pytest.mark.slow
def test_real_generator_full_shapes(baseline):
    """The full-size mapping of blendgan.pt (every shape, 610,304-d Gram vector), zero-cost sources."""
    from test_convert_e4e_jojogan import shape_only_init, zero_cost

    from baselines_ms.blendgan.networks import BlendGenerator
    from weights_convert.blendgan import OPTIONAL, generator_rules, infer_generator_kwargs
    from weights_convert.mapping import map_state_dict

    sd = zero_cost(baseline["blendgan_pt"]["keys"], "g_ema/")
    kwargs = infer_generator_kwargs(sd)
    assert kwargs == {"size": 1024, "style_dim": 512, "n_mlp": 8, "channel_multiplier": 2, "channel_max": 512,
                      "lr_mlp": 0.01, "embedder_mlp": 4, "vgg_widths": [64, 128, 256, 512, 512],
                      "style_input_size": 256}
    with shape_only_init():
        shapes = target_shapes_of(BlendGenerator(**kwargs))
    assert shapes["embedder.predictor.0.weight"] == (512, 610304)
    shapes.pop("generator.latent_avg")
    params = map_state_dict(sd, shapes, generator_rules(), optional=OPTIONAL)
    assert len(params) == 228 - 16


# ------------------------------------------------------------------ end to end through the CLI
def _cli(*args):
    env = dict(os.environ, PYTHONPATH=REPO, GLOG_v="3")
    return subprocess.run([sys.executable, "-m", "weights_convert", *args], cwd=REPO, env=env,
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def torch_generator():
    torch.manual_seed(0)
    return ref.randomize_blend_(ref.BlendGenerator(SIZE, SDIM, N_MLP, CM, CMAX, embedder_mlp=EMBED_MLP,
                                                   widths=WIDTHS, style_input_size=32), seed=21)


@pytest.fixture(scope="module")
def converted(tmp_path_factory, torch_generator):
    """blendgan.pt-layout file (torch.save) -> the CLI (one subprocess) -> the converted file."""
    folder = tmp_path_factory.mktemp("blendgan")
    avg = torch.randn(SDIM)
    src, dst = str(folder / "blendgan.pt"), str(folder / "blendgan.ckpt")
    torch.save({"g_ema": torch_generator.state_dict(), "latent_avg": avg, "truncation": 0.75}, src)
    proc = _cli("blendgan", src, dst)
    assert proc.returncode == 0, proc.stderr
    assert "BlendGenerator" in proc.stdout and os.path.isfile(dst + ".json")
    return src, dst, avg.numpy(), folder


def test_whole_generator_renders_as_torch(converted, torch_generator):
    """Random weights in the released layout, converted by the CLI: the MindSpore render equals the torch
    render (stored noise buffers, as the official scripts' randomize_noise=False), latent-guided and
    reference-guided (z_s from the embedded style encoder), for i = 0, 4 and L."""
    import mindspore as ms

    from baselines_ms.blendgan.networks import face_rows
    from weights_convert.blendgan import build_generator

    _, dst, avg, _ = converted
    mg, meta = build_generator(dst, style_input_size=32)
    assert meta["truncation"] == 0.75 and meta["latent_avg"] == "from the checkpoint"
    np.testing.assert_array_equal(mg.generator.latent_avg.asnumpy(), avg)
    rng = np.random.default_rng(22)
    z = rng.standard_normal((2, SDIM)).astype(np.float32)
    style = np.tanh(rng.standard_normal((2, 3, 64, 64))).astype(np.float32)
    tg = torch_generator
    with torch.no_grad():
        zs_t = tg.embedder(t(style))
        w_t = tg.mapping(t(z))
        w_t = t(avg) + 0.75 * (w_t - t(avg))
        outs_t = {i: tg.render(w_t, zs_t, i) for i in (0, 4, SIZE and tg.n_latent)}
    zs = mg.embedder(m(style))
    assert_close(zs, zs_t, 2e-5, "reference-guided z_s")
    w = mg.face_w(m(z), 0.75)
    for i, out_t in outs_t.items():
        assert_close(mg(w, zs, face_rows(mg.n_latent, i)), out_t, 2e-5, f"render i={i}")
    latent = rng.standard_normal((2, SDIM)).astype(np.float32)  # latent-guided: z_s ~ N(0, I) used directly
    with torch.no_grad():
        out_t = tg.render(w_t, t(latent), 6)
    assert_close(mg(w, ms.Tensor(latent), face_rows(mg.n_latent, 6)), out_t, 2e-5, "latent-guided render")


def test_bad_generator_files_exit_2(converted, torch_generator):
    src, _, _, folder = converted
    sd = torch_generator.state_dict()
    cases = {
        "missing": {k: v for k, v in sd.items() if k != "embedding.2.bias"},
        "extra": dict(sd, **{"embedding.9.weight": torch.zeros(SDIM, SDIM)}),
        "shape": dict(sd, **{"add_weight": torch.ones(1, 7, 1)}),
    }
    for what, state in cases.items():
        path = str(folder / f"{what}.pt")
        torch.save({"g_ema": state}, path)
        proc = _cli("blendgan", path, str(folder / f"{what}.ckpt"))
        assert proc.returncode == 2 and proc.stderr.startswith("error: ") and len(proc.stderr.splitlines()) == 1, \
            (what, proc.stderr)
        assert not os.path.exists(folder / f"{what}.ckpt")
    proc = _cli("blendgan", src, str(folder / "x.ckpt"), "--what", "vgg19")
    assert proc.returncode == 2 and "not a BlendGAN vgg19 file" in proc.stderr
    # without the optional latent_avg: estimated as the official mean_latent(4096), and said so
    torch.save({"g_ema": sd}, str(folder / "no_avg.pt"))
    proc = _cli("blendgan", str(folder / "no_avg.pt"), str(folder / "no_avg.ckpt"))
    assert proc.returncode == 0, proc.stderr
    with open(folder / "no_avg.ckpt.json") as fh:
        assert json.load(fh)["latent_avg"].startswith("estimated")


def test_style_encoder_and_vgg19(tmp_path, torch_generator):
    """style_encoder.pt (a bare state_dict) and a torchvision VGG-19 state_dict, each through the CLI:
    the style encoder encodes (256 px input pooled to 256: the official size) and the VGG taps as torch's."""
    import mindspore as ms

    from weights_convert.blendgan import build_style_encoder, load_vgg19
    from modify_ms.models.vgg import VGG19Features

    se_src, se_dst = str(tmp_path / "style_encoder.pt"), str(tmp_path / "se.ckpt")
    torch.save(torch_generator.embedder.state_dict(), se_src)
    proc = _cli("blendgan", se_src, se_dst, "--what", "style-encoder")
    assert proc.returncode == 0, proc.stderr
    enc, meta = build_style_encoder(se_dst)
    assert meta["kwargs"]["n_mlp"] == EMBED_MLP
    x = np.tanh(np.random.default_rng(23).standard_normal((2, 3, 256, 256))).astype(np.float32)
    torch_generator.embedder.embedder.input_size = 256
    with torch.no_grad():
        expected = torch_generator.embedder(t(x))
    torch_generator.embedder.embedder.input_size = 32
    assert_close(enc(ms.Tensor(x)), expected, 2e-5, "style encoder")

    vgg = ref.vgg19_features(WIDTHS)
    sd = {f"features.{k}": v for k, v in vgg.state_dict().items()}
    sd.update({k: torch.zeros(s) for k, s in (("classifier.0.weight", (4096, 25088)), ("classifier.0.bias", (4096,)),
                                              ("classifier.3.weight", (4096, 4096)), ("classifier.3.bias", (4096,)),
                                              ("classifier.6.weight", (1000, 4096)), ("classifier.6.bias", (1000,)))})
    v_src, v_dst = str(tmp_path / "vgg19.pth"), str(tmp_path / "vgg19.ckpt")
    torch.save(sd, v_src)
    proc = _cli("blendgan", v_src, v_dst)
    assert proc.returncode == 0, proc.stderr
    cell = load_vgg19(VGG19Features(WIDTHS), v_dst)
    img = np.random.default_rng(24).standard_normal((1, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        taps_t = ref.FeatureExtractor(WIDTHS)
        taps_t.vgg_layers.load_state_dict(vgg.state_dict())
        expected = taps_t(t(img))
    for got, want in zip(cell(ms.Tensor(img)), expected):
        assert_close(got, want, 2e-5, "VGG-19 tap")



@pytest.mark.slow
def test_psp_encoder(tmp_path):
    """psp_encoder.pt ({state_dict: encoder.* (+ decoder.*, ignored as the official loader does), latent_avg})
    through the CLI encodes as the torch reference (W+ + latent_avg); without latent_avg: exit 2."""
    import mindspore as ms

    from reference.irse_ref import PSPEncoder, randomize
    from weights_convert.blendgan import build_psp_encoder

    torch.manual_seed(3)
    psp = randomize(PSPEncoder(8, 64, units=(1, 1, 1, 1), channels=(16, 24, 32, 48)), seed=25).eval()
    avg = torch.randn(8, 48)
    state = {f"encoder.{k}": v for k, v in psp.state_dict().items()}
    state["decoder.style.1.weight"] = torch.zeros(4, 4)  # a full pSp file: the official loader ignores these
    p_src, p_dst = str(tmp_path / "psp_encoder.pt"), str(tmp_path / "psp.ckpt")
    torch.save({"state_dict": state, "latent_avg": avg}, p_src)
    proc = _cli("blendgan", p_src, p_dst)
    assert proc.returncode == 0, proc.stderr
    encoder, meta = build_psp_encoder(p_dst)
    assert meta["n_ignored"] == 1
    encoder.set_train(False)
    face = np.tanh(np.random.default_rng(26).standard_normal((2, 3, 64, 64))).astype(np.float32)
    with torch.no_grad():
        expected = psp(t(face)) + avg
    assert_close(encoder(ms.Tensor(face)), expected, 2e-5, "psp encoder W+ (+ latent_avg)")
    torch.save({"state_dict": state}, p_src)
    proc = _cli("blendgan", p_src, p_dst + "2")
    assert proc.returncode == 2 and "latent_avg" in proc.stderr
