"""MODIFY's own pieces and losses against tests/reference/modify_ref.py (torch, written from the paper).

Table-driven, forward values and gradients, GRAPH and PYNATIVE:

* adversarial losses, generator and discriminator side, 'wgan' and 'logistic': value and
  gradients w.r.t. the logits;
* the one-sided Lipschitz penalty on a tiny StyleGAN2 discriminator and its gradient w.r.t. every
  discriminator parameter (double backward); the last layer is scaled so that some samples have an
  input-gradient norm above 1 and some below (checked), so a two-sided penalty would fail; and the
  discriminator objective CriticLoss (adv + gp_weight * penalty, averaged over two fakes; its
  gradients are slow). In PYNATIVE this holds because LipschitzPenalty compiles itself (ms.jit):
  MindSpore 2.10's PYNATIVE second-order gradients through a reshape are wrong (see gp_mode);
* the remapping network M: forward, gradients w.r.t. z and every weight;
* the fused code ModifyNets.w_plus (offsets, last xi rows replaced by M(z), + latent_avg);
* the full stage-1 generator-side loss (every weight nonzero) and the full stage-2 loss on tiny
  networks, the same random weights loaded into both sides, every term's value and gradients
  w.r.t. named parameters of E (E' in stage 2), D and M; one case of each pools the decoder output
  (generator 128, loss size 64) and upsamples for the discriminator. E and E' run in training
  mode (batch statistics), as the trainers run them; ArcFace, LPIPS, D and Dis in inference mode.
  PYNATIVE by default (two of the four cases; the other two are slow); GRAPH is marked slow
  (80-120 s of compilation per case on 2 cores). The pieces above run in both modes.

Tolerances (max abs error relative to the reference's max magnitude): adversarial losses 1e-6;
M and w_plus 1e-5 forward, 2e-5 gradients; penalty 1e-5 value, 1e-4 gradients (double backward);
full losses 1e-4 per term and 1e-3 gradients (float32 through encoder, decoder, LPIPS, ArcFace
and a second encoder pass, summed in a different order).
"""
import dataclasses

import numpy as np
import pytest
import torch
import mindspore as ms
from mindspore import nn

from parity_utils import assert_close, copy_torch_to_ms, m, t
from reference import modify_ref as mref
from reference import stylegan2_ref as sref
from reference.identity_ref import IdentityLossRef
from reference.irse_ref import PSPEncoder
from reference.irse_ref import randomize as randomize_irse
from reference.lpips_ref import LPIPSRef
from reference.lpips_ref import randomize as randomize_lpips
from modify_ms.losses.adversarial import LipschitzPenalty, discriminator_adv_loss, generator_adv_loss
from modify_ms.losses.identity import IdentityLoss
from modify_ms.losses.lpips import LPIPS
from modify_ms.models import stylegan2 as sg
from modify_ms.models.modify import ModifyNets, build_encoder, fuse_codes
from modify_ms.models.remapping import RemapNet
from modify_ms.train.config import (DiscriminatorConfig, EncoderConfig, GeneratorConfig, LossWeights, ModelConfig,
                                    RemapConfig, Stage2Weights)
from modify_ms.train.steps import STAGE1_TERMS, STAGE2_TERMS, CriticLoss, Stage1Loss, Stage2Loss
from weights_convert.irse import OPTIONAL, convert_arcface
from weights_convert.lpips_weights import convert_lpips
from weights_convert.mapping import map_state_dict, target_shapes_of
from weights_convert.psp import encoder_rules, split_prefix

MODES = {"graph": ms.GRAPH_MODE, "pynative": ms.PYNATIVE_MODE}  # as tests/conftest.py's ms_mode
ADV_TOL = 1e-6
REMAP_FWD, REMAP_GRAD = 1e-5, 2e-5
GP_FWD, GP_GRAD = 1e-5, 1e-4
LOSS_FWD, LOSS_GRAD = 1e-4, 1e-3


def _np(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


# ============================================================================ adversarial losses
class _AdvLoss(nn.Cell):
    def __init__(self, side, kind):
        super().__init__()
        self.side, self.kind = side, kind

    def construct(self, real_logits, fake_logits):
        if self.side == "generator":
            return generator_adv_loss(fake_logits, self.kind)
        return discriminator_adv_loss(real_logits, fake_logits, self.kind)


ADV_CASES = [(side, kind) for side in ("generator", "discriminator") for kind in mref.KINDS]
# logits on both sides of 0 and in the saturating range, so softplus / log-sigmoid are tested everywhere
REAL_LOGITS = np.array([[2.7], [-0.6], [0.15], [-3.1]], np.float32)
FAKE_LOGITS = np.array([[-1.9], [0.45], [3.3], [-0.05]], np.float32)


@pytest.mark.parametrize("side, kind", ADV_CASES, ids=[f"{s}-{k}" for s, k in ADV_CASES])
def test_adversarial_loss(ms_mode, side, kind):
    real, fake = t(REAL_LOGITS).requires_grad_(True), t(FAKE_LOGITS).requires_grad_(True)
    expected = mref.generator_adv_loss(fake, kind) if side == "generator" else \
        mref.discriminator_adv_loss(real, fake, kind)
    expected.backward()
    value, (g_real, g_fake) = ms.value_and_grad(_AdvLoss(side, kind), grad_position=(0, 1))(
        m(REAL_LOGITS), m(FAKE_LOGITS))
    assert_close(value, expected.detach(), ADV_TOL, f"{side} {kind} value")
    assert_close(g_fake, fake.grad, ADV_TOL, f"{side} {kind} d/d fake logits")
    if side == "generator":
        assert not np.any(g_real.asnumpy()), "the generator loss must not depend on real logits"
    else:
        assert_close(g_real, real.grad, ADV_TOL, f"{side} {kind} d/d real logits")


# ============================================================================ Lipschitz penalty
GP_SIZE, GP_BATCH = 16, 4


class _CriticOf(nn.Cell):
    """What LipschitzPenalty / CriticLoss need: a cell with ``critic(images)`` (here the bare Dis)."""

    def __init__(self, discriminator):
        super().__init__(auto_prefix=False)
        self.discriminator = discriminator

    def critic(self, img):
        return self.discriminator(img)


@pytest.fixture(scope="module")
def penalty_pair():
    """Tiny Dis (16 px, 8 channels) with random weights; its last layer scaled so that the penalty's
    input-gradient norms straddle 1 (some samples penalised, some not)."""
    rng = np.random.default_rng(31)
    real = rng.uniform(-1, 1, (GP_BATCH, 3, GP_SIZE, GP_SIZE)).astype(np.float32)
    fake = rng.uniform(-1, 1, (GP_BATCH, 3, GP_SIZE, GP_SIZE)).astype(np.float32)
    fake2 = np.tanh(2 * rng.standard_normal((GP_BATCH, 3, GP_SIZE, GP_SIZE))).astype(np.float32)
    alpha = np.array([0.15, 0.4, 0.7, 0.9], np.float32).reshape(GP_BATCH, 1, 1, 1)
    d_ref = sref.randomize_(sref.Discriminator(GP_SIZE, cm=1, cmax=8), seed=33)
    # the input gradient is linear in the last layer's weight: scale it so the norms' geometric
    # mean of min and max becomes 1
    norms = _np(mref.input_grad_norms(d_ref, t(real), t(fake), t(alpha)))
    with torch.no_grad():
        d_ref.final_linear[1].weight.mul_(float(1.0 / np.sqrt(norms.min() * norms.max())))
    norms = _np(mref.input_grad_norms(d_ref, t(real), t(fake), t(alpha)))
    assert norms.min() < 0.9 and norms.max() > 1.1, f"the case must penalise some samples, not all: {norms}"
    d_ms = sg.Discriminator(GP_SIZE, channel_multiplier=1, channel_max=8)
    assert not [u for u in copy_torch_to_ms(d_ms, d_ref, skip=lambda k: k.endswith("kernel"))]
    named = [(n, p) for n, p in d_ms.parameters_and_names() if p.requires_grad]
    return dict(d_ref=d_ref, d_ms=d_ms, named=named, wrapper=_CriticOf(d_ms), norms=norms,
                inputs=(real, fake, fake2, alpha))


def _check_discriminator_grads(named, p_grads, d_ref, tol, what):
    assert len(named) == len(list(d_ref.parameters()))
    for (name, _), grad in zip(named, p_grads):
        ref_grad = dict(d_ref.named_parameters())[name].grad
        if ref_grad is None:  # the last bias does not move the input gradient: no penalty gradient
            assert not np.any(grad.asnumpy()), f"{what}: d/d {name} should be 0"
            continue
        assert_close(grad, ref_grad, tol, f"{what}: d/d {name}")


# MindSpore 2.10 PYNATIVE gets second-order gradients wrong as soon as a reshape sits between two
# differentiated ops (measured: conv -> tanh -> reshape -> tanh, d/dx and d/dw of ||grad_x||^2 off by
# ~45%; ops.matmul's weight gets a zero second-order gradient). Dis reshapes in its FIR blur, its
# minibatch stddev and its flatten, so LipschitzPenalty compiles its construct (ms.jit) even under
# PYNATIVE; this test fails in PYNATIVE without that.
@pytest.fixture(params=["graph", "pynative"])
def gp_mode(request):
    ms.set_context(mode=MODES[request.param])
    yield request.param
    ms.set_context(mode=ms.GRAPH_MODE)


def test_lipschitz_penalty_and_its_discriminator_gradient(gp_mode, penalty_pair):
    d_ref, named = penalty_pair["d_ref"], penalty_pair["named"]
    real, fake, _, alpha = penalty_pair["inputs"]
    d_ref.zero_grad()
    expected = mref.lipschitz_penalty(d_ref, t(real), t(fake), t(alpha))
    expected.backward()
    # the one-sidedness matters in this case: the two-sided (||g|| - 1)^2 differs by > 10%
    two_sided = float(np.mean((penalty_pair["norms"] - 1) ** 2))
    assert abs(two_sided - expected.item()) > 0.1 * expected.item()
    fn = ms.value_and_grad(LipschitzPenalty(penalty_pair["wrapper"]), None, [p for _, p in named])
    value, p_grads = fn(m(real), m(fake), m(alpha))
    assert_close(value, expected.detach(), GP_FWD, "penalty")
    _check_discriminator_grads(named, p_grads, d_ref, GP_GRAD, "penalty")


@pytest.mark.parametrize("with_grads", [False, pytest.param(True, marks=pytest.mark.slow)],
                         ids=["value", "value-and-grads"])
def test_critic_loss(penalty_pair, with_grads):
    """Discriminator objective over two fakes (stage 1's y_r and y_z): mean over the fakes of
    adv + gp_weight * penalty, and the real logits' mean. GRAPH_MODE only (the trainers' mode;
    PYNATIVE's double backward is the xfail above). The value case compiles in a few seconds; the
    gradients (the penalty test's, scaled, plus the adversarial ones) take ~20-35 s: slow."""
    kind, gp_weight = "logistic", 10.0
    d_ref, named = penalty_pair["d_ref"], penalty_pair["named"]
    real, fake, fake2, alpha = penalty_pair["inputs"]
    d_ref.zero_grad()
    expected, real_mean = mref.critic_loss(d_ref, t(real), [t(fake), t(fake2)], t(alpha), kind, gp_weight)
    expected.backward()
    cell = CriticLoss(penalty_pair["wrapper"], kind, gp_weight)
    inputs = (m(real), ms.mutable((m(fake), m(fake2))), m(alpha))
    if with_grads:
        (value, ms_real_mean), p_grads = ms.value_and_grad(cell, None, [p for _, p in named], has_aux=True)(*inputs)
        _check_discriminator_grads(named, p_grads, d_ref, GP_GRAD, f"critic loss {kind}")
    else:
        value, ms_real_mean = cell(*inputs)
    assert_close(value, expected.detach(), GP_FWD, f"critic loss {kind}")
    assert_close(ms_real_mean, real_mean.detach(), GP_FWD, "mean real logit")


# ============================================================================ remapping network M
REMAP_CASES = {  # name: (xi, style_dim, n_layers, lr_mul, batch)
    "xi3-S8-n2": (3, 8, 2, 1.0, 3),
    "xi2-S6-n1-lr_mul0.01": (2, 6, 1, 0.01, 2),
}


class _Cotangent(nn.Cell):
    """sum(net(x) * cot): its gradient is the vector-Jacobian product with ``cot``."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def construct(self, x, cot):
        return (self.net(x) * cot).sum()


@pytest.mark.parametrize("case", sorted(REMAP_CASES))
def test_remap_net(ms_mode, case):
    xi, style_dim, n_layers, lr_mul, batch = REMAP_CASES[case]
    rng = np.random.default_rng(41)
    ref = mref.randomize_remap(mref.RemapNetRef(xi, style_dim, n_layers, lr_mul), seed=42)
    cell = RemapNet(xi, style_dim, n_layers=n_layers, lr_mul=lr_mul)
    assert not copy_torch_to_ms(cell, ref)
    z = (2.5 * rng.standard_normal((batch, style_dim))).astype(np.float32)  # PixelNorm must undo the scale
    cot = rng.standard_normal((batch, xi, style_dim)).astype(np.float32)
    zt = t(z).requires_grad_(True)
    out = ref(zt)
    (out * t(cot)).sum().backward()
    assert_close(cell(m(z)), out.detach(), REMAP_FWD, "M(z)")
    named = [(n, p) for n, p in cell.parameters_and_names()]
    fn = ms.value_and_grad(_Cotangent(cell), grad_position=0, weights=[p for _, p in named])
    _, (g_z, p_grads) = fn(m(z), m(cot))
    assert_close(g_z, zt.grad, REMAP_GRAD, "d/d z")
    ref_params = dict(ref.named_parameters())
    assert len(named) == len(ref_params)
    for (name, _), grad in zip(named, p_grads):
        assert_close(grad, ref_params[name].grad, REMAP_GRAD, f"d/d {name}")


# ============================================================================ tiny MODIFY
STYLE_DIM, XI, BATCH, LOSS_SIZE = 16, 3, 2, 64
ENC_UNITS, ENC_CHANNELS = (1, 1, 1, 1), (8, 8, 16, 16)       # channels[-1] = style_dim (pSp's heads)
ID_UNITS, ID_CHANNELS, FACE = (1, 1, 1, 1), (8, 8, 16, 16), 32


def tiny_model_config(gen_size, disc_upsample="nearest"):
    return ModelConfig(
        generator=GeneratorConfig(size=gen_size, style_dim=STYLE_DIM, n_mlp=1, channel_multiplier=1, channel_max=8),
        encoder=EncoderConfig(units=ENC_UNITS, channels=ENC_CHANNELS), remap=RemapConfig(xi=XI, n_layers=1),
        discriminator=DiscriminatorConfig(channel_multiplier=1, channel_max=8), loss_size=LOSS_SIZE,
        disc_upsample=disc_upsample)


def load_into(cell, params):
    """Set every parameter of ``cell`` from ``params`` {MindSpore name: array}; strict both ways."""
    named = dict(cell.parameters_and_names())
    assert set(named) == set(params), (sorted(set(named) ^ set(params)))[:5]
    for name, param in named.items():
        assert tuple(param.shape) == tuple(np.shape(params[name])), name
        param.set_data(m(np.asarray(params[name], np.float32)))


def load_encoder(cell, ref):
    """Torch PSPEncoder keys through the pSp importer's encoder rules (as tests/test_encoders_irse.py)."""
    state = {"encoder." + k: v.detach().numpy() for k, v in ref.state_dict().items()}
    shapes = {"encoder." + k: tuple(p.shape) for k, p in cell.parameters_and_names()}  # paths, also inside ModifyNets
    params = map_state_dict(state, shapes, encoder_rules(), optional=OPTIONAL, source_name="ref")
    load_into(cell, split_prefix(params, "encoder."))


def torch_encoder(n_latent, seed):
    return randomize_irse(PSPEncoder(n_latent, LOSS_SIZE, ENC_UNITS, ENC_CHANNELS), seed=seed)


def build_pair(gen_size, disc_upsample, seed):
    """ModifyNets and ModifyRef holding the same random weights (latent_avg random too)."""
    nets = ModifyNets(tiny_model_config(gen_size, disc_upsample))
    enc = torch_encoder(nets.n_latent, seed)
    dec = sref.randomize_(sref.Generator(gen_size, STYLE_DIM, n_mlp=1, cm=1, cmax=8), seed + 1)
    remap = mref.randomize_remap(mref.RemapNetRef(XI, STYLE_DIM, 1), seed + 2)
    dis = sref.randomize_(sref.Discriminator(gen_size, cm=1, cmax=8), seed + 3)
    latent_avg = 0.5 * torch.randn(STYLE_DIM, generator=torch.Generator().manual_seed(seed + 4))
    ref = mref.ModifyRef(enc, dec, remap, dis, latent_avg, gen_size, LOSS_SIZE, disc_upsample)
    load_encoder(nets.encoder, enc)
    assert copy_torch_to_ms(nets.decoder, dec, skip=lambda k: k.endswith("kernel")) == {"latent_avg"}
    nets.decoder.latent_avg.set_data(m(latent_avg.numpy()))
    assert not copy_torch_to_ms(nets.remap_net, remap)
    assert not copy_torch_to_ms(nets.discriminator, dis, skip=lambda k: k.endswith("kernel"))
    # as the trainers: E in training mode (batch statistics), everything else in inference mode
    nets.set_train(False)
    nets.encoder.set_train(True)
    ref.eval()
    ref.encoder.train()
    return nets, ref


@pytest.fixture(scope="module")
def loss_nets():
    """Tiny ArcFace identity loss (64 px image, 32 px face) and LPIPS-alex with random backbones."""
    id_ref = IdentityLossRef(LOSS_SIZE, FACE, units=ID_UNITS, channels=ID_CHANNELS, emb=16)
    randomize_irse(id_ref.facenet, seed=51).eval()
    identity = IdentityLoss(LOSS_SIZE, FACE, units=ID_UNITS, channels=ID_CHANNELS, embedding_dim=16)
    state = {k: v.numpy() for k, v in id_ref.facenet.state_dict().items()}
    load_into(identity, convert_arcface(state, target_shapes_of(identity), "facenet."))
    lp_ref = randomize_lpips(LPIPSRef("alex"), seed=52).eval()
    lpips = LPIPS("alex")
    lin = {k: v.numpy() for k, v in lp_ref.state_dict().items() if k.startswith("lin")}
    backbone = {k[4:]: v.numpy() for k, v in lp_ref.state_dict().items() if k.startswith("net.")}
    load_into(lpips, convert_lpips(lin, backbone, target_shapes_of(lpips), "alex"))
    return dict(identity=identity, lpips=lpips, id_ref=id_ref, lp_ref=lp_ref)


def host_inputs(nets, seed):
    rng = np.random.default_rng(seed)
    y = rng.uniform(-1, 1, (BATCH, 3, LOSS_SIZE, LOSS_SIZE)).astype(np.float32)
    z = rng.standard_normal((BATCH, STYLE_DIM)).astype(np.float32)
    noise = [[rng.standard_normal(s).astype(np.float32) for s in nets.decoder.noise_shapes(BATCH)] for _ in range(2)]
    return y, z, noise


def ms_noise(noise):
    return ms.mutable(tuple(m(n) for n in noise))


def test_w_plus_fuses_offsets_then_adds_the_mean_latent(ms_mode):
    """fuse_codes keeps E's first L - xi rows and appends M's rows; w_plus adds latent_avg to all L rows."""
    nets, ref = build_pair(64, "nearest", seed=61)
    rng = np.random.default_rng(62)
    offsets = rng.standard_normal((BATCH, nets.n_latent, STYLE_DIM)).astype(np.float32)
    rows = rng.standard_normal((BATCH, XI, STYLE_DIM)).astype(np.float32)
    assert_close(fuse_codes(m(offsets), m(rows)), mref.fuse(t(offsets), t(rows)), REMAP_FWD, "fuse_codes")

    class _WPlus(nn.Cell):
        def __init__(self, nets):
            super().__init__(auto_prefix=False)
            self.nets = nets

        def construct(self, offsets, rows):
            return self.nets.w_plus(offsets), self.nets.w_plus(offsets, rows)

    plain, fused = _WPlus(nets)(m(offsets), m(rows))
    assert_close(plain, ref.w_plus(t(offsets)), REMAP_FWD, "w_plus(offsets)")
    assert_close(fused, ref.w_plus(t(offsets), t(rows)), REMAP_FWD, "w_plus(offsets, M rows)")


# ---------------------------------------------------------------------------- full losses
STAGE1_WEIGHTS = dict(l2=0.8, lpips=0.8, id=1.0, adv_r=0.1, adv_z=0.1, swap=1.0, w_norm=0.05)
STAGE2_WEIGHTS = dict(l2=0.5, lpips=0.8, id=1.0, adv=0.3, w_norm=0.05)


def loss_weights(cls, weights):
    """The config dataclass with the weights it has fields for (w_norm only where the config has it)."""
    fields = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in weights.items() if k in fields})


# names of parameters whose gradients are compared (MindSpore name under ModifyNets = torch name under ModifyRef)
def stage1_params(n_latent):
    return ("encoder.input_layer.0.weight", "encoder.styles.0.linear.weight", f"encoder.styles.{n_latent - 1}"
            ".linear.bias", "encoder.latlayer2.weight", "decoder.conv1.conv.weight",
            "decoder.convs.0.conv.modulation.weight", "decoder.convs.1.noise.weight", "decoder.to_rgbs.0.conv.weight",
            "remap_net.layers.1.bias", "remap_net.to_style_rows.weight")


STAGE2_STUDENT_PARAMS = ("input_layer.0.weight", "styles.0.linear.weight", "styles.5.convs.0.weight",
                         "latlayer1.bias")
STAGE2_ZERO_PARAMS = ("encoder.styles.0.linear.weight", "remap_net.to_style_rows.weight")  # teacher E, M unused
STAGE2_NET_PARAMS = ("decoder.conv1.conv.modulation.weight", "decoder.to_rgbs.0.conv.weight")


FULL_CASES = {  # name: (stage, generator size, adversarial kind, discriminator upsampling, slow)
    "stage1-g128-pooled-wgan": (1, 128, "wgan", "nearest", False),
    "stage2-g64-logistic": (2, 64, "logistic", "nearest", False),
    "stage1-g64-logistic": (1, 64, "logistic", "nearest", True),
    "stage2-g128-pooled-wgan-bilinear": (2, 128, "wgan", "bilinear", True),
}


def _named(cell, names):
    params = dict(cell.parameters_and_names())
    return [params[n] for n in names]


def _stage1_case(loss_nets, gen_size, kind, upsample):
    nets, ref = build_pair(gen_size, upsample, seed=70 + gen_size)
    y, z, (noise_r, noise_z) = host_inputs(nets, seed=gen_size)
    names = stage1_params(nets.n_latent)
    total, terms, y_r, y_z = mref.stage1_loss(ref, loss_nets["lp_ref"], loss_nets["id_ref"], STAGE1_WEIGHTS,
                                              kind, t(y), t(z), [t(n) for n in noise_r], [t(n) for n in noise_z])
    total.backward()
    ref_params = dict(ref.named_parameters())
    expected = dict(total=total, terms=terms, images=(y_r, y_z), grads={n: ref_params[n].grad for n in names})
    loss = Stage1Loss(nets, loss_nets["lpips"], loss_nets["identity"], loss_weights(LossWeights, STAGE1_WEIGHTS),
                      kind)
    params = _named(nets, names)

    def run():  # a fresh grad function per mode: one made in GRAPH would keep its compiled graph
        fn = ms.value_and_grad(loss, None, params, has_aux=True)
        return fn(m(y), m(z), ms_noise(noise_r), ms_noise(noise_z))
    return dict(run=run, names=names,
                term_names=STAGE1_TERMS, expected=expected)


def _stage2_case(loss_nets, gen_size, kind, upsample):
    nets, ref = build_pair(gen_size, upsample, seed=80 + gen_size)
    student = build_encoder(EncoderConfig(units=ENC_UNITS, channels=ENC_CHANNELS), nets.n_latent, STYLE_DIM,
                            LOSS_SIZE)
    student_ref = torch_encoder(nets.n_latent, seed=90 + gen_size).train()  # E' != E: the loss must use E'
    load_encoder(student, student_ref)
    student.set_train(True)
    x, _, (noise, _) = host_inputs(nets, seed=gen_size + 1)
    total, terms, x_out = mref.stage2_loss(ref, student_ref, loss_nets["lp_ref"], loss_nets["id_ref"],
                                           STAGE2_WEIGHTS, kind, t(x), [t(n) for n in noise])
    total.backward()
    ref_params, st_params = dict(ref.named_parameters()), dict(student_ref.named_parameters())
    grads = {n: st_params[n].grad for n in STAGE2_STUDENT_PARAMS}
    grads.update({n: ref_params[n].grad for n in STAGE2_NET_PARAMS})
    grads.update({n: torch.zeros_like(ref_params[n]) for n in STAGE2_ZERO_PARAMS})
    assert all(ref_params[n].grad is None for n in STAGE2_ZERO_PARAMS)
    expected = dict(total=total, terms=terms, images=(x_out,), grads=grads)
    loss = Stage2Loss(nets, student, loss_nets["lpips"], loss_nets["identity"],
                      loss_weights(Stage2Weights, STAGE2_WEIGHTS), kind)
    params = _named(student, STAGE2_STUDENT_PARAMS) + _named(nets, STAGE2_NET_PARAMS + STAGE2_ZERO_PARAMS)

    def run():
        return ms.value_and_grad(loss, None, params, has_aux=True)(m(x), ms_noise(noise))
    return dict(run=run, names=STAGE2_STUDENT_PARAMS + STAGE2_NET_PARAMS
                + STAGE2_ZERO_PARAMS, term_names=STAGE2_TERMS, expected=expected)


@pytest.fixture(scope="module")
def full_cases(loss_nets):
    """Each case built (and its torch reference evaluated) once, on first use, for both modes."""
    built = {}

    def get(name):
        if name not in built:
            stage, gen_size, kind, upsample, _ = FULL_CASES[name]
            make = _stage1_case if stage == 1 else _stage2_case
            built[name] = make(loss_nets, gen_size, kind, upsample)
        return built[name]

    return get


@pytest.fixture(params=[pytest.param("graph", marks=pytest.mark.slow), "pynative"])
def loss_mode(request):
    """ms_mode for the full losses: GRAPH compiles each case's forward + backward in 80-120 s on
    2 cores (measured), so it is marked slow; PYNATIVE runs a case in 15-30 s on the shared 2 cores,
    so two cases (one per stage, one pooled) run by default and the other two are slow."""
    ms.set_context(mode=MODES[request.param])
    yield request.param
    ms.set_context(mode=ms.GRAPH_MODE)


@pytest.mark.parametrize("case", [pytest.param(name, marks=pytest.mark.slow) if slow else name
                                  for name, (*_, slow) in FULL_CASES.items()])
def test_full_loss(loss_mode, full_cases, case):
    c = full_cases(case)
    exp = c["expected"]
    outputs, grads = c["run"]()
    total, terms, images = outputs[0], outputs[1], outputs[2:]
    assert len(terms) == len(c["term_names"])
    for name, value in zip(c["term_names"], terms):
        assert name in exp["terms"], f"the reference has no term {name!r}"
        assert_close(value, exp["terms"][name].detach(), LOSS_FWD, f"{case}: term {name}")
        assert float(value.asnumpy()) != 0.0, f"{case}: term {name} is 0 (weight nonzero)"
    assert_close(total, exp["total"].detach(), LOSS_FWD, f"{case}: total")
    for i, (img, ref_img) in enumerate(zip(images, exp["images"])):
        assert_close(img, ref_img.detach(), LOSS_FWD, f"{case}: image {i}")
    for name, grad in zip(c["names"], grads):
        ref_grad = exp["grads"][name]
        if not ref_grad.any():
            assert not np.any(grad.asnumpy()), f"{case}: d total / d {name} should be 0"
            continue
        assert_close(grad, ref_grad, LOSS_GRAD, f"{case}: d total / d {name}")
