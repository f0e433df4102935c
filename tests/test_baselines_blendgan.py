"""BlendGAN's networks and losses against the PyTorch reference written from the mathematics
(tests/reference/blendgan_ref.py), in GRAPH and PYNATIVE, forward and gradients, at tiny sizes:
a 32 px generator (8 W+ rows, style_dim 16, 16 channels) and a VGG-19 of the real layout at widths
(4, 6, 8, 8, 8) (the full-width VGG-19 parity is the slow test at the end).

Tolerance: max |ms - torch| / max |torch| < 2e-5 (forward) and < 2e-4 (gradients, float32 through
VGG, Gram and a 32 px StyleGAN2), unless stated. The Gram matrix and NT-Xent run in both modes by
default; the compiled networks run GRAPH by default and PYNATIVE in the slow run (``mode``).
"""
import numpy as np
import pytest
import torch

import mindspore as ms

from parity_utils import assert_close, copy_torch_to_ms, m, t
from reference import blendgan_ref as ref

SIZE, SDIM, N_MLP, CM, CMAX = 32, 16, 2, 1, 16
WIDTHS, EMBED_MLP, STYLE_IN = (4, 6, 8, 8, 8), 3, 32
FWD, GRAD = 2e-5, 2e-4


@pytest.fixture(params=["graph", pytest.param("pynative", marks=pytest.mark.slow)])
def mode(request):
    """GRAPH by default, PYNATIVE in the slow run (the CI budget: each compiled case costs seconds)."""
    ms.set_context(mode=ms.GRAPH_MODE if request.param == "graph" else ms.PYNATIVE_MODE)
    yield request.param
    ms.set_context(mode=ms.GRAPH_MODE)


def ms_name(key):
    """A released-layout key -> the MindSpore BlendGenerator parameter (the test's own table;
    the importer's is weights_convert.blendgan's, tested through the CLI)."""
    key = key.replace("embedder.embedder.feature_extractor.vgg_layers.", "embedder.vgg.features.")
    key = key.replace("embedder.embedder_mlp.", "embedder.predictor.")
    if key.startswith(("add_weight", "embedder.", "embedding.")):
        return key
    return "generator." + key


def is_kernel(key):
    return key.endswith("kernel")


@pytest.fixture(scope="module")
def pair():
    from baselines_ms.blendgan.networks import BlendGenerator

    torch.manual_seed(0)
    tg = ref.randomize_blend_(ref.BlendGenerator(SIZE, SDIM, N_MLP, CM, CMAX, embedder_mlp=EMBED_MLP,
                                                 widths=WIDTHS, style_input_size=STYLE_IN), seed=3)
    mg = BlendGenerator(SIZE, SDIM, N_MLP, CM, CMAX, embedder_mlp=EMBED_MLP, vgg_widths=WIDTHS,
                        style_input_size=STYLE_IN)
    left = copy_torch_to_ms(mg, tg, rename=ms_name, skip=is_kernel)
    assert left == {"generator.latent_avg"}, left
    return tg, mg


def inputs(seed=0, batch=2, size=SIZE):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((batch, SDIM)).astype(np.float32)
    x = np.tanh(rng.standard_normal((batch, 3, size, size))).astype(np.float32)
    return z, x


def test_gram_matrix(ms_mode):
    from baselines_ms.blendgan.networks import gram_matrix

    f = np.random.default_rng(1).standard_normal((2, 5, 6, 7)).astype(np.float32)
    assert_close(gram_matrix(m(f)), ref.gram(t(f)), FWD, "gram")


def test_style_encoder_forward_and_gradients(pair, mode):
    """z_s = predictor(concat Gram(VGG taps)) and its gradients wrt the input image and the predictor."""
    tg, mg = pair
    _, x = inputs(1, size=2 * STYLE_IN)  # 64 px input: the adaptive pooling to 32 acts
    coef = np.random.default_rng(2).standard_normal((2, SDIM)).astype(np.float32)
    xt = t(x).requires_grad_(True)
    out_t = tg.embedder(xt)
    loss_t = (out_t * t(coef)).sum()
    params_t = dict(tg.embedder.named_parameters())
    grads_t = torch.autograd.grad(loss_t, [xt, params_t["embedder_mlp.0.weight"], params_t["embedder_mlp.2.bias"]])
    assert_close(mg.embedder(m(x)), out_t.detach(), FWD, "z_s")

    enc = mg.embedder
    weights = [enc.predictor[0].weight, enc.predictor[2].bias]

    def loss(img):
        return (enc(img) * m(coef)).sum()

    gx, gw = ms.value_and_grad(loss, 0, weights)(m(x))[1]
    assert_close(gx, grads_t[0], GRAD, "dz/dx")
    assert_close(gw[0], grads_t[1], GRAD, "dz/dW0")
    assert_close(gw[1], grads_t[2], GRAD, "dz/db2")
    assert not any(p.requires_grad for p in enc.vgg.get_parameters())  # the VGG is frozen


@pytest.mark.parametrize("index", [0, pytest.param(3, marks=pytest.mark.slow), pytest.param(8, marks=pytest.mark.slow)])
def test_blending_forward_and_gradients(pair, mode, index):
    """The WBM as the official code composes it, for i = 0 (all rows blended), 3 and 8 (= L: face only)."""
    from baselines_ms.blendgan.networks import face_rows

    tg, mg = pair
    z, _ = inputs(4)
    zs = np.random.default_rng(5).standard_normal((2, SDIM)).astype(np.float32)
    coef = np.random.default_rng(6).standard_normal((2, 3, SIZE, SIZE)).astype(np.float32)
    tg.zero_grad()
    img_t = tg.render(tg.mapping(t(z)), t(zs), index)
    (img_t * t(coef)).sum().backward()
    rows = face_rows(mg.n_latent, index)
    assert_close(mg(mg.face_w(m(z)), m(zs), rows), img_t.detach(), FWD, f"image i={index}")
    params = [mg.add_weight, mg.embedding[1].weight, mg.generator.style[2].bias, mg.generator.convs[1].conv.weight]
    torch_params = [tg.add_weight, tg.embedding[1].weight, tg.style[2].bias, tg.convs[1].conv.weight]

    def loss(zz, zzs):
        return (mg(mg.face_w(zz), zzs, rows) * m(coef)).sum()

    _, grads = ms.value_and_grad(loss, None, params)(m(z), m(zs))
    for g, p, name in zip(grads, torch_params, ("add_weight", "embedding.1.weight", "style.2.bias", "convs.1.w")):
        if index == 8 and name in ("add_weight", "embedding.1.weight"):
            assert float(np.abs(g.asnumpy()).max()) == 0.0 and float(p.grad.abs().max()) == 0.0
            continue
        assert_close(g, p.grad, GRAD, f"grad {name} i={index}")
    # the in-place clamp: the stored weights were written back into [0, 1] (they started in [-0.3, 1.3])
    np.testing.assert_array_equal(mg.add_weight.asnumpy(), tg.add_weight.detach().numpy())
    assert mg.add_weight.asnumpy().min() == 0.0 and mg.add_weight.asnumpy().max() == 1.0


def test_natural_face_equals_plain_generator(pair):
    """i = L: exactly the library's StyleGAN2 on the same face code, whatever the style code."""
    from baselines_ms.blendgan.networks import face_rows

    _, mg = pair
    z, _ = inputs(7)
    w = mg.face_w(m(z))
    plain = mg.generator(w).asnumpy()
    for seed in (8, 9):
        zs = np.random.default_rng(seed).standard_normal((2, SDIM)).astype(np.float32) * 3
        np.testing.assert_array_equal(mg(w, m(zs), face_rows(mg.n_latent, mg.n_latent)).asnumpy(), plain)


def test_projection_discriminator(mode):
    from baselines_ms.blendgan.networks import ProjectionDiscriminator

    torch.manual_seed(1)
    td = ref.ProjectionDiscriminator(SIZE, SDIM, CM, CMAX)
    from reference.stylegan2_ref import randomize_

    randomize_(td, seed=11)
    md = ProjectionDiscriminator(SIZE, SDIM, CM, CMAX)
    assert not copy_torch_to_ms(md, td, skip=is_kernel)
    _, x = inputs(12, batch=4)
    zs = np.random.default_rng(13).standard_normal((4, SDIM)).astype(np.float32)
    xt, zt = t(x).requires_grad_(True), t(zs).requires_grad_(True)
    out_t = td(xt, zt)
    gx_t, gz_t, gl_t = torch.autograd.grad(out_t.sum(), [xt, zt, td.l_style.weight])
    assert_close(md(m(x), m(zs)), out_t.detach(), FWD, "D_style_latent")
    def total(a, b):
        return md(a, b).sum()

    (gx, gz), (gl,) = ms.value_and_grad(total, (0, 1), [md.l_style.weight])(m(x), m(zs))[1]
    assert_close(gx, gx_t, GRAD, "dD/dx")
    assert_close(gz, gz_t, GRAD, "dD/dz")
    assert_close(gl, gl_t, GRAD, "dD/dl_style")


def test_nt_xent(ms_mode):
    from baselines_ms.blendgan.networks import nt_xent

    rng = np.random.default_rng(14)
    p1, p2 = (rng.standard_normal((5, 8)).astype(np.float32) for _ in range(2))
    for tau in (0.1, 0.5):
        a, b = t(p1).requires_grad_(True), t(p2).requires_grad_(True)
        loss_t = ref.nt_xent(a, b, tau)
        ga, gb = torch.autograd.grad(loss_t, [a, b])
        def loss(x, y):
            return nt_xent(x, y, tau)

        value, (g1, g2) = ms.value_and_grad(loss, (0, 1))(m(p1), m(p2))
        assert_close(value, loss_t.detach(), FWD, f"NT-Xent tau={tau}")
        assert_close(g1, ga, GRAD, "dNT-Xent/dp1")
        assert_close(g2, gb, GRAD, "dNT-Xent/dp2")


def test_path_length_penalty_and_its_gradient(pair, mode):
    """Path lengths (a double backward) and the penalty's gradient wrt a synthesis weight."""
    from baselines_ms.blendgan.networks import PathLengthPenalty, PathLengths

    tg, mg = pair
    rng = np.random.default_rng(15)
    w_plus = rng.standard_normal((2, mg.n_latent, SDIM)).astype(np.float32)
    img_noise = (rng.standard_normal((2, 3, SIZE, SIZE)) / SIZE).astype(np.float32)
    noise = [rng.standard_normal(s).astype(np.float32) for s in mg.generator.noise_shapes(2)]
    wt = t(w_plus).requires_grad_(True)
    lengths_t = ref.path_lengths(tg, wt, t(img_noise), [t(n) for n in noise])
    pen_t, target_t = ref.path_penalty(lengths_t, torch.tensor(0.3))
    (gw_t,) = torch.autograd.grad(pen_t, [tg.convs[1].conv.weight])

    mnoise = ms.mutable(tuple(m(n) for n in noise))
    penalty = PathLengthPenalty(mg.generator)
    mean = ms.Tensor(0.3, ms.float32)
    if mode == "pynative":
        lengths = PathLengths(mg.generator)(m(w_plus), m(img_noise), mnoise)
        assert_close(lengths, lengths_t.detach(), GRAD, "path lengths")
        # MindSpore 2.10 PYNATIVE returns zero second-order gradients for the synthesis weights even
        # through the compiled cell (measured); BlendGAN trains in GRAPH only (config.validate)
        value, target = penalty(m(w_plus), m(img_noise), mnoise, mean)
        assert_close(value, pen_t.detach(), GRAD, "path penalty")
        return
    weight = mg.generator.convs[1].conv.weight
    grad_fn = ms.value_and_grad(penalty, None, [weight], has_aux=True)
    (value, target), (gw,) = grad_fn(m(w_plus), m(img_noise), mnoise, mean)
    assert_close(target, target_t, GRAD, "running mean")
    assert_close(value, pen_t.detach(), GRAD, "path penalty")
    assert_close(gw, gw_t, 1e-3, "d penalty / d convs.1 weight")  # third-order chain in float32


def test_r1_penalty(mode):
    from baselines_ms.blendgan.networks import ProjectionDiscriminator, R1Penalty
    from reference.stylegan2_ref import randomize_

    torch.manual_seed(2)
    td = randomize_(ref.ProjectionDiscriminator(SIZE, SDIM, CM, CMAX), seed=16)
    md = ProjectionDiscriminator(SIZE, SDIM, CM, CMAX)
    copy_torch_to_ms(md, td, skip=is_kernel)
    _, x = inputs(17, batch=2)
    zs = np.random.default_rng(18).standard_normal((2, SDIM)).astype(np.float32)
    pen_t = ref.r1_penalty(td, t(x), t(zs))
    (gl_t,) = torch.autograd.grad(pen_t, [td.l_out.weight])
    r1 = R1Penalty(md)
    def penalty(a, b):
        return r1(a, b)

    value, (gl,) = ms.value_and_grad(penalty, None, [md.l_out.weight])(m(x), m(zs))
    assert_close(value, pen_t.detach(), GRAD, "R1")
    assert_close(gl, gl_t, 1e-3, "dR1/dl_out")


@pytest.mark.slow
def test_full_width_vgg19_gram_vector():
    """The real VGG-19 widths (64 .. 512): the five taps' Gram vector (610,304 values at any input
    size) equals the torch reference's StyleEmbedder on the same random weights (GRAPH)."""
    from baselines_ms.blendgan.networks import gram_dim, gram_matrix
    from modify_ms.models.vgg import VGG19Features

    torch.manual_seed(5)
    embedder = ref.StyleEmbedder(ref.VGG19_WIDTHS, 64)
    ref.randomize_blend_(embedder, seed=31)
    vgg = VGG19Features()
    rename = {f"feature_extractor.vgg_layers.{k}": f"features.{k}" for k in range(37)}
    copy_torch_to_ms(vgg, embedder, rename=lambda k: rename[k.rsplit(".", 1)[0]] + "." + k.rsplit(".", 1)[1])
    _, x = inputs(32, batch=1, size=64)
    with torch.no_grad():
        expected = embedder(t(x))
    got = ms.ops.concat([gram_matrix(f).reshape(1, -1) for f in vgg(m(x))], axis=1)
    assert expected.shape[1] == gram_dim() == 610304
    assert_close(got, expected, 1e-4, "610,304-d Gram vector")
