"""Hostile and broken inputs through the real ``python -m weights_convert`` command line.

Every case runs the CLI in a subprocess whose current directory is a scratch folder and
asserts (tests/cli_harness.check_case): exit code 2, exactly one ``error:`` line and no
traceback, no input file changed (SHA-256 before/after), nothing new in the folder except
the outputs the case allows. The files are built here byte by byte, the way an attacker
would: pickle opcodes that BUILD / SETITEM / APPEND onto allow-listed globals (a poisoned
file that, unrefused, changed how every later file in the process decoded), self-references,
reference bombs (MEMOIZE/GET), deep nesting, length fields and storages that declare far
more bytes than the file holds, forged or compressed zip members, plus the output-path
mistakes (DST = an input, DST a folder, DST under a file). The catalogue of hostile
pickles (``HOSTILE_PICKLES``) is also run in-process, opcode by opcode, by
tests/test_convert_reader.py.

The last test converts a poisoned file and then a clean one in ONE process (the CLI's
``main``) and checks the clean result equals a conversion made by a fresh process.
"""
import io
import os
import pickle
import pickletools
import struct
import time
import zipfile

import numpy as np
import pytest
import torch

from cli_harness import Case, check_case, run_tool, tool_env
from reference import stylegan2_ref as ref

# ------------------------------------------------------------------ pickle opcodes, spelled out
PROTO2 = pickle.PROTO + b"\x02"
PROTO4 = pickle.PROTO + b"\x04"
PROTO5 = pickle.PROTO + b"\x05"


def text(s):
    raw = s.encode("utf-8")
    return pickle.BINUNICODE + struct.pack("<I", len(raw)) + raw


def glob(module, name):
    return pickle.GLOBAL + f"{module}\n{name}\n".encode()


def integer(n):
    if -2 ** 31 <= n < 2 ** 31:
        return pickle.BININT + struct.pack("<i", n)
    raw = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return pickle.LONG1 + bytes([len(raw)]) + raw


def get(i):
    return pickle.BINGET + bytes([i])


def put(i):
    return pickle.BINPUT + bytes([i])


def stream(*parts, proto=PROTO2):
    return proto + b"".join(parts) + pickle.STOP


# Prefixes that poison an allow-listed global, then POP it: put after a real file's PROTO
# header, the rest of the file still loads. Each mutates an object the stream did not build.
POISONS = {
    # torch.FloatStorage.dtype_name = 'int32': later floats decode as int32 (values ~ -1e9)
    "build_storage_type": glob("torch", "FloatStorage") + pickle.EMPTY_DICT + text("dtype_name")
    + text("int32") + pickle.SETITEM + pickle.BUILD + pickle.POP,
    # (None, {'__defaults__': ...}) slot state: setattr on the rebuild function itself
    "build_rebuild_function": glob("torch._utils", "_rebuild_tensor_v2") + pickle.NONE + pickle.EMPTY_DICT
    + text("__defaults__") + pickle.MARK + integer(1) + pickle.TUPLE + pickle.SETITEM + pickle.TUPLE2
    + pickle.BUILD + pickle.POP,
    "build_torch_dtype": glob("torch", "float32") + pickle.EMPTY_DICT + text("x") + integer(1)
    + pickle.SETITEM + pickle.BUILD + pickle.POP,
    "build_namespace_class": glob("argparse", "Namespace") + pickle.EMPTY_DICT + text("size") + integer(7)
    + pickle.SETITEM + pickle.BUILD + pickle.POP,
    "setitem_on_global": glob("collections", "OrderedDict") + text("a") + text("b") + pickle.SETITEM + pickle.POP,
    "setitems_on_global": glob("collections", "OrderedDict") + pickle.MARK + text("a") + text("b")
    + pickle.SETITEMS + pickle.POP,
    "append_on_global": glob("__builtin__", "set") + integer(1) + pickle.APPEND + pickle.POP,
    "appends_on_global": glob("__builtin__", "set") + pickle.MARK + integer(1) + pickle.APPENDS + pickle.POP,
    "additems_on_global": glob("builtins", "frozenset") + pickle.MARK + integer(1) + pickle.ADDITEMS + pickle.POP,
}
POISON_OPS = {"build_storage_type": "BUILD", "build_rebuild_function": "BUILD", "build_torch_dtype": "BUILD",
              "build_namespace_class": "BUILD", "setitem_on_global": "SETITEM", "setitems_on_global": "SETITEMS",
              "append_on_global": "APPEND", "appends_on_global": "APPENDS", "additems_on_global": "ADDITEMS"}
# numpy.dtype('f4', align=False, copy=False) is numpy's process-wide float32; BUILD then sets its
# byte order to big-endian. Allowed (numpy pickles dtypes this way), but the reader forces copy=True.
DTYPE_SINGLETON = (glob("numpy", "dtype") + text("f4") + pickle.NEWFALSE + pickle.NEWFALSE + pickle.TUPLE3
                   + pickle.REDUCE + pickle.MARK + integer(3) + text(">") + pickle.NONE * 3 + integer(-1)
                   + integer(-1) + integer(0) + pickle.TUPLE + pickle.BUILD + pickle.POP)


def poisoned(file_bytes, poison):
    """A real torch.save file with ``poison`` run first in its main pickle (a zip's data.pkl,
    or the fourth pickle of a legacy stream, after magic number, protocol and sys info)."""
    if file_bytes[:4] == b"PK\x03\x04":
        return poison_zip(file_bytes, poison)
    fh = io.BytesIO(file_bytes)
    for _ in range(3):
        for _op in pickletools.genops(fh):  # leaves fh just after each STOP
            pass
    start = fh.tell()
    assert file_bytes[start:start + 2] == PROTO2
    return file_bytes[:start + 2] + poison + file_bytes[start + 2:]


def _laughs(levels=40, width=10):
    """list_{i+1} = [list_i] * width through the memo: ~7 * levels bytes, width**levels objects."""
    body = pickle.EMPTY_LIST + pickle.MEMOIZE
    for i in range(levels):
        body += pickle.MARK + get(i) * width + pickle.LIST + pickle.MEMOIZE
    return stream(body, proto=PROTO4)


def _shared_tuples(levels=100):
    """t_{i+1} = (t_i, t_i): hashing t_100 walks 2**100 tuples (no memo in tuple hashing)."""
    body = pickle.EMPTY_TUPLE + put(0)
    for i in range(levels):
        body += get(i) + get(i) + pickle.TUPLE2 + put(i + 1)
    return body


# name -> (pickle bytes, fragment the one-line error must contain); each is refused in-process
# AND wrapped in a zip data.pkl; a selection goes through the CLI below.
HOSTILE_PICKLES = {
    "self_referencing_dict": (stream(pickle.EMPTY_DICT + put(0) + text("a") + get(0) + pickle.SETITEM),
                              "self-referencing"),
    "self_referencing_list": (stream(pickle.EMPTY_LIST + put(0) + get(0) + pickle.APPEND), "self-referencing"),
    "deep_nesting": (stream(pickle.EMPTY_LIST * 5000 + pickle.APPEND * 4999), "deeper than"),
    "reference_bomb": (_laughs(), "reference bomb"),
    "hash_bomb_dict_key": (stream(_shared_tuples() + pickle.EMPTY_DICT + get(100) + integer(1) + pickle.SETITEM),
                           "dict key"),
    "hash_bomb_frozenset": (stream(_shared_tuples() + pickle.MARK + get(100) + pickle.FROZENSET, proto=PROTO4),
                            "set member"),
    "bytearray_3gb": (stream(glob("__builtin__", "bytearray") + integer(3 * 10 ** 9) + pickle.TUPLE1 + pickle.REDUCE),
                      "bytearray"),
    "binbytes8_3gb": (stream(pickle.BINBYTES8 + struct.pack("<Q", 3 * 10 ** 9), proto=PROTO4), "3,000,000,000 bytes"),
    "bytearray8_3gb": (stream(pickle.BYTEARRAY8 + struct.pack("<Q", 3 * 10 ** 9), proto=PROTO5),
                       "3,000,000,000 bytes"),
    "frame_3gb": (stream(pickle.FRAME + struct.pack("<Q", 3 * 10 ** 9), proto=PROTO4), "3,000,000,000 bytes"),
    "binunicode_2gb": (stream(pickle.BINUNICODE + struct.pack("<I", 2 * 10 ** 9)), "2,000,000,000 bytes"),
    "numpy_ndarray_called": (stream(glob("numpy", "ndarray") + integer(10 ** 9) + pickle.TUPLE1 + pickle.TUPLE1
                                    + pickle.REDUCE), "not an allow-listed callable"),
    "numpy_reconstruct_big": (stream(glob("numpy.core.multiarray", "_reconstruct") + glob("numpy", "ndarray")
                                     + integer(10 ** 9) + pickle.TUPLE1 + pickle.SHORT_BINBYTES + b"\x01b"
                                     + pickle.TUPLE3 + pickle.REDUCE), "non-empty shape"),
    "newobj_of_a_real_class": (stream(glob("collections", "OrderedDict") + pickle.EMPTY_TUPLE + pickle.NEWOBJ),
                               "only inert records"),
    "inst_opcode": (stream(pickle.MARK + pickle.INST + b"collections\nOrderedDict\n"), "INST/OBJ"),
    "code_execution": (stream(glob("os", "system") + text("touch PWNED") + pickle.TUPLE1 + pickle.REDUCE),
                       "refused to unpickle 'os.system'"),
    "extension_code": (stream(pickle.EXT1 + b"\x01"), "EXT1/EXT2/EXT4"),
    "setitems_odd": (stream(pickle.EMPTY_DICT + pickle.MARK + text("key") + pickle.SETITEMS), "no value"),
    "invalid_opcode": (PROTO2 + b"\xff", "invalid opcode"),
    "stack_underflow": (stream(pickle.APPEND), "stack underflow"),
}


# ------------------------------------------------------------------ whole files
def zip_file(pkl, storages=(), compress=zipfile.ZIP_STORED):
    """A torch.save-style zip: archive/data.pkl, archive/byteorder, archive/data/<key>."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", pkl, compress_type=zipfile.ZIP_STORED)
        zf.writestr("archive/byteorder", "little", compress_type=zipfile.ZIP_STORED)
        for key, data in storages:
            zf.writestr(f"archive/data/{key}", data, compress_type=compress)
    return buf.getvalue()


def forge_zip_member_size(raw, name, size):
    """Rewrite the sizes a zip declares for member ``name`` (central directory and local header)."""
    out = bytearray(raw)
    encoded = name.encode()
    for sig, sizes_at, name_at in ((b"PK\x01\x02", 20, 46), (b"PK\x03\x04", 18, 30)):
        pos = out.find(sig)
        while pos >= 0:
            if out[pos + name_at:pos + name_at + len(encoded)] == encoded:
                out[pos + sizes_at:pos + sizes_at + 8] = struct.pack("<II", size, size)
            pos = out.find(sig, pos + 4)
    return bytes(out)


def float_tensor_pickle(numel, key="0", legacy=False, size=None, stride=1):
    """{'w': 1-D view (``size`` elements, default ``numel``, step ``stride``) of a FloatStorage of
    ``numel`` elements in storage ``key``}, as torch.save pickles it."""
    pid = (pickle.MARK + text("storage") + glob("torch", "FloatStorage") + text(key) + text("cpu")
           + integer(numel) + (pickle.NONE if legacy else b"") + pickle.TUPLE + pickle.BINPERSID)
    tensor = (glob("torch._utils", "_rebuild_tensor_v2") + pickle.MARK + pid + integer(0)
              + integer(numel if size is None else size) + pickle.TUPLE1 + integer(stride) + pickle.TUPLE1
              + pickle.NEWFALSE + glob("collections", "OrderedDict")
              + pickle.EMPTY_TUPLE + pickle.REDUCE + pickle.TUPLE + pickle.REDUCE)
    return stream(pickle.EMPTY_DICT + text("w") + tensor + pickle.SETITEM)


def legacy_file(main_pickle, keys=("0",), tail=b""):
    """Legacy torch.save stream: magic, protocol, sys info, the main pickle, key list, raw storages."""
    head = b"".join(pickle.dumps(v, protocol=2) for v in (
        0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True,
                                       "type_sizes": {"short": 2, "int": 4, "long": 4}}))
    return head + main_pickle + pickle.dumps(list(keys), protocol=2) + tail


def torch_file(obj, legacy=False):
    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=not legacy)
    return buf.getvalue()


def poison_zip(raw, poison):
    """Run ``poison`` first in the data.pkl of a real torch.save zip."""
    src, buf = zipfile.ZipFile(io.BytesIO(raw)), io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as out:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.endswith("/data.pkl"):
                assert data[:2] == PROTO2
                data = data[:2] + poison + data[2:]
            out.writestr(info.filename, data)
    return buf.getvalue()


def nvlabs_poison():
    """An NVlabs network pickle that BUILDs onto the persistence loader's stand-in."""
    return stream(glob("torch_utils.persistence", "_reconstruct_persistent_obj") + pickle.EMPTY_DICT
                  + text("x") + integer(1) + pickle.SETITEM + pickle.BUILD + pickle.POP + pickle.EMPTY_DICT)


# ------------------------------------------------------------------ the cases
def tiny_discriminator():
    """A real rosinality Discriminator (8 px, 8 channels) state_dict, every value random."""
    return ref.randomize_(ref.Discriminator(8, 1, 8), 0).state_dict()


def _write(tmp, name, data):
    path = os.path.join(tmp, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)
    return name


def _clean_d(tmp, name="d.pt"):
    return _write(tmp, name, torch_file(tiny_discriminator()))


def _cli(*args):
    return ["-m", "weights_convert", *args]


def _hostile(sub, pickle_name, legacy=False):
    """A CLI case feeding a HOSTILE_PICKLES entry (as a zip data.pkl, or a legacy main pickle)."""
    data, fragment = HOSTILE_PICKLES[pickle_name]
    wrapped = legacy_file(data) if legacy else zip_file(data)

    def make(tmp):
        src = _write(tmp, "in.pt", wrapped)
        return _cli("inspect", src) if sub == "inspect" else _cli(sub, src, "out.ckpt")

    return Case(f"{sub}-{pickle_name}{'-legacy' if legacy else ''}", make, fragments=(fragment,))


def _poison(sub, poison, legacy=False):
    def make(tmp):
        src = _write(tmp, "in.pt", poisoned(torch_file(tiny_discriminator(), legacy), POISONS[poison]))
        return _cli("inspect", src) if sub == "inspect" else _cli(sub, src, "out.ckpt")

    return Case(f"{sub}-poison-{poison}{'-legacy' if legacy else ''}", make, fragments=("refused", POISON_OPS[poison]))


def _make_lpips_poisoned_lin(tmp):
    lin = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate((64, 192, 384, 256, 256))}
    _write(tmp, "lin.pth", poisoned(torch_file(lin, legacy=True), POISONS["build_storage_type"]))
    _write(tmp, "alexnet.pth", torch_file({"features.0.weight": torch.rand(2)}))
    return _cli("lpips", "out.ckpt", "--lin", "lin.pth", "--backbone", "alexnet.pth")


def _make_lpips_dst_is_backbone(tmp):
    _write(tmp, "lin.pth", torch_file({"lin0.model.1.weight": torch.rand(1, 64, 1, 1)}))
    _write(tmp, "alexnet.pth", torch_file({"features.0.weight": torch.rand(2)}))
    return _cli("lpips", "alexnet.pth", "--lin", "lin.pth", "--backbone", "alexnet.pth")


def _make_lpips_sidecar_is_lin(tmp):
    _write(tmp, "out.ckpt.json", torch_file({"lin0.model.1.weight": torch.rand(1, 64, 1, 1)}))
    _write(tmp, "alexnet.pth", torch_file({"features.0.weight": torch.rand(2)}))
    return _cli("lpips", "out.ckpt", "--lin", "out.ckpt.json", "--backbone", "alexnet.pth")


def _make_huge_legacy_storage(tmp):
    """A ~0.3 KB legacy file whose storage declares 3 GB (750M floats)."""
    return _cli("inspect", _write(tmp, "in.pt", legacy_file(float_tensor_pickle(750_000_000, legacy=True))))


def _make_forged_zip_member(tmp):
    """A 1 KB zip whose storage member declares 2 GB (sizes forged in the directory)."""
    raw = zip_file(float_tensor_pickle(500_000_000), [("0", b"\0" * 64)])
    return _cli("inspect", _write(tmp, "in.pt", forge_zip_member_size(raw, "archive/data/0", 2_000_000_000)))


def _make_compressed_member(tmp):
    """A 6 KB zip whose deflated storage member expands to 8 MB."""
    raw = zip_file(float_tensor_pickle(2 ** 21), [("0", b"\0" * 2 ** 23)], compress=zipfile.ZIP_DEFLATED)
    return _cli("irse50", _write(tmp, "in.pt", raw), "out.ckpt")


def _make_over_limit(tmp):
    """A real 256 KB storage read with the limit set to 64K."""
    raw = zip_file(float_tensor_pickle(2 ** 16), [("0", b"\0" * 2 ** 18)])
    return _cli("inspect", _write(tmp, "in.pt", raw))


def _make_truncated(legacy, sub):
    def make(tmp):
        raw = torch_file(tiny_discriminator(), legacy)
        src = _write(tmp, "in.pt", raw[: len(raw) // 2])
        return _cli(sub, src, "out.ckpt")
    return make


def _make_not_a_pickle(tmp):
    return _cli("stylegan2", _write(tmp, "in.pt", b"these are not the weights you are looking for\n"), "out.ckpt")


def _make_dst_is_src(tmp):
    return _cli("stylegan2", _clean_d(tmp), "d.pt")


def _make_dst_hardlink_of_src(tmp):
    src = _clean_d(tmp)
    os.link(os.path.join(tmp, src), os.path.join(tmp, "same.ckpt"))
    return _cli("inception", src, "same.ckpt")


def _make_dst_folder(sub):
    def make(tmp):
        src = _clean_d(tmp)
        os.makedirs(os.path.join(tmp, "outdir"))
        return _cli(sub, src, "outdir")
    return make


def _make_sidecar_folder(tmp):
    src = _clean_d(tmp)
    os.makedirs(os.path.join(tmp, "out.ckpt.json"))
    return _cli("psp", src, "out.ckpt")


def _make_dst_under_file(tmp):
    src = _clean_d(tmp)
    _write(tmp, "notes.txt", b"a file, not a folder\n")
    return _cli("stylegan2", src, "notes.txt/more/out.ckpt")


def _make_nvlabs_poison(tmp):
    return _cli("stylegan2", _write(tmp, "network.pkl", nvlabs_poison()), "out.ckpt")


def _make_bad_max_bytes(tmp):
    return _cli("psp", _clean_d(tmp), "out.ckpt", "--max-bytes", "lots")


CASES = [
    _poison("inspect", "build_storage_type"),
    _poison("stylegan2", "setitem_on_global", legacy=True),
    _poison("irse50", "append_on_global"),
    _poison("psp", "build_rebuild_function", legacy=True),
    _poison("inception", "additems_on_global"),
    Case("lpips-poisoned-lin", _make_lpips_poisoned_lin, fragments=("lin.pth", "refused", "torch.FloatStorage")),
    Case("stylegan2-nvlabs-poison", _make_nvlabs_poison, fragments=("refused", "BUILD")),
    _hostile("inception", "self_referencing_dict"),
    _hostile("stylegan2", "self_referencing_list", legacy=True),
    _hostile("inception", "reference_bomb"),
    _hostile("psp", "reference_bomb", legacy=True),
    _hostile("irse50", "hash_bomb_dict_key"),
    _hostile("stylegan2", "deep_nesting"),
    _hostile("inspect", "bytearray_3gb", legacy=True),
    _hostile("psp", "binbytes8_3gb"),
    Case("inspect-huge-legacy-storage", _make_huge_legacy_storage, fragments=("3,000,000,000 bytes",)),
    Case("inspect-forged-zip-member", _make_forged_zip_member, fragments=("declares 2,000,000,000 bytes",)),
    Case("irse50-compressed-member", _make_compressed_member, fragments=("compressed",)),
    Case("inspect-over-limit", _make_over_limit, fragments=("over the limit of 65,536",)),
    Case("inception-truncated-zip", _make_truncated(False, "inception"), fragments=("truncated",)),
    Case("psp-truncated-legacy", _make_truncated(True, "psp"), fragments=("truncated",)),
    Case("stylegan2-not-a-pickle", _make_not_a_pickle, fragments=("not a PyTorch checkpoint",)),
    Case("stylegan2-dst-is-src", _make_dst_is_src, fragments=("d.pt", "is an input file")),
    Case("inception-dst-hardlink-of-src", _make_dst_hardlink_of_src, fragments=("is an input file",)),
    Case("lpips-dst-is-backbone", _make_lpips_dst_is_backbone, fragments=("is an input file",)),
    Case("lpips-sidecar-is-lin", _make_lpips_sidecar_is_lin, fragments=("out.ckpt.json", "is an input file")),
    Case("irse50-dst-folder", _make_dst_folder("irse50"), fragments=("outdir", "is a folder")),
    Case("psp-sidecar-folder", _make_sidecar_folder, fragments=("out.ckpt.json", "is a folder")),
    Case("stylegan2-dst-under-file", _make_dst_under_file, fragments=("is a file, not a folder",)),
    Case("psp-bad-max-bytes", _make_bad_max_bytes, fragments=("--max-bytes", "invalid size")),
]
ENV = {"inspect-over-limit": {"MODIFY_MS_MAX_CHECKPOINT_BYTES": "64K"}}
SECONDS_PER_CASE = 30  # each refusal is immediate; this only catches a hang


@pytest.mark.parametrize("case", CASES, ids=str)
def test_hostile_input_is_one_line_and_writes_nothing(case, tmp_path):
    start = time.monotonic()
    check_case(case, str(tmp_path), env=tool_env(**ENV.get(case.name, {})))
    assert time.monotonic() - start < SECONDS_PER_CASE, f"{case.name} took {time.monotonic() - start:.0f} s"
    assert not (tmp_path / "PWNED").exists()


@pytest.fixture(scope="module")
def fresh_conversion(tmp_path_factory):
    """The tiny D converted by a fresh process into a folder that does not exist yet."""
    tmp = str(tmp_path_factory.mktemp("fresh"))
    src = _clean_d(tmp)
    case = Case("stylegan2-new-deep-folder", lambda t: _cli("stylegan2", src, "new/deep/d.ckpt"), code=0,
                allowed_new=("new",))
    check_case(case, tmp)
    return os.path.join(tmp, src), os.path.join(tmp, "new", "deep", "d.ckpt")


def test_missing_output_folders_are_created(fresh_conversion):
    _, dst = fresh_conversion
    assert os.path.isfile(dst) and os.path.isfile(dst + ".json")
    assert not [n for n in os.listdir(os.path.dirname(dst)) if n.startswith(".tmp")]


@pytest.mark.parametrize("poison", ["build_storage_type", "setitem_on_global", "dtype_singleton"])
def test_poisoned_then_clean_conversion_in_one_process(poison, fresh_conversion, tmp_path):
    """Poisoned file first, clean file second, one process: the clean result is exactly the
    fresh process's. The dtype poison is a file the reader accepts (numpy's own pickling),
    so its conversion succeeds too, and numpy's float32 must stay native."""
    from weights_convert.__main__ import main
    from modify_ms.utils.checkpoint import read_arrays

    src, fresh = fresh_conversion
    with open(src, "rb") as fh:
        clean = fh.read()
    bad = tmp_path / "poisoned.pt"
    bad.write_bytes(poisoned(clean, DTYPE_SINGLETON if poison == "dtype_singleton" else POISONS[poison]))
    code = main(["stylegan2", str(bad), str(tmp_path / "poisoned.ckpt")])
    assert code == (0 if poison == "dtype_singleton" else 2)
    assert (tmp_path / "poisoned.ckpt").exists() == (code == 0)
    assert np.dtype("float32").isnative and np.dtype("float32").byteorder == "="
    assert main(["stylegan2", src, str(tmp_path / "clean.ckpt")]) == 0
    got, got_meta = read_arrays(str(tmp_path / "clean.ckpt"))
    want, want_meta = read_arrays(fresh)
    assert list(got) == list(want) and got_meta["kwargs"] == want_meta["kwargs"]
    for name in want:
        assert got[name].tobytes() == want[name].tobytes(), name
    # and the fresh conversion holds the file's values (not, say, float bits read as int32)
    sd = tiny_discriminator()
    np.testing.assert_array_equal(want["final_linear.1.weight"], sd["final_linear.1.weight"].numpy())


def test_usage_errors_are_one_line(tmp_path):
    proc = run_tool(_cli("stylegan2"), cwd=str(tmp_path))
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
