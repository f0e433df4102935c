"""Importer of MMFS's released files (weights_convert/mmfs.py).

* The REAL key list (modify_ms/assets/manifests/baseline_key_manifests.json ``mmfs_phase2_pth``,
  299 tensors in G / G_ema / D): every G_ema_model key matches exactly one rule, the targets are
  exactly the full-size Stylizer's parameters, the 16 FIR kernels are consumed; the D keys map
  onto a 512 px Discriminator.
* End to end: a file in the released container (``save_networks``'s dict: G_model, G_ema_model,
  D_model, optimizer_0/1, scheduler_0/1, epoch, total_iters, metric), its state dicts those of the
  torch reference (tests/reference/mmfs_ref.py) with the manifest's key set at narrow widths,
  torch.save'd, converted by the CLI (``python -m weights_convert mmfs SRC DST``), loaded into the
  MindSpore Stylizer and the ``mmfs`` stylizer: outputs equal the torch reference's (rel 2e-5) for
  the same styles and noise. The real shapes end to end are the slow test.
* Hostile: a missing key, an extra key, a wrong shape, a file that is no MMFS checkpoint: exit 2,
  one line, nothing written.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from parity_utils import assert_close, m, t
from reference import mmfs_ref as ref
from reference import stylegan2_ref as sref
from weights_convert.mapping import target_shapes_of

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 512                                   # the released resolution (the D's depth follows it)
NGF, SDIM, N_MLP, CMAX = 2, 8, 8, 8          # narrow widths, the released depth and key set


@pytest.fixture(scope="module")
def manifest():
    with open(os.path.join(REPO, "modify_ms", "assets", "manifests", "baseline_key_manifests.json")) as fh:
        return json.load(fh)


def released_keys(manifest, entry, part):
    return {k.split("/", 1)[1]: tuple(v) for k, v in manifest[entry]["keys"].items() if k.startswith(part + "/")}


def test_real_key_list_maps_onto_the_full_size_networks(manifest):
    from baselines_ms.mmfs.config import StylizerConfig
    from baselines_ms.mmfs.networks import Stylizer
    from modify_ms.models.stylegan2 import Discriminator
    from weights_convert.mmfs import stylizer_rules
    from weights_convert.stylegan2 import rosinality_discriminator_rules

    g = released_keys(manifest, "mmfs_phase2_pth", "G_ema_model")
    assert len(g) + len(released_keys(manifest, "mmfs_phase2_pth", "D_model")) + \
        len(released_keys(manifest, "mmfs_phase2_pth", "G_model")) == 299
    targets = {}
    for key in g:
        hits = [(r, r.regex.fullmatch(key)) for r in stylizer_rules()]
        hits = [(r, mm) for r, mm in hits if mm]
        assert len(hits) == 1, key
        targets[key] = None if hits[0][0].target is None else hits[0][0].target_name(hits[0][1])
    shapes = target_shapes_of(Stylizer(StylizerConfig()))
    assert {v for v in targets.values() if v} == set(shapes)
    assert all(shapes[v] == g[k] for k, v in targets.items() if v)
    assert sum(v is None for v in targets.values()) == 16
    d = released_keys(manifest, "mmfs_phase2_pth", "D_model")
    d_shapes = target_shapes_of(Discriminator(512))
    loaded = [k for k in d if not k.endswith("kernel")]
    assert set(loaded) == set(d_shapes) and all(d_shapes[k] == d[k] for k in loaded)
    assert all(any(r.regex.fullmatch(k) for r in rosinality_discriminator_rules()) for k in d)


# ------------------------------------------------------------------ end to end through the CLI
def _cli(*args):
    env = dict(os.environ, PYTHONPATH=REPO, GLOG_v="3")
    return subprocess.run([sys.executable, "-m", "weights_convert", *args], cwd=REPO, env=env,
                          capture_output=True, text=True)


def release_dict(g, g_ema, d):
    """What MMFS's save_networks writes (torch objects: optimizer and scheduler states included)."""
    opt_g = torch.optim.Adam(g.parameters(), lr=1e-3, betas=(0.1, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=1e-3 * 16 / 17)
    sched = [torch.optim.lr_scheduler.LambdaLR(o, lambda it: 1.0) for o in (opt_g, opt_d)]
    return {"G_model": g.state_dict(), "G_ema_model": g_ema.state_dict(), "D_model": d.state_dict(),
            "optimizer_0": opt_g.state_dict(), "optimizer_1": opt_d.state_dict(),
            "scheduler_0": sched[0].state_dict(), "scheduler_1": sched[1].state_dict(),
            "epoch": 90000, "total_iters": 90000, "metric": 0.0}


@pytest.fixture(scope="module")
def release(tmp_path_factory, manifest):
    torch.manual_seed(0)
    g_ema = ref.randomize_stylizer_(ref.Stylizer(SIZE, NGF, SDIM, N_MLP, 2, CMAX), seed=31)
    g = ref.randomize_stylizer_(ref.Stylizer(SIZE, NGF, SDIM, N_MLP, 2, CMAX), seed=32)
    d = sref.randomize_(sref.Discriminator(SIZE, 2, CMAX), seed=33)
    obj = release_dict(g, g_ema, d)
    for part in ("G_model", "G_ema_model", "D_model"):  # the released key set, exactly
        assert set(obj[part]) == set(released_keys(manifest, "mmfs_phase2_pth", part)), part
    folder = tmp_path_factory.mktemp("mmfs")
    src, dst = str(folder / "phase2_pretrain_90000.pth"), str(folder / "phase2.ckpt")
    torch.save(obj, src)
    proc = _cli("mmfs", src, dst)
    assert proc.returncode == 0, proc.stderr
    assert "Stylizer(size=512" in proc.stdout and os.path.isfile(dst + ".json")
    return g_ema, d, obj, src, dst, folder


def test_converted_stylizer_renders_as_torch(release):
    import mindspore as ms
    from weights_convert.mmfs import build_stylizer

    g_ema, d, _, _, dst, _ = release
    net, cfg = build_stylizer(dst)
    assert cfg.model.stylizer.ngf == NGF and cfg.model.stylizer.channel_max == CMAX
    with open(dst + ".json") as fh:
        meta = json.load(fh)
    assert meta["which"] == "G_ema_model" and "optimizer_0" in meta["not_read"] and "G_model" in meta["not_read"]
    rng = np.random.default_rng(34)
    x = np.tanh(rng.standard_normal((1, 3, SIZE, SIZE))).astype(np.float32)
    z = rng.standard_normal((1, SDIM)).astype(np.float32)
    noise = [rng.standard_normal(s).astype(np.float32) for s in net.noise_shapes(1)]
    with torch.no_grad():
        out_t = g_ema(t(x), g_ema.styles(t(z)), [t(n) for n in noise])
    ms.set_context(mode=ms.PYNATIVE_MODE)  # one forward: no compilation
    try:
        out = net(m(x), net.styles_from_z(m(z)), ms.mutable(tuple(m(n) for n in noise)))
    finally:
        ms.set_context(mode=ms.GRAPH_MODE)
    assert_close(out, out_t, 2e-5, "converted Stylizer vs torch")
    from modify_ms.models.stylegan2 import Discriminator
    from modify_ms.utils.checkpoint import fill_cell, read_arrays

    arrays, _ = read_arrays(dst)
    md = Discriminator(SIZE, 2, CMAX)
    fill_cell(md, arrays, dst, prefix="discriminator/")
    xs = np.tanh(rng.standard_normal((2, 3, SIZE, SIZE))).astype(np.float32)
    with torch.no_grad():
        d_t = d(t(xs))
    ms.set_context(mode=ms.PYNATIVE_MODE)
    try:
        assert_close(md(m(xs)), d_t, 2e-5, "converted D vs torch")
    finally:
        ms.set_context(mode=ms.GRAPH_MODE)


def test_registry_loads_the_converted_file(release):
    from modify_ms.stylizers import create_stylizer

    *_, dst, _ = release
    s = create_stylizer("mmfs", dst, run_mode="pynative", output_size=64)
    x = np.tanh(np.random.default_rng(35).standard_normal((1, 3, 64, 64))).astype(np.float32)
    y = s.stylize(x, names=["a"])
    assert y.shape == (1, 3, 64, 64) and np.isfinite(y).all() and np.abs(y).max() <= 1


def test_hostile_files_exit_2(release):
    _, _, obj, _, _, folder = release
    g = obj["G_ema_model"]
    cases = {
        "missing": dict(obj, G_ema_model={k: v for k, v in g.items() if k != "decoder2b.noise.weight"}),
        "extra": dict(obj, G_ema_model=dict(g, **{"decoder5a.noise.weight": torch.zeros(1)})),
        "shape": dict(obj, G_ema_model=dict(g, **{"to_rgb3.bias": torch.zeros(1, 4, 1, 1)})),
        "kernel": dict(obj, G_ema_model=dict(g, **{"decoder1a.conv.blur.kernel": torch.ones(4, 4)})),
        "d_missing": dict(obj, D_model={k: v for k, v in obj["D_model"].items() if k != "final_conv.1.bias"}),
        "not_mmfs": {"g_ema": g},
    }
    for what, bad in cases.items():
        path, out = str(folder / f"{what}.pth"), folder / f"{what}.ckpt"
        torch.save(bad, path)
        proc = _cli("mmfs", path, str(out))
        assert proc.returncode == 2 and proc.stderr.startswith("error: ") and len(proc.stderr.splitlines()) == 1, \
            (what, proc.stderr)
        assert "Traceback" not in proc.stderr and not os.path.exists(out) and not os.path.exists(str(out) + ".json")


@pytest.mark.slow
def test_real_shapes_end_to_end(tmp_path, manifest):
    """The released shapes (ngf 64, 512 channels, 18.7M + 29M values) through torch.save and the CLI;
    the converted Stylizer renders as the torch reference (GRAPH)."""
    import mindspore as ms
    from weights_convert.mmfs import build_stylizer

    torch.manual_seed(1)
    g_ema = ref.randomize_stylizer_(ref.Stylizer(SIZE), seed=41)
    d = sref.randomize_(sref.Discriminator(SIZE), seed=42)
    obj = {"G_model": g_ema.state_dict(), "G_ema_model": g_ema.state_dict(), "D_model": d.state_dict(),
           "epoch": 1, "total_iters": 1, "metric": 0.0}
    for part in ("G_ema_model", "D_model"):
        assert {k: tuple(v.shape) for k, v in obj[part].items()} == released_keys(manifest, "mmfs_phase2_pth", part)
    src, dst = str(tmp_path / "phase2.pth"), str(tmp_path / "phase2.ckpt")
    torch.save(obj, src)
    proc = _cli("mmfs", src, dst)
    assert proc.returncode == 0, proc.stderr
    net, _ = build_stylizer(dst)
    rng = np.random.default_rng(43)
    x = np.tanh(rng.standard_normal((1, 3, SIZE, SIZE))).astype(np.float32)
    z = rng.standard_normal((1, 512)).astype(np.float32)
    noise = [rng.standard_normal(s).astype(np.float32) for s in net.noise_shapes(1)]
    with torch.no_grad():
        out_t = g_ema(t(x), g_ema.styles(t(z)), [t(n) for n in noise])
    out = net(m(x), net.styles_from_z(m(z)), ms.mutable(tuple(m(n) for n in noise)))
    assert_close(out, out_t, 1e-4, "full-size converted Stylizer vs torch")


class TorchClipMapper(torch.nn.Module):
    """CLIPFeats2Wplus as the released keys lay it out: ``position_embedding`` [10, D] and torch's own
    pre-norm TransformerEncoder (the layer the release's ``transformer.layers.N.*`` keys come from);
    x [B, D] broadcast to the 10 tokens + positions, seq-first, leaky ReLU 0.2 at the end."""

    def __init__(self, dim, n_layers=4, heads=2, ff=16):
        super().__init__()
        self.position_embedding = torch.nn.Parameter(torch.randn(10, dim) * dim ** -0.5)
        layer = torch.nn.TransformerEncoderLayer(dim, heads, ff, dropout=0.1, norm_first=True)
        self.transformer = torch.nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)

    def forward(self, x):
        return torch.nn.functional.leaky_relu(self.transformer(x.unsqueeze(0) + self.position_embedding.unsqueeze(1)),
                                              0.2)


def test_phase3_file_with_the_clip_mapper(tmp_path, manifest):
    """phase3_pretrain / one- and zero-shot layout: the 49 clip_mapper tensors per G load into the
    Stylizer's clip_mapper; styles_from_clip and the render equal torch's (eval mode: no dropout)."""
    pytest.importorskip("baselines_ms.mmfs.clip_mapper")
    import mindspore as ms
    from weights_convert.mmfs import build_stylizer

    torch.manual_seed(2)
    g_ema = ref.randomize_stylizer_(ref.Stylizer(SIZE, NGF, SDIM, N_MLP, 2, CMAX), seed=51)
    g_ema.clip_mapper = TorchClipMapper(SDIM)
    with torch.no_grad():
        for p in g_ema.clip_mapper.parameters():
            p.add_(0.05 * torch.randn(p.shape))  # LayerNorm weights off 1, biases off 0
    g_ema.eval()
    d = sref.randomize_(sref.Discriminator(SIZE, 2, CMAX), seed=52)
    obj = release_dict(g_ema, g_ema, d)
    assert set(obj["G_ema_model"]) == set(released_keys(manifest, "mmfs_phase3_phase4_pth", "G_ema_model"))
    src, dst = str(tmp_path / "phase3_pretrain_10000.pth"), str(tmp_path / "phase3.ckpt")
    torch.save(obj, src)
    proc = _cli("mmfs", src, dst, "--clip-heads", "2")
    assert proc.returncode == 0, proc.stderr
    net, cfg = build_stylizer(dst)
    assert cfg.model.stylizer.clip_mapper.n_layers == 4 and cfg.model.stylizer.clip_mapper.ff_dim == 16
    net.set_train(False)
    rng = np.random.default_rng(53)
    feats = rng.standard_normal((2, SDIM)).astype(np.float32)
    x = np.tanh(rng.standard_normal((2, 3, SIZE, SIZE))).astype(np.float32)
    noise = [rng.standard_normal(s).astype(np.float32) for s in net.noise_shapes(2)]
    with torch.no_grad():
        styles_t = g_ema.clip_mapper(t(feats))
        out_t = g_ema(t(x), styles_t, [t(n) for n in noise])
    ms.set_context(mode=ms.PYNATIVE_MODE)
    try:
        styles = net.styles_from_clip(m(feats))
        assert_close(styles, styles_t.numpy().transpose(1, 0, 2), 2e-5, "clip mapper styles")
        assert_close(net(m(x), styles, ms.mutable(tuple(m(n) for n in noise))), out_t, 2e-5, "render from CLIP styles")
    finally:
        ms.set_context(mode=ms.GRAPH_MODE)


def test_training_starts_from_the_converted_file(release):
    """weights.stylizer = a converted release file: stylizer_ema and D as converted, the trained stylizer
    starting as the EMA one (stage II / phase 3 start there)."""
    import dataclasses

    from baselines_ms.mmfs.config import MMFSConfig, MMFSModel
    from baselines_ms.mmfs.trainer import MMFSNets, load_mmfs_file
    from modify_ms.train.config import DiscriminatorConfig
    from modify_ms.utils.checkpoint import read_arrays
    from weights_convert.mmfs import build_stylizer

    *_, dst, _ = release
    _, cfg = build_stylizer(dst)
    cfg = dataclasses.replace(cfg, model=MMFSModel(stylizer=cfg.model.stylizer,
                                                   discriminator=DiscriminatorConfig(channel_max=CMAX)))
    assert isinstance(cfg, MMFSConfig)
    nets = MMFSNets(cfg)
    load_mmfs_file(nets, dst)
    arrays, _ = read_arrays(dst)
    for group in ("stylizer", "stylizer_ema", "discriminator"):
        prefix = "discriminator/" if group == "discriminator" else "stylizer_ema/"
        for name, p in getattr(nets, group).parameters_and_names():
            np.testing.assert_array_equal(p.asnumpy(), arrays[prefix + name], err_msg=f"{group}/{name}")
