"""Read PyTorch ``.pt/.pth`` files without torch and without running code.

Public API
----------
``load_torch_file(path, *, progress=False, max_bytes=None) -> object``
    Read a file written by ``torch.save`` in either format:

    * zip (torch >= 1.6): ``<prefix>/data.pkl`` + ``<prefix>/data/<key>``
      records (any archive prefix directory), ``<prefix>/byteorder``;
    * legacy (pre-1.6, ``_use_new_zipfile_serialization=False``): magic
      number pickle, protocol version, sys-info pickle, main pickle with
      persistent ids, storage-key list pickle, then each raw storage preceded
      by its int64 element count.

    Tensors and Parameters come back as read-only numpy arrays (views of their
    storage with the file's dtype, shape, strides and storage offset; bfloat16
    is widened exactly to float32 since numpy has no bfloat16). Containers come
    back as they were (dict, OrderedDict, list, tuple, set); an
    ``argparse.Namespace`` comes back as :class:`Namespace` (an inert
    ``types.SimpleNamespace``), ``torch.Size`` as a tuple, ``torch.device`` as
    a string, torch dtypes as :class:`TorchDtype`, numpy scalars/arrays as
    numpy values.
    ``progress=True`` shows a tqdm bar over the storages of large files;
    ``max_bytes`` overrides the decoded-size limit (see Safety).
    Any problem raises :class:`~weights_convert.errors.CheckpointError` whose
    ``str()`` is one line ``"PATH: problem"``.

``load_torchscript_tensors(path, *, progress=False, max_bytes=None) -> dict[str, np.ndarray]``
    Read the tensors of a TorchScript archive (``torch.jit.save``; e.g. CLIP's
    ``ViT-B-32.pt``) WITHOUT running its code: ``<prefix>/data.pkl`` pickles the
    module tree as objects of ``__torch__.*`` classes, which come back as inert
    records; ``code/``, ``constants.pkl`` and the debug pickles are never read.
    Returns ``{"a.b.c": array}`` for every tensor attribute of every module in the
    tree (its parameters and buffers, i.e. ``state_dict()``, plus plain tensor
    attributes such as CLIP's ``attn_mask``, which importers consume explicitly).
    ``is_torchscript(path)`` tells such an archive from a ``torch.save`` file.

``flatten_state_dict(obj, prefix='') -> dict[str, np.ndarray]``
    Flatten nested dicts/lists of arrays into ``{"a.b.0.c": array}``; other
    leaves (numbers, strings, Namespaces) are skipped.

``detect_format(path) -> 'zip' | 'legacy' | 'pickle'``
    Look at the first bytes only.

Safety
------
Pickles run whatever callables they name, and may mutate what they can reach.
:class:`RestrictedUnpickler` is a :class:`~weights_convert.safe_unpickle.SafeUnpickler`
(see that module): globals resolve ONLY from an allow-list (tensor rebuild
functions, storage types, torch dtypes, OrderedDict, argparse.Namespace as an
inert record, a few builtins, numpy array/scalar reconstruction with object
dtypes refused), data values come back new for every lookup, and the stream
may only mutate objects it built itself; every other name raises
``CheckpointError("refused to unpickle 'mod.name' ...")`` before anything
executes. Sizes are checked before anything is allocated: every length field
against the bytes left in the file, every storage against its zip member (which
must be stored uncompressed, as torch.save writes it) or the bytes left in the
legacy stream, and the decoded total against ``limits.max_total_bytes()``
(16 GiB, ``$MODIFY_MS_MAX_CHECKPOINT_BYTES``). Cycles, deep nesting and
reference bombs are refused by ``check_structure``; tensor views are
bounds-checked against their storage. Importers built on this module
(``nvlabs_pkl``) extend the allow-list through
:meth:`RestrictedUnpickler.extra_global`.
"""
import functools
import io
import os
import pickle
import struct
import zipfile

import numpy as np

from .errors import CheckpointError
from .limits import ByteBudget
from .safe_unpickle import (BoundedReader, Fresh, InertObject, Marker, Namespace, SafeUnpickler, check_structure,
                            generic_globals, inert_class, short_repr)

__all__ = [
    "load_torch_file",
    "flatten_state_dict",
    "detect_format",
    "Namespace",
    "TorchDtype",
    "InertObject",
    "RestrictedUnpickler",
    "load_torchscript_tensors",
    "is_torchscript",
]

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
_LEGACY_MAGIC_PICKLE = pickle.dumps(LEGACY_MAGIC, protocol=2)
PROGRESS_MIN_BYTES = 32 * 2 ** 20  # files smaller than this never show a bar
PROBE_BYTES = 64  # detect_format reads at most this much of a pickle (the magic number takes 16)

REFUSED = "this file would run code; only tensors and plain containers are allowed"

# torch dtype name -> numpy dtype ("bfloat16" is widened to float32 on read)
_DTYPES = {
    "float32": "float32", "float": "float32", "float64": "float64",
    "double": "float64", "float16": "float16", "half": "float16",
    "bfloat16": "bfloat16", "int64": "int64", "long": "int64",
    "int32": "int32", "int": "int32", "int16": "int16", "short": "int16",
    "int8": "int8", "uint8": "uint8", "bool": "bool",
    "complex64": "complex64", "cfloat": "complex64",
    "complex128": "complex128", "cdouble": "complex128",
}
_STORAGE_DTYPES = {
    "FloatStorage": "float32", "DoubleStorage": "float64",
    "HalfStorage": "float16", "BFloat16Storage": "bfloat16",
    "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16",
    "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool",
    "ComplexFloatStorage": "complex64", "ComplexDoubleStorage": "complex128",
    "UntypedStorage": "uint8",
}
_ITEMSIZE = {"bfloat16": 2}


def _itemsize(dtype_name):
    return _ITEMSIZE.get(dtype_name) or np.dtype(dtype_name).itemsize


def _decoded_itemsize(dtype_name):
    return 4 if dtype_name == "bfloat16" else _itemsize(dtype_name)  # bfloat16 is widened


# ---------------------------------------------------------------- what the allow-list hands out
class TorchDtype(str):
    """A torch dtype named in a pickle, e.g. ``TorchDtype('float32')`` (a new one per lookup)."""


class _StorageType:
    """``torch.FloatStorage`` & co. (a new one per lookup: nothing a file does to it outlives it)."""

    def __init__(self, dtype_name):
        self.dtype_name = dtype_name


class _Storage:
    """One storage: dtype, element count, and (once read) a 1-D numpy array."""

    def __init__(self, key, dtype_name, numel, base=None, offset=0):
        self.key = key
        self.dtype_name = dtype_name
        self.numel = int(numel)
        self.base = base  # legacy storage views: (root storage, element offset)
        self.offset = int(offset)
        self.array = None

    @property
    def nbytes(self):
        """Bytes in the file."""
        return self.numel * _itemsize(self.dtype_name)

    @property
    def decoded_nbytes(self):
        """Bytes once decoded (what the size limit counts)."""
        return self.numel * _decoded_itemsize(self.dtype_name)

    def set_bytes(self, raw, byteorder):
        dtype = self.dtype_name
        if dtype == "bfloat16":
            u16 = np.frombuffer(raw, dtype=np.dtype("uint16").newbyteorder(byteorder))
            arr = (u16.astype(np.uint32) << 16).view(np.float32)
        else:
            arr = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder(byteorder))
            if not arr.dtype.isnative:
                arr = arr.astype(arr.dtype.newbyteorder("="))
        arr.flags.writeable = False
        self.array = arr

    def data(self):
        if self.base is not None:
            root = self.base.data()
            return root[self.offset:self.offset + self.numel]
        return self.array


def _storage_key(key, path):
    if not isinstance(key, (str, int)) or isinstance(key, bool):
        raise CheckpointError(path, f"storage key {short_repr(key)} is not a name")
    return str(key)


def _element_count(numel, path, key):
    if not isinstance(numel, int) or isinstance(numel, bool) or numel < 0:
        raise CheckpointError(path, f"storage '{key}' declares an invalid size {short_repr(numel)}")
    return numel


class _TensorRef:
    """A tensor whose storage may not be read yet; resolved after loading."""

    def __init__(self, storage, offset, size, stride, dtype_name=None):
        self.storage = storage
        self.offset = offset
        self.size = size
        self.stride = stride
        self.dtype_name = dtype_name  # _rebuild_tensor_v3 reinterpretation


def _as_int_tuple(values, what):
    if not isinstance(values, (tuple, list)):
        raise ValueError(f"tensor {what} is not a tuple of ints: {short_repr(values)}")
    if not all(isinstance(v, int) for v in values):
        raise ValueError(f"tensor {what} is not a tuple of ints: {short_repr(values)}")
    out = tuple(int(v) for v in values)
    if any(v < 0 for v in out):
        raise ValueError(f"tensor {what} has a negative entry: {short_repr(out)}")
    return out


def _rebuild_tensor(storage, storage_offset, size, stride, *unused, dtype_name=None):
    if not isinstance(storage, _Storage):
        raise ValueError("tensor rebuilt from something that is not a storage")
    size = _as_int_tuple(size, "size")
    stride = _as_int_tuple(stride, "stride")
    if len(size) != len(stride):
        raise ValueError(f"tensor size {short_repr(size)} and stride {short_repr(stride)} differ in length")
    if not isinstance(storage_offset, int) or storage_offset < 0:
        raise ValueError(f"invalid storage offset {short_repr(storage_offset)}")
    return _TensorRef(storage, storage_offset, size, stride, dtype_name)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad,
                       backward_hooks, dtype, metadata=None):
    if not isinstance(dtype, TorchDtype):
        raise ValueError("_rebuild_tensor_v3 without a torch dtype")
    return _rebuild_tensor(storage, storage_offset, size, stride, dtype_name=_DTYPES[dtype])


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    return data


def _rebuild_from_type_v2(func, new_type, args, state):
    if func not in (_rebuild_tensor_v2, _rebuild_tensor, _rebuild_tensor_v3,
                    _rebuild_parameter) or not isinstance(new_type, Marker) or not isinstance(args, tuple):
        raise ValueError("_rebuild_from_type_v2 of a non-tensor type")
    return func(*args)


def _tensor_array(ref):
    """Bounds-checked numpy view for a resolved :class:`_TensorRef` (allocates nothing)."""
    storage = ref.storage
    data = storage.data()
    if data is None:
        raise ValueError(f"storage '{storage.key}' was never read")
    if ref.dtype_name is not None and ref.dtype_name != storage.dtype_name:
        if storage.dtype_name != "uint8" or ref.dtype_name == "bfloat16":
            raise ValueError(f"cannot view storage '{storage.key}' as {ref.dtype_name}")
        data = data[: data.size - data.size % _itemsize(ref.dtype_name)]
        data = data.view(ref.dtype_name)
    numel = data.size
    if any(n == 0 for n in ref.size):
        return np.zeros(ref.size, dtype=data.dtype)
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride))
    if ref.offset >= numel or last >= numel:
        raise ValueError(
            f"tensor view (offset {ref.offset}, size {ref.size}, stride {ref.stride}) "
            f"runs past the end of storage '{storage.key}' ({numel} elements)"
        )
    item = data.dtype.itemsize
    return np.lib.stride_tricks.as_strided(
        data[ref.offset:], shape=ref.size, strides=tuple(s * item for s in ref.stride),
        writeable=False,
    )


def _torch_size(values=()):
    return _as_int_tuple(values, "torch.Size")


def _torch_device(kind, index=None):
    if not isinstance(kind, str) or not (index is None or isinstance(index, int)):
        raise ValueError("torch.device of something other than a name and an index")
    return f"{kind}:{index}" if index is not None else kind


def _torch_globals():
    """The allow-list: generic pieces plus torch's. ``Fresh`` entries are data values made
    anew per lookup; functions are only ever called, never mutated (see safe_unpickle)."""
    table = generic_globals()
    for name, func in (("_rebuild_tensor", _rebuild_tensor), ("_rebuild_tensor_v2", _rebuild_tensor_v2),
                       ("_rebuild_tensor_v3", _rebuild_tensor_v3), ("_rebuild_parameter", _rebuild_parameter),
                       ("_rebuild_parameter_with_state", _rebuild_parameter)):
        table[("torch._utils", name)] = func
    table[("torch._tensor", "_rebuild_from_type_v2")] = _rebuild_from_type_v2
    table[("torch", "Tensor")] = Fresh(functools.partial(Marker, "torch.Tensor"))
    table[("torch.nn.parameter", "Parameter")] = Fresh(functools.partial(Marker, "torch.nn.Parameter"))
    for name, dtype in _STORAGE_DTYPES.items():
        table[("torch", name)] = Fresh(functools.partial(_StorageType, dtype))
    table[("torch.storage", "UntypedStorage")] = Fresh(functools.partial(_StorageType, "uint8"))
    for name, dtype in _DTYPES.items():
        table[("torch", name)] = Fresh(functools.partial(TorchDtype, dtype))
    table[("torch", "Size")] = _torch_size
    table[("torch", "device")] = _torch_device
    return table


class RestrictedUnpickler(SafeUnpickler):
    """SafeUnpickler over the torch allow-list.

    ``reader`` is a :class:`~weights_convert.safe_unpickle.BoundedReader`;
    ``persistent_load`` a callable (pid -> object) or None (persistent ids
    refused). Subclasses may override :meth:`extra_global` (return an entry for
    ``module.name`` or None) to allow more names.
    """

    GLOBALS = _torch_globals()


# ------------------------------------------------------------------ resolution
def resolve_tensors(obj, path="checkpoint", budget=None):
    """Replace every tensor placeholder inside ``obj`` with its numpy array.

    Walks dicts, lists, tuples, sets, Namespaces and InertObjects (their dict
    items and ``args``/``kwargs``/``state``); shared objects stay shared. The
    views' logical sizes are charged to ``budget`` (a stride-0 view of one
    element may claim terabytes, which a consumer would allocate).
    Run :func:`check_structure` first: this walk recurses.
    """
    budget = ByteBudget(path) if budget is None else budget
    done = {}

    def walk(x):
        if isinstance(x, _TensorRef):
            key = id(x)
            if key not in done:
                array = _tensor_array(x)
                budget.take(array.nbytes, f"tensor of shape {short_repr(array.shape)}")
                done[key] = (x, array)
            return done[key][1]
        if isinstance(x, (str, bytes, int, float, complex, type(None), np.ndarray, np.generic)):
            return x
        key = id(x)
        if key in done:
            return done[key][1]
        if isinstance(x, tuple):
            out = tuple(walk(v) for v in x)
            done[key] = (x, out)
            return out
        done[key] = (x, x)
        if isinstance(x, dict):
            for k in list(x.keys()):
                x[k] = walk(x[k])
            if isinstance(x, InertObject):
                x.args = walk(x.args)
                x.kwargs = walk(x.kwargs)
                x.state = walk(x.state)
        elif isinstance(x, list):
            for i, v in enumerate(x):
                x[i] = walk(v)
        elif isinstance(x, (set, frozenset)):
            pass  # sets hold plain values only (safe_unpickle.check_plain_key)
        elif isinstance(x, Namespace):
            for k, v in vars(x).items():
                setattr(x, k, walk(v))
        return x

    return walk(obj)


def _check_no_object_arrays(obj, path):
    """Refuse numpy arrays with object dtype anywhere in the result."""
    seen = set()
    todo = [obj]
    while todo:
        x = todo.pop()
        if id(x) in seen:
            continue
        seen.add(id(x))
        if isinstance(x, np.ndarray):
            if x.dtype.hasobject:
                raise CheckpointError(path, "numpy array of Python objects refused")
        elif isinstance(x, dict):
            todo.extend(x.values())
        elif isinstance(x, (list, tuple, set, frozenset)):
            todo.extend(x)


# ------------------------------------------------------------------ the formats
class _Progress:
    def __init__(self, enabled, total_bytes, path):
        self.bar = None
        if enabled and total_bytes >= PROGRESS_MIN_BYTES:
            from tqdm import tqdm

            self.bar = tqdm(total=total_bytes, unit="B", unit_scale=True,
                            desc=os.path.basename(str(path)), leave=False)

    def update(self, nbytes):
        if self.bar is not None:
            self.bar.update(nbytes)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _first_pickle_is_legacy_magic(path):
    """True when the file's first pickle is torch's legacy magic number (read at most PROBE_BYTES)."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        try:
            first = RestrictedUnpickler(BoundedReader(fh, path, min(size, PROBE_BYTES)), path).load()
        except Exception:  # whatever it is, it is not the magic number
            return False
    return isinstance(first, int) and first == LEGACY_MAGIC


def detect_format(path):
    """'zip', 'legacy' or 'pickle' from the first bytes; CheckpointError otherwise."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise CheckpointError(path, f"cannot open: {exc.strerror or exc}")
    if not head:
        raise CheckpointError(path, "empty file")
    if head[:4] == b"PK\x03\x04":
        return "zip"
    if head.startswith(_LEGACY_MAGIC_PICKLE[: len(head)]) and len(head) >= 4:
        return "legacy"
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        # A pickle: legacy torch.save streams start with a pickled magic number.
        return "legacy" if _first_pickle_is_legacy_magic(path) else "pickle"
    if head[:2] == b"\x1f\x8b":
        raise CheckpointError(path, "gzip-compressed file, not a PyTorch checkpoint")
    raise CheckpointError(path, "not a PyTorch checkpoint (neither a zip archive nor a pickle stream)")


class _ZipMembers:
    """The members of a torch.save archive, each checked BEFORE it is read: it must be stored
    uncompressed (torch.save never compresses) and lie inside the file, so what it declares
    is what is there and nothing is ever decompressed."""

    LOCAL_HEADER = 30  # fixed part of a zip local file header

    def __init__(self, archive, path):
        self.archive = archive
        self.path = path
        self.infos = {info.filename: info for info in archive.infolist()}
        self.file_size = os.path.getsize(path)

    def __contains__(self, name):
        return name in self.infos

    def info(self, name):
        info = self.infos.get(name)
        if info is None:
            raise CheckpointError(self.path, f"storage record '{name}' is missing")
        if info.compress_type != zipfile.ZIP_STORED:
            raise CheckpointError(self.path, f"zip member '{name}' is compressed; torch.save stores members "
                                  "uncompressed (refusing to decompress it)")
        present = self.file_size - info.header_offset - self.LOCAL_HEADER - len(info.filename.encode("utf-8"))
        if info.file_size != info.compress_size or info.file_size > present:
            raise CheckpointError(self.path, f"zip member '{name}' declares {info.file_size:,} bytes but the "
                                  f"file holds at most {max(present, 0):,} after its header (truncated or forged)")
        return info

    def read(self, name, nbytes=None):
        info = self.info(name)
        with self.archive.open(info) as fh:
            return fh.read(info.file_size if nbytes is None else nbytes)


def _load_zip(path, progress, budget, unpickler=None):
    unpickler = unpickler or RestrictedUnpickler
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise CheckpointError(path, f"zip archive is truncated or corrupt ({exc})")
    with archive:
        members = _ZipMembers(archive, path)
        names = list(members.infos)
        pkls = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if not pkls and "data.pkl" in names:
            pkls = ["data.pkl"]
        if len(pkls) != 1:
            if any(n.endswith("constants.pkl") for n in names):
                raise CheckpointError(path, "TorchScript archive (torch.jit.save), not a torch.save checkpoint")
            raise CheckpointError(path, "zip archive has no single '<prefix>/data.pkl' record; not a torch.save file")
        prefix = pkls[0][: -len("data.pkl")]
        if unpickler is RestrictedUnpickler and _is_torchscript_prefix(members, prefix):
            raise CheckpointError(path, "TorchScript archive (torch.jit.save), not a torch.save checkpoint; "
                                  "its tensors are read by load_torchscript_tensors")
        byteorder = "<"
        if prefix + "byteorder" in members:
            order = members.read(prefix + "byteorder", 16).decode("ascii", "replace").strip()
            if order not in ("little", "big"):
                raise CheckpointError(path, f"unknown byteorder record {order!r}")
            byteorder = "<" if order == "little" else ">"
        storages = {}

        def persistent_load(pid):
            if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
                raise CheckpointError(path, f"unsupported persistent id {short_repr(pid)}")
            _, stype, key, _location, numel = pid[:5]
            if not isinstance(stype, _StorageType):
                raise CheckpointError(path, "persistent id names no storage type")
            key = _storage_key(key, path)
            if key not in storages:
                storage = _Storage(key, stype.dtype_name, _element_count(numel, path, key))
                record = f"{prefix}data/{key}"
                held = members.info(record).file_size
                if held < storage.nbytes:
                    raise CheckpointError(path, f"storage record '{record}' holds {held} bytes, "
                                          f"{storage.nbytes} expected")
                budget.take(storage.decoded_nbytes, f"storage '{key}'")
                storages[key] = storage
            return storages[key]

        pickle_bytes = members.read(pkls[0])
        reader = BoundedReader(io.BytesIO(pickle_bytes), path, len(pickle_bytes))
        obj = unpickler(reader, path, persistent_load).load()
        check_structure(obj, path)
        bar = _Progress(progress, sum(s.nbytes for s in storages.values()), path)
        try:
            for key, storage in storages.items():
                raw = members.read(f"{prefix}data/{key}", storage.nbytes)
                storage.set_bytes(raw, byteorder)
                bar.update(len(raw))
        finally:
            bar.close()
    return obj


def _load_legacy(reader, path, budget, progress=False):
    """Read one legacy stream from ``reader`` (a BoundedReader positioned at its magic number)."""
    def small_pickle():
        return RestrictedUnpickler(reader, path).load()

    magic = small_pickle()
    if not isinstance(magic, int) or magic != LEGACY_MAGIC:
        raise CheckpointError(path, "wrong magic number; not a PyTorch legacy checkpoint")
    version = small_pickle()
    if not isinstance(version, int) or version != LEGACY_PROTOCOL:
        raise CheckpointError(path, f"unsupported legacy protocol version {short_repr(version)}")
    sys_info = small_pickle()
    little = True
    if isinstance(sys_info, dict):
        little = bool(sys_info.get("little_endian", True))
    byteorder = "<" if little else ">"
    storages = {}

    def root_storage(stype, key, numel):
        if key not in storages:
            storage = _Storage(key, stype.dtype_name, _element_count(numel, path, key))
            # the raw bytes follow the pickles: what is left of the file bounds every storage
            if storage.nbytes > reader.remaining():
                raise CheckpointError(path, f"file is truncated: storage '{key}' declares {storage.nbytes:,} "
                                      f"bytes, {reader.remaining():,} left in the file")
            budget.take(storage.decoded_nbytes, f"storage '{key}'")
            storages[key] = storage
        return storages[key]

    def persistent_load(pid):
        if not isinstance(pid, tuple) or not pid:
            raise CheckpointError(path, f"unsupported persistent id {short_repr(pid)}")
        if pid[0] == "module":
            raise CheckpointError(path, f"refused to unpickle a whole nn.Module with source code: {REFUSED}")
        if pid[0] != "storage" or len(pid) < 6:
            raise CheckpointError(path, f"unsupported persistent id {short_repr(pid)}")
        _, stype, root_key, _location, numel, view_metadata = pid[:6]
        if not isinstance(stype, _StorageType):
            raise CheckpointError(path, "persistent id names no storage type")
        root_key = _storage_key(root_key, path)
        root = root_storage(stype, root_key, numel)
        if view_metadata is None:
            return root
        if not (isinstance(view_metadata, tuple) and len(view_metadata) == 3
                and all(isinstance(v, int) for v in view_metadata[1:])):
            raise CheckpointError(path, f"storage view {short_repr(view_metadata)} is not (key, offset, size)")
        view_key, offset, view_size = view_metadata
        if offset < 0 or view_size < 0 or offset + view_size > root.numel:
            raise CheckpointError(path, f"storage view {short_repr(view_key)} runs past storage '{root_key}'")
        return _Storage(_storage_key(view_key, path), root.dtype_name, view_size, base=root, offset=offset)

    obj = RestrictedUnpickler(reader, path, persistent_load).load()
    keys = small_pickle()
    if not isinstance(keys, list):
        raise CheckpointError(path, "storage key list is not a list")
    check_structure(obj, path)
    bar = _Progress(progress, sum(s.nbytes for s in storages.values()), path)
    try:
        for key in keys:
            storage = storages.get(key) if isinstance(key, str) else None
            if storage is None:
                raise CheckpointError(path, f"storage key list names unknown storage {short_repr(key)}")
            count = struct.unpack(byteorder + "q", reader.read(8))[0]
            if count != storage.numel:
                raise CheckpointError(path, f"storage '{key}' has {count} elements, {storage.numel} expected")
            storage.set_bytes(reader.read(storage.nbytes), byteorder)
            bar.update(storage.nbytes)
    finally:
        bar.close()
    missing = [k for k, s in storages.items() if s.array is None]
    if missing:
        raise CheckpointError(path, f"storages never written in the file: {', '.join(missing[:5])}")
    return obj


def load_legacy_bytes(data, path, budget=None):
    """Read a legacy stream held in memory (``torch.storage._load_from_bytes``)."""
    if not isinstance(data, (bytes, bytearray)):
        raise CheckpointError(path, "in-pickle storage is not a byte string")
    budget = ByteBudget(path) if budget is None else budget
    return _load_legacy(BoundedReader(io.BytesIO(data), path, len(data)), path, budget)


def _wrap_errors(path, func):
    try:
        return func()
    except CheckpointError:
        raise
    except (EOFError, pickle.UnpicklingError) as exc:
        raise CheckpointError(path, f"file is truncated or not a valid pickle stream ({type(exc).__name__}: {exc})")
    except zipfile.BadZipFile as exc:
        raise CheckpointError(path, f"zip archive is truncated or corrupt ({exc})")
    except RecursionError:
        raise CheckpointError(path, "pickle nests too deeply")
    except MemoryError:
        raise CheckpointError(path, "out of memory while reading (corrupt sizes?)")
    except Exception as exc:  # any other failure of a rebuild step is a corrupt file
        raise CheckpointError(path, f"corrupt checkpoint ({type(exc).__name__}: {exc})")


def load_torch_file(path, *, progress=False, max_bytes=None):
    """Read a ``torch.save`` file (zip or legacy) into numpy; see module docstring."""
    path = os.fspath(path)

    def load():
        budget = ByteBudget(path, max_bytes)  # storages; the views get their own of the same size
        fmt = detect_format(path)
        if fmt == "zip":
            obj = _load_zip(path, progress, budget)
        elif fmt == "legacy":
            with open(path, "rb") as fh:
                reader = BoundedReader(fh, path, os.fstat(fh.fileno()).st_size)
                obj = _load_legacy(reader, path, budget, progress)
        else:
            raise CheckpointError(
                path, "a plain pickle, not a torch.save checkpoint (NVlabs network pickles: "
                "use weights_convert.nvlabs_pkl)")
        obj = resolve_tensors(obj, path, ByteBudget(path, budget.limit))
        _check_no_object_arrays(obj, path)
        return obj

    return _wrap_errors(path, load)


def flatten_state_dict(obj, prefix=""):
    """``{"a.b.c": array}`` for every numpy array inside nested dicts/lists."""
    out = {}

    def walk(x, name):
        if isinstance(x, np.ndarray):
            out[name] = x
        elif isinstance(x, dict):
            for k, v in x.items():
                walk(v, f"{name}.{k}" if name else str(k))
        elif isinstance(x, (list, tuple)):
            for i, v in enumerate(x):
                walk(v, f"{name}.{i}" if name else str(i))

    walk(obj, prefix.rstrip("."))
    return out


# ------------------------------------------------------------------ TorchScript archives
TORCHSCRIPT_MODULE = "__torch__"  # the module path TorchScript gives every scripted class


def _is_torchscript_prefix(members, prefix):
    return prefix + "constants.pkl" in members or any(n.startswith(prefix + "code/") for n in members.infos)


def is_torchscript(path):
    """True for a ``torch.jit.save`` archive (zip with ``<prefix>/constants.pkl`` or ``<prefix>/code/``)."""
    if detect_format(path) != "zip":
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except zipfile.BadZipFile as exc:
        raise CheckpointError(path, f"zip archive is truncated or corrupt ({exc})")
    pkls = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
    return len(pkls) == 1 and any(n == pkls[0][:-8] + "constants.pkl" or n.startswith(pkls[0][:-8] + "code/")
                                  for n in names)


def _typed_list(values):
    """``torch.jit._pickle.build_{int,double,bool,tensor}list``: a typed attribute list, as a new list."""
    if not isinstance(values, list):
        raise ValueError(f"TorchScript typed list built from {type(values).__name__}")
    return list(values)


def _restore_type_tag(value, type_str=None):
    """``torch.jit._pickle.restore_type_tag``: the container, its TorchScript type string dropped."""
    if not isinstance(value, (dict, list)) or not (type_str is None or isinstance(type_str, str)):
        raise ValueError("restore_type_tag of something other than a container and a type name")
    return value


# the helpers TorchScript's pickler names for typed attribute containers (plain data, nothing runs)
_TORCHSCRIPT_BUILDERS = {"build_intlist": _typed_list, "build_doublelist": _typed_list,
                         "build_boollist": _typed_list, "build_tensorlist": _typed_list,
                         "restore_type_tag": _restore_type_tag}


class _TorchScriptUnpickler(RestrictedUnpickler):
    """The torch allow-list plus inert records for TorchScript's ``__torch__.*`` module classes
    (built by NEWOBJ + BUILD of their attribute dict: nothing is imported or run) and its typed
    container builders (``torch.jit._pickle.build_intlist`` & co.)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._classes = {}

    def extra_global(self, module, name):
        if module == TORCHSCRIPT_MODULE or module.startswith(TORCHSCRIPT_MODULE + "."):
            return inert_class(module, name, self._classes)
        if module == "torch.jit._pickle":
            return _TORCHSCRIPT_BUILDERS.get(name)
        return None


def _module_tensors(record, path):
    """{dotted name: array} of every tensor attribute in a TorchScript module record tree."""
    out = {}
    todo = [("", record)]
    while todo:
        prefix, node = todo.pop()
        state = node.state if isinstance(node, InertObject) else None
        if not isinstance(state, dict):
            raise CheckpointError(path, f"TorchScript module '{prefix.rstrip('.') or '(root)'}' has no attribute dict")
        for name, value in state.items():
            if not isinstance(name, str):
                raise CheckpointError(path, f"TorchScript attribute name {short_repr(name)} is not a string")
            if isinstance(value, np.ndarray):
                out[prefix + name] = value
            elif isinstance(value, InertObject) and value.inert_module.startswith(TORCHSCRIPT_MODULE):
                todo.append((f"{prefix}{name}.", value))
    return dict(sorted(out.items()))


def load_torchscript_tensors(path, *, progress=False, max_bytes=None):
    """The tensors of a TorchScript archive, without running it; see module docstring."""
    path = os.fspath(path)

    def load():
        if detect_format(path) != "zip":
            raise CheckpointError(path, "not a TorchScript archive (not a zip file)")
        budget = ByteBudget(path, max_bytes)
        obj = _load_zip(path, progress, budget, unpickler=_TorchScriptUnpickler)
        obj = resolve_tensors(obj, path, ByteBudget(path, budget.limit))
        _check_no_object_arrays(obj, path)
        if not isinstance(obj, InertObject):
            raise CheckpointError(path, "TorchScript archive whose data.pkl is not a scripted module")
        return _module_tensors(obj, path)

    return _wrap_errors(path, load)
