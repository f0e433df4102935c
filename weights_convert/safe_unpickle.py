"""A pickle reader that runs no code and changes nothing it did not build.

``pickle`` is a small stack machine. Besides naming callables (GLOBAL), a
stream can call them (REDUCE, NEWOBJ) and mutate objects on its stack (BUILD
sets attributes or calls ``__setstate__``, SETITEM(S), APPEND(S), ADDITEMS).
Restricting GLOBAL to an allow-list is not enough: a stream that BUILDs onto
an allow-listed global (a storage type, a rebuild function, a class) changes
state shared by the whole process, and every file read afterwards decodes
differently. :class:`SafeUnpickler` therefore runs the pure-Python unpickler
with these opcodes replaced:

* GLOBAL / STACK_GLOBAL resolve only from a table; data values (storage
  types, dtypes, markers) are made fresh for every lookup (:class:`Fresh`).
* BUILD, SETITEM(S), APPEND(S), ADDITEMS act only on objects this stream
  built itself (empty containers, results of REDUCE/NEWOBJ), and BUILD only on
  the few types that need it (inert records, Namespace, OrderedDict, numpy
  arrays and dtypes), with their state checked.
* REDUCE calls only callables the table gave out; NEWOBJ makes only inert
  records; INST/OBJ (protocol 0/1 class instantiation) and EXT1/2/4 (copyreg's
  process-wide extension registry) are refused.
* Dict keys and set members must be scalars or small tuples of scalars:
  hashing a tuple walks it without memo, so shared nested tuples would hash
  for ever.
* Every read goes through :class:`BoundedReader`, which refuses a length
  field that declares more bytes than the file still holds, before anything
  is allocated (CPython's own unpickler allocates the declared size first).

After loading, :func:`check_structure` refuses cycles, nesting deeper than
``limits.MAX_DEPTH`` and shared references that expand to more than
``limits.MAX_OBJECTS`` objects, in time linear in the distinct objects, so
that code walking the result recursively cannot hang or overflow.
"""
import collections
import pickle
import reprlib
import struct
import types

import numpy as np

from .errors import CheckpointError
from .limits import MAX_DEPTH, MAX_KEY_ITEMS, MAX_OBJECTS

__all__ = ["SafeUnpickler", "BoundedReader", "Fresh", "Refused", "InertObject", "Namespace",
           "inert_class", "check_structure", "short_repr", "generic_globals"]


class Refused(ValueError):
    """The stream does something the reader does not allow (message says what)."""


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 3, 40, 40


def short_repr(value):
    """Bounded-time, bounded-length repr (plain repr of shared structures is exponential)."""
    return _REPR.repr(value)


# ---------------------------------------------------------------- inert records
class Namespace(types.SimpleNamespace):
    """Inert stand-in for ``argparse.Namespace`` (attribute access, no code)."""


class InertObject(dict):
    """Record of an object of a foreign class that must not be imported.

    Subclasses are made per ``module.name`` (and per file) by :func:`inert_class`;
    instances keep constructor ``args``, pickled ``state`` and dict items (a dict
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


def inert_class(module, name, cache):
    """The :class:`InertObject` subclass standing for ``module.name``, one per ``cache``
    (one cache per file read, so no class outlives the file that named it)."""
    key = (module, name)
    if key not in cache:
        cache[key] = type(str(name), (InertObject,), {"inert_module": module, "inert_name": name})
    return cache[key]


# ---------------------------------------------------------------- reading bytes
class BoundedReader:
    """File-like view of a binary file up to byte ``end``: every read that asks for more
    than remains fails BEFORE reading, so a forged length allocates nothing."""

    def __init__(self, fh, path, end):
        self.fh = fh
        self.path = path
        self.pos = fh.tell()
        self.end = int(end)

    def remaining(self):
        return max(self.end - self.pos, 0)

    def read(self, n=-1):
        left = self.remaining()
        n = left if n is None or n < 0 else n
        if n > left:
            raise CheckpointError(self.path, f"file is truncated: a record needs {n:,} bytes, {left:,} left")
        data = self.fh.read(n)
        self.pos += len(data)
        if len(data) != n:
            raise CheckpointError(self.path, f"file is truncated: a record needs {n:,} bytes, {len(data):,} left")
        return data

    def readinto(self, buf):
        data = self.read(len(buf))
        buf[:] = data
        return len(data)

    def readline(self):
        line = self.fh.readline(self.remaining())
        self.pos += len(line)
        return line


# ---------------------------------------------------------------- values the table gives out
class Fresh:
    """Table entry for a DATA value: ``make()`` builds a new one for every lookup, so no
    two files (nor two lookups in one file) ever share it."""

    def __init__(self, make):
        self.make = make


class Marker:
    """A class named only as a type tag (``torch.Tensor``, ``numpy.ndarray``); never called."""

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"<marker {self.name}>"


_SCALARS = (str, bytes, int, float, complex, bool, type(None), np.generic)


def check_plain_key(key):
    """Dict keys and set members: scalars or tuples of them, at most MAX_KEY_ITEMS in all."""
    todo, seen = [key], 0
    while todo:
        item = todo.pop()
        seen += 1
        if seen > MAX_KEY_ITEMS:
            raise Refused(f"refused: a dict key or set member has more than {MAX_KEY_ITEMS} parts")
        if isinstance(item, tuple):
            todo.extend(item)
        elif not isinstance(item, _SCALARS) or (isinstance(item, np.generic) and item.dtype.hasobject):
            raise Refused(f"refused: a dict key or set member is a {type(item).__name__}, not a plain value")
    return key


def _plain_items(items):
    if not isinstance(items, (list, tuple, set, frozenset)):
        raise Refused(f"refused: set built from a {type(items).__name__}")
    for item in items:
        check_plain_key(item)
    return items


def _ordered_dict(items=()):
    """``collections.OrderedDict``: torch pickles it with no arguments, then SETITEMS."""
    if isinstance(items, dict):
        items = list(items.items())
    if not isinstance(items, (list, tuple)) or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in items):
        raise Refused("refused: OrderedDict built from something that is not a list of pairs")
    return collections.OrderedDict((check_plain_key(k), v) for k, v in items)


def _set(items=()):
    return set(_plain_items(items))


def _frozenset(items=()):
    return frozenset(_plain_items(items))


def _bytearray(data=b"", encoding=None):
    """Protocol 2 pickles bytearray(bytes) or bytearray(latin1 text, 'latin-1'); never bytearray(N),
    which would allocate N bytes that the file does not hold."""
    if isinstance(data, str) and encoding in ("latin1", "latin-1"):
        return bytearray(data.encode("latin1"))
    if isinstance(data, (bytes, bytearray)) and encoding is None:
        return bytearray(data)
    raise Refused("refused: bytearray built from something other than bytes")


def _complex(real=0.0, imag=0.0):
    if not all(isinstance(v, (int, float)) for v in (real, imag)):
        raise Refused("refused: complex built from non-numbers")
    return complex(real, imag)


def _slice(*args):
    if len(args) > 3 or not all(v is None or isinstance(v, int) for v in args):
        raise Refused("refused: slice built from non-integers")
    return slice(*args)


def _codecs_encode(text, encoding="utf-8", errors="strict"):
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise Refused("refused: _codecs.encode only rebuilds latin1 byte strings")
    return text.encode("latin1")


def _copyreg_reconstructor(cls, base, state):
    if not (isinstance(cls, type) and issubclass(cls, (InertObject, Namespace))):
        raise Refused("refused: copyreg._reconstructor of a non-inert class")
    return cls.__new__(cls)


# numpy: arrays pickle as _reconstruct(ndarray, (0,), b'b') + BUILD(state); dtypes as
# dtype(code, align, copy) + BUILD(state); scalars as scalar(dtype, raw bytes).
_NUMPY_KINDS = "biufcSU"  # numbers and fixed-size strings; no objects, no structured records


def _np_dtype(code, align=False, copy=True):
    """A NEW dtype (copy forced: numpy hands out process-wide singletons otherwise, and the
    BUILD that follows in every numpy pickle would then rewrite the global float32)."""
    if not isinstance(code, str):
        raise Refused("refused: numpy dtype named by something other than a type code")
    dt = np.dtype(code, bool(align), True)
    if dt.kind not in _NUMPY_KINDS or dt.fields is not None or dt.subdtype is not None:
        raise Refused(f"refused: numpy dtype {code!r} (only plain numbers and strings)")
    return dt


def _np_reconstruct(subtype, shape, dtype_code):
    if not (isinstance(subtype, Marker) and subtype.name == "numpy.ndarray"):
        raise Refused("refused: numpy _reconstruct of a non-ndarray type")
    if not isinstance(shape, tuple) or int(np.prod(shape)) != 0:
        raise Refused("refused: numpy _reconstruct with a non-empty shape (numpy pickles (0,))")
    return np.ndarray(shape, dtype=np.uint8)


def _np_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise Refused("refused: numpy scalar without a dtype and exactly its bytes")
    return np.frombuffer(data, dtype=dtype)[0].copy()


def _set_array_state(arr, state):
    """numpy's ``ndarray.__setstate__`` after checking the data is exactly the declared size."""
    if not (isinstance(state, tuple) and len(state) == 5):
        raise Refused("refused: numpy array state is not (version, shape, dtype, fortran, data)")
    _, shape, dtype, _, raw = state
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise Refused("refused: numpy array of Python objects")
    if not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise Refused(f"refused: numpy array shape {short_repr(shape)}")
    if not isinstance(raw, (bytes, bytearray)) or len(raw) != int(np.prod(shape, dtype=object)) * dtype.itemsize:
        raise Refused(f"refused: numpy array data does not match its shape {shape} and dtype {dtype}")
    arr.__setstate__(state)


def _set_dtype_state(dt, state):
    """Only the state of a plain (non-structured) dtype: byte order, no fields, no subarray."""
    ok = (isinstance(state, tuple) and len(state) in (8, 9) and state[1] in ("<", ">", "|", "=")
          and state[2] is None and state[3] is None and state[4] is None
          and all(isinstance(v, int) for v in state[5:8]) and (len(state) == 8 or state[8] is None))
    if not ok:
        raise Refused("refused: numpy dtype state of a structured or unusual dtype")
    dt.__setstate__(state)


def _set_attributes(obj, state):
    """Namespace attributes / OrderedDict's ``_metadata``: plain names only."""
    if not isinstance(state, dict):
        raise Refused(f"refused: BUILD state of a {type(obj).__name__} is a {type(state).__name__}")
    for key in state:
        if not isinstance(key, str) or not key.isidentifier() or key.startswith("__"):
            raise Refused(f"refused: attribute name {short_repr(key)}")
    vars(obj).update(state)


def generic_globals():
    """Allow-list entries every reader shares: builtins, collections, argparse, numpy."""
    table = {
        ("collections", "OrderedDict"): _ordered_dict,
        ("argparse", "Namespace"): Namespace,
        ("_codecs", "encode"): _codecs_encode,
        ("copyreg", "_reconstructor"): _copyreg_reconstructor,
        ("numpy", "dtype"): _np_dtype,
        ("numpy", "ndarray"): Fresh(lambda: Marker("numpy.ndarray")),
    }
    for mod in ("builtins", "__builtin__"):
        for name, func in (("set", _set), ("frozenset", _frozenset), ("slice", _slice),
                           ("complex", _complex), ("bytearray", _bytearray)):
            table[(mod, name)] = func
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        table[(mod, "_reconstruct")] = _np_reconstruct
        table[(mod, "scalar")] = _np_scalar
    return table


# ---------------------------------------------------------------- the machine
class _Dispatch(dict):
    def __missing__(self, code):
        raise pickle.UnpicklingError(f"invalid opcode 0x{code:02x}")


def _op(code):
    return code[0]


class SafeUnpickler(pickle._Unpickler):
    """Pure-Python unpickler with the policy of the module docstring.

    ``reader``: a :class:`BoundedReader`. ``GLOBALS``: (module, name) -> callable or
    :class:`Fresh`; subclasses set it, and may override :meth:`extra_global`.
    ``persistent_load``: callable (pid -> object) or None (persistent ids refused).
    """

    GLOBALS = generic_globals()
    dispatch = _Dispatch(pickle._Unpickler.dispatch)

    def __init__(self, reader, path, persistent_load=None):
        super().__init__(reader, encoding="utf-8", fix_imports=False)
        self._path = path
        self._persistent = persistent_load
        self._own = {}  # id -> object this stream built (the only ones it may mutate)
        self._given = {}  # id -> (name, object) for everything find_class handed out

    # -- names
    def extra_global(self, module, name):
        return None

    def find_class(self, module, name):
        entry = self.GLOBALS.get((module, name))
        if entry is None:
            entry = self.extra_global(module, name)
        if entry is None:
            raise CheckpointError(self._path, f"refused to unpickle '{module}.{name}': this file would run "
                                  "code; only tensors and plain containers are allowed")
        value = entry.make() if isinstance(entry, Fresh) else entry
        self._given[id(value)] = (f"{module}.{name}", value)
        return value

    def persistent_load(self, pid):
        if self._persistent is None:
            raise CheckpointError(self._path, "unexpected persistent id in a plain pickle")
        return self._persistent(pid)

    # -- ownership
    def _mark_own(self, obj):
        if id(obj) not in self._given:
            self._own[id(obj)] = obj
        return obj

    def _require_own(self, obj, op):
        if id(obj) in self._own:
            return obj
        if id(obj) in self._given:
            name = self._given[id(obj)][0]
            raise Refused(f"refused: {op} would modify '{name}', an allow-listed global shared by the "
                          "whole process (a poisoned file)")
        raise Refused(f"refused: {op} on a {type(obj).__name__} the file did not build")

    def load(self):
        try:
            return super().load()
        except Refused as exc:
            raise CheckpointError(self._path, str(exc))
        except IndexError:
            raise CheckpointError(self._path, "not a valid pickle stream (stack underflow)")

    # -- opcodes that create containers: remember them as the stream's own
    def _creating(original):
        def op(self):
            original(self)
            self._mark_own(self.stack[-1])
        return op

    for _code in (pickle.EMPTY_DICT, pickle.EMPTY_LIST, pickle.EMPTY_SET, pickle.LIST):
        dispatch[_op(_code)] = _creating(pickle._Unpickler.dispatch[_op(_code)])

    def load_dict(self):
        items = self.pop_mark()
        self.append(self._mark_own({check_plain_key(items[i]): items[i + 1] for i in range(0, len(items), 2)}))

    dispatch[_op(pickle.DICT)] = load_dict

    def load_frozenset(self):
        self.append(frozenset(_plain_items(self.pop_mark())))

    dispatch[_op(pickle.FROZENSET)] = load_frozenset

    # -- calls
    def load_reduce(self):
        args = self.stack.pop()
        func = self.stack[-1]
        if id(func) not in self._given or not callable(func) or isinstance(func, Marker):
            raise Refused(f"refused: the file calls a {type(func).__name__} that is not an allow-listed callable")
        if not isinstance(args, tuple):
            raise Refused("refused: call arguments are not a tuple")
        self.stack[-1] = self._mark_own(func(*args))

    dispatch[_op(pickle.REDUCE)] = load_reduce

    def _new_object(self, cls, args):
        if id(cls) not in self._given or not (isinstance(cls, type) and issubclass(cls, (InertObject, Namespace))):
            raise Refused(f"refused: NEWOBJ of {short_repr(cls)} (only inert records)")
        if not isinstance(args, tuple):
            raise Refused("refused: NEWOBJ arguments are not a tuple")
        self.append(self._mark_own(cls.__new__(cls)))

    def load_newobj(self):
        args = self.stack.pop()
        self._new_object(self.stack.pop(), args)

    def load_newobj_ex(self):
        self.stack.pop()  # kwargs: inert records take none
        args = self.stack.pop()
        self._new_object(self.stack.pop(), args)

    dispatch[_op(pickle.NEWOBJ)] = load_newobj
    dispatch[_op(pickle.NEWOBJ_EX)] = load_newobj_ex

    def load_refused_instantiation(self):
        raise Refused("refused: protocol 0/1 class instantiation (INST/OBJ)")

    dispatch[_op(pickle.INST)] = load_refused_instantiation
    dispatch[_op(pickle.OBJ)] = load_refused_instantiation

    def load_refused_extension(self):
        # copyreg's extension codes resolve through a process-wide cache that would keep
        # (and hand to the next file) whatever the first lookup returned; torch never uses them
        raise Refused("refused: copyreg extension codes (EXT1/EXT2/EXT4)")

    for _code in (pickle.EXT1, pickle.EXT2, pickle.EXT4):
        dispatch[_op(_code)] = load_refused_extension

    # -- mutations: only of the stream's own objects
    def load_build(self):
        state = self.stack.pop()
        inst = self._require_own(self.stack[-1], "BUILD")
        if isinstance(inst, InertObject):
            inst.state = state
        elif isinstance(inst, (Namespace, collections.OrderedDict)):
            _set_attributes(inst, state)
        elif isinstance(inst, np.ndarray):
            _set_array_state(inst, state)
        elif isinstance(inst, np.dtype):
            _set_dtype_state(inst, state)
        else:
            raise Refused(f"refused: BUILD on a {type(inst).__name__}")

    def _target(self, kinds, op):
        target = self._require_own(self.stack[-1], op)
        if not isinstance(target, kinds):
            raise Refused(f"refused: {op} on a {type(target).__name__}")
        return target

    def load_setitem(self):
        value = self.stack.pop()
        key = check_plain_key(self.stack.pop())
        self._target(dict, "SETITEM")[key] = value

    def load_setitems(self):
        items = self.pop_mark()
        target = self._target(dict, "SETITEMS")
        if len(items) % 2:
            raise Refused("refused: SETITEMS with a key and no value")
        for i in range(0, len(items), 2):
            target[check_plain_key(items[i])] = items[i + 1]

    def load_append(self):
        value = self.stack.pop()
        self._target(list, "APPEND").append(value)

    def load_appends(self):
        items = self.pop_mark()
        self._target(list, "APPENDS").extend(items)

    def load_additems(self):
        items = _plain_items(self.pop_mark())
        self._target(set, "ADDITEMS").update(items)

    dispatch[_op(pickle.BUILD)] = load_build
    dispatch[_op(pickle.SETITEM)] = load_setitem
    dispatch[_op(pickle.SETITEMS)] = load_setitems
    dispatch[_op(pickle.APPEND)] = load_append
    dispatch[_op(pickle.APPENDS)] = load_appends
    dispatch[_op(pickle.ADDITEMS)] = load_additems

    # -- sizes: pure Python allocates BYTEARRAY8's declared length before reading
    def load_bytearray8(self):
        (size,) = struct.unpack("<Q", self.read(8))
        self.append(self._mark_own(bytearray(self.read(size))))

    dispatch[_op(pickle.BYTEARRAY8)] = load_bytearray8

    del _creating, _code


# ---------------------------------------------------------------- the result
def _children(x):
    """Objects inside ``x`` that a consumer may walk; None for a leaf."""
    if isinstance(x, dict):
        kids = list(x.values())
        if isinstance(x, InertObject):
            kids += [x.args, x.kwargs, x.state]
        elif hasattr(x, "__dict__"):
            kids += list(vars(x).values())  # OrderedDict._metadata
        return kids
    if isinstance(x, (list, tuple, set, frozenset)):
        return list(x)
    if isinstance(x, Namespace):
        return list(vars(x).values())
    return None


def check_structure(root, path, max_depth=MAX_DEPTH, max_objects=MAX_OBJECTS):
    """Refuse cycles, nesting deeper than ``max_depth`` and more than ``max_objects``
    objects counted once per reference; linear in the distinct containers."""
    size, height = {}, {}  # finished containers: expanded object count, nesting levels below
    kids = _children(root)
    if kids is None:
        return
    stack, on_path = [[root, kids, 0]], {id(root)}
    while stack:
        frame = stack[-1]
        node, kids, i = frame
        if i < len(kids):
            frame[2] += 1
            child = kids[i]
            child_kids = _children(child)
            if child_kids is None or id(child) in size:
                continue
            if id(child) in on_path:
                raise CheckpointError(path, "refused: the file holds a self-referencing structure")
            if len(stack) >= max_depth:
                raise CheckpointError(path, f"refused: containers nest deeper than {max_depth} levels")
            on_path.add(id(child))
            stack.append([child, child_kids, 0])
            continue
        stack.pop()
        on_path.discard(id(node))
        total = 1 + sum(size.get(id(k), 1) for k in kids)
        if total > max_objects:
            raise CheckpointError(path, f"refused: shared references expand to more than {max_objects:,} "
                                  "objects (a reference bomb)")
        levels = 1 + max((height.get(id(k), 0) for k in kids), default=0)
        if levels > max_depth:
            raise CheckpointError(path, f"refused: containers nest deeper than {max_depth} levels")
        size[id(node)], height[id(node)] = total, levels
