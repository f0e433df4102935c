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


# ------------------------------------------------------------ hostile files, in-process
# The pickles are built opcode by opcode in tests/test_hostile_convert.py, which also runs
# a selection of them through the command line.
import time  # noqa: E402
import tracemalloc  # noqa: E402

from test_hostile_convert import (DTYPE_SINGLETON, HOSTILE_PICKLES, POISON_OPS, POISONS,  # noqa: E402
                                  float_tensor_pickle, forge_zip_member_size, legacy_file, poisoned, zip_file)
from weights_convert import limits, safe_unpickle  # noqa: E402

FORMATS = ("zip", "legacy")


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("poison", sorted(POISONS))
def test_poisoned_file_is_refused_and_later_files_read_the_same(tmp_path, sample_files, fmt, poison):
    """A file that mutates an allow-listed global is refused, and the clean file read after
    it in the same process is still bit-exact against torch.load."""
    clean = sample_files[fmt]
    bad = tmp_path / f"poisoned_{fmt}.pt"
    with open(clean, "rb") as fh:
        bad.write_bytes(poisoned(fh.read(), POISONS[poison]))
    message = _one_line_error(str(bad), "refused")
    assert POISON_OPS[poison] in message
    _assert_same(load_torch_file(clean), torch.load(clean, map_location="cpu", weights_only=False))


@pytest.mark.parametrize("fmt", FORMATS)
def test_numpy_dtype_singleton_is_never_modified(tmp_path, sample_files, fmt):
    """dtype('f4', copy=False) + BUILD(big-endian) is how numpy itself pickles a dtype: accepted,
    but on a copy; numpy's float32 stays native and the files read after it are unchanged."""
    clean = sample_files[fmt]
    bad = tmp_path / f"dtype_{fmt}.pt"
    with open(clean, "rb") as fh:
        bad.write_bytes(poisoned(fh.read(), DTYPE_SINGLETON))
    reference = torch.load(clean, map_location="cpu", weights_only=False)
    _assert_same(load_torch_file(str(bad)), reference)
    assert np.dtype("float32").isnative and np.dtype("float32").byteorder == "="
    _assert_same(load_torch_file(clean), reference)


def test_allow_listed_data_values_are_fresh_for_every_lookup():
    reader = safe_unpickle.BoundedReader(io.BytesIO(b""), "mem", 0)
    unpickler = torch_pickle.RestrictedUnpickler(reader, "mem")
    for module, name in (("torch", "FloatStorage"), ("torch", "float32"), ("torch", "Tensor"), ("numpy", "ndarray")):
        assert unpickler.find_class(module, name) is not unpickler.find_class(module, name), name


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", sorted(HOSTILE_PICKLES))
def test_hostile_pickles_are_one_line_fast_and_allocate_nothing(tmp_path, fmt, name):
    data, fragment = HOSTILE_PICKLES[name]
    path = tmp_path / f"{name}.pt"
    path.write_bytes(zip_file(data) if fmt == "zip" else legacy_file(data))
    tracemalloc.start()
    start = time.monotonic()
    try:
        message = _one_line_error(str(path), fragment)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert time.monotonic() - start < 5, message
    assert peak < 64 * 2 ** 20, f"{name}: {peak:,} bytes allocated"
    assert not os.path.exists("PWNED")


def test_legacy_storage_larger_than_the_file_is_refused_before_reading(tmp_path):
    path = tmp_path / "huge.pt"
    path.write_bytes(legacy_file(float_tensor_pickle(750_000_000, legacy=True)))  # 3 GB in ~300 bytes
    assert path.stat().st_size < 1000
    _one_line_error(str(path), "storage '0' declares 3,000,000,000 bytes")


def test_zip_member_sizes_are_checked_before_anything_is_decompressed(tmp_path):
    raw = zip_file(float_tensor_pickle(500_000_000), [("0", b"\0" * 64)])
    forged = tmp_path / "forged.pt"
    forged.write_bytes(forge_zip_member_size(raw, "archive/data/0", 2_000_000_000))
    _one_line_error(str(forged), "declares 2,000,000,000 bytes but the file holds at most")
    forged_pkl = tmp_path / "forged_pkl.pt"
    forged_pkl.write_bytes(forge_zip_member_size(raw, "archive/data.pkl", 2_000_000_000))
    _one_line_error(str(forged_pkl), "'archive/data.pkl' declares 2,000,000,000 bytes")
    bomb = tmp_path / "bomb.pt"  # 8 MB of zeros deflated to a few KB
    bomb.write_bytes(zip_file(float_tensor_pickle(2 ** 21), [("0", b"\0" * 2 ** 23)], compress=zipfile.ZIP_DEFLATED))
    assert bomb.stat().st_size < 2 ** 16
    _one_line_error(str(bomb), "is compressed")


def test_total_size_limit_is_configurable(tmp_path, monkeypatch):
    path = tmp_path / "quarter_mb.pt"
    path.write_bytes(zip_file(float_tensor_pickle(2 ** 16), [("0", np.arange(2 ** 16, dtype="<f4").tobytes())]))
    assert load_torch_file(str(path))["w"][-1] == 2 ** 16 - 1  # default limit: 16 GiB
    _limit_error(str(path), lambda: load_torch_file(str(path), max_bytes=2 ** 17))
    with limits.limit_total_bytes(2 ** 17):
        _limit_error(str(path), lambda: load_torch_file(str(path)))
    monkeypatch.setenv(limits.MAX_BYTES_ENV, "128K")
    _limit_error(str(path), lambda: load_torch_file(str(path)))
    monkeypatch.setenv(limits.MAX_BYTES_ENV, "256K")
    assert load_torch_file(str(path))["w"].shape == (2 ** 16,)
    monkeypatch.setenv(limits.MAX_BYTES_ENV, "a lot")
    with pytest.raises(CheckpointError, match=r"MODIFY_MS_MAX_CHECKPOINT_BYTES: invalid size"):
        load_torch_file(str(path))


def _limit_error(path, load):
    with pytest.raises(CheckpointError) as info:
        load()
    assert str(info.value) == (f"{path}: storage '0' would bring the decoded data to 262,144 bytes, over the limit "
                               f"of 131,072 (raise it with --max-bytes or ${limits.MAX_BYTES_ENV})")


def test_a_stride_zero_view_claiming_terabytes_is_refused(tmp_path):
    """One stored float viewed as 10**12 elements: no allocation yet, but every consumer would."""
    path = tmp_path / "expanded.pt"
    path.write_bytes(zip_file(float_tensor_pickle(1, size=10 ** 12, stride=0), [("0", b"\0" * 4)]))
    _one_line_error(str(path), "tensor of shape (1000000000000,) would bring the decoded data")


@pytest.mark.parametrize("text, value", [("4096", 4096), ("64K", 65536), ("16G", 16 * 2 ** 30), ("2GiB", 2 ** 31),
                                         ("512mb", 512 * 2 ** 20)])
def test_parse_size(text, value):
    assert limits.parse_size(text) == value


@pytest.mark.parametrize("text", ["", "0", "-1", "1.5G", "12x", "G"])
def test_parse_size_refuses(text):
    with pytest.raises(ValueError):
        limits.parse_size(text)


def test_shared_tensors_and_containers_below_the_limits_still_load(tmp_path):
    """Legitimate sharing (one tensor under many keys, one config dict referenced twice) loads,
    and stays shared."""
    weight = torch.randn(3)
    config = {"lr": 0.1}
    obj = {"sd": {f"tied.{i}": weight for i in range(500)}, "a": config, "b": config}
    for fmt in FORMATS:
        ours = load_torch_file(_save(obj, str(tmp_path / f"shared_{fmt}.pt"), fmt))
        assert ours["a"] is ours["b"] and ours["sd"]["tied.0"] is ours["sd"]["tied.499"]


def test_check_structure_limits_are_exact_and_linear():
    nested = []
    for _ in range(limits.MAX_DEPTH - 1):
        nested = [nested]
    safe_unpickle.check_structure(nested, "mem")  # MAX_DEPTH levels
    with pytest.raises(CheckpointError, match="deeper than"):
        safe_unpickle.check_structure([nested], "mem")
    diamond = []
    for _ in range(90):  # 2**90 objects once expanded; 90 distinct lists
        diamond = [diamond, diamond]
    start = time.monotonic()
    with pytest.raises(CheckpointError, match="reference bomb"):
        safe_unpickle.check_structure(diamond, "mem")
    assert time.monotonic() - start < 1
    loop = {"a": []}
    loop["a"].append(loop)
    with pytest.raises(CheckpointError, match="self-referencing"):
        safe_unpickle.check_structure(loop, "mem")


def test_bounded_reader_refuses_before_reading():
    class Recorder(io.BytesIO):
        asked = []

        def read(self, n=-1):
            self.asked.append(n)
            return super().read(n)

    reader = safe_unpickle.BoundedReader(Recorder(b"abcdef"), "mem", 6)
    assert reader.read(2) == b"ab"
    with pytest.raises(CheckpointError, match="needs 3,000,000,000 bytes, 4 left"):
        reader.read(3 * 10 ** 9)
    assert Recorder.asked == [2]
