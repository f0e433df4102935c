"""The one strict mechanism that maps a source state_dict onto MindSpore params.

Every importer describes a checkpoint layout as a list of :class:`Rule` and
calls :func:`map_state_dict`; nothing is matched by position or by "closest
name". The contract, checked all at once and reported in ONE
:class:`~weights_convert.errors.MappingError`:

* every source key matches exactly one rule (or an ``optional`` pattern);
* every target parameter is filled exactly once;
* each value, after its rule's transform, has the target's shape;
* keys consumed without loading (``target=None``) pass the rule's ``check``.

Public API
----------
``Rule(pattern, target, transform=None, check=None)``
    ``pattern``: regex, ``re.fullmatch``-ed against a source key.
    ``target``: ``re`` template expanded with the match (``r"convs.\\1.weight"``),
    or a callable ``match -> str`` (for index arithmetic), or ``None``: the key
    is consumed but not loaded (derived buffers such as blur kernels) and
    ``check(value) -> None | str`` must accept it (a returned string is the
    problem; see :func:`expect_value`).
    ``transform``: ``np.ndarray -> np.ndarray`` (reshape, transpose, ...),
    identity when None.
``map_state_dict(source, target_shapes, rules, optional=(), source_name='file') -> dict``
    ``source``: {key: array}; ``target_shapes``: {param name: shape}. Returns
    {target name: float32 C-contiguous array} in ``target_shapes`` order.
    ``optional``: regexes of source keys that may be present without a rule
    (ignored), e.g. ``r".*num_batches_tracked"``.
``expect_value(expected, atol=0) -> check``
    A ``check`` comparing the value with a known array (shape and values).
``target_shapes_of(cell) -> {name: shape}``
    The parameters of a MindSpore Cell (all, trainable or not).

Writing the converted ``.ckpt`` (+ JSON sidecar), reading it back and loading a cell
strictly are not here: their one home is :mod:`modify_ms.utils.checkpoint`
(``save_arrays``, ``read_arrays``, ``fill_cell``).
"""
import re

import numpy as np

from .errors import MappingError

__all__ = [
    "Rule",
    "map_state_dict",
    "expect_value",
    "target_shapes_of",
]

AMBIGUOUS = "source keys matching several rules"
UNKNOWN_TARGET = "rules naming unknown target params"
FILLED_TWICE = "target params filled twice"
FAILED_CHECKS = "consumed keys failing their check"
BAD_TRANSFORM = "transforms that failed"


class Rule:
    """One line of a mapping table; see the module docstring."""

    __slots__ = ("pattern", "regex", "target", "transform", "check")

    def __init__(self, pattern, target, transform=None, check=None):
        self.pattern = pattern
        self.regex = re.compile(pattern)
        if target is None and check is None:
            raise ValueError(f"Rule {pattern!r}: a consumed-only rule (target=None) needs a check")
        self.target = target
        self.transform = transform
        self.check = check

    def target_name(self, match):
        if callable(self.target):
            return self.target(match)
        return match.expand(self.target)

    def __repr__(self):
        return f"Rule({self.pattern!r} -> {self.target!r})"


def expect_value(expected, atol=0.0):
    """A ``check`` accepting arrays equal to ``expected`` (within ``atol``)."""
    expected = np.asarray(expected)

    def check(value):
        value = np.asarray(value)
        if value.shape != expected.shape:
            return f"shape {tuple(value.shape)}, expected {tuple(expected.shape)}"
        if not np.allclose(value.astype(np.float64), expected, rtol=0, atol=atol + 1e-7):
            return "value differs from the derived constant"
        return None

    return check


def _shape(shape):
    return tuple(int(s) for s in shape)


def map_state_dict(source, target_shapes, rules, optional=(), source_name="file"):
    """Map ``source`` onto ``target_shapes`` with ``rules``; see module docstring."""
    optional_res = [re.compile(p) for p in optional]
    problems = {MappingError.UNUSED: [], MappingError.UNFILLED: [], MappingError.SHAPES: [],
                AMBIGUOUS: [], UNKNOWN_TARGET: [], FILLED_TWICE: [], FAILED_CHECKS: [],
                BAD_TRANSFORM: []}
    filled = {}
    filled_from = {}
    for key, value in source.items():
        hits = [(rule, m) for rule in rules for m in [rule.regex.fullmatch(key)] if m]
        if not hits:
            if not any(r.fullmatch(key) for r in optional_res):
                problems[MappingError.UNUSED].append(key)
            continue
        if len(hits) > 1:
            problems[AMBIGUOUS].append(f"{key} ({', '.join(r.pattern for r, _ in hits)})")
            continue
        rule, match = hits[0]
        if rule.target is None:
            problem = rule.check(value)
            if problem:
                problems[FAILED_CHECKS].append(f"{key}: {problem}")
            continue
        name = rule.target_name(match)
        if name not in target_shapes:
            problems[UNKNOWN_TARGET].append(f"{key} -> {name}")
            continue
        if name in filled_from:
            problems[FILLED_TWICE].append(f"{name} (from {filled_from[name]} and {key})")
            continue
        filled_from[name] = key
        try:
            array = np.asarray(value)
            if rule.transform is not None:
                array = rule.transform(array)
            array = np.ascontiguousarray(array, dtype=np.float32)
        except Exception as exc:  # a transform that cannot apply is a layout mismatch
            problems[BAD_TRANSFORM].append(f"{key}: {type(exc).__name__}: {exc}")
            continue
        if rule.check is not None:
            problem = rule.check(array)
            if problem:
                problems[FAILED_CHECKS].append(f"{key}: {problem}")
                continue
        expected = _shape(target_shapes[name])
        if array.shape != expected:
            problems[MappingError.SHAPES].append(
                f"{key} {tuple(np.shape(value))} -> {name} {array.shape}, expected {expected}")
            continue
        filled[name] = array
    problems[MappingError.UNFILLED] = [n for n in target_shapes if n not in filled_from]
    if any(problems.values()):
        raise MappingError(source_name, problems)
    return {name: filled[name] for name in target_shapes}


# ------------------------------------------------------------------ MindSpore side
def _named_parameters(cell):
    """[(name, Parameter)], refusing parameters whose name is not their path."""
    pairs = list(cell.parameters_and_names())
    wrong = [f"{path} (named {p.name})" for path, p in pairs if p.name != path]
    if wrong:
        raise MappingError(type(cell).__name__, {
            "parameters whose name is not their attribute path (created after their cell "
            "was attached?)": wrong})
    return [(p.name, p) for _, p in pairs]


def target_shapes_of(cell):
    """{parameter name: shape tuple} of a MindSpore Cell, in definition order."""
    return {name: _shape(p.shape) for name, p in _named_parameters(cell)}
