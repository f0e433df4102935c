"""Importers of the encoder/loss weights: coverage of the real layouts (every key of the manifests in
modify_ms/assets/manifests/checkpoint_key_manifests.json maps onto exactly one MindSpore parameter of the right
shape, and every parameter is filled), strictness (a missing, extra or mis-shaped key is refused), and
end-to-end conversions through the command line of files written by torch.save in the real layouts
(zip and legacy serialisation), checked numerically against the torch reference.
"""
import argparse
import os

import numpy as np
import pytest
import torch

from modify_ms.assets import lpips_linear_layers
from parity_utils import assert_close, m, t
from reference.identity_ref import IdentityLossRef
from reference.irse_ref import PSPEncoder, randomize
from reference.lpips_ref import LPIPSRef, randomize as randomize_lpips
from reference import stylegan2_ref
from modify_ms.losses.identity import IdentityLoss
from modify_ms.losses.lpips import LPIPS
from modify_ms.models.psp_encoder import GradualStyleEncoder
from modify_ms.models.stylegan2 import Generator
from weights_convert.__main__ import main as cli
from weights_convert.errors import MappingError
from modify_ms.losses.builders import build_identity_loss, build_lpips
from modify_ms.utils.checkpoint import read_arrays
from weights_convert.irse import (convert_arcface, convert_arcface_backbone,
                                  infer_arcface_kwargs, init_encoder_from_arcface)
from weights_convert.lpips_weights import convert_torchvision_features
from weights_convert.mapping import target_shapes_of
from weights_convert.psp import build_psp, convert_psp_state, infer_encoder_kwargs, split_prefix
from weights_convert.stylegan2 import fir_kernel, infer_generator_kwargs

SHALLOW, TINY = (1, 2, 2, 1), (8, 16, 32, 64)


def zeros_like_manifest(manifest):
    """Zero-cost stand-ins with the real shapes (the mapping materialises only what it loads)."""
    return {k: np.broadcast_to(np.float32(0), tuple(v)) for k, v in manifest.items()}


# ------------------------------------------------------------------ manifests of the real files
@pytest.fixture(scope="module")
def identity_shapes():
    return target_shapes_of(IdentityLoss())


def test_arcface_manifest_maps_onto_identity_loss(key_manifests, identity_shapes):
    manifest = key_manifests["arcface_ir_se50"]
    assert len(manifest) == 397
    src = zeros_like_manifest(manifest)
    params = convert_arcface(src, identity_shapes, "facenet.")
    assert set(params) == set(identity_shapes)  # every parameter filled ...
    loaded = [k for k in manifest if "num_batches_tracked" not in k]
    assert len(params) == len(loaded) == 343  # ... each from exactly one key
    # num_batches_tracked is optional (absent from older files)
    assert set(convert_arcface({k: src[k] for k in loaded}, identity_shapes, "facenet.")) == set(identity_shapes)
    assert infer_arcface_kwargs(src) == {"input_size": 112, "units": [3, 4, 14, 3], "channels": [64, 128, 256, 512],
                                         "mode": "ir_se", "embedding_dim": 512}


def test_arcface_mapping_is_strict(key_manifests, identity_shapes):
    src = zeros_like_manifest(key_manifests["arcface_ir_se50"])
    missing = {k: v for k, v in src.items() if k != "body.7.res_layer.2.weight"}
    with pytest.raises(MappingError) as err:
        convert_arcface(missing, identity_shapes, "facenet.")
    assert "facenet.body.7.res_layer.2.w" in err.value.unfilled
    extra = dict(src, **{"body.24.res_layer.1.weight": np.zeros((512, 512, 3, 3), np.float32)})
    with pytest.raises(MappingError) as err:
        convert_arcface(extra, identity_shapes, "facenet.")
    assert err.value.mentions("body.24.res_layer.1.weight")
    bad = dict(src, **{"input_layer.2.weight": np.zeros((1,), np.float32)})  # a shared PReLU slope
    with pytest.raises(MappingError) as err:
        convert_arcface(bad, identity_shapes, "facenet.")
    assert err.value.shape_mismatches


def test_arcface_manifest_maps_onto_encoder_backbone(key_manifests):
    src = zeros_like_manifest(key_manifests["arcface_ir_se50"])
    shapes = target_shapes_of(GradualStyleEncoder(n_styles=1))
    params = convert_arcface_backbone(src, shapes)
    backbone = {k for k in shapes if k.startswith(("input_layer.", "body."))}
    assert set(params) == backbone and len(backbone) == 333
    assert len([k for k in src if k.startswith(("input_layer.", "body.")) and "num_batches" not in k]) == 333


def test_psp_manifest_maps_onto_encoder_and_decoder(key_manifests):
    manifest = key_manifests["psp_ffhq_encode_state_dict"]
    assert len(manifest) == 792
    src = zeros_like_manifest(manifest)
    for k in src:  # the decoder's FIR buffers are checked against the derived kernel, so give the real one
        if k.endswith("kernel"):
            src[k] = fir_kernel(4.0)
    src["latent_avg"] = np.zeros((18, 512), np.float32)
    enc_kw = infer_encoder_kwargs(src)
    assert enc_kw == {"n_styles": 18, "input_size": 256, "units": [3, 4, 14, 3], "channels": [64, 128, 256, 512],
                      "mode": "ir_se", "style_dim": 512}
    dec_kw = infer_generator_kwargs(split_prefix(src, "decoder."))
    enc_shapes = target_shapes_of(GradualStyleEncoder(**enc_kw))
    dec_shapes = target_shapes_of(Generator(**dec_kw))
    params = convert_psp_state(src, enc_shapes, dec_shapes)
    expected = {"encoder." + k for k in enc_shapes} | {"decoder." + k for k in dec_shapes} | {"latent_avg"}
    assert set(params) == expected
    n_loaded = len([k for k in manifest if "num_batches_tracked" not in k and not k.endswith("kernel")])
    # + the W+ latent_avg; decoder.latent_avg is derived from it, not read
    assert len(params) == n_loaded + 2


@pytest.mark.parametrize("net,name,n_features", [("alex", "torchvision_alexnet", 10), ("vgg", "torchvision_vgg16", 26)])
def test_torchvision_manifests_map_onto_lpips(key_manifests, net, name, n_features):
    manifest = key_manifests[name]
    shapes = target_shapes_of(LPIPS(net))
    params = convert_torchvision_features(zeros_like_manifest(manifest), shapes, net)
    assert set(params) == {k for k in shapes if k.startswith("net.")}
    assert len(params) == n_features == len([k for k in manifest if k.startswith("features.")])
    wrong = dict(zeros_like_manifest(manifest))
    first_fc = next(k for k in manifest if k.startswith("classifier") and k.endswith("weight"))
    wrong[first_fc] = np.zeros((10, 10), np.float32)  # the ignored head is still shape-checked
    with pytest.raises(MappingError):
        convert_torchvision_features(wrong, shapes, net)


# ------------------------------------------------------------------ end to end: torch.save -> CLI -> cell
@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("enc_weights")
    out = {"root": root}
    # ArcFace (tiny, real key layout) in both serialisations
    idref = IdentityLossRef(64, 32, units=SHALLOW, channels=TINY, emb=16)
    randomize(idref.facenet, seed=31).eval()
    out["idref"] = idref
    for fmt in ("zip", "legacy"):
        torch.save(idref.facenet.state_dict(), root / f"arcface_{fmt}.pth", _use_new_zipfile_serialization=fmt == "zip")
    # pSp: encoder (6 rows) + 16 px decoder + W+ latent_avg + opts
    enc = randomize(PSPEncoder(6, 64, SHALLOW, TINY), seed=32).eval()
    dec = stylegan2_ref.randomize_(stylegan2_ref.Generator(16, 64, 2, 2, 16), 3)
    avg = torch.randn(1, 64).repeat(6, 1)
    state = {**{"encoder." + k: v for k, v in enc.state_dict().items()},
             **{"decoder." + k: v for k, v in dec.state_dict().items()}}
    opts = {"encoder_type": "GradualStyleEncoder", "start_from_latent_avg": True, "output_size": 16,
            "lpips_lambda": 0.8, "id_lambda": 0.1, "exp_dir": "/tmp/x"}
    torch.save({"state_dict": state, "opts": opts, "latent_avg": avg}, root / "psp.pt")
    torch.save({"state_dict": state, "opts": argparse.Namespace(**opts), "latent_avg": avg}, root / "psp_ns.pt",
               _use_new_zipfile_serialization=False)
    out.update(enc=enc, dec=dec, avg=avg.numpy(), opts=opts)
    # LPIPS: torchvision alexnet with its classifier + the real lin layers
    lref = randomize_lpips(LPIPSRef("alex", classifier=True), seed=33).eval()
    torch.save(lref.net.state_dict(), root / "alexnet-owt-test.pth")
    out["lref"] = lref
    return out


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_cli_irse50_identity(files, fmt, rng):
    root = files["root"]
    dst = str(root / f"id_{fmt}.ckpt")
    assert cli(["irse50", str(root / f"arcface_{fmt}.pth"), dst, "--target", "identity", "--image-size", "64"]) == 0
    loss = build_identity_loss(dst)
    x = rng.uniform(-1, 1, (2, 3, 64, 64)).astype(np.float32)
    y = np.clip(x + 0.3 * rng.standard_normal(x.shape).astype(np.float32), -1, 1)
    assert_close(loss(m(y), m(x)), files["idref"](t(y), t(x)), 1e-5, "converted identity loss")


def test_cli_irse50_encoder_backbone(files):
    root = files["root"]
    dst = str(root / "backbone.ckpt")
    assert cli(["irse50", str(root / "arcface_zip.pth"), dst, "--target", "encoder"]) == 0
    params, meta = read_arrays(dst)
    assert meta["format"] == "modify_ms.irse_backbone"
    encoder = GradualStyleEncoder(6, 64, units=SHALLOW, channels=TINY)
    heads_before = encoder.styles[0].linear.weight.asnumpy().copy()
    init_encoder_from_arcface(encoder, params)
    state = files["idref"].facenet.state_dict()
    np.testing.assert_array_equal(encoder.body[3].res_layer[2].w.asnumpy(), state["body.3.res_layer.2.weight"].numpy())
    np.testing.assert_array_equal(encoder.input_layer[1].moving_variance.asnumpy(),
                                  state["input_layer.1.running_var"].numpy())
    np.testing.assert_array_equal(encoder.styles[0].linear.weight.asnumpy(), heads_before)


@pytest.mark.parametrize("name", ["psp.pt", "psp_ns.pt"])
def test_cli_psp(files, name, rng):
    root = files["root"]
    dst = str(root / (name + ".ckpt"))
    assert cli(["psp", str(root / name), dst]) == 0
    encoder, decoder, meta = build_psp(dst)
    assert meta["opts"] == files["opts"] and meta["start_from_latent_avg"]
    x = rng.uniform(-1, 1, (2, 3, 64, 64)).astype(np.float32)
    expected = files["enc"](t(x)).detach().numpy() + files["avg"]
    assert_close(encoder(m(x)), expected, 1e-5, "pSp encoder + latent_avg")
    dec_state = files["dec"].state_dict()
    dec_params = dict(decoder.parameters_and_names())
    for key in ("style.1.weight", "convs.1.conv.modulation.weight", "to_rgbs.0.bias", "noises.noise_3"):
        np.testing.assert_array_equal(dec_params[key].asnumpy(), dec_state[key].numpy())
    np.testing.assert_allclose(dec_params["latent_avg"].asnumpy(), files["avg"][0], rtol=1e-6)


def test_cli_lpips(files, rng):
    root = files["root"]
    dst = str(root / "lpips_alex.ckpt")
    lin = lpips_linear_layers("alex")
    assert cli(["lpips", dst, "--net", "alex", "--lin", lin, "--backbone", str(root / "alexnet-owt-test.pth")]) == 0
    cell = build_lpips(dst, reduction="none")
    lref = files["lref"]
    real = torch.load(lin, map_location="cpu", weights_only=True)
    with torch.no_grad():
        for k in range(5):
            getattr(lref, f"lin{k}").model[1].weight.copy_(real[f"lin{k}.model.1.weight"])
    x = rng.uniform(-1, 1, (2, 3, 64, 64)).astype(np.float32)
    y = rng.uniform(-1, 1, (2, 3, 64, 64)).astype(np.float32)
    assert_close(cell(m(x), m(y)), lref(t(x), t(y)), 1e-5, "converted LPIPS")


def test_cli_lpips_defaults_to_the_packaged_linear_layers(files):
    root = files["root"]
    backbone = str(root / "alexnet-owt-test.pth")
    explicit, default = str(root / "lin_given.ckpt"), str(root / "lin_default.ckpt")
    assert cli(["lpips", explicit, "--net", "alex", "--lin", lpips_linear_layers("alex"), "--backbone", backbone]) == 0
    assert cli(["lpips", default, "--net", "alex", "--backbone", backbone]) == 0
    a, b = read_arrays(explicit)[0], read_arrays(default)[0]
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert all(np.all(a[f"lin{k}.model.1.weight"] >= 0) and np.any(a[f"lin{k}.model.1.weight"] > 0) for k in range(5))


def test_cli_errors_are_one_line(files, capsys):
    root = files["root"]
    junk = root / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    assert cli(["irse50", str(junk), str(root / "x.ckpt")]) == 2
    assert cli(["psp", str(root / "arcface_zip.pth"), str(root / "y.ckpt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("error: ") for line in err)
    assert not os.path.exists(root / "x.ckpt") and not os.path.exists(root / "y.ckpt")
