"""weights_convert.nvlabs_pkl: stylegan2-ada network pickles read without running their code.

The pickle is built here with real torch modules laid out like stylegan2-ada's
(tiny: 8x8, 16 channels) and an emulation of ``torch_utils.persistence``:
each network pickles as ``_reconstruct_persistent_obj(meta)`` with
``module_src`` source code that would create a sentinel file if executed (and
the emulated ``_reconstruct_persistent_obj`` does execute it, like the real
one imports it). The reader must return the same state_dicts as torch's
``state_dict()`` and the sentinel must never appear.
"""
import io
import os
import pickle
import struct
import sys
import types

import numpy as np
import pytest
import torch

from weights_convert import stylegan2 as sg2
from weights_convert.__main__ import main as cli_main
from weights_convert.errors import CheckpointError
from weights_convert.nvlabs_pkl import load_nvlabs_pkl

S, C, RES = 16, 16, 8  # style dim, channels, resolution
MBSTD_GROUP = 8  # D's recorded epilogue_kwargs.mbstd_group_size


class _EasyDict(dict):
    """Stand-in for dnnlib.EasyDict (pickled by reference, never imported by the reader)."""


def _persistent_reconstruct(meta):
    """What torch_utils.persistence does: import the pickled source. Runs the sentinel code."""
    exec(compile(meta["module_src"], "<persistent>", "exec"), {})
    raise AssertionError("the reader executed pickled source code")


class _Persistent(torch.nn.Module):
    """A torch module that pickles the way stylegan2-ada's persistent classes do."""

    module_src = ""

    def __init__(self, class_name, **init_kwargs):
        super().__init__()
        self._orig_class_name = class_name
        self._init_args = ()
        self._init_kwargs = dict(init_kwargs)
        for key, value in init_kwargs.items():
            if isinstance(value, (int, float)):
                setattr(self, key, value)

    def __reduce__(self):
        meta = dict(type="class", version=4, module_src=self.module_src,
                    class_name=self._orig_class_name, state=dict(self.__dict__))
        return (_persistent_reconstruct, (meta,))


def _filter():
    k = torch.tensor([1.0, 3.0, 3.0, 1.0])
    k = k[:, None] * k[None, :]
    return k / k.sum()


def _module(class_name, params=(), buffers=(), children=(), **init_kwargs):
    mod = _Persistent(class_name, **init_kwargs)
    for name, shape in params:
        mod.register_parameter(name, torch.nn.Parameter(torch.randn(shape)))
    for name, value in buffers:
        mod.register_buffer(name, value)
    for name, child in children:
        mod.add_module(name, child)
    return mod


def _fc(i, o):
    return _module("FullyConnectedLayer", [("weight", (o, i)), ("bias", (o,))], bias_gain=0.01)


def _layer(i, o, res):
    return _module("SynthesisLayer", [("weight", (o, i, 3, 3)), ("noise_strength", ()), ("bias", (o,))],
                   [("resample_filter", _filter()), ("noise_const", torch.randn(res, res))],
                   [("affine", _fc(S, i))])


def _torgb(i):
    return _module("ToRGBLayer", [("weight", (3, i, 1, 1)), ("bias", (3,))], children=[("affine", _fc(S, i))])


def _conv(i, o, k, bias=True):
    return _module("Conv2dLayer", [("weight", (o, i, k, k))] + ([("bias", (o,))] if bias else []),
                   [("resample_filter", _filter())])


def _generator():
    mapping = _module("MappingNetwork", buffers=[("w_avg", torch.randn(S))],
                      children=[("fc0", _fc(S, S)), ("fc1", _fc(S, S))], z_dim=S, w_dim=S, num_layers=2)
    b4 = _module("SynthesisBlock", [("const", (C, 4, 4))], [("resample_filter", _filter())],
                 [("conv1", _layer(C, C, 4)), ("torgb", _torgb(C))])
    b8 = _module("SynthesisBlock", buffers=[("resample_filter", _filter())],
                 children=[("conv0", _layer(C, C, 8)), ("conv1", _layer(C, C, 8)), ("torgb", _torgb(C))])
    synthesis = _module("SynthesisNetwork", children=[("b4", b4), ("b8", b8)], w_dim=S, img_resolution=RES)
    return _module("Generator", children=[("synthesis", synthesis), ("mapping", mapping)],
                   z_dim=S, c_dim=0, w_dim=S, img_resolution=RES, img_channels=3,
                   mapping_kwargs=_EasyDict(num_layers=2))


def _discriminator():
    b8 = _module("DiscriminatorBlock", buffers=[("resample_filter", _filter())], children=[
        ("fromrgb", _conv(3, C, 1)), ("conv0", _conv(C, C, 3)), ("conv1", _conv(C, C, 3)),
        ("skip", _conv(C, C, 1, bias=False))])
    b4 = _module("DiscriminatorEpilogue", children=[
        ("conv", _conv(C + 1, C, 3)), ("fc", _fc(C * 16, C)), ("out", _fc(C, 1))])
    # as NVlabs' train.py records it (paper256: mbstd 8); the importer must not fall back to 4
    return _module("Discriminator", children=[("b8", b8), ("b4", b4)], c_dim=0, img_resolution=RES,
                   epilogue_kwargs=_EasyDict(mbstd_group_size=MBSTD_GROUP, mbstd_num_channels=1))


@pytest.fixture(scope="module")
def fake_pickle(tmp_path_factory):
    """(path, sentinel, {'G_ema': torch module, 'G': ..., 'D': ...})."""
    import pickle

    d = tmp_path_factory.mktemp("nvlabs")
    sentinel = d / "SENTINEL"
    _Persistent.module_src = f"open({str(sentinel)!r}, 'w').close()\n"
    fake_modules = {"torch_utils": types.ModuleType("torch_utils"),
                    "torch_utils.persistence": types.ModuleType("torch_utils.persistence"),
                    "dnnlib": types.ModuleType("dnnlib"), "dnnlib.util": types.ModuleType("dnnlib.util")}
    fake_modules["torch_utils.persistence"]._reconstruct_persistent_obj = _persistent_reconstruct
    fake_modules["dnnlib.util"].EasyDict = _EasyDict
    saved = {n: (getattr(obj, "__module__"), getattr(obj, "__qualname__"))
             for n, obj in (("f", _persistent_reconstruct), ("e", _EasyDict))}
    _persistent_reconstruct.__module__, _persistent_reconstruct.__qualname__ = (
        "torch_utils.persistence", "_reconstruct_persistent_obj")
    _EasyDict.__module__, _EasyDict.__qualname__ = "dnnlib.util", "EasyDict"
    sys.modules.update(fake_modules)
    try:
        torch.manual_seed(0)
        nets = {"G": _generator(), "D": _discriminator(), "G_ema": _generator()}
        for net in nets.values():
            net.eval().requires_grad_(False)
        data = dict(nets, augment_pipe=None,
                    training_set_kwargs=_EasyDict(path="ffhq.zip", resolution=RES), cur_nimg=1000)
        path = d / "network-snapshot.pkl"
        with open(path, "wb") as fh:
            pickle.dump(data, fh)
    finally:
        _persistent_reconstruct.__module__, _persistent_reconstruct.__qualname__ = saved["f"]
        _EasyDict.__module__, _EasyDict.__qualname__ = saved["e"]
        for name in fake_modules:
            sys.modules.pop(name, None)
    yield str(path), sentinel, nets, fake_modules


def test_reads_state_dicts_without_running_code(fake_pickle):
    path, sentinel, nets, fake_modules = fake_pickle
    sys.modules.update(fake_modules)  # the would-be code is importable: the reader must still not use it
    try:
        loaded = load_nvlabs_pkl(path)
    finally:
        for name in fake_modules:
            sys.modules.pop(name, None)
    assert not sentinel.exists()
    for name, net in nets.items():
        expected = net.state_dict()
        assert list(loaded[name]) == list(expected), name  # torch's state_dict order
        for key, value in expected.items():
            got = loaded[name][key]
            assert got.dtype == np.float32 and got.shape == tuple(value.shape), key
            assert got.tobytes() == value.numpy().tobytes(), key
    meta = loaded["meta"]
    assert (meta["z_dim"], meta["w_dim"], meta["img_resolution"], meta["c_dim"]) == (S, S, RES, 0)
    assert meta["networks"]["G_ema"]["class_name"] == "Generator"
    assert meta["networks"]["G_ema"]["init_kwargs"]["mapping_kwargs"] == {"num_layers": 2}
    assert set(meta["other_keys"]) == {"augment_pipe", "training_set_kwargs", "cur_nimg"}


def test_torch_save_file_is_not_an_nvlabs_pickle(tmp_path):
    path = str(tmp_path / "x.pt")
    torch.save({"a": torch.ones(1)}, path)
    with pytest.raises(CheckpointError, match="not an NVlabs network pickle"):
        load_nvlabs_pkl(path)


def test_other_code_in_the_pickle_is_refused(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'SENTINEL'}",))

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G_ema": Evil()}))
    with pytest.raises(CheckpointError, match="refused to unpickle 'posix.system'"):
        load_nvlabs_pkl(str(path))
    assert not (tmp_path / "SENTINEL").exists()


@pytest.mark.parametrize("which, arch", [("g_ema", "Generator"), ("d", "Discriminator")])
def test_convert_ada_pickle(tmp_path, fake_pickle, capsys, which, arch):
    path, sentinel, nets, _ = fake_pickle
    dst = str(tmp_path / f"{which}.ckpt")
    assert cli_main(["stylegan2", path, dst, "--which", which]) == 0
    assert "nvlabs-ada" in capsys.readouterr().out
    model, meta = sg2.build_from_checkpoint(dst)  # strict load into the MindSpore model
    assert meta["arch"] == arch and meta["source_layout"] == "nvlabs-ada"
    params = {n: p.asnumpy() for n, p in model.parameters_and_names()}
    sd = {k: v.numpy() for k, v in nets["G_ema" if which == "g_ema" else "D"].state_dict().items()}
    if which == "g_ema":
        assert meta["kwargs"] == dict(size=RES, style_dim=S, n_mlp=2, channel_multiplier=2, channel_max=C,
                                      lr_mlp=0.01)
        checks = {"latent_avg": "mapping.w_avg", "style.2.weight": "mapping.fc1.weight",
                  "input.input": "synthesis.b4.const", "convs.1.conv.weight": "synthesis.b8.conv1.weight",
                  "noises.noise_2": "synthesis.b8.conv1.noise_const", "to_rgbs.0.bias": "synthesis.b8.torgb.bias",
                  "convs.0.noise.weight": "synthesis.b8.conv0.noise_strength"}
    else:
        checks = {"convs.0.0.weight": "b8.fromrgb.weight", "convs.1.skip.1.weight": "b8.skip.weight",
                  "final_conv.0.weight": "b4.conv.weight", "final_linear.1.weight": "b4.out.weight"}
    for target, source in checks.items():
        np.testing.assert_array_equal(params[target].ravel(), sd[source].ravel(), err_msg=target)
    assert cli_main(["inspect", path]) == 0
    out = capsys.readouterr().out
    assert "nvlabs-pkl" in out and "stylegan2-ada Generator size=8" in out
    assert "stylegan2-ada Discriminator size=8" in out
    assert not sentinel.exists()


def test_converted_ada_discriminator_uses_the_pickles_mbstd_group(tmp_path, fake_pickle, ms_mode):
    """mbstd_group_size=8 from the pickle reaches the sidecar and the built network: at batch 8
    it matches NVlabs' layer with group 8 (an importer keeping rosinality's 4 would use min(4, 8))."""
    from parity_utils import assert_close, m, rel_err, t
    from reference import stylegan2_ref as ref

    path = fake_pickle[0]
    dst = str(tmp_path / "d.ckpt")
    meta = sg2.convert_stylegan2(path, dst, which="d")
    assert (meta["kwargs"]["stddev_group"], meta["kwargs"]["stddev_feat"]) == (MBSTD_GROUP, 1)
    model, _ = sg2.build_from_checkpoint(dst)
    assert (model.stddev_group, model.stddev_feat) == (MBSTD_GROUP, 1)
    params = {n: p.asnumpy() for n, p in model.parameters_and_names()}
    x = np.random.default_rng(3).standard_normal((8, 3, RES, RES)).astype(np.float32)
    outs = {}
    for group in (MBSTD_GROUP, 4):
        d_t = ref.Discriminator(RES, cm=2, cmax=C, nvlabs_mbstd=(group, 1))
        missing, unexpected = d_t.load_state_dict({k: t(v) for k, v in params.items()}, strict=False)
        assert not unexpected and all(k.endswith("kernel") for k in missing), missing
        with torch.no_grad():
            outs[group] = d_t(t(x)).numpy()
    got = model(m(x))
    assert_close(got, outs[MBSTD_GROUP], 1e-5, "D logits, group 8")
    assert rel_err(outs[4], outs[MBSTD_GROUP]) > 1e-3  # the two groupings are distinguishable here


def test_ada_minibatch_std_kwargs_from_recorded_init_kwargs(fake_pickle):
    sd = load_nvlabs_pkl(fake_pickle[0])["D"]
    assert sg2.ada_minibatch_std_kwargs({}, sd) == {"stddev_group": 4, "stddev_feat": 1}  # NVlabs defaults
    whole = {"epilogue_kwargs": {"mbstd_group_size": None}}
    assert sg2.ada_minibatch_std_kwargs(whole, sd) == {"stddev_group": None, "stddev_feat": 1}
    assert sg2.infer_discriminator_kwargs(sd, "nvlabs-ada", whole)["stddev_group"] is None
    assert "stddev_group" not in sg2.infer_discriminator_kwargs(sd, "nvlabs-ada")  # shapes only (inspect)
    with pytest.raises(ValueError, match="mbstd_num_channels=2 but b4.conv.weight has 17 input channels"):
        sg2.ada_minibatch_std_kwargs({"epilogue_kwargs": {"mbstd_num_channels": 2}}, sd)
    with pytest.raises(ValueError, match="mbstd_group_size is 0"):
        sg2.ada_minibatch_std_kwargs({"epilogue_kwargs": {"mbstd_group_size": 0}}, sd)


# ------------------------------------------------------------------ hostile network pickles
def _poisoned_pickles():
    """Pickles that mutate what the NVlabs allow-list hands out (then stop)."""
    from test_hostile_convert import glob, integer, stream, text

    def build_on(module, name):
        return stream(glob(module, name) + pickle.EMPTY_DICT + text("inert_name") + text("Evil")
                      + pickle.SETITEM + pickle.BUILD + pickle.POP + pickle.EMPTY_DICT)

    return {
        "build_on_persistent_loader": build_on("torch_utils.persistence", "_reconstruct_persistent_obj"),
        "build_on_inert_class": build_on("training.networks", "Generator"),
        "setitem_on_inert_class": stream(glob("dnnlib.util", "EasyDict") + text("a") + integer(1) + pickle.SETITEM),
        "build_on_storage_loader": build_on("torch.storage", "_load_from_bytes"),
    }



@pytest.mark.parametrize("name", sorted(_poisoned_pickles()))
def test_poisoned_network_pickle_is_refused_and_the_next_reads_the_same(tmp_path, fake_pickle, name):
    path, _, nets, _ = fake_pickle
    bad = tmp_path / f"{name}.pkl"
    bad.write_bytes(_poisoned_pickles()[name])
    with pytest.raises(CheckpointError, match="refused: (BUILD|SETITEM) would modify") as info:
        load_nvlabs_pkl(str(bad))
    assert "\n" not in str(info.value)
    loaded = load_nvlabs_pkl(path)
    for net_name, net in nets.items():
        for key, value in net.state_dict().items():
            assert loaded[net_name][key].tobytes() == value.numpy().tobytes(), key


def test_inert_classes_belong_to_one_file(fake_pickle):
    """Two reads of one file never share a class (nothing a file does to one outlives it)."""
    from weights_convert.limits import ByteBudget
    from weights_convert.nvlabs_pkl import NvlabsUnpickler
    from weights_convert.safe_unpickle import BoundedReader

    path = fake_pickle[0]
    records = []
    for _ in range(2):
        with open(path, "rb") as fh:
            reader = BoundedReader(fh, path, os.path.getsize(path))
            records.append(NvlabsUnpickler(reader, path, ByteBudget(path)).load())
    assert type(records[0]["training_set_kwargs"]) is not type(records[1]["training_set_kwargs"])
    assert records[0]["training_set_kwargs"].class_name == "dnnlib.util.EasyDict"
    assert type(records[0]["G"]) is not type(records[1]["G"])


def _storage_reused(tmp_path, copies):
    """A network pickle whose one in-pickle storage stream is loaded ``copies`` times through the memo."""
    from test_hostile_convert import get, glob, put, stream, text

    buf = io.BytesIO()
    torch.save(torch.arange(4096, dtype=torch.float32).untyped_storage(), buf, _use_new_zipfile_serialization=False)
    raw = buf.getvalue()
    body = (glob("torch.storage", "_load_from_bytes") + put(0) + pickle.BINBYTES + struct.pack("<I", len(raw)) + raw
            + put(1) + pickle.POP + pickle.POP + pickle.EMPTY_DICT + text("storages") + pickle.MARK
            + (get(0) + get(1) + pickle.TUPLE1 + pickle.REDUCE) * copies + pickle.LIST + pickle.SETITEM)
    path = tmp_path / "reused.pkl"
    path.write_bytes(stream(body))
    return str(path), len(raw)



def test_one_storage_referenced_many_times_is_decoded_once(tmp_path):
    """20000 references to one 16 KB stream: decoded once (the limit counts it once), not 320 MB."""
    from weights_convert.limits import ByteBudget, limit_total_bytes
    from weights_convert.nvlabs_pkl import NvlabsUnpickler
    from weights_convert.safe_unpickle import BoundedReader

    path, nbytes = _storage_reused(tmp_path, 20000)
    with limit_total_bytes(2 * nbytes), open(path, "rb") as fh:
        obj = NvlabsUnpickler(BoundedReader(fh, path, os.path.getsize(path)), path, ByteBudget(path)).load()
    first = obj["storages"][0]
    assert len(obj["storages"]) == 20000 and all(s is first for s in obj["storages"])
    with pytest.raises(CheckpointError, match="no 'G_ema', 'G' or 'D' network"):
        load_nvlabs_pkl(path)  # the whole reader: same file, one line


@pytest.mark.parametrize("name", ["self_referencing_dict", "reference_bomb", "deep_nesting", "bytearray_3gb",
                                  "binbytes8_3gb", "hash_bomb_dict_key"])
def test_hostile_network_pickles_are_one_line(tmp_path, name):
    from test_hostile_convert import HOSTILE_PICKLES

    data, fragment = HOSTILE_PICKLES[name]
    path = tmp_path / f"{name}.pkl"
    path.write_bytes(data)
    with pytest.raises(CheckpointError) as info:
        load_nvlabs_pkl(str(path))
    assert fragment in str(info.value) and "\n" not in str(info.value)
