"""Read NVlabs stylegan2-ada-pytorch network pickles without running their code.

A network pickle (``network-snapshot-*.pkl``, ``ffhq.pkl`` ...) is a plain
``pickle.dump`` of ``{'G': ..., 'D': ..., 'G_ema': ..., 'augment_pipe': ...,
'training_set_kwargs': ...}`` whose networks are ``torch_utils.persistence``
classes: each pickles as ``_reconstruct_persistent_obj(meta)`` where ``meta``
carries the module SOURCE CODE (``module_src``), the ``class_name`` and the
module ``state`` (its ``__dict__``: ``_parameters``, ``_buffers``,
``_modules`` ...). Unpickling normally imports that source; here it is never
executed: ``_reconstruct_persistent_obj`` and every class of ``torch_utils.*``,
``training.*``, ``dnnlib.*`` and ``torch.nn.modules.*`` resolve to inert
records (:class:`~weights_convert.torch_pickle.InertObject`) that keep class
name and state, and each tensor storage (pickled as
``torch.storage._load_from_bytes(legacy torch.save bytes)``) goes through the
restricted legacy reader of :mod:`weights_convert.torch_pickle`. The inert
classes are made per file, the storages of all in-pickle streams share one
decoded-size budget, and the same byte string loaded twice is decoded once
(a few bytes of references must not trigger gigabytes of decoding).

Public API
----------
``load_nvlabs_pkl(path) -> dict``
    ``{'G_ema': state_dict, 'G': state_dict, 'D': state_dict, 'meta': {...}}``
    for the networks present (at least one). A state_dict is
    ``{'mapping.fc0.weight': np.ndarray, ...}`` in ``torch.nn.Module.state_dict()``
    order (own parameters, own persistent buffers, then children). ``meta``
    holds what can be recovered without code: ``z_dim, c_dim, w_dim,
    img_resolution, img_channels, num_ws`` (of G_ema, else G), and per network
    ``networks[name] = {class_name, init_args, init_kwargs, attrs}``, plus
    ``other_keys`` (e.g. ``augment_pipe``, ``training_set_kwargs``).
``module_state_dict(record, prefix='') -> dict``
    The state_dict of one inert module record.
"""
import os

import numpy as np

from .errors import CheckpointError
from .limits import ByteBudget
from .safe_unpickle import BoundedReader, InertObject, Namespace, check_structure, inert_class
from .torch_pickle import (RestrictedUnpickler, _check_no_object_arrays, _wrap_errors, detect_format,
                           load_legacy_bytes, resolve_tensors)

__all__ = ["load_nvlabs_pkl", "module_state_dict", "NETWORK_KEYS"]

NETWORK_KEYS = ("G_ema", "G", "D")
INERT_MODULE_PREFIXES = ("torch_utils", "training", "dnnlib", "torch.nn.modules")
META_ATTRS = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "num_ws")


def _reconstruct_persistent_obj(meta, classes):
    """Stand-in for torch_utils.persistence._reconstruct_persistent_obj: records only."""
    if not isinstance(meta, dict) or not isinstance(meta.get("class_name"), str):
        raise ValueError("persistent object without a class name")
    record = inert_class("<persistent>", meta["class_name"], classes)()
    record.state = meta.get("state")
    src = meta.get("module_src")
    record.module_src_chars = len(src) if isinstance(src, str) else 0  # kept as a count, never run
    return record


class NvlabsUnpickler(RestrictedUnpickler):
    """RestrictedUnpickler plus inert NVlabs classes and in-pickle storages.

    ``budget``: the file's :class:`~weights_convert.limits.ByteBudget`, shared by
    every in-pickle storage stream.
    """

    def __init__(self, reader, path, budget):
        super().__init__(reader, path)
        self._budget = budget
        self._classes = {}  # (module, name) -> inert class, for this file only
        self._streams = {}  # id(bytes) -> (bytes, decoded stream)

    def _load_from_bytes(self, data):
        if id(data) not in self._streams:
            self._streams[id(data)] = (data, load_legacy_bytes(data, self._path, self._budget))
        return self._streams[id(data)][1]

    def _reconstruct(self, meta):
        return _reconstruct_persistent_obj(meta, self._classes)

    def extra_global(self, module, name):
        if (module, name) == ("torch_utils.persistence", "_reconstruct_persistent_obj"):
            return self._reconstruct
        if (module, name) in (("torch.storage", "_load_from_bytes"),
                              ("torch.serialization", "_load_from_bytes")):
            return self._load_from_bytes
        if any(module == p or module.startswith(p + ".") for p in INERT_MODULE_PREFIXES):
            return inert_class(module, name, self._classes)
        return None


def module_state_dict(record, prefix=""):
    """``torch.nn.Module.state_dict()`` of an inert module record, as numpy arrays."""
    state = record.state if isinstance(record, InertObject) else None
    if not isinstance(state, dict):
        raise ValueError(f"'{prefix or 'network'}' is not a module record")
    out = {}
    for name, value in (state.get("_parameters") or {}).items():
        if value is not None:
            out[prefix + name] = value
    skip = state.get("_non_persistent_buffers_set") or set()
    for name, value in (state.get("_buffers") or {}).items():
        if value is not None and name not in skip:
            out[prefix + name] = value
    for name, child in (state.get("_modules") or {}).items():
        if child is not None:
            out.update(module_state_dict(child, f"{prefix}{name}."))
    bad = [k for k, v in out.items() if not isinstance(v, np.ndarray)]
    if bad:
        raise ValueError(f"non-tensor entries in a state_dict: {', '.join(bad[:5])}")
    return out


def _plain(value, depth=0):
    """JSON-friendly copy of recorded init args (EasyDict -> dict, arrays -> lists)."""
    if depth > 20:
        return None
    if isinstance(value, InertObject):
        return {str(k): _plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, dict):
        return {str(k): _plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, depth + 1) for v in value]
    if isinstance(value, Namespace):
        return _plain(vars(value), depth + 1)
    if isinstance(value, np.ndarray):
        return value.tolist() if value.size <= 64 else f"array{list(value.shape)}"
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


def _network_meta(record):
    state = record.state
    attrs = {k: _plain(v) for k, v in state.items()
             if not k.startswith("_") and k != "training" and isinstance(v, (int, float, str, bool, np.generic))}
    return {
        "class_name": record.inert_name,
        "init_args": _plain(state.get("_init_args", ())),
        "init_kwargs": _plain(state.get("_init_kwargs", {})),
        "attrs": attrs,
    }


def load_nvlabs_pkl(path):
    """Read an NVlabs network pickle; see the module docstring."""
    path = os.fspath(path)

    def load():
        fmt = detect_format(path)
        if fmt != "pickle":
            raise CheckpointError(path, f"a torch.save file ({fmt} format), not an NVlabs network pickle")
        budget = ByteBudget(path)
        with open(path, "rb") as fh:
            reader = BoundedReader(fh, path, os.fstat(fh.fileno()).st_size)
            obj = NvlabsUnpickler(reader, path, budget).load()
        check_structure(obj, path)
        obj = resolve_tensors(obj, path, ByteBudget(path, budget.limit))
        _check_no_object_arrays(obj, path)
        if not isinstance(obj, dict):
            raise CheckpointError(path, f"top level is {type(obj).__name__}, not a dict of networks")
        present = [k for k in NETWORK_KEYS if isinstance(obj.get(k), InertObject)]
        if not present:
            raise CheckpointError(path, f"no 'G_ema', 'G' or 'D' network (keys: {', '.join(map(str, obj))})")
        result = {}
        networks = {}
        for key in present:
            try:
                result[key] = module_state_dict(obj[key])
            except ValueError as exc:
                raise CheckpointError(path, f"network '{key}': {exc}")
            networks[key] = _network_meta(obj[key])
        meta = {"networks": networks, "other_keys": [str(k) for k in obj if k not in present]}
        main = networks.get("G_ema") or networks.get("G")
        if main is not None:
            for attr in META_ATTRS:
                value = main["attrs"].get(attr, main["init_kwargs"].get(attr) if isinstance(
                    main["init_kwargs"], dict) else None)
                if value is not None:
                    meta[attr] = value
        result["meta"] = meta
        return result

    return _wrap_errors(path, load)
