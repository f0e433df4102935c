"""StarGAN v2's losses and one training iteration against the torch reference of core/solver.py
written from the mathematics (tests/reference/stargan2_ref.py), at 32 px with narrow widths.

* D loss (BCE real/fake + R1 by double backward) and G loss (adv, style reconstruction,
  diversity, cycle) forward and gradients w.r.t. every trained parameter, GRAPH and PYNATIVE,
  1e-5 relative (2e-5 for the G loss's gradients: three generator passes deep).
* One full iteration (two D updates, G+F+E latent, G reference, EMA) in GRAPH mode: the four
  losses and then every parameter and EMA copy against torch's Adam (betas (0, 0.99), weight
  decay 1e-4). Adam's first steps are +-lr per weight, so a weight whose gradient is 0 up to
  rounding (a bias before an instance norm) may step either way on either side: parameters are
  compared within 4 lr (G steps twice), and the losses of a second iteration show
  the updates themselves agree (2e-3 relative, see the assertion).
* MindSpore's Adam with weight decay equals torch's Adam (L2 added to the gradient).
* The diversity weight decays linearly; EMA follows lerp(p, p_ema, beta).

By default PYNATIVE runs the D loss guided by a reference and the G loss guided by z (each of the
two guides is the other loss's default); GRAPH_MODE, the other guides, the full iteration and the
w_hpf 1 losses with the FAN are marked slow (compilations of 20-140 s on the shared machine).
"""
import dataclasses

import numpy as np
import pytest
import mindspore as ms
import torch
from mindspore import nn

from parity_utils import assert_close, copy_torch_to_ms, m, t
from stargan2_modes import mode_graph_slow  # noqa: F401  (fixture)
from reference import stargan2_ref as ref

from baselines_ms.stargan2.config import StarGAN2Config, StarGAN2ModelConfig
from baselines_ms.stargan2.networks import StarGAN2Nets
from baselines_ms.stargan2.steps import DiscriminatorLoss, GeneratorLoss, MovingAverage, ds_weight
from baselines_ms.stargan2.trainer import StarGAN2Updates, build_adam

B, K = 2, 2
MODEL = StarGAN2ModelConfig(img_size=32, style_dim=8, latent_dim=4, max_conv_dim=16, w_hpf=0, first_dim=8,
                            hidden_dim=16)
NAMES = ("generator", "mapping_network", "style_encoder", "discriminator")
LAMBDAS = {"reg": 1.0, "sty": 1.3, "ds": 0.7, "cyc": 1.1}


def torch_nets(seed):
    kw = dict(max_conv_dim=MODEL.max_conv_dim, first_dim=MODEL.first_dim)
    nets = {"generator": ref.Generator(32, MODEL.style_dim, w_hpf=0, **kw),
            "mapping_network": ref.MappingNetwork(MODEL.latent_dim, MODEL.style_dim, K, MODEL.hidden_dim),
            "style_encoder": ref.StyleEncoder(32, MODEL.style_dim, K, **kw),
            "discriminator": ref.Discriminator(32, K, **kw)}
    for i, net in enumerate(nets.values()):
        ref.randomize(net, seed + i)
    return nets


def paired_nets(seed=100):
    """MindSpore nets (trained and EMA copies) holding the torch reference's random weights."""
    ms_nets = StarGAN2Nets(MODEL, K)
    nets, ema = torch_nets(seed), torch_nets(seed + 50)
    for name in NAMES:
        assert not copy_torch_to_ms(getattr(ms_nets, name), nets[name])
        if name != "discriminator":
            assert not copy_torch_to_ms(getattr(ms_nets, f"{name}_ema"), ema[name])
    return ms_nets, nets, ema


def make_batch(seed=0):
    rng = np.random.default_rng(seed)
    img = lambda: rng.uniform(-1, 1, (B, 3, 32, 32)).astype(np.float32)
    return {"x_real": img(), "x_ref": img(), "x_ref2": img(), "y_org": np.array([0, 1], np.int32),
            "y_trg": np.array([1, 1], np.int32),
            "z_trg": rng.standard_normal((B, MODEL.latent_dim)).astype(np.float32),
            "z_trg2": rng.standard_normal((B, MODEL.latent_dim)).astype(np.float32)}


def torch_batch(batch):
    return {k: torch.from_numpy(v).long() if k.startswith("y") else t(v) for k, v in batch.items()}


@pytest.fixture(scope="module")
def loss_setup():
    ms_nets, nets, _ = paired_nets()
    cells = {"d_latent": DiscriminatorLoss(ms_nets, "latent", LAMBDAS["reg"]),
             "d_reference": DiscriminatorLoss(ms_nets, "reference", LAMBDAS["reg"]),
             "g_latent": GeneratorLoss(ms_nets, "latent", LAMBDAS["sty"], LAMBDAS["cyc"]),
             "g_reference": GeneratorLoss(ms_nets, "reference", LAMBDAS["sty"], LAMBDAS["cyc"])}
    return ms_nets, nets, cells


def grads_of(cell, params, *inputs):
    fn = ms.value_and_grad(cell, None, ms.ParameterTuple(params), has_aux=True)
    return fn(*inputs)


def compare_grads(ms_params, ms_grads, torch_modules, rel):
    torch_params = {f"{name}.{k}": p for name, mod in torch_modules.items() for k, p in mod.named_parameters()}
    scale = max(float(p.grad.abs().max()) for p in torch_params.values() if p.grad is not None)
    for p, g in zip(ms_params, ms_grads):
        expected = torch_params[p.name].grad
        if expected is None or float(expected.abs().max()) < 1e-5 * scale:  # a bias before an instance norm
            assert float(np.abs(g.asnumpy()).max()) < 1e-5 * scale, p.name
        else:
            assert_close(g, expected, rel, f"grad {p.name}")


@pytest.mark.parametrize("guide", [pytest.param("latent", marks=pytest.mark.slow), "reference"])
def test_discriminator_loss(mode_graph_slow, loss_setup, guide):
    ms_nets, nets, cells = loss_setup
    batch = make_batch(1)
    tb = torch_batch(batch)
    for net in nets.values():
        net.zero_grad(set_to_none=True)
    kw = {"z_trg": tb["z_trg"]} if guide == "latent" else {"x_ref": tb["x_ref"]}
    total, terms = ref.d_loss(nets, tb["x_real"], tb["y_org"], tb["y_trg"], LAMBDAS["reg"], **kw)
    total.backward()
    params = ms_nets.discriminator.trainable_params()
    source = batch["z_trg"] if guide == "latent" else batch["x_ref"]
    (ms_total, ms_terms), grads = grads_of(cells[f"d_{guide}"], params, m(batch["x_real"]), m(batch["y_org"]),
                                           m(batch["y_trg"]), m(source))
    assert_close(ms_total, total, 1e-5, "D loss")
    for name, a, b in zip(("real", "fake", "reg"), ms_terms, terms):
        assert_close(a, b, 1e-5, name)
    assert float(terms[2]) > 1e-3  # R1 is exercised (not ~0)
    compare_grads(params, grads, {"discriminator": nets["discriminator"]}, 1e-5)


@pytest.mark.parametrize("guide", ["latent", pytest.param("reference", marks=pytest.mark.slow)])
def test_generator_loss(mode_graph_slow, loss_setup, guide):
    ms_nets, nets, cells = loss_setup
    batch = make_batch(2)
    tb = torch_batch(batch)
    for net in nets.values():
        net.zero_grad(set_to_none=True)
    w = (LAMBDAS["sty"], LAMBDAS["ds"], LAMBDAS["cyc"])
    kw = {"z_trgs": (tb["z_trg"], tb["z_trg2"])} if guide == "latent" else {"x_refs": (tb["x_ref"], tb["x_ref2"])}
    total, terms = ref.g_loss(nets, tb["x_real"], tb["y_org"], tb["y_trg"], w, **kw)
    total.backward()
    trained = ("generator", "mapping_network", "style_encoder")
    params = [p for n in trained for p in getattr(ms_nets, n).trainable_params()]
    sources = (batch["z_trg"], batch["z_trg2"]) if guide == "latent" else (batch["x_ref"], batch["x_ref2"])
    (ms_total, ms_terms), grads = grads_of(cells[f"g_{guide}"], params, m(batch["x_real"]), m(batch["y_org"]),
                                           m(batch["y_trg"]), m(sources[0]), m(sources[1]),
                                           ms.Tensor(LAMBDAS["ds"], ms.float32))
    assert_close(ms_total, total, 1e-5, "G loss")
    for name, a, b in zip(("adv", "sty", "ds", "cyc"), ms_terms, terms):
        assert_close(a, b, 1e-5, name)
    if guide == "reference":  # reference-guided: F takes no part
        trained = ("generator", "style_encoder")
        params_grads = [(p, g) for p, g in zip(params, grads) if not p.name.startswith("mapping_network")]
        params, grads = [p for p, _ in params_grads], [g for _, g in params_grads]
    compare_grads(params, grads, {n: nets[n] for n in trained}, 5e-4)


@pytest.mark.slow  # four update graphs and the EMA compiled (~70 CPU s)
def test_one_iteration_matches_the_official_solver():
    """GRAPH mode (the training mode): the four updates and the EMA of one iteration, then a second."""
    ms_nets, nets, ema = paired_nets(200)
    cfg = dataclasses.replace(StarGAN2Config(model=MODEL), ema_beta=0.9,
                              losses=dataclasses.replace(StarGAN2Config().losses, lambda_sty=LAMBDAS["sty"],
                                                         lambda_cyc=LAMBDAS["cyc"], lambda_ds=LAMBDAS["ds"],
                                                         ds_iter=10))
    lr, f_lr = 1e-3, 1e-4  # larger than the official ones so that one update shows
    cfg = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, lr=lr, f_lr=f_lr))
    updates = StarGAN2Updates(ms_nets, cfg)
    optims = ref.make_optims(nets, lr, f_lr, (0.0, 0.99), 1e-4)
    for step in range(2):
        batch = make_batch(10 + step)
        lambdas = dict(LAMBDAS, ds=ds_weight(step, LAMBDAS["ds"], 10))
        expected = ref.train_iteration(nets, ema, optims, torch_batch(batch), lambdas, ema_beta=0.9)
        record = updates(batch, batch["z_trg"], batch["z_trg2"], step)
        assert record["lambda_ds"] == pytest.approx(lambdas["ds"])
        for key in ("d_latent", "d_ref", "g_latent", "g_ref"):
            # the first iteration's losses to float32 rounding; the second's see the first's Adam steps
            # (module doc), and MindSpore's Adam adds eps to sqrt(v) before the bias correction
            # (torch's eps * sqrt(1 - beta2^t)): 1e-3 of the ~1e-5 gradients, 2e-3 relative in the losses
            assert_close(record[key], np.float32(expected[key]), 1e-4 if step == 0 else 2e-3, f"step {step} {key}")
        if step == 0:
            for name in NAMES:
                for key, p in getattr(ms_nets, name).parameters_and_names():  # keys relative to the network
                    want = dict(nets[name].named_parameters())[key].detach().numpy()
                    step_bound = 4 * (f_lr if name == "mapping_network" else lr)
                    assert np.abs(p.asnumpy() - want).max() <= step_bound + 1e-6, f"{name}.{key}"
    for name in ("generator", "mapping_network", "style_encoder"):
        for key, p in getattr(ms_nets, f"{name}_ema").parameters_and_names():
            want = dict(ema[name].named_parameters())[key].detach().numpy()
            assert np.abs(p.asnumpy() - want).max() <= 0.1 * 8 * lr + 1e-6, f"{name}_ema.{key}"


def test_adam_weight_decay_is_torch_adam():
    """nn.Adam(weight_decay) = torch.optim.Adam(weight_decay): L2 added to the gradient, 5 steps."""
    rng = np.random.default_rng(3)
    w0 = rng.standard_normal((4, 3)).astype(np.float32)
    dense = nn.Dense(3, 4)
    dense.weight.set_data(m(w0))
    tw = torch.nn.Parameter(t(w0.copy()))
    cfg = StarGAN2Config().optim
    opt = build_adam([dense.weight], 0.01, cfg)
    topt = torch.optim.Adam([tw], lr=0.01, betas=(0.0, 0.99), weight_decay=cfg.weight_decay)
    for _ in range(5):
        g = rng.standard_normal((4, 3)).astype(np.float32) * 1e-3  # small: the decay term matters
        opt((m(g),))
        tw.grad = t(g)
        topt.step()
    assert_close(dense.weight.value(), tw.detach(), 1e-5, "Adam with weight decay")


def test_diversity_weight_decays_linearly():
    assert [ds_weight(i, 2.0, 4) for i in range(6)] == [2.0, 1.5, 1.0, 0.5, 0.0, 0.0]
    assert ds_weight(50000, 1.0, 100000) == pytest.approx(0.5)


def test_ema_rule():
    pair = nn.SequentialCell([nn.Dense(3, 2), nn.Dense(3, 2)])  # unique parameter names
    a, b = pair[0], pair[1]
    pa = [p.asnumpy().copy() for p in a.get_parameters()]  # asnumpy may share the device buffer
    pb = [p.asnumpy().copy() for p in b.get_parameters()]
    MovingAverage([(a, b)], 0.75)()
    for p, x, y in zip(b.get_parameters(), pa, pb):
        np.testing.assert_allclose(p.asnumpy(), x + 0.75 * (y - x), rtol=1e-6, atol=1e-7)


@pytest.mark.slow  # the full-size FAN inside the generator's update: a long compilation
def test_high_pass_losses_with_fan_masks():
    """w_hpf 1 (GRAPH mode): D and G losses with the sources' FAN masks, the cycle with the fake's,
    forward (2e-5) and gradients (5e-4: the cycle's masks come from the FAN of the fake, whose 0.1
    threshold and min-max normalisation turn float32 differences of the fake into mask differences
    up to 1e-4; measured up to 1.6e-4 on the encoder's first layers)."""
    model = dataclasses.replace(MODEL, img_size=64, w_hpf=1.0)
    ms_nets = StarGAN2Nets(model, K)
    kw = dict(max_conv_dim=model.max_conv_dim, first_dim=model.first_dim)
    nets = {"generator": ref.Generator(64, model.style_dim, w_hpf=1, **kw),
            "mapping_network": ref.MappingNetwork(model.latent_dim, model.style_dim, K, model.hidden_dim),
            "style_encoder": ref.StyleEncoder(64, model.style_dim, K, **kw),
            "discriminator": ref.Discriminator(64, K, **kw)}
    for i, (name, net) in enumerate(nets.items()):
        ref.randomize(net, 300 + i)
        assert not copy_torch_to_ms(getattr(ms_nets, name), net, skip=lambda k: k == "hpf.filter")
    fan = ref.randomize_fan(ref.FAN(), 9)
    from test_baselines_stargan2_wing import bn_name

    assert not copy_torch_to_ms(ms_nets.fan, fan, rename=bn_name, skip=lambda k: k.endswith("num_batches_tracked"))
    from modify_ms.data.builtin import builtin_photos

    x = np.stack([p.transpose(2, 0, 1) / 127.5 - 1 for p in builtin_photos(64)[:B]]).astype(np.float32)
    batch = dict(make_batch(4), x_real=x)
    batch["x_ref"] = np.random.default_rng(5).uniform(-1, 1, (B, 3, 64, 64)).astype(np.float32)
    tb = torch_batch(batch)
    masks = ref.fan_masks(fan, tb["x_real"])
    got_masks = ms_nets.masks(m(x))
    np.testing.assert_allclose(got_masks.asnumpy(), masks.numpy(), rtol=0, atol=1e-4)
    total, _ = ref.d_loss(nets, tb["x_real"], tb["y_org"], tb["y_trg"], 1.0, z_trg=tb["z_trg"], masks=masks)
    total.backward()
    (ms_total, _), grads = grads_of(DiscriminatorLoss(ms_nets, "latent", 1.0), ms_nets.discriminator.trainable_params(),
                                    m(x), m(batch["y_org"]), m(batch["y_trg"]), m(batch["z_trg"]), got_masks)
    assert_close(ms_total, total, 2e-5, "D loss, w_hpf 1")
    compare_grads(ms_nets.discriminator.trainable_params(), grads, {"discriminator": nets["discriminator"]}, 2e-5)
    for net in nets.values():
        net.zero_grad(set_to_none=True)
    w = (LAMBDAS["sty"], LAMBDAS["ds"], LAMBDAS["cyc"])
    total, terms = ref.g_loss(nets, tb["x_real"], tb["y_org"], tb["y_trg"], w, z_trgs=(tb["z_trg"], tb["z_trg2"]),
                              masks=masks, fan=fan)
    total.backward()
    trained = ("generator", "mapping_network", "style_encoder")
    params = [p for n in trained for p in getattr(ms_nets, n).trainable_params()]
    (ms_total, ms_terms), grads = grads_of(GeneratorLoss(ms_nets, "latent", LAMBDAS["sty"], LAMBDAS["cyc"]), params,
                                           m(x), m(batch["y_org"]), m(batch["y_trg"]), m(batch["z_trg"]),
                                           m(batch["z_trg2"]), ms.Tensor(LAMBDAS["ds"], ms.float32), got_masks)
    for name, a, b in zip(("adv", "sty", "ds", "cyc"), ms_terms, terms):
        assert_close(a, b, 2e-5, f"{name}, w_hpf 1")
    compare_grads(params, grads, {n: nets[n] for n in trained}, 5e-4)


def test_official_initialisation_is_seeded():
    """he_init on the trained networks (N(0, 2 / fan_in), zero biases), torch's default uniform
    +-1/sqrt(fan_in) on the EMA copies (the official deep-copy-before-init quirk); one seed fixes all."""
    a, b = StarGAN2Nets(MODEL, K), StarGAN2Nets(MODEL, K)
    a.init_weights(5)
    b.init_weights(5)
    for (name, p), q in zip(a.parameters_and_names(), b.get_parameters()):
        assert np.array_equal(p.asnumpy(), q.asnumpy()), name
    w = a.generator.encode[1].conv1.weight.asnumpy()  # 16 x 16 x 3 x 3: fan_in 144
    assert abs(w.std() / np.sqrt(2.0 / 144) - 1) < 0.1 and not a.generator.encode[1].conv1.bias.asnumpy().any()
    e = a.generator_ema.encode[1].conv1.weight.asnumpy()
    assert np.abs(e).max() <= 1 / 12 and abs(e.std() / (1 / 12 / np.sqrt(3)) - 1) < 0.1
    assert np.abs(a.generator_ema.encode[1].conv1.bias.asnumpy()).max() > 0
