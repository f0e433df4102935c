"""MMFS's Stylizer (baselines_ms/mmfs/networks.py) against the PyTorch reference written from the
mathematics (tests/reference/mmfs_ref.py), in GRAPH and PYNATIVE, forward and gradients, at a tiny
size: 64 px (decoder from 4 x 4), ngf 4, style_dim 16, 16 channels, random weights with nothing at
0 or 1. Also: the parameter names are the released G_ema_model keys and shapes (the full-size
network), and the StyleGAN2 -> Stylizer rule reproduces StyleGAN2's own synthesis.

Tolerance: max |ms - torch| / max |torch| < 2e-5 (forward), < 2e-4 (gradients, float32).
"""
import json
import os

import numpy as np
import pytest
import torch

import mindspore as ms

from parity_utils import assert_close, copy_torch_to_ms, m, t
from reference import mmfs_ref as ref

SIZE, NGF, SDIM, N_MLP, CM, CMAX = 64, 4, 16, 2, 1, 16
FWD, GRAD = 2e-5, 2e-4
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_cfg(**kw):
    from baselines_ms.mmfs.config import StylizerConfig

    return StylizerConfig(**dict(dict(size=SIZE, ngf=NGF, style_dim=SDIM, n_mlp=N_MLP, channel_multiplier=CM,
                                      channel_max=CMAX), **kw))


def is_kernel(key):
    return key.endswith("kernel")


@pytest.fixture(scope="module")
def pair():
    from baselines_ms.mmfs.networks import Stylizer

    torch.manual_seed(0)
    ts = ref.randomize_stylizer_(ref.Stylizer(SIZE, NGF, SDIM, N_MLP, CM, CMAX), seed=3)
    mst = Stylizer(tiny_cfg(), noise_seed=0)
    assert not copy_torch_to_ms(mst, ts, skip=is_kernel)
    return ts, mst


def inputs(seed=0, batch=2):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((batch, SDIM)).astype(np.float32)
    x = np.tanh(rng.standard_normal((batch, 3, SIZE, SIZE))).astype(np.float32)
    return z, x


def noise_maps(shapes, seed):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(np.float32) for s in shapes]


def test_parameter_names_are_the_released_keys():
    """The default (official) Stylizer's parameters are exactly G_ema_model's keys and shapes, less
    the blur kernels (constants here)."""
    from baselines_ms.mmfs.config import StylizerConfig
    from baselines_ms.mmfs.networks import Stylizer

    with open(os.path.join(REPO, "modify_ms", "assets", "manifests", "baseline_key_manifests.json")) as fh:
        keys = json.load(fh)["mmfs_phase2_pth"]["keys"]
    released = {k.split("/", 1)[1]: tuple(v) for k, v in keys.items()
                if k.startswith("G_ema_model/") and not is_kernel(k)}
    net = Stylizer(StylizerConfig())
    ours = {n: tuple(p.shape) for n, p in net.parameters_and_names()}
    assert ours == released
    assert sum(int(np.prod(s)) for s in ours.values()) == 18676376  # the manifest's n_params G (kernels are buffers)


def test_encoder_forward_and_gradients(pair, ms_mode):
    ts, mst = pair
    _, x = inputs(1)
    coef = np.random.default_rng(2).standard_normal((2, 16, SIZE // 16, SIZE // 16)).astype(np.float32)
    xt = t(x).requires_grad_(True)
    out_t = ts.encoder(xt)
    tp = dict(ts.encoder.named_parameters())
    grads_t = torch.autograd.grad((out_t * t(coef)).sum(), [xt, tp["0.0.weight"], tp["3.conv2.1.weight"],
                                                           tp["5.1.bias"]])
    assert_close(mst.encode(m(x)), out_t.detach(), FWD, "encoder")
    weights = [mst.encoder[0][0].weight, mst.encoder[3].conv2[1].weight, mst.encoder[5][1].bias]

    def loss(img):
        return (mst.encode(img) * m(coef)).sum()

    gx, gw = ms.value_and_grad(loss, 0, weights)(m(x))[1]
    assert_close(gx, grads_t[0], GRAD, "dE/dx")
    for g, gt, name in zip(gw, grads_t[1:], ("encoder.0.0.weight", "encoder.3.conv2.1.weight", "encoder.5.1.bias")):
        assert_close(g, gt, GRAD, name)


def test_decoder_with_given_styles_and_noise(pair, ms_mode):
    """The decoder alone: 10 distinct style rows (so the row -> layer assignment is checked), fixed noise."""
    ts, mst = pair
    rng = np.random.default_rng(4)
    feats = rng.standard_normal((2, 16, SIZE // 16, SIZE // 16)).astype(np.float32)
    styles = rng.standard_normal((2, 10, SDIM)).astype(np.float32)
    noise = noise_maps(mst.noise_shapes(2), 5)
    coef = rng.standard_normal((2, 3, SIZE, SIZE)).astype(np.float32)
    ft, st = t(feats).requires_grad_(True), t(styles.transpose(1, 0, 2).copy()).requires_grad_(True)
    tnoise = [t(n) for n in noise]
    out = ts.decoder0(ft, st[0], tnoise[0])
    skip = ts.to_rgb0(out, st[1])
    for k in range(1, 5):
        out = getattr(ts, f"decoder{k}a")(out, st[2 * k - 1], tnoise[2 * k - 1])
        out = getattr(ts, f"decoder{k}b")(out, st[2 * k], tnoise[2 * k])
        skip = getattr(ts, f"to_rgb{k}")(out, st[2 * k + 1], skip)
    img_t = torch.nn.functional.hardtanh(skip)
    clipped = float(((img_t.abs() == 1.0).float()).mean())
    assert 0.0 < clipped < 0.5, clipped  # the hardtanh acts on part of the image, not all
    gf_t, gs_t, gw_t = torch.autograd.grad((img_t * t(coef)).sum(), [ft, st, ts.decoder2a.conv.weight])
    mnoise = ms.mutable(tuple(m(n) for n in noise))
    assert_close(mst.decode(m(feats), m(styles), mnoise), img_t.detach(), FWD, "decoder")

    def loss(f, s):
        return (mst.decode(f, s, mnoise) * m(coef)).sum()

    (gf, gs), (gw,) = ms.value_and_grad(loss, (0, 1), [mst.decoder2a.conv.weight])(m(feats), m(styles))[1]
    assert_close(gf, gf_t, GRAD, "dD/dfeatures")
    assert_close(gs, gs_t.detach().numpy().transpose(1, 0, 2), GRAD, "dD/dstyles")
    assert_close(gw, gw_t, GRAD, "dD/d decoder2a.conv.weight")


def test_whole_stylizer_from_z(pair, ms_mode):
    """image, z -> Stylizer(image, styles_from_z(z)): forward, and gradients wrt the image, z and one
    parameter of each part (encoder, mapping_z, decoder0, to_rgb3)."""
    ts, mst = pair
    z, x = inputs(6)
    noise = noise_maps(mst.noise_shapes(2), 7)
    coef = np.random.default_rng(8).standard_normal((2, 3, SIZE, SIZE)).astype(np.float32)
    xt, zt = t(x).requires_grad_(True), t(z).requires_grad_(True)
    img_t = ts(xt, ts.styles(zt), [t(n) for n in noise])
    tparams = [ts.encoder[2].conv1[0].weight, ts.mapping_z[1].weight, ts.decoder0.conv.modulation.weight,
               ts.to_rgb3.bias]
    grads_t = torch.autograd.grad((img_t * t(coef)).sum(), [xt, zt] + tparams)
    mnoise = ms.mutable(tuple(m(n) for n in noise))
    assert_close(mst(m(x), mst.styles_from_z(m(z)), mnoise), img_t.detach(), FWD, "Stylizer")
    params = [mst.encoder[2].conv1[0].weight, mst.mapping_z[1].weight, mst.decoder0.conv.modulation.weight,
              mst.to_rgb3.bias]

    def loss(img, zz):
        return (mst(img, mst.styles_from_z(zz), mnoise) * m(coef)).sum()

    (gx, gz), gp = ms.value_and_grad(loss, (0, 1), params)(m(x), m(z))[1]
    assert_close(gx, grads_t[0], GRAD, "dS/dx")
    assert_close(gz, grads_t[1], GRAD, "dS/dz")
    for g, gt, name in zip(gp, grads_t[2:], ("encoder.2.conv1", "mapping_z.1", "decoder0.modulation", "to_rgb3.bias")):
        assert_close(g, gt, GRAD, name)


def test_style_mixing_rows(pair):
    """mix_styles: rows < cutoff from w(z1), the others from w(z2); cutoff 10 = no mixing."""
    _, mst = pair
    rng = np.random.default_rng(9)
    z1, z2 = (m(rng.standard_normal((2, SDIM)).astype(np.float32)) for _ in range(2))
    w1, w2 = mst.styles_from_z(z1).asnumpy(), mst.styles_from_z(z2).asnumpy()
    for cut in (1, 4, 10):
        mixed = mst.mix_styles(z1, z2, ms.Tensor(cut, ms.int32)).asnumpy()
        np.testing.assert_allclose(mixed[:, :cut], w1[:, :cut], rtol=1e-6)
        np.testing.assert_allclose(mixed[:, cut:], w2[:, cut:], rtol=1e-6)


def test_synthesize_draws_fresh_noise(pair):
    """No noise buffers: two calls with the same image and styles differ (noise strengths are > 0)."""
    _, mst = pair
    z, x = inputs(10)
    styles = mst.styles_from_z(m(z))
    a, b = mst.synthesize(m(x), styles).asnumpy(), mst.synthesize(m(x), styles).asnumpy()
    assert a.shape == (2, 3, SIZE, SIZE) and np.abs(a).max() <= 1.0
    assert np.abs(a - b).max() > 1e-3


def test_stylegan_rule_reproduces_stylegan_synthesis():
    """The official _convert_stylegan2_dict rule at 64 px: with the copied layers, and decoder0 /
    to_rgb0 / the encoder's output set to G's conv1 / to_rgb1 / constant input, the Stylizer's
    decoder is hardtanh(G(w)) exactly (same noise); and the rule at 512 px is the official one."""
    from baselines_ms.mmfs.networks import Stylizer, copy_stylegan_layers, stylegan_to_stylizer_name
    from modify_ms.models.stylegan2 import Generator

    assert stylegan_to_stylizer_name("convs.6.conv.weight", 512) == "decoder1a.conv.weight"
    assert stylegan_to_stylizer_name("convs.13.noise.weight", 512) == "decoder4b.noise.weight"
    assert stylegan_to_stylizer_name("to_rgbs.3.bias", 512) == "to_rgb1.bias"
    assert stylegan_to_stylizer_name("to_rgbs.6.conv.weight", 512) == "to_rgb4.conv.weight"
    assert stylegan_to_stylizer_name("style.8.bias", 512) == "mapping_z.8.bias"
    for dropped in ("to_rgb1.bias", "conv1.conv.weight", "convs.5.conv.weight", "to_rgbs.2.bias", "input.input",
                    "noises.noise_3"):
        assert stylegan_to_stylizer_name(dropped, 512) is None

    ms.set_context(mode=ms.PYNATIVE_MODE)  # an identity of two networks: no compilation needed
    np.random.seed(11)
    g = Generator(SIZE, SDIM, N_MLP, CM, CMAX)
    prng = np.random.default_rng(11)
    for name, p in g.parameters_and_names():  # nothing at 0 or 1; mapping weights stored 1/lr_mul larger
        scale = 100.0 if name.startswith("style") and name.endswith("weight") else 0.5
        p.set_data(ms.Tensor((0.2 + scale * prng.standard_normal(p.shape)).astype(np.float32)))
    s = Stylizer(tiny_cfg())
    assert copy_stylegan_layers(s, g) == 2 * N_MLP + 4 * (2 * 5 + 4)
    for src, dst in ((g.conv1, s.decoder0), (g.to_rgb1, s.to_rgb0)):
        for (_, a), (_, b) in zip(src.parameters_and_names(), dst.parameters_and_names()):
            b.set_data(ms.Tensor(a.asnumpy()))
    rng = np.random.default_rng(12)
    z = m(rng.standard_normal((2, SDIM)).astype(np.float32))
    noise = g.random_noise(2, rng)
    expected = np.clip(g(g.mapping(z), noise).asnumpy(), -1, 1)
    got = s.decode(g.input(z), s.styles_from_z(z), noise).asnumpy()
    ms.set_context(mode=ms.GRAPH_MODE)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ stage I loss against torch
@pytest.fixture(params=[pytest.param("graph", marks=pytest.mark.slow), "pynative"])
def loss_mode(request):
    """PYNATIVE by default, GRAPH in the slow run (compiling G, D and the Stylizer's gradient costs ~13 s;
    the Stylizer's own GRAPH parity runs by default above)."""
    ms.set_context(mode=ms.GRAPH_MODE if request.param == "graph" else ms.PYNATIVE_MODE)
    yield request.param
    ms.set_context(mode=ms.GRAPH_MODE)


def test_stage1_loss_against_torch(pair, loss_mode):
    """Stage I's objective: real = hardtanh(G(w(z))), L1 + 4 x the D-feature L1 over convs[1, 3, 4]
    (a 64 px D has no convs[5]); value and gradients wrt the encoder and decoder0."""
    from baselines_ms.mmfs.steps import Stage1Loss
    from modify_ms.models.stylegan2 import Discriminator, Generator
    from reference import stylegan2_ref as sref

    ts, mst = pair
    torch.manual_seed(1)
    tg = sref.randomize_(sref.Generator(SIZE, SDIM, N_MLP, CM, CMAX), seed=21)
    td = sref.randomize_(sref.Discriminator(SIZE, CM, CMAX), seed=22)
    mg, md = Generator(SIZE, SDIM, N_MLP, CM, CMAX), Discriminator(SIZE, CM, CMAX)
    assert copy_torch_to_ms(mg, tg, skip=is_kernel) == {"latent_avg"}
    assert not copy_torch_to_ms(md, td, skip=is_kernel)
    rng = np.random.default_rng(23)
    z = rng.standard_normal((2, SDIM)).astype(np.float32)
    noise_g = noise_maps(mg.noise_shapes(2), 24)
    noise_s = noise_maps(mst.noise_shapes(2), 25)
    with torch.no_grad():
        real_t = torch.nn.functional.hardtanh(tg(tg.mapping(t(z)).unsqueeze(1).repeat(1, mg.n_latent, 1),
                                                 [t(n) for n in noise_g]))
    loss_t, _ = ref.stage1_loss(ts, td, real_t, t(z), [t(n) for n in noise_s])
    tparams = [ts.encoder[1].conv2[1].weight, ts.decoder0.conv.weight, ts.to_rgb0.conv.modulation.bias]
    grads_t = torch.autograd.grad(loss_t, tparams)
    frozen = ms.nn.Cell()  # prefixes G's and D's parameter names ("g.to_rgb1..."): the Stylizer has its own to_rgb1
    frozen.g, frozen.d = mg, md
    cell = Stage1Loss(frozen.g, mst, frozen.d, 1.0, 4.0)
    mnoise_g, mnoise_s = (ms.mutable(tuple(m(n) for n in ns)) for ns in (noise_g, noise_s))
    params = [mst.encoder[1].conv2[1].weight, mst.decoder0.conv.weight, mst.to_rgb0.conv.modulation.bias]
    (total, _, real, _), grads = ms.value_and_grad(cell, None, params, has_aux=True)(m(z), mnoise_g, mnoise_s)
    assert_close(real, real_t, FWD, "hardtanh(G(z))")
    assert_close(total, loss_t.detach(), FWD, "stage I loss")
    for g, gt, name in zip(grads, grads_t, ("encoder.1.conv2", "decoder0.conv", "to_rgb0.modulation.bias")):
        assert_close(g, gt, GRAD, f"d loss / d {name}")


# ------------------------------------------------------------------ behaviour (tiny trainer)
TINY = ["model.stylizer.size=64", "model.stylizer.ngf=2", "model.stylizer.style_dim=16", "model.stylizer.n_mlp=2",
        "model.stylizer.channel_max=16", "model.discriminator.channel_max=16",
        "model.dino.width=16", "model.dino.heads=2", "model.dino.layers=1", "data.batch_size=2",
        "target.batch_size=2", "data.num_workers=1", "target.num_workers=1", "data.max_images=8",
        "target.max_images=8", "run.log_every=1", "run.compile_cache=false"]


def tiny_config(out_dir, extra=()):
    from baselines_ms.mmfs.config import MMFSConfig
    from modify_ms.config import load_config

    return load_config(os.path.join(REPO, "yaml", "baselines", "mmfs_quickstart.yaml"), MMFSConfig,
                       TINY + [f"run.out_dir={out_dir}"] + list(extra))


def snapshot(cell):
    return {n: p.asnumpy().copy() for n, p in cell.parameters_and_names()}


def test_stage1_trains_only_the_encoder_and_the_loss_falls(tmp_path):
    """Stage I on one fixed z batch (so the objective is one function): 12 Adam steps lower it;
    only encoder / decoder0 / to_rgb0 move; mapping_z, decoder1a..to_rgb4, G and D do not."""
    from baselines_ms.mmfs.networks import stage1_trained
    from baselines_ms.mmfs.trainer import MMFSTrainer

    cfg = tiny_config(str(tmp_path / "run"), ["then=[]"])
    trainer = MMFSTrainer(cfg, str(tmp_path / "run"), log=lambda _m: None)
    s, g, d = trainer.nets.stylizer, trainer.generator, trainer.nets.discriminator
    before_s, before_g, before_d = snapshot(s), snapshot(g), snapshot(d)
    for n, p in g.parameters_and_names():  # the decoder's StyleGAN layers are G's
        from baselines_ms.mmfs.networks import stylegan_to_stylizer_name

        new = stylegan_to_stylizer_name(n, SIZE)
        if new is not None:
            np.testing.assert_array_equal(before_s[new], p.asnumpy())
    cells = trainer.set_phase("encoder")
    rng = np.random.default_rng(0)
    z = m(rng.standard_normal((2, 16)).astype(np.float32))
    noise_g, noise_s = g.random_noise(2, rng), s.random_noise(2, rng)
    losses = [float(cells["step"](z, noise_g, noise_s)[0].asnumpy()) for _ in range(12)]
    assert losses[-1] < 0.8 * losses[0], losses
    after = snapshot(s)
    moved = {n for n in after if not np.array_equal(after[n], before_s[n])}
    assert moved == {n for n in after if stage1_trained(n)}, sorted(moved ^ {n for n in after if stage1_trained(n)})
    for cell, before in ((g, before_g), (d, before_d)):
        for n, v in snapshot(cell).items():
            np.testing.assert_array_equal(v, before[n], err_msg=n)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """encoder 4 steps then base 4 steps (R1 every 2), checkpoints at 4 and 8."""
    from baselines_ms.mmfs.trainer import train_mmfs

    out = str(tmp_path_factory.mktemp("mmfs") / "run")
    cfg = tiny_config(out, ["encoder.steps=4", "base.steps=4", "base.d_reg_every=2", "run.sample_every=8",
                            "run.ckpt_every=4", "model.dino.patch_size=16"])
    trainer = train_mmfs(cfg, out, log=lambda _m: None)
    return cfg, out, trainer


@pytest.mark.slow
def test_run_writes_resumes_and_stage2_behaviour(run):
    """The run folder; a resume continues; in stage II the whole Stylizer trains, different z give
    different outputs for the same face, and the structure loss of the output vs the input stays
    below that of an unrelated image."""
    import mindspore as ms
    from baselines_ms.mmfs.trainer import train_mmfs

    cfg, out, trainer = run
    lines = [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl"))]
    phases = [l["phase"] for l in lines if "phase" in l]
    assert phases == ["encoder"] * 4 + ["base"] * 4
    base = [l for l in lines if l.get("phase") == "base"]
    assert [("r1" in l) for l in base] == [False, True, False, True]  # after every 2nd step (official: 16th)
    assert all(np.isfinite(l["structure"]) and np.isfinite(l["d_loss"]) for l in base)
    samples = set(os.listdir(os.path.join(out, "samples")))
    assert {"step_00000008_styles.png", "step_00000008_reconstruction.png"} <= samples
    s = trainer.nets.stylizer_ema
    photos = trainer.held[:1]
    rng = np.random.default_rng(5)
    outs = []
    for _ in range(2):
        z = ms.Tensor(rng.standard_normal((1, 16)).astype(np.float32))
        outs.append(s(ms.Tensor(photos), s.styles_from_z(z), s.random_noise(1, np.random.default_rng(0))))
    assert float(np.abs(outs[0].asnumpy() - outs[1].asnumpy()).max()) > 1e-3
    st = trainer.structure
    own = float(st(outs[0], ms.Tensor(photos)).asnumpy())
    other = float(st(outs[0], ms.Tensor(trainer.held[-1:])).asnumpy())
    assert np.isfinite(own) and own < 1.0 and own <= other + 1e-6, (own, other)
    resumed = train_mmfs(dataclasses_replace(cfg, base=4 + 2), out, resume=True, log=lambda _m: None)
    assert resumed.step == 10
    # stage II alone, from the run (weights.stylizer): its stylizer, EMA and D are where the run left them
    from baselines_ms.mmfs.config import MMFSConfig
    from modify_ms.config import from_dict, to_dict

    alone = to_dict(cfg)
    alone.update(phase="base", then=[], weights=dict(alone["weights"], stylizer=out))
    alone["base"]["steps"] = 1
    second = train_mmfs(from_dict(MMFSConfig, alone), os.path.join(os.path.dirname(out), "alone"),
                        log=lambda _m: None)
    assert second.step == 1 and second.generator is None


def dataclasses_replace(cfg, base):
    import dataclasses

    return dataclasses.replace(cfg, base=dataclasses.replace(cfg.base, steps=base))


def test_stylizer_registry_on_the_run(run):
    from modify_ms.stylizers import create_stylizer, is_multimodal

    _, out, _ = run
    assert is_multimodal("mmfs")
    x = np.tanh(np.random.default_rng(4).standard_normal((2, 3, 48, 48))).astype(np.float32)
    s = create_stylizer("mmfs", out)
    y = s.stylize(x, names=["a", "b"])
    assert y.shape == x.shape and np.isfinite(y).all() and np.abs(y).max() <= 1
    np.testing.assert_array_equal(y, s.stylize(x, names=["a", "b"]))  # seeded by the photo's name
    v = s.variants(x[:1], 3, names=["a"])
    assert v.shape == (1, 3, 3, 48, 48) and not np.allclose(v[0, 0], v[0, 1])


def test_phases_of_the_clip_side_dispatch_lazily(tmp_path):
    """clip_mapping / few_shot go to mapping.py / prompting.py; while those are absent: one ConfigError line."""
    from baselines_ms.mmfs import trainer as tr
    from modify_ms.config import ConfigError

    cfg = tiny_config(str(tmp_path / "run"), ["phase=few_shot", "then=[]",
                                              "model.stylizer.clip_mapper={dim: 16, n_heads: 2, ff_dim: 32}"])
    try:
        __import__("baselines_ms.mmfs.prompting")
    except ModuleNotFoundError:
        with pytest.raises(ConfigError, match="phase few_shot not available"):
            tr.train_mmfs(cfg, str(tmp_path / "run"))
    calls = []
    assert tr._delegate(lambda c, run_dir=None: calls.append((c, run_dir)), cfg, run_dir="R", resume=True) is None
    assert calls == [(cfg, "R")]


def test_stylize_evaluate_and_compare_tools_on_the_run(run, tmp_path):
    """tools/stylize.py --method mmfs (outputs and --variants), tools/evaluate.py and tools/compare.py
    on the MMFS run: the same files and tables as for the other methods."""
    import subprocess
    import sys

    from modify_ms.data.imageio import save_image_atomic

    _, out, trainer = run
    src = tmp_path / "photos"
    src.mkdir()
    for i, p in enumerate(trainer.held[:2]):
        save_image_atomic(str(src / f"p{i}.png"), ((p.transpose(1, 2, 0) + 1) * 127.5).round().astype(np.uint8))

    def tool(*args):
        return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True,
                              env=dict(os.environ, GLOG_v="3"))

    styled = tmp_path / "styled"
    proc = tool("tools/stylize.py", "--method", "mmfs", "--run", out, "--input", str(src), "--output-dir",
                str(styled), "--variants", "2", "--align", "none", "--opt", "style_seed=3")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert {"p0.png", "p0_k0.png", "p0_k1.png", "p0_variants.png", "p1.png"} <= set(os.listdir(styled))
    proc = tool("tools/evaluate.py", "--method", "mmfs", "--run", out, "--inputs", str(src), "--outputs",
                str(tmp_path / "evaluated"), "--variants", "2", "--align", "none")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert os.path.isfile(tmp_path / "evaluated" / "evaluation.md")
    proc = tool("tools/compare.py", "--photos", str(src), "--method", f"mmfs={out}", "--out", str(tmp_path / "cmp"),
                "--align", "none", "--variants", "2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "mmfs" in json.dumps(json.load(open(tmp_path / "cmp" / "table.json")))
    assert os.path.isfile(tmp_path / "cmp" / "grid.png")
    bad = tool("tools/stylize.py", "--method", "mmfs", "--run", out, "--input", str(src), "--output-dir",
               str(tmp_path / "bad"), "--opt", "text=a pop art portrait", "--opt", "style_image=x.png")
    errors = [line for line in bad.stderr.splitlines() if line.startswith("error: ")]
    assert bad.returncode == 2 and len(errors) == 1 and "not both" in errors[0], bad.stderr[-2000:]


def test_training_config_errors_are_one_line(tmp_path):
    """The paper config without its weight files, stage II in PYNATIVE, a phase that cannot follow:
    one line, exit 2, nothing written."""
    import subprocess
    import sys

    out = str(tmp_path / "run")
    base = [sys.executable, "tools/train_baseline.py", "--set", f"run.out_dir={out}"]
    cases = [(["--config", "yaml/baselines/mmfs.yaml"], "weights.stylegan2 not found"),
             (["--config", "yaml/baselines/mmfs_quickstart.yaml", "--set", "run.mode=pynative"],
              "run.mode must be graph"),
             (["--config", "yaml/baselines/mmfs_quickstart.yaml", "--set", "phase=base"], "only [base] may follow"),
             (["--config", "yaml/baselines/mmfs_quickstart.yaml", "--set", "then=[]", "--set", "phase=clip_mapping"],
              "needs model.stylizer.clip_mapper")]
    for args, fragment in cases:
        proc = subprocess.run(base + args, cwd=REPO, capture_output=True, text=True, env=dict(os.environ, GLOG_v="3"))
        assert proc.returncode == 2 and proc.stderr.startswith("error: "), proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and fragment in proc.stderr, proc.stderr
        assert not os.path.exists(out)
