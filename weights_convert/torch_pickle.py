"""Read PyTorch ``.pt/.pth`` files without torch and without running code.

Public API
----------
``load_torch_file(path, *, progress=False) -> object``
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
    ``progress=True`` shows a tqdm bar over the storages of large files.
    Any problem raises :class:`~weights_convert.errors.CheckpointError` whose
    ``str()`` is one line ``"PATH: problem"``.

``flatten_state_dict(obj, prefix='') -> dict[str, np.ndarray]``
    Flatten nested dicts/lists of arrays into ``{"a.b.0.c": array}``; other
    leaves (numbers, strings, Namespaces) are skipped.

``detect_format(path) -> 'zip' | 'legacy' | 'pickle'``
    Look at the first bytes only.

Safety
------
Pickles run whatever callables they name. :class:`RestrictedUnpickler`
resolves a global ONLY from an allow-list (tensor rebuild functions, storage
types, torch dtypes, OrderedDict, argparse.Namespace as an inert record, a few
builtins, numpy array/scalar reconstruction with object dtypes refused);
every other name raises ``CheckpointError("refused to unpickle 'mod.name'
...")`` before anything executes. Tensor views are bounds-checked against
their storage. Importers built on this module (``nvlabs_pkl``) extend the
allow-list through :meth:`RestrictedUnpickler.extra_global`.
"""
import collections
import io
import os
import pickle
import struct
import types
import zipfile

import numpy as np

from .errors import CheckpointError

__all__ = [
    "load_torch_file",
    "flatten_state_dict",
    "detect_format",
    "Namespace",
    "TorchDtype",
    "InertObject",
    "RestrictedUnpickler",
]

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
_LEGACY_MAGIC_PICKLE = pickle.dumps(LEGACY_MAGIC, protocol=2)
PROGRESS_MIN_BYTES = 32 * 2 ** 20  # files smaller than this never show a bar

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


# ---------------------------------------------------------------- inert records
class Namespace(types.SimpleNamespace):
    """Inert stand-in for ``argparse.Namespace`` (attribute access, no code)."""


class TorchDtype(str):
    """A torch dtype named in a pickle, e.g. ``TorchDtype('float32')``."""


class InertObject(dict):
    """Record of an object of a foreign class that must not be imported.

    Subclasses are made per ``module.name`` by :func:`inert_class`; instances
    keep constructor ``args``, pickled ``state`` and dict items (a dict
    subclass such as ``dnnlib.EasyDict`` keeps its items as dict items).
    """

    inert_module = ""
    inert_name = ""
    args = ()  # class defaults: NEWOBJ builds instances without calling __init__
    kwargs = {}
    state = None

    def __init__(self, *args, **kwargs):
        super().__init__()
        self.args = args
        self.kwargs = kwargs
        self.state = None

    def __setstate__(self, state):
        self.state = state

    def __reduce__(self):  # never re-pickle as the original class
        raise TypeError("inert record")

    @property
    def class_name(self):
        return f"{self.inert_module}.{self.inert_name}"

    def __repr__(self):
        return f"<inert {self.class_name}>"


_INERT_CLASSES = {}


def inert_class(module, name):
    """The :class:`InertObject` subclass standing for ``module.name``."""
    key = (module, name)
    if key not in _INERT_CLASSES:
        _INERT_CLASSES[key] = type(
            str(name), (InertObject,), {"inert_module": module, "inert_name": name}
        )
    return _INERT_CLASSES[key]


class _StorageType:
    def __init__(self, dtype_name):
        self.dtype_name = dtype_name


class _TypeMarker:
    """torch.Tensor / torch.nn.Parameter named by ``_rebuild_from_type_v2``."""

    def __init__(self, name):
        self.name = name


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
        return self.numel * _itemsize(self.dtype_name)

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


class _TensorRef:
    """A tensor whose storage may not be read yet; resolved after loading."""

    def __init__(self, storage, offset, size, stride, dtype_name=None):
        self.storage = storage
        self.offset = offset
        self.size = size
        self.stride = stride
        self.dtype_name = dtype_name  # _rebuild_tensor_v3 reinterpretation


def _as_int_tuple(values, what):
    try:
        out = tuple(int(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(f"tensor {what} is not a tuple of ints: {values!r}")
    if any(v < 0 for v in out):
        raise ValueError(f"tensor {what} has a negative entry: {out}")
    return out


def _rebuild_tensor(storage, storage_offset, size, stride, *unused, dtype_name=None):
    if not isinstance(storage, _Storage):
        raise ValueError("tensor rebuilt from something that is not a storage")
    size = _as_int_tuple(size, "size")
    stride = _as_int_tuple(stride, "stride")
    if len(size) != len(stride):
        raise ValueError(f"tensor size {size} and stride {stride} differ in length")
    offset = int(storage_offset)
    if offset < 0:
        raise ValueError(f"negative storage offset {offset}")
    return _TensorRef(storage, offset, size, stride, dtype_name)


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
                    _rebuild_parameter) or not isinstance(new_type, _TypeMarker):
        raise ValueError("_rebuild_from_type_v2 of a non-tensor type")
    return func(*args)


def _tensor_array(ref):
    """Bounds-checked numpy view for a resolved :class:`_TensorRef`."""
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


# ------------------------------------------------------------ safe numpy pieces
def _np_dtype(*args):
    dt = np.dtype(*args)
    if dt.hasobject:
        raise ValueError("numpy object dtype refused")
    return dt


def _np_reconstruct(subtype, shape, dtype_code):
    if subtype is not np.ndarray:
        raise ValueError("numpy _reconstruct of a non-ndarray type")
    return np.core.multiarray._reconstruct(np.ndarray, shape, dtype_code)


def _np_scalar(dtype, *args):
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise ValueError("numpy scalar of an object dtype refused")
    return np.core.multiarray.scalar(dtype, *args)


def _codecs_encode(text, encoding="utf-8", errors="strict"):
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise ValueError("_codecs.encode only rebuilds latin1 byte strings")
    return text.encode("latin1")


def _copyreg_reconstructor(cls, base, state):
    if not (isinstance(cls, type) and issubclass(cls, (InertObject, Namespace))):
        raise ValueError("copyreg._reconstructor of a non-inert class")
    return cls.__new__(cls)


def _torch_size(values=()):
    return tuple(values)


def _torch_device(kind, index=None):
    return f"{kind}:{index}" if index is not None else str(kind)


def _allowed_globals():
    table = {}
    for mod in ("torch._utils",):
        table[(mod, "_rebuild_tensor")] = _rebuild_tensor
        table[(mod, "_rebuild_tensor_v2")] = _rebuild_tensor_v2
        table[(mod, "_rebuild_tensor_v3")] = _rebuild_tensor_v3
        table[(mod, "_rebuild_parameter")] = _rebuild_parameter
        table[(mod, "_rebuild_parameter_with_state")] = _rebuild_parameter
    table[("torch._tensor", "_rebuild_from_type_v2")] = _rebuild_from_type_v2
    table[("torch", "Tensor")] = _TypeMarker("Tensor")
    table[("torch.nn.parameter", "Parameter")] = _TypeMarker("Parameter")
    for name, dtype in _STORAGE_DTYPES.items():
        table[("torch", name)] = _StorageType(dtype)
    table[("torch.storage", "UntypedStorage")] = _StorageType("uint8")
    for name in _DTYPES:
        table[("torch", name)] = TorchDtype(_DTYPES[name])
    table[("torch", "Size")] = _torch_size
    table[("torch", "device")] = _torch_device
    table[("collections", "OrderedDict")] = collections.OrderedDict
    table[("argparse", "Namespace")] = Namespace
    for mod in ("builtins", "__builtin__"):
        for name, obj in (("set", set), ("frozenset", frozenset), ("slice", slice),
                          ("complex", complex), ("bytearray", bytearray)):
            table[(mod, name)] = obj
    table[("_codecs", "encode")] = _codecs_encode
    table[("copyreg", "_reconstructor")] = _copyreg_reconstructor
    table[("numpy", "dtype")] = _np_dtype
    table[("numpy", "ndarray")] = np.ndarray
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        table[(mod, "_reconstruct")] = _np_reconstruct
        table[(mod, "scalar")] = _np_scalar
    return table


_ALLOWED = _allowed_globals()


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves globals only from the allow-list.

    ``persistent_load`` is a callable (pid -> object) or None (persistent ids
    refused). Subclasses may override :meth:`extra_global` (return an object
    for ``module.name`` or None) to allow more names.
    """

    def __init__(self, file, path, persistent_load=None):
        super().__init__(file, encoding="utf-8")
        self._path = path
        self._persistent = persistent_load

    def extra_global(self, module, name):
        return None

    def find_class(self, module, name):
        obj = _ALLOWED.get((module, name))
        if obj is None:
            obj = self.extra_global(module, name)
        if obj is None:
            raise CheckpointError(self._path, f"refused to unpickle '{module}.{name}': {REFUSED}")
        return obj

    def persistent_load(self, pid):
        if self._persistent is None:
            raise CheckpointError(self._path, "unexpected persistent id in a plain pickle")
        return self._persistent(pid)


# ------------------------------------------------------------------ resolution
def resolve_tensors(obj):
    """Replace every tensor placeholder inside ``obj`` with its numpy array.

    Walks dicts, lists, tuples, sets, Namespaces and InertObjects (their dict
    items and ``args``/``kwargs``/``state``); shared objects stay shared.
    """
    done = {}

    def walk(x):
        if isinstance(x, _TensorRef):
            key = id(x)
            if key not in done:
                done[key] = (x, _tensor_array(x))
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
            pass  # tensors are unhashable here; sets hold plain values
        elif isinstance(x, Namespace):
            for k, v in vars(x).items():
                setattr(x, k, walk(v))
        return x

    return walk(obj)


def _check_no_object_arrays(obj, path):
    """Refuse numpy arrays with object dtype anywhere in the result."""
    seen = set()

    def walk(x):
        if id(x) in seen:
            return
        seen.add(id(x))
        if isinstance(x, np.ndarray):
            if x.dtype.hasobject:
                raise CheckpointError(path, "numpy array of Python objects refused")
        elif isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, (list, tuple, set, frozenset)):
            for v in x:
                walk(v)

    walk(obj)


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
        try:
            with open(path, "rb") as fh:
                first = RestrictedUnpickler(fh, path).load()
        except Exception:
            return "pickle"
        return "legacy" if first == LEGACY_MAGIC else "pickle"
    if head[:2] == b"\x1f\x8b":
        raise CheckpointError(path, "gzip-compressed file, not a PyTorch checkpoint")
    raise CheckpointError(path, "not a PyTorch checkpoint (neither a zip archive nor a pickle stream)")


def _load_zip(path, progress):
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise CheckpointError(path, f"zip archive is truncated or corrupt ({exc})")
    with archive:
        names = archive.namelist()
        pkls = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if not pkls and "data.pkl" in names:
            pkls = ["data.pkl"]
        if len(pkls) != 1:
            if any(n.endswith("constants.pkl") for n in names):
                raise CheckpointError(path, "TorchScript archive (torch.jit.save), not a torch.save checkpoint")
            raise CheckpointError(path, "zip archive has no single '<prefix>/data.pkl' record; not a torch.save file")
        prefix = pkls[0][: -len("data.pkl")]
        byteorder = "<"
        if prefix + "byteorder" in names:
            order = archive.read(prefix + "byteorder").decode("ascii", "replace").strip()
            if order not in ("little", "big"):
                raise CheckpointError(path, f"unknown byteorder record {order!r}")
            byteorder = "<" if order == "little" else ">"
        storages = {}

        def persistent_load(pid):
            if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
                raise CheckpointError(path, f"unsupported persistent id {str(pid)[:60]!r}")
            _, stype, key, _location, numel = pid[:5]
            if not isinstance(stype, _StorageType):
                raise CheckpointError(path, "persistent id names no storage type")
            key = str(key)
            if key not in storages:
                storages[key] = _Storage(key, stype.dtype_name, numel)
            return storages[key]

        obj = RestrictedUnpickler(io.BytesIO(archive.read(pkls[0])), path, persistent_load).load()
        infos = {i.filename: i for i in archive.infolist()}
        bar = _Progress(progress, sum(s.nbytes for s in storages.values()), path)
        try:
            for key, storage in storages.items():
                record = f"{prefix}data/{key}"
                if record not in infos:
                    raise CheckpointError(path, f"storage record '{record}' is missing")
                if infos[record].file_size < storage.nbytes:
                    raise CheckpointError(
                        path, f"storage record '{record}' holds {infos[record].file_size} bytes, "
                        f"{storage.nbytes} expected")
                raw = archive.read(record)[: storage.nbytes]
                storage.set_bytes(raw, byteorder)
                bar.update(len(raw))
        finally:
            bar.close()
    return obj


def _read_exact(fh, n, path, what):
    data = fh.read(n)
    if len(data) != n:
        raise CheckpointError(path, f"file is truncated: {what} needs {n} bytes, {len(data)} left")
    return data


def _load_legacy(fh, path, progress=False, total_size=None):
    """Read one legacy stream from ``fh`` (positioned at its magic number)."""
    def small_pickle():
        return RestrictedUnpickler(fh, path).load()

    magic = small_pickle()
    if magic != LEGACY_MAGIC:
        raise CheckpointError(path, "wrong magic number; not a PyTorch legacy checkpoint")
    version = small_pickle()
    if version != LEGACY_PROTOCOL:
        raise CheckpointError(path, f"unsupported legacy protocol version {version!r}")
    sys_info = small_pickle()
    little = True
    if isinstance(sys_info, dict):
        little = bool(sys_info.get("little_endian", True))
    byteorder = "<" if little else ">"
    storages = {}

    def persistent_load(pid):
        if not isinstance(pid, tuple) or not pid:
            raise CheckpointError(path, f"unsupported persistent id {str(pid)[:60]!r}")
        if pid[0] == "module":
            raise CheckpointError(path, f"refused to unpickle a whole nn.Module with source code: {REFUSED}")
        if pid[0] != "storage" or len(pid) < 6:
            raise CheckpointError(path, f"unsupported persistent id {str(pid)[:60]!r}")
        _, stype, root_key, _location, numel, view_metadata = pid[:6]
        if not isinstance(stype, _StorageType):
            raise CheckpointError(path, "persistent id names no storage type")
        root_key = str(root_key)
        if root_key not in storages:
            storages[root_key] = _Storage(root_key, stype.dtype_name, numel)
        root = storages[root_key]
        if view_metadata is None:
            return root
        view_key, offset, view_size = view_metadata
        if int(offset) < 0 or int(offset) + int(view_size) > root.numel:
            raise CheckpointError(path, f"storage view '{view_key}' runs past storage '{root_key}'")
        return _Storage(str(view_key), root.dtype_name, view_size, base=root, offset=offset)

    obj = RestrictedUnpickler(fh, path, persistent_load).load()
    keys = small_pickle()
    if not isinstance(keys, list):
        raise CheckpointError(path, "storage key list is not a list")
    bar = _Progress(progress, sum(s.nbytes for s in storages.values()), path)
    try:
        for key in keys:
            storage = storages.get(str(key))
            if storage is None:
                raise CheckpointError(path, f"storage key list names unknown storage '{key}'")
            count = struct.unpack(byteorder + "q", _read_exact(fh, 8, path, f"storage '{key}' size"))[0]
            if count != storage.numel:
                raise CheckpointError(path, f"storage '{key}' has {count} elements, {storage.numel} expected")
            if total_size is not None and storage.nbytes > total_size - fh.tell():
                raise CheckpointError(
                    path, f"file is truncated: storage '{key}' needs {storage.nbytes} bytes, "
                    f"{max(total_size - fh.tell(), 0)} left")
            storage.set_bytes(_read_exact(fh, storage.nbytes, path, f"storage '{key}'"), byteorder)
            bar.update(storage.nbytes)
    finally:
        bar.close()
    missing = [k for k, s in storages.items() if s.array is None]
    if missing:
        raise CheckpointError(path, f"storages never written in the file: {', '.join(missing[:5])}")
    return obj


def load_legacy_bytes(data, path):
    """Read a legacy stream held in memory (``torch.storage._load_from_bytes``)."""
    return _load_legacy(io.BytesIO(data), path, total_size=len(data))


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


def load_torch_file(path, *, progress=False):
    """Read a ``torch.save`` file (zip or legacy) into numpy; see module docstring."""
    path = os.fspath(path)

    def load():
        fmt = detect_format(path)
        if fmt == "zip":
            obj = _load_zip(path, progress)
        elif fmt == "legacy":
            with open(path, "rb") as fh:
                obj = _load_legacy(fh, path, progress, total_size=os.fstat(fh.fileno()).st_size)
        else:
            raise CheckpointError(
                path, "a plain pickle, not a torch.save checkpoint (NVlabs network pickles: "
                "use weights_convert.nvlabs_pkl)")
        obj = resolve_tensors(obj)
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
