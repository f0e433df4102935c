"""End to end: a rosinality checkpoint written by torch.save -> the CLI (a real subprocess) ->
MindSpore renders what PyTorch renders from the same weights.

The checkpoint is a rosinality training checkpoint built from the PyTorch reference
(tests/reference/stylegan2_ref.py, rosinality state-dict layout, every value randomised):
{'g_ema', 'g', 'd', 'latent_avg', 'args': argparse.Namespace}, written in both
serialisations (zip, and the legacy pre-1.6 stream). ``python -m weights_convert
stylegan2 SRC DST --which g_ema|d`` converts it; the result is loaded with the
converter's loaders (``build_from_checkpoint`` builds the networks from the sidecar,
``read_arrays`` + ``fill_cell`` load each format's file) and run in GRAPH_MODE:

* G: z -> mapping -> truncation 0.7 around the checkpoint's latent_avg -> synthesis
  with the fixed noise maps saved in the file (``noise=None``), against the torch
  render of the same z;
* D: logits and the per-block features, against torch.

Tolerance: max-abs error relative to the reference's max magnitude < 1e-5 (float32;
the two sides order their sums differently). A pickle that would run code, given to
the CLI, must exit non-zero with a one-line refusal, no traceback, nothing run or
written. ``tools/render_stylegan2.py`` renders the converted generator too.
"""
import argparse
import os
import subprocess
import sys

import numpy as np
import pytest
import mindspore as ms
import torch
from mindspore import nn

from reference import stylegan2_ref as ref
from modify_ms.utils.checkpoint import fill_cell, read_arrays
from weights_convert.stylegan2 import build_from_checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFG = dict(size=32, sdim=32, n_mlp=3, cm=2, cmax=16)
TRUNCATION = 0.7
TOL = 1e-5
FORMATS = ("zip", "legacy")


class _RunsShell:
    """Unpickling this would run a shell command (it would create ``self.marker``)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _cli(*args):
    env = dict(os.environ, PYTHONPATH=REPO, GLOG_v="3")
    return subprocess.Popen([sys.executable, "-m", "weights_convert", "stylegan2", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """Torch nets, the two checkpoints, and the CLI results (all conversions run concurrently)."""
    root = tmp_path_factory.mktemp("e2e")
    g_ema = ref.randomize_(ref.Generator(CFG["size"], CFG["sdim"], CFG["n_mlp"], CFG["cm"], CFG["cmax"]), 0)
    g = ref.randomize_(ref.Generator(CFG["size"], CFG["sdim"], CFG["n_mlp"], CFG["cm"], CFG["cmax"]), 1)
    d = ref.randomize_(ref.Discriminator(CFG["size"], CFG["cm"], CFG["cmax"]), 2)
    latent_avg = g_ema.mapping(torch.randn(256, CFG["sdim"], generator=torch.Generator().manual_seed(7))).mean(0)
    checkpoint = {"g_ema": g_ema.state_dict(), "g": g.state_dict(), "d": d.state_dict(),
                  "latent_avg": latent_avg.detach(),
                  "args": argparse.Namespace(size=CFG["size"], channel_multiplier=CFG["cm"], latent=CFG["sdim"],
                                             n_mlp=CFG["n_mlp"], lr=0.002, r1=10.0)}
    files, procs = {}, {}
    for fmt in FORMATS:
        src = str(root / f"ckpt_{fmt}.pt")
        torch.save(checkpoint, src, _use_new_zipfile_serialization=(fmt == "zip"))
        for which in ("g_ema", "d"):
            dst = str(root / f"{which}_{fmt}.ckpt")
            files[fmt, which] = dst
            procs[fmt, which] = _cli(src, dst, "--which", which)
    marker = root / "pwned"
    evil_src, evil_dst = str(root / "evil.pt"), str(root / "evil.ckpt")
    torch.save({"g_ema": _RunsShell(marker)}, evil_src)
    procs["evil"] = _cli(evil_src, evil_dst)
    results = {}
    for key, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        results[key] = (proc.returncode, out, err)
    return dict(nets=(g_ema, g, d), latent_avg=latent_avg.detach(), files=files, results=results, root=root,
                marker=marker, evil_dst=evil_dst)


def _assert_close(actual, expected, what):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    err = np.abs(actual - expected).max() / max(np.abs(expected).max(), 1e-12)
    assert err < TOL, f"{what}: relative error {err:.3g} >= {TOL}"


class _Render(nn.Cell):
    """z -> mapping -> truncation -> synthesis with the saved noise maps (noise=None)."""

    def __init__(self, gen, psi):
        super().__init__()
        self.gen, self.psi = gen, psi

    def construct(self, z):
        return self.gen(self.gen.truncate(self.gen.mapping(z), self.psi))


def _torch_render(g_ema, latent_avg, z):
    with torch.no_grad():
        w = g_ema.mapping(torch.from_numpy(z))
        w = latent_avg + TRUNCATION * (w - latent_avg)
        return g_ema(w[:, None].repeat(1, g_ema.n_latent, 1)).numpy()  # noise=None: the noises.noise_i buffers


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("which", ["g_ema", "d"])
def test_cli_converts(case, fmt, which):
    code, out, err = case["results"][fmt, which]
    assert code == 0, err
    dst = case["files"][fmt, which]
    assert f"wrote {dst}" in out and os.path.isfile(dst) and os.path.isfile(dst + ".json")
    assert "Traceback" not in err and "Cell.__del__" not in err, err


@pytest.fixture(scope="module")
def ms_nets(case):
    """MindSpore G (inside its render cell) and D, built by the converter's loader from the zip
    conversions; each test then loads its format's checkpoint into them, so GRAPH_MODE compiles
    each network once for the module (parameter values are inputs, not constants)."""
    for which in ("g_ema", "d"):
        assert case["results"]["zip", which][0] == 0, case["results"]["zip", which][2]
    gen, _ = build_from_checkpoint(case["files"]["zip", "g_ema"])
    disc, _ = build_from_checkpoint(case["files"]["zip", "d"])
    return _Render(gen, TRUNCATION), disc


def _load(cell, case, fmt, which, prefix=""):
    """The converted checkpoint of ``fmt`` into ``cell`` via the converter's loader; returns its meta.

    ``prefix``: where the network sits inside ``cell`` (a wrapped cell's parameters are renamed)."""
    assert case["results"][fmt, which][0] == 0, case["results"][fmt, which][2]
    params, meta = read_arrays(case["files"][fmt, which])
    fill_cell(cell, {prefix + k: v for k, v in params.items()}, case["files"][fmt, which])
    return meta


@pytest.mark.parametrize("fmt", FORMATS)
def test_generator_render_matches_torch(case, ms_nets, fmt):
    render = ms_nets[0]
    gen = render.gen
    meta = _load(render, case, fmt, "g_ema", prefix="gen.")
    assert meta["which"] == "g_ema" and meta["latent_avg"] == "from the checkpoint"
    assert meta["kwargs"] == dict(size=CFG["size"], style_dim=CFG["sdim"], n_mlp=CFG["n_mlp"],
                                  channel_multiplier=CFG["cm"], channel_max=CFG["cmax"], lr_mlp=0.01)
    np.testing.assert_array_equal(gen.latent_avg.asnumpy(), case["latent_avg"].numpy())
    g_ema = case["nets"][0]
    for i in range(g_ema.num_layers):  # the fixed noise travelled bit-exactly
        np.testing.assert_array_equal(getattr(gen.noises, f"noise_{i}").asnumpy(),
                                      getattr(g_ema.noises, f"noise_{i}").numpy())
    z = np.random.default_rng(11).standard_normal((3, CFG["sdim"])).astype(np.float32)
    expected = _torch_render(g_ema, case["latent_avg"], z)
    assert np.abs(expected).max() > 0.1  # a render, not a constant
    _assert_close(render(ms.Tensor(z)).asnumpy(), expected, f"G render ({fmt})")


@pytest.mark.parametrize("fmt", FORMATS)
def test_discriminator_logits_and_features_match_torch(case, ms_nets, fmt):
    disc = ms_nets[1]
    meta = _load(disc, case, fmt, "d")
    assert meta["arch"] == "Discriminator" and meta["which"] == "d"
    img = np.random.default_rng(12).standard_normal((4, 3, CFG["size"], CFG["size"])).astype(np.float32)
    with torch.no_grad():
        logits, feats = case["nets"][2](torch.from_numpy(img), return_features=True)
    ms_logits, ms_feats = disc(ms.Tensor(img), return_features=True)
    _assert_close(ms_logits.asnumpy(), logits.numpy(), f"D logits ({fmt})")
    assert len(ms_feats) == len(feats)
    for i, (a, b) in enumerate(zip(ms_feats, feats)):
        _assert_close(a.asnumpy(), b.numpy(), f"D feature {i} ({fmt})")


def test_both_serialisations_convert_identically(case):
    for which in ("g_ema", "d"):
        a, b = (build_from_checkpoint(case["files"][fmt, which])[0] for fmt in FORMATS)
        pa, pb = dict(a.parameters_and_names()), dict(b.parameters_and_names())
        assert sorted(pa) == sorted(pb)
        for name in pa:
            np.testing.assert_array_equal(pa[name].asnumpy(), pb[name].asnumpy(), err_msg=name)


def test_malicious_checkpoint_is_refused_by_the_cli(case):
    code, out, err = case["results"]["evil"]
    lines = err.strip().splitlines()
    assert code != 0
    assert len(lines) == 1 and "refused to unpickle" in lines[0] and "would run code" in lines[0], err
    assert "Traceback" not in err
    assert not case["marker"].exists(), "the pickle's command ran"
    assert not os.path.exists(case["evil_dst"]) and not os.path.exists(case["evil_dst"] + ".json")


def _render_tool():
    """The render tool's command (tools/render_stylegan2.py only calls it)."""
    from modify_ms.commands import render

    return render


def test_render_tool_draws_the_torch_images(case, capsys):
    """tools/render_stylegan2.py on the converted g_ema: each grid cell is the torch render, quantised."""
    from PIL import Image

    tool = _render_tool()
    out = str(case["root"] / "grid.png")
    seeds = [4, 9]
    code = tool.main(["--ckpt", case["files"]["zip", "g_ema"], "--seeds", "4,9", "--truncation", str(TRUNCATION),
                      "--noise", "const", "--nrow", "2", "--out", out, "--mode", "pynative"])  # GRAPH_MODE is above
    ms.set_context(mode=ms.GRAPH_MODE)
    assert code == 0, capsys.readouterr().err
    assert f"wrote {os.path.abspath(out)}" in capsys.readouterr().out
    z = np.stack([np.random.default_rng(s).standard_normal(CFG["sdim"], dtype=np.float32) for s in seeds])
    expected = _torch_render(case["nets"][0], case["latent_avg"], z)
    expected = np.rint((np.clip(expected, -1, 1) + 1) * 127.5).transpose(0, 2, 3, 1)
    grid = np.asarray(Image.open(out).convert("RGB")).astype(np.float64)
    size, pad = CFG["size"], 2
    assert grid.shape == (size + 2 * pad, 2 * size + 3 * pad, 3)
    for i in range(len(seeds)):
        cell = grid[pad:pad + size, pad + i * (size + pad):pad + i * (size + pad) + size]
        assert np.abs(cell - expected[i]).max() <= 1  # rounding at a .5 boundary may differ by one level

    code = tool.main(["--ckpt", case["files"]["zip", "d"], "--out", str(case["root"] / "d.png")])
    ms.set_context(mode=ms.GRAPH_MODE)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "not a Generator" in err[0]
