"""Importers of e4e (``e4e_ffhq_encode.pt``, pSp's file format with opts.encoder_type = Encoder4Editing)
and of JoJoGAN's fine-tuned style generators (``jojo.pt`` etc.: ``{"g": rosinality G(1024)}``).

* The REAL key lists (modify_ms/assets/manifests/baseline_key_manifests.json: ``e4e_ffhq_encode_pt``,
  793 entries; ``jojogan_finetuned_generator_pt``, 171) map strictly: every key used (FIR kernels
  checked against the derived constant), every parameter of the full-size MindSpore encoder and
  generator filled, shapes checked. Zero-cost sources (untouched ``np.zeros`` pages) and targets
  built with MindSpore's and numpy's random initialisers switched off (the full-size e4e encoder
  and 1024 generator then build in seconds, not ~20 s).
  A missing, an extra and a mis-shaped key are each refused by name.
* End to end: tiny files in the real layouts written by ``torch.save`` go through the CLI as a real
  subprocess (``python -m weights_convert psp --encoder-type Encoder4Editing`` and ``jojogan``); the e4e
  result, loaded with ``load_inversion_encoder``, must encode as the torch reference does (W+ incl.
  latent_avg, rel 1e-5 of the max magnitude, float32), the generator's parameters must equal torch's
  exactly. Bad files (wrong encoder_type, missing key, extra key, no ``g``) exit 2 with one line.
  A real-size JoJoGAN file through the CLI is marked slow (~40 s).
"""
import contextlib
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from parity_utils import assert_close, m, t
from reference import stylegan2_ref
from reference.e4e_ref import E4EEncoder
from reference.irse_ref import randomize
from weights_convert.__main__ import main as cli
from weights_convert.errors import CheckpointError, MappingError
from weights_convert.jojogan import jojogan_generator_state
from weights_convert.mapping import map_state_dict, target_shapes_of
from weights_convert.psp import (convert_psp_checkpoint, convert_psp_state, encoder_arch_of, infer_encoder_kwargs,
                                 load_inversion_encoder, split_prefix)
from weights_convert import stylegan2 as sg2

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHALLOW, TINY = (1, 2, 2, 1), (8, 16, 32, 64)
E4E_OPTS = {"encoder_type": "Encoder4Editing", "stylegan_size": 1024, "start_from_latent_avg": True,
            "progressive_start": 20000, "progressive_step_every": 2000, "delta_norm_lambda": 2e-4}


# ------------------------------------------------------------------ helpers
@contextlib.contextmanager
def shape_only_init():
    """Build MindSpore cells without drawing their random initial values (only shapes are wanted)."""
    from mindspore.common import initializer

    with pytest.MonkeyPatch.context() as mp:
        for name in ("_random_uniform", "_random_normal", "_truncated_normal"):
            if hasattr(initializer, name):
                mp.setattr(initializer, name, lambda *args: None)
        mp.setattr(np.random, "randn", lambda *shape: np.zeros(shape))
        yield


def zero_cost(manifest_keys, strip):
    """{key without ``strip``: zeros of the real shape} (pages never touched), real FIR kernels."""
    out = {}
    for key, shape in manifest_keys.items():
        name = key[len(strip):] if key.startswith(strip) else key
        out[name] = sg2.fir_kernel(4.0).astype(np.float32) if name.endswith("kernel") else np.zeros(shape, np.float32)
    return out


def n_loaded(keys):
    return len([k for k in keys if not k.endswith(("kernel", "num_batches_tracked"))])


@pytest.fixture(scope="module")
def baseline():
    from modify_ms.assets import key_manifests

    return key_manifests("baseline")


@pytest.fixture(scope="module")
def e4e_real(baseline):
    """The real e4e_ffhq_encode.pt as read_psp returns it (state incl. latent_avg), and its conversion."""
    entry = baseline["e4e_ffhq_encode_pt"]
    assert entry["top_level"] == ["state_dict", "opts", "latent_avg"] and len(entry["keys"]) == 793
    state = zero_cost(entry["keys"], "state_dict/")
    with shape_only_init():
        params, meta = convert_psp_checkpoint(state, dict(E4E_OPTS), "e4e_ffhq_encode.pt")
    return entry["keys"], state, params, meta


@pytest.fixture(scope="module")
def jojo_real(baseline):
    """The real JoJoGAN {'g': G(1024)} layout and the full-size generator's parameter shapes."""
    from modify_ms.models.stylegan2 import Generator

    entry = baseline["jojogan_finetuned_generator_pt"]
    assert entry["top_level"] == ["g"] and len(entry["keys"]) == 171
    obj = {"g": zero_cost(entry["keys"], "g/")}
    sd = jojogan_generator_state(obj, "jojo.pt")
    kwargs = sg2.infer_generator_kwargs(sd)
    with shape_only_init():
        shapes = target_shapes_of(Generator(**kwargs, lr_mlp=0.01))
    shapes.pop("latent_avg")  # not in the file: estimated by the StyleGAN2 importer
    return entry["keys"], sd, kwargs, shapes


# ------------------------------------------------------------------ the real key lists
def test_e4e_real_key_list_converts(e4e_real):
    keys, _, params, meta = e4e_real
    enc_kw = {"n_styles": 18, "input_size": 256, "units": [3, 4, 14, 3], "channels": [64, 128, 256, 512],
              "mode": "ir_se", "style_dim": 512, "progressive_stage": 18}
    assert meta["encoder"] == {"module": "modify_ms.models.e4e", "arch": "Encoder4Editing", "kwargs": enc_kw}
    assert meta["decoder"]["kwargs"] == {"size": 1024, "style_dim": 512, "n_mlp": 8, "channel_multiplier": 2,
                                         "channel_max": 512, "lr_mlp": 0.01}
    assert meta["start_from_latent_avg"] and meta["has_latent_avg"] and meta["opts"] == E4E_OPTS
    # every loaded key became one parameter (+ decoder.latent_avg, derived from the W+ latent_avg)
    assert len(params) == n_loaded(keys) + 1 == 726
    assert params["latent_avg"].shape == (18, 512) and params["decoder.latent_avg"].shape == (512,)
    assert params["encoder.styles.17.linear.weight"].shape == (512, 512)
    assert params["encoder.body.23.res_layer.2.w"].shape == (512,)


def test_e4e_real_key_list_is_strict(e4e_real):
    keys, state, params, meta = e4e_real
    enc_shapes = {k: v.shape for k, v in split_prefix(params, "encoder.").items()}
    dec_shapes = {k: v.shape for k, v in split_prefix(params, "decoder.").items()}
    for key in ("encoder.styles.9.linear.bias", "decoder.noises.noise_16", "encoder.body.7.res_layer.0.running_var"):
        assert key in state
        missing = {k: v for k, v in state.items() if k != key}
        with pytest.raises(MappingError) as err:
            convert_psp_state(missing, enc_shapes, dec_shapes, source_name="e4e")
        assert err.value.unfilled and not err.value.unused, key
    extra = dict(state, **{"encoder.styles.18.linear.weight": np.zeros((512, 512), np.float32)})
    with pytest.raises(MappingError) as err:
        convert_psp_state(extra, enc_shapes, dec_shapes, source_name="e4e")
    assert err.value.problems and "encoder.styles.18.linear.weight" in str(err.value)
    bad = dict(state, **{"encoder.latlayer1.weight": np.zeros((512, 256, 3, 3), np.float32)})
    with pytest.raises(MappingError) as err:
        convert_psp_state(bad, enc_shapes, dec_shapes, source_name="e4e")
    assert err.value.shape_mismatches
    kernel = dict(state, **{"decoder.convs.0.conv.blur.kernel": sg2.fir_kernel(1.0).astype(np.float32)})
    with pytest.raises(MappingError):
        convert_psp_state(kernel, enc_shapes, dec_shapes, source_name="e4e")


def test_encoder_type_follows_opts(e4e_real):
    _, state, _, _ = e4e_real
    assert encoder_arch_of({}, "f.pt") == "GradualStyleEncoder"  # pSp's default
    assert encoder_arch_of({"encoder_type": "Encoder4Editing"}, "f.pt", "Encoder4Editing") == "Encoder4Editing"
    for opts, expected in (({"encoder_type": "BackboneEncoderUsingLastLayerIntoW"}, None),
                           ({"encoder_type": "GradualStyleEncoder"}, "Encoder4Editing")):
        with pytest.raises(CheckpointError) as err:
            convert_psp_checkpoint(state, opts, "f.pt", expected)  # refused before any network is built
        assert str(err.value).startswith("f.pt: ") and opts["encoder_type"] in str(err.value)
    assert infer_encoder_kwargs(state)["n_styles"] == 18


def test_jojogan_real_key_list_maps(jojo_real, baseline):
    keys, sd, kwargs, shapes = jojo_real
    assert kwargs == {"size": 1024, "style_dim": 512, "n_mlp": 8, "channel_multiplier": 2, "channel_max": 512}
    params = map_state_dict(sd, shapes, sg2.rosinality_generator_rules(), optional=sg2.OPTIONAL, source_name="jojo")
    assert list(params) == list(shapes) and len(params) == n_loaded(keys) == 155
    # the same generator e4e decodes with: a style generator can stand in for e4e's decoder
    e4e_decoder = {k[len("state_dict/decoder."):]: v for k, v in baseline["e4e_ffhq_encode_pt"]["keys"].items()
                   if k.startswith("state_dict/decoder.")}
    assert e4e_decoder == {k[2:]: v for k, v in keys.items()}


def test_jojogan_real_key_list_is_strict(jojo_real):
    _, sd, _, shapes = jojo_real
    rules = sg2.rosinality_generator_rules()
    assert "convs.15.conv.modulation.bias" in sd
    cases = {"missing": {k: v for k, v in sd.items() if k != "convs.15.conv.modulation.bias"},
             "extra": dict(sd, **{"to_rgbs.8.bias": np.zeros((1, 3, 1, 1), np.float32)}),
             "shape": dict(sd, **{"style.3.weight": np.zeros((512, 256), np.float32)})}
    for what, src in cases.items():
        with pytest.raises(MappingError) as err:
            map_state_dict(src, shapes, rules, optional=sg2.OPTIONAL, source_name="jojo")
        got = {"missing": err.value.unfilled, "extra": err.value.problems.get("rules naming unknown target params"),
               "shape": err.value.shape_mismatches}[what]
        assert got, (what, err.value.problems)
    for obj in ({"g_ema": sd}, sd, [sd], {"g": {}}):
        with pytest.raises(CheckpointError, match="not a JoJoGAN style generator"):
            jojogan_generator_state(obj, "jojo.pt")


# ------------------------------------------------------------------ end to end through the CLI
@pytest.fixture
def pynative():
    """The converted encoder runs once: no graph compile (GRAPH parity of the same cell is tests/test_e4e.py's)."""
    import mindspore as ms

    ms.set_context(mode=ms.PYNATIVE_MODE)
    yield
    ms.set_context(mode=ms.GRAPH_MODE)


def _cli_process(*args):
    env = dict(os.environ, PYTHONPATH=REPO, GLOG_v="3")
    return subprocess.Popen([sys.executable, "-m", "weights_convert", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def torch_files(tmp_path_factory):
    """Tiny e4e (6 rows, 16 px decoder) and JoJoGAN files in the real layouts, written by torch.save."""
    root = tmp_path_factory.mktemp("e4e_jojo")
    avg = torch.randn(1, TINY[-1], generator=torch.Generator().manual_seed(40)).repeat(6, 1)
    enc = randomize(E4EEncoder(6, 64, SHALLOW, TINY, latent_avg=avg), seed=41).eval()
    dec = stylegan2_ref.randomize_(stylegan2_ref.Generator(16, 64, 2, 2, 16), 42)
    state = {**{"encoder." + k: v for k, v in enc.state_dict().items()},
             **{"decoder." + k: v for k, v in dec.state_dict().items()}}
    opts = dict(E4E_OPTS, stylegan_size=16)
    torch.save({"state_dict": state, "opts": opts, "latent_avg": avg}, root / "e4e.pt")
    gen = stylegan2_ref.randomize_(stylegan2_ref.Generator(16, 64, 2, 2, 16), 43)
    torch.save({"g": gen.state_dict()}, root / "jojo.pt")
    # bad files
    torch.save({"state_dict": state, "opts": dict(opts, encoder_type="BackboneEncoderUsingLastLayerIntoW"),
                "latent_avg": avg}, root / "restyle_type.pt")
    torch.save({"state_dict": state, "opts": dict(opts, encoder_type="GradualStyleEncoder"), "latent_avg": avg},
               root / "psp_type.pt")
    torch.save({"state_dict": {k: v for k, v in state.items() if k != "encoder.styles.4.linear.weight"},
                "opts": opts, "latent_avg": avg}, root / "e4e_missing.pt")
    torch.save({"state_dict": dict(state, **{"encoder.styles.6.linear.weight": torch.ones(64, 64)}),
                "opts": opts, "latent_avg": avg}, root / "e4e_extra.pt")
    g_sd = gen.state_dict()
    torch.save({"g": {k: v for k, v in g_sd.items() if k != "convs.1.activate.bias"}}, root / "jojo_missing.pt")
    torch.save({"g": dict(g_sd, **{"convs.9.noise.weight": torch.ones(1)})}, root / "jojo_extra.pt")
    torch.save({"g_ema": g_sd}, root / "jojo_g_ema_only.pt")
    return {"root": root, "enc": enc, "dec": dec, "gen": gen, "avg": avg.numpy(), "opts": opts}


@pytest.fixture(scope="module")
def converted(torch_files):
    """Both good files and the two refused-before-MindSpore bad ones, converted by concurrent subprocesses."""
    root = torch_files["root"]
    runs = {
        "e4e": _cli_process("psp", str(root / "e4e.pt"), str(root / "e4e.ckpt"), "--encoder-type", "Encoder4Editing"),
        "jojo": _cli_process("jojogan", str(root / "jojo.pt"), str(root / "jojo.ckpt")),
        "restyle_type": _cli_process("psp", str(root / "restyle_type.pt"), str(root / "bad1.ckpt")),
        "g_ema_only": _cli_process("jojogan", str(root / "jojo_g_ema_only.pt"), str(root / "bad2.ckpt")),
    }
    out = {}
    for name, proc in runs.items():
        stdout, stderr = proc.communicate(timeout=300)
        out[name] = (proc.returncode, stdout, stderr)
    return out


def test_cli_e4e_encodes_as_torch(torch_files, converted, pynative, rng):
    rc, stdout, stderr = converted["e4e"]
    assert rc == 0, stderr
    assert "Encoder4Editing" in stdout
    root = torch_files["root"]
    encoder, decoder, meta = load_inversion_encoder(str(root / "e4e.ckpt"))
    assert type(encoder).__name__ == "Encoder4Editing" and encoder.progressive_stage == 18
    assert meta["opts"] == torch_files["opts"] and meta["start_from_latent_avg"]
    x = rng.uniform(-1, 1, (2, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        expected = torch_files["enc"](t(x))  # e4e read-out + latent_avg
    assert_close(encoder(m(x)), expected, 1e-5, "converted e4e W+ (incl. latent_avg)")
    dec_state = torch_files["dec"].state_dict()
    dec_params = dict(decoder.parameters_and_names())
    for key in ("style.2.weight", "conv1.conv.weight", "convs.1.noise.weight", "to_rgbs.1.bias", "noises.noise_4"):
        np.testing.assert_array_equal(dec_params[key].asnumpy(), dec_state[key].numpy(), err_msg=key)
    np.testing.assert_allclose(dec_params["latent_avg"].asnumpy(), torch_files["avg"][0], rtol=1e-6)


def test_cli_jojogan_loads_as_a_converted_generator(torch_files, converted):
    rc, stdout, stderr = converted["jojo"]
    assert rc == 0, stderr
    root = torch_files["root"]
    model, meta = sg2.build_from_checkpoint(str(root / "jojo.ckpt"))
    assert meta["format"] == "modify_ms.stylegan2" and meta["arch"] == "Generator" and meta["which"] == "g"
    assert meta["latent_avg"].startswith("estimated")
    params = dict(model.parameters_and_names())
    state = {k: v for k, v in torch_files["gen"].state_dict().items() if not k.endswith("kernel")}
    assert set(params) == set(state) | {"latent_avg"}
    for key, value in state.items():
        np.testing.assert_array_equal(params[key].asnumpy(), value.numpy(), err_msg=key)


@pytest.mark.parametrize("name,fragment", [("restyle_type", "BackboneEncoderUsingLastLayerIntoW"),
                                           ("g_ema_only", "no 'g' state_dict")])
def test_cli_refuses_before_converting(torch_files, converted, name, fragment):
    rc, stdout, stderr = converted[name]
    lines = stderr.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize("args,fragment", [
    (("psp", "psp_type.pt", "--encoder-type", "Encoder4Editing"), "not 'Encoder4Editing'"),
    (("psp", "e4e_missing.pt"), "encoder.styles.4.linear.weight"),
    (("psp", "e4e_extra.pt"), "encoder.styles.6.linear.weight"),
    (("jojogan", "jojo_missing.pt"), "convs.1.activate.bias"),
    (("jojogan", "jojo_extra.pt"), "convs.9.noise.weight"),
])
def test_cli_bad_files_exit_2_one_line(torch_files, capsys, args, fragment):
    root = torch_files["root"]
    sub, src, *rest = args
    dst = root / f"out_{src}.ckpt"
    assert cli([sub, str(root / src), str(dst), *rest]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and fragment in err[0], err
    assert not dst.exists()


@pytest.mark.slow
def test_cli_jojogan_real_size(tmp_path):
    """A real-size {'g': G(1024)} file (30 M values, ~120 MB) through the CLI: every parameter equals torch's."""
    gen = stylegan2_ref.randomize_(stylegan2_ref.Generator(1024), 44)
    src, dst = tmp_path / "jojo_1024.pt", tmp_path / "jojo_1024.ckpt"
    torch.save({"g": gen.state_dict()}, src)
    proc = _cli_process("jojogan", str(src), str(dst))
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    model, meta = sg2.build_from_checkpoint(str(dst))
    assert meta["kwargs"]["size"] == 1024 and len(meta["kwargs"]) == 6 and meta["num_params"] == 155
    params = dict(model.parameters_and_names())
    for key, value in gen.state_dict().items():
        if not key.endswith("kernel"):
            np.testing.assert_array_equal(params[key].asnumpy(), value.numpy(), err_msg=key)
