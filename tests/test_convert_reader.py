"""weights_convert.torch_pickle: torch-free, code-free reading of .pt/.pth files.

The reference is torch.load itself (torch is a test-only dependency): every
tensor must come back bit-exactly (same dtype, shape, strides, bytes).
"""
import argparse
import collections
import io
import os
import pickle
import zipfile

import numpy as np
import pytest
import torch

from modify_ms.assets import lpips_linear_layers
from weights_convert import torch_pickle
from weights_convert.errors import CheckpointError
from weights_convert.torch_pickle import flatten_state_dict, load_torch_file

LPIPS = ("alex", "vgg", "squeeze")


def _save(obj, path, fmt):
    torch.save(obj, path, _use_new_zipfile_serialization=(fmt == "zip"))
    return path


def _assert_same(ours, ref, where="root"):
    """Structural, bit-exact comparison of our result against torch.load's."""
    if isinstance(ref, torch.Tensor):
        assert isinstance(ours, np.ndarray), where
        expected = (ref.float() if ref.dtype == torch.bfloat16 else ref).detach().numpy()
        assert ours.dtype == expected.dtype, where
        assert ours.shape == expected.shape, where
        if ref.dtype != torch.bfloat16:
            assert ours.strides == expected.strides, where
        assert ours.tobytes() == expected.tobytes(), where
    elif isinstance(ref, argparse.Namespace):
        assert isinstance(ours, torch_pickle.Namespace), where
        _assert_same(vars(ours), vars(ref), where)
    elif isinstance(ref, dict):
        assert type(ours) is type(ref), where
        assert list(ours) == list(ref), where
        for k in ref:
            _assert_same(ours[k], ref[k], f"{where}.{k}")
    elif isinstance(ref, (list, tuple)):
        assert type(ours) is type(ref) and len(ours) == len(ref), where
        for i, (a, b) in enumerate(zip(ours, ref)):
            _assert_same(a, b, f"{where}[{i}]")
    elif isinstance(ref, np.ndarray):
        assert ours.dtype == ref.dtype and np.array_equal(ours, ref), where
    else:
        assert type(ours) is type(ref) and ours == ref, where


def _sample_object():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(4, 6, generator=g)
    inner = collections.OrderedDict()
    inner["w"] = torch.randn(3, 2, 5, generator=g)
    inner["half"] = torch.randn(7, generator=g).half()
    inner["bf16"] = torch.randn(5, generator=g).bfloat16()
    inner["long"] = torch.arange(-5, 5, dtype=torch.int64)
    inner["mask"] = torch.tensor([True, False, True])
    inner["i8"] = torch.tensor([-3, 4], dtype=torch.int8)
    inner["scalar"] = torch.tensor(3.25)
    inner["num_batches_tracked"] = torch.tensor(7)
    inner["param"] = torch.nn.Parameter(torch.randn(2, 2, generator=g))
    return {
        "base": base,
        "transposed": base.t(),  # non-contiguous view of the same storage
        "sliced": base[1:3, 2:5],  # storage offset + strides
        "strided": base[:, ::2],
        "expanded": torch.randn(1, 3, generator=g).expand(4, 3),  # stride 0
        "empty": torch.zeros(0, 3),
        "nested": {"inner": inner, "list": [torch.ones(2), 3, "x"], "tuple": (1.5, None)},
        "args": argparse.Namespace(size=256, lr=0.002, name="ffhq", flag=True,
                                   np_float=np.float64(0.5), np_int=np.int64(3),
                                   np_arr=np.arange(4, dtype=np.float32)),
        "step": 1234,
        "ratio": 0.6,
    }


@pytest.fixture(scope="module")
def sample_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("reader")
    obj = _sample_object()
    return {fmt: _save(obj, str(d / f"sample_{fmt}.pt"), fmt) for fmt in ("zip", "legacy")}


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_round_trip_bit_exact(sample_files, fmt):
    path = sample_files[fmt]
    assert torch_pickle.detect_format(path) == fmt
    ours = load_torch_file(path)
    ref = torch.load(path, map_location="cpu", weights_only=False)
    _assert_same(ours, ref)


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_views_share_storage_and_are_read_only(sample_files, fmt):
    ours = load_torch_file(sample_files[fmt])
    assert np.shares_memory(ours["base"], ours["transposed"])
    assert np.shares_memory(ours["base"], ours["sliced"])
    assert not ours["base"].flags.writeable
    assert ours["args"].size == 256 and ours["args"].name == "ffhq"


@pytest.mark.parametrize("name", LPIPS)
def test_real_lpips_fixtures_read_bit_exactly(name):
    path = lpips_linear_layers(name)
    assert torch_pickle.detect_format(path) == "legacy"
    ours = load_torch_file(path)
    ref = torch.load(path, map_location="cpu", weights_only=False)
    _assert_same(ours, ref)
    assert "lin0.model.1.weight" in ours and ours["lin0.model.1.weight"].shape[:1] == (1,)


def test_flatten_state_dict():
    flat = flatten_state_dict({"g": {"a": np.ones(2), "b": [np.zeros(1), 3]}, "n": 5,
                               "c": np.ones(1)}, prefix="m")
    assert list(flat) == ["m.g.a", "m.g.b.0", "m.c"]


def test_progress_bar_runs(sample_files, monkeypatch, capsys):
    monkeypatch.setattr(torch_pickle, "PROGRESS_MIN_BYTES", 0)
    for path in sample_files.values():
        assert "base" in load_torch_file(path, progress=True)


# ------------------------------------------------------------------ refusals
class _RunsShell:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _RunsEval:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        import builtins

        return (builtins.eval, (f"open({self.command!r}, 'w').close()",))


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
@pytest.mark.parametrize("payload, refused", [(_RunsShell, ("posix.system",)),
                                              (_RunsEval, ("builtins.eval", "__builtin__.eval"))])
def test_malicious_pickle_is_refused(tmp_path, fmt, payload, refused):
    sentinel = tmp_path / "SENTINEL"
    command = f"touch {sentinel}" if payload is _RunsShell else str(sentinel)
    obj = {"weight": torch.ones(3), "args": argparse.Namespace(evil=payload(command))}
    path = _save(obj, str(tmp_path / f"evil_{fmt}.pt"), fmt)
    with pytest.raises(CheckpointError) as info:
        load_torch_file(path)
    message = str(info.value)
    # protocol-2 pickles spell builtins as __builtin__
    assert message in [f"{path}: refused to unpickle '{name}': this file would run code; "
                       "only tensors and plain containers are allowed" for name in refused]
    assert not sentinel.exists()


def test_refuses_object_arrays(tmp_path):
    path = _save({"a": np.array([1, "x"], dtype=object)}, str(tmp_path / "obj.pt"), "zip")
    with pytest.raises(CheckpointError, match="object"):
        load_torch_file(path)


# ------------------------------------------------------------ corrupt files
def _one_line_error(path, match):
    with pytest.raises(CheckpointError) as info:
        load_torch_file(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    assert match in message, message
    return message


def _rewrite_zip(src, dst, edit):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, edit(info.filename, zin.read(info.filename)))
    return dst


def _small_tensor_files(tmp_path):
    obj = {"t": torch.arange(6, dtype=torch.float32).reshape(2, 3)}
    return {fmt: _save(obj, str(tmp_path / f"small_{fmt}.pt"), fmt) for fmt in ("zip", "legacy")}


# the pickled stride (3, 1) of the 2x3 tensor; (4, 1) reaches element 6 of a 6-element storage
STRIDE_OK, STRIDE_PAST_END = b"K\x03K\x01\x86", b"K\x04K\x01\x86"


def test_view_past_storage_end_is_refused(tmp_path):
    files = _small_tensor_files(tmp_path)
    bad_zip = _rewrite_zip(files["zip"], str(tmp_path / "past_zip.pt"),
                           lambda n, b: b.replace(STRIDE_OK, STRIDE_PAST_END) if n.endswith("data.pkl") else b)
    _one_line_error(bad_zip, "runs past the end of storage")
    raw = open(files["legacy"], "rb").read()
    assert raw.count(STRIDE_OK) == 1
    bad_legacy = tmp_path / "past_legacy.pt"
    bad_legacy.write_bytes(raw.replace(STRIDE_OK, STRIDE_PAST_END))
    _one_line_error(str(bad_legacy), "runs past the end of storage")


def test_short_storage_record_is_refused(tmp_path):
    files = _small_tensor_files(tmp_path)
    bad = _rewrite_zip(files["zip"], str(tmp_path / "short.pt"),
                       lambda n, b: b[:8] if "/data/" in n else b)
    _one_line_error(bad, "expected")


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.97])
def test_truncated_files(tmp_path, fmt, fraction):
    files = _small_tensor_files(tmp_path)
    raw = open(files[fmt], "rb").read()
    cut = tmp_path / f"cut_{fmt}.pt"
    cut.write_bytes(raw[: max(1, int(len(raw) * fraction))])
    _one_line_error(str(cut), "truncated")


@pytest.mark.parametrize("content, match", [
    (b"", "empty file"),
    (b"hello, this is a text file\n", "not a PyTorch checkpoint"),
    (bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)), "not a PyTorch checkpoint"),
    (pickle.dumps({"a": 1}, protocol=2), "plain pickle"),
    (pickle.dumps(torch_pickle.LEGACY_MAGIC, protocol=2)[:9], "truncated"),
    (pickle.dumps(torch_pickle.LEGACY_MAGIC, protocol=2) + b"\x80\x02M\xe9", "truncated"),
])
def test_non_checkpoint_files(tmp_path, content, match):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    _one_line_error(str(path), match)


def test_wrong_magic_number(tmp_path):
    buf = io.BytesIO()
    pickle.dump(0x1234, buf, protocol=2)
    pickle.dump(1001, buf, protocol=2)
    path = tmp_path / "magic.pt"
    path.write_bytes(buf.getvalue())
    # a pickle whose first value is not the magic number is not a legacy checkpoint
    _one_line_error(str(path), "plain pickle")
    with pytest.raises(CheckpointError, match="wrong magic number"):
        torch_pickle.load_legacy_bytes(buf.getvalue(), "mem")


def test_missing_file(tmp_path):
    _one_line_error(str(tmp_path / "nope.pt"), "cannot open")


def test_any_archive_prefix_and_big_endian_records(tmp_path):
    files = _small_tensor_files(tmp_path)
    expected = torch.load(files["zip"], weights_only=True)["t"].numpy()

    def rename(name):
        return "archive/" + name.split("/", 1)[1]

    src = zipfile.ZipFile(files["zip"])
    renamed = str(tmp_path / "renamed.pt")
    with zipfile.ZipFile(renamed, "w") as out:
        for info in src.infolist():
            out.writestr(rename(info.filename), src.read(info.filename))
    np.testing.assert_array_equal(load_torch_file(renamed)["t"], expected)

    def to_big_endian(name, data):
        if name.endswith("/byteorder"):
            return b"big"
        if "/data/" in name:
            return np.frombuffer(data, "<f4").astype(">f4").tobytes()
        return data

    big = _rewrite_zip(files["zip"], str(tmp_path / "big.pt"), to_big_endian)
    got = load_torch_file(big)["t"]
    assert got.dtype == np.float32 and got.dtype.isnative
    np.testing.assert_array_equal(got, expected)
