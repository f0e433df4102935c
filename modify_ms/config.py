"""Typed configuration: YAML files mapped onto nested dataclasses.

Every config section is a frozen dataclass. ``load_config`` reads a YAML file,
applies ``--set a.b=value`` overrides, and checks every key and type, so a
misspelt key or a wrong type is a one-line ``ConfigError`` naming the file and
the dotted key. Nothing here is global: builders receive their own section.

Hostile files end in one line too: a file over ``MAX_CONFIG_BYTES``, binary or not
UTF-8 is refused before parsing; YAML aliases are checked on the node graph before
anything is constructed, so a recursive alias or an "alias bomb" (a few lines that
expand to billions of values) fails fast, without the memory; numbers must be finite.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import os
import typing
from typing import Any, Dict, Iterable, Optional, Type, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override that does not match its schema."""


MAX_CONFIG_BYTES = 1 << 20  # configs are a few KB; anything larger is not one
MAX_YAML_VALUES = 100_000  # values after alias expansion (a real config has a few hundred)


def _short(value: Any, limit: int = 60) -> str:
    """repr of a value for an error line: one line, at most ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _check_expansion(root: "yaml.Node", limit: int = MAX_YAML_VALUES) -> None:
    """Walk the composed YAML graph as construction would expand it: a node inside itself is a
    recursive alias, more than ``limit`` values an alias bomb. Iterative, and stops at the limit,
    so neither the stack nor the memory grows with the expansion."""
    count = 0
    on_path = set()  # ids of the nodes between the root and the current one
    stack = [(root, False)]
    while stack:
        node, leaving = stack.pop()
        if leaving:
            on_path.discard(id(node))
            continue
        if id(node) in on_path:
            raise ConfigError("recursive YAML alias (a node contains itself)")
        count += 1
        if count > limit:
            raise ConfigError(f"YAML aliases expand to more than {limit} values (an alias bomb?)")
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [item for pair in node.value for item in pair]
        else:
            continue
        on_path.add(id(node))
        stack.append((node, True))
        stack.extend((child, False) for child in reversed(children))


def safe_yaml(text: str) -> Any:
    """``yaml.safe_load`` of one document, with the alias checks above; ConfigError on any problem."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ConfigError(f"not valid YAML{line} ({problem})") from None
    except RecursionError:
        raise ConfigError("YAML nested too deeply") from None
    finally:
        loader.dispose()


def read_config_text(path: str) -> str:
    """The text of a config file: a regular file, at most MAX_CONFIG_BYTES, UTF-8, not binary."""
    if not os.path.exists(path):
        raise ConfigError(f"{path}: config file not found")
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: not a regular file, not a config")
    size = os.path.getsize(path)
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: {size} bytes, too large for a config file (limit {MAX_CONFIG_BYTES})")
    with open(path, "rb") as fh:
        raw = fh.read(MAX_CONFIG_BYTES + 1)
    if b"\x00" in raw:
        raise ConfigError(f"{path}: binary file (NUL bytes), not a YAML config")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (invalid byte at offset {exc.start}); "
                          f"save the config as UTF-8") from None


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (recursively), returning the typed value."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin is typing.Union:  # Optional[X] and unions
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {_short(value)}")
    if typing.get_origin(tp) is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: must be one of {list(args)}, got {_short(value)}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping for section {tp.__name__}, got {_short(value)}")
        return _build(tp, value, where)
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {_short(value)}")
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
            return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item_tp = args[0] if args else Any
        items = [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if (origin is tuple or tp is tuple) else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {_short(value)}")
        vt = args[1] if args else Any
        return {str(k): _coerce(v, vt, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {_short(value)}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {_short(value)}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:
                number = math.inf
            if not math.isfinite(number):
                raise ConfigError(f"{where}: expected a finite number, got {_short(value)}")
            return number
        raise ConfigError(f"{where}: expected a number, got {_short(value)}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {_short(value)}")
    raise ConfigError(f"{where}: unsupported type {_type_name(tp)}")


def _build(cls: Type[T], data: Dict[str, Any], where: str) -> T:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    odd = [k for k in data if not isinstance(k, str)]
    if odd:
        prefix = f"{where}: " if where else ""
        raise ConfigError(f"{prefix}key {_short(odd[0])} is not a name (section {cls.__name__})")
    unknown = sorted(set(data) - set(fields))
    if unknown:
        known = ", ".join(sorted(fields))
        prefix = f"{where}." if where else ""
        raise ConfigError(f"unknown key '{prefix}{unknown[0]}' (section {cls.__name__} has: {known})")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(value, hints[name], f"{where}.{name}" if where else name)
    try:
        obj = cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        raise ConfigError(f"{where or cls.__name__}: {exc}") from None
    validate = getattr(obj, "validate", None)
    if validate is not None:
        try:
            validate()
        except ValueError as exc:
            raise ConfigError(f"{where + ': ' if where else ''}{exc}") from None
    return obj


def parse_override(text: str) -> tuple:
    """Split ``a.b.c=value`` into (['a','b','c'], yaml-parsed value)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like section.key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override '{text}' has an empty key")
    try:
        value = safe_yaml(raw) if raw.strip() else ""
    except ConfigError as exc:
        if "alias" in str(exc) or "nested" in str(exc):
            raise ConfigError(f"override {_short(text)}: {exc}") from None
        value = raw  # not YAML: the text itself (a path with odd characters, say)
    return key.split("."), value


def apply_overrides(data: Dict[str, Any], overrides: Iterable[str]) -> Dict[str, Any]:
    data = copy.deepcopy(data)  # the caller's data stay as read
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override '{text}': '{part}' is not a section")
            node = child
        node[path[-1]] = value
    return data


def from_dict(cls: Type[T], data: Optional[Dict[str, Any]], source: str = "<dict>") -> T:
    try:
        return _build(cls, data or {}, "")
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def load_config(path: str, cls: Type[T], overrides: Iterable[str] = ()) -> T:
    """Load ``path`` as ``cls``; every problem is a one-line ConfigError naming the file."""
    text = read_config_text(path)
    try:
        data = safe_yaml(text)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    try:
        data = apply_overrides(data, overrides)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return from_dict(cls, data, path)


def to_dict(cfg: Any) -> Dict[str, Any]:
    return dataclasses.asdict(cfg)


def save_resolved(cfg: Any, path: str) -> None:
    """Write the resolved config (after overrides) as YAML, atomically (temporary file, rename)."""
    from .data.imageio import write_bytes_atomic

    write_bytes_atomic(path, yaml.safe_dump(to_dict(cfg), sort_keys=False).encode("utf-8"))
