"""One interface for every stylization method (in the spirit of mindcv's ``create_model``).

    from modify_ms.stylizers import create_stylizer, list_stylizers
    s = create_stylizer("modify", "runs/quickstart")      # a stage-1 run or one of its checkpoints
    out = s.stylize(x)                                    # x [B, 3, P, P] float32 in [-1, 1] -> same shape
    ks = s.variants(x, 4)                                 # multi-modal methods only: [B, K, 3, P, P]

The registry lives in the library because MODIFY is registered too, and modify_ms never
imports baselines_ms. Other methods are plugins: every entry point of the group
``modify_ms.stylizers`` (a zero-argument ``register()`` that calls ``register_stylizer``;
setup.py declares the baselines') is loaded once, on the first ``create_stylizer`` or
``list_stylizers``. A plugin that fails to load costs its own names only: one line on stderr
naming it, and its reason in the error of a name that is then unknown. Importing
``baselines_ms`` still registers the baselines (without an installed package, for example).
Factories import MindSpore lazily: listing names costs nothing.

MODIFY is registered for its three stage-2 modes, each wrapping ``train.stage2.Stage2Model``:
``modify`` (test-time: per photo, back to stage 1 and ``test_time_steps`` updates on it alone,
then the output, exactly as ``tools/stylize.py --mode test-time``), ``modify-online`` (one update
per photo in the order given, state kept across calls) and ``modify-offline`` (E' from a
stage-2 checkpoint, or trained at creation over ``data`` for ``offline_steps``).

Every stylizer has ``multimodal`` (whether ``variants`` exists) and ``size`` (the square
input/output frame P in pixels, what the photos are aligned to).
"""
from __future__ import annotations

import dataclasses
import inspect
import os
import sys
import zlib
from typing import Callable, Dict, Iterable, List, Optional

import numpy as np

from .config import ConfigError, apply_overrides, from_dict, load_config, to_dict


class StylizerError(ConfigError):
    """An unknown method name or an option a method does not take (a user error: one line)."""


@dataclasses.dataclass(frozen=True)
class _Entry:
    factory: Callable
    summary: str


_REGISTRY: Dict[str, _Entry] = {}
PLUGIN_GROUP = "modify_ms.stylizers"
_plugins = {"loaded": False, "errors": {}}  # errors: {entry point name: one-line reason}


def register_stylizer(name: str, factory: Callable, summary: str = "") -> None:
    """Register ``factory(run_or_checkpoint, **opts)`` under ``name`` (re-registering replaces it)."""
    _REGISTRY[name] = _Entry(factory, summary)


def _entry_points():
    """The installed entry points of PLUGIN_GROUP (importlib.metadata's two APIs: 3.10+ and 3.9)."""
    from importlib import metadata

    found = metadata.entry_points()
    if hasattr(found, "select"):
        return list(found.select(group=PLUGIN_GROUP))
    return list(found.get(PLUGIN_GROUP, ()))


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:300]


def load_plugins(warn: Callable[[str], None] = None) -> Dict[str, str]:
    """Run every plugin's ``register()`` once; returns {plugin: reason} of those that failed
    (each also reported by ``warn``, default one line on stderr)."""
    if _plugins["loaded"]:
        return dict(_plugins["errors"])
    _plugins["loaded"] = True  # first: a plugin that lists the stylizers does not recurse
    warn = warn or (lambda line: print(line, file=sys.stderr))
    try:
        points = _entry_points()
    except Exception as exc:  # noqa: BLE001  (broken package metadata: MODIFY still works)
        points = []
        _plugins["errors"]["<entry points>"] = _one_line(exc)
        warn(f"warning: stylizer plugins not loaded ({_one_line(exc)})")
    for point in points:
        try:
            point.load()()
        except Exception as exc:  # noqa: BLE001  (a broken plugin costs its own names, not the registry)
            reason = _one_line(exc)
            _plugins["errors"][point.name] = reason
            warn(f"warning: stylizer plugin {point.name!r} ({point.value}) failed to load: {reason}")
    return dict(_plugins["errors"])


def list_stylizers() -> List[str]:
    """The registered method names (MODIFY's and the plugins'), sorted."""
    load_plugins()
    return sorted(_REGISTRY)


def describe_stylizers() -> Dict[str, str]:
    return {name: _REGISTRY[name].summary for name in list_stylizers()}


def _factory(name: str) -> Callable:
    load_plugins()
    entry = _REGISTRY.get(name)
    if entry is None:
        failed = "".join(f"; plugin {p!r} failed to load ({r})" for p, r in sorted(_plugins["errors"].items()))
        raise StylizerError(f"unknown stylizer {name!r}: registered are {', '.join(list_stylizers())}{failed} "
                            f"(other methods are found through the {PLUGIN_GROUP!r} entry points of installed "
                            f"packages: pip install -e .)")
    return entry.factory


def is_multimodal(name: str) -> Optional[bool]:
    """Whether ``name``'s stylizers have ``variants``, as its factory declares it (its class's
    ``multimodal``); None when the factory does not say (known once a stylizer is built)."""
    value = getattr(_factory(name), "multimodal", None)
    return value if isinstance(value, bool) else None


def stylizer_options(name: str) -> Optional[List[str]]:
    """The keyword options ``create_stylizer(name, run, **opts)`` takes (sorted), or None when its
    factory takes any (``**kwargs`` without a ``__signature__`` saying which)."""
    params = list(inspect.signature(_factory(name)).parameters.values())[1:]  # after run_or_checkpoint
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return sorted(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


def create_stylizer(name: str, run_or_checkpoint: str, **opts):
    """The stylizer ``name`` loaded from ``run_or_checkpoint``; StylizerError (one line) for an
    unknown name (listing the registered ones) or an option that method does not take."""
    factory = _factory(name)
    accepted = stylizer_options(name)
    unknown = sorted(set(opts) - set(accepted)) if accepted is not None else []
    if unknown:
        raise StylizerError(f"{name} takes no option {', '.join(map(repr, unknown))} "
                            f"(it takes: {', '.join(accepted) or 'none'})")
    return factory(run_or_checkpoint, **opts)


def input_size(stylizer) -> int:
    """The square frame P a stylizer's photos are aligned to: its ``size``, else its run
    config's ``model.loss_size`` (the baselines built on MODIFY's model sections)."""
    size = getattr(stylizer, "size", None)
    if size is None:
        size = getattr(getattr(getattr(stylizer, "cfg", None), "model", None), "loss_size", None)
    if not isinstance(size, int) or size < 1:
        raise StylizerError(f"{type(stylizer).__name__} says no input size (give it a 'size' attribute: P of [B, 3, P, P])")
    return size


# --------------------------------------------------------------------- shared helpers
def load_run(path: str, config_cls, what: str = "run"):
    """(config, checkpoint path) of a run folder (its latest checkpoint) or a checkpoint inside one
    (``<run>/checkpoints/step_*.ckpt`` beside ``<run>/config.yaml``)."""
    from .train.checks import latest_checkpoint
    from .utils.checkpoint import CheckpointFileError

    if not path:
        raise CheckpointFileError(f"{what} is empty: give a run directory or one of its checkpoints")
    if os.path.isdir(path):
        ckpt = latest_checkpoint(os.path.join(path, "checkpoints"))
        if ckpt is None:
            raise CheckpointFileError(f"{path}: run directory has no checkpoints/latest.json")
    elif os.path.isfile(path):
        ckpt = path
    else:
        raise CheckpointFileError(f"{path}: no such run directory or checkpoint")
    cfg_path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(ckpt))), "config.yaml")
    if not os.path.isfile(cfg_path):
        raise CheckpointFileError(f"{path}: not a {what} or a checkpoint inside one "
                                  f"(expected <run>/checkpoints/step_*.ckpt and <run>/config.yaml)")
    return load_config(cfg_path, config_cls), ckpt


def content_key(x: np.ndarray) -> int:
    """A per-photo seed key from its pixels, for callers that give no names: results depend on
    the photo alone, not on its position in a batch."""
    return zlib.crc32(np.ascontiguousarray(x, np.float32).tobytes())


def photo_names(x: np.ndarray, names: Optional[Iterable[str]]) -> List[str]:
    """One name per photo of ``x``: the given ones, or ``photo-<content key>``."""
    if names is not None:
        names = list(names)
        if len(names) != len(x):
            raise StylizerError(f"{len(names)} names for {len(x)} photos")
        return names
    return [f"photo-{content_key(xi):08x}" for xi in x]


def check_photos(x) -> np.ndarray:
    x = np.asarray(x, np.float32)
    if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] != x.shape[3]:
        raise StylizerError(f"photos must be [B, 3, P, P] float32 in [-1, 1], got shape {list(x.shape)}")
    return x


# --------------------------------------------------------------------- MODIFY
def stage2_config(run_or_checkpoint, mode, config=None, overrides=()):
    """A Stage2Config: ``config`` (a YAML path) or the paper's defaults, then ``overrides``
    (``key=value`` as ``--set``), with stage1 and mode given here."""
    from .train.config import Stage2Config

    items = list(overrides) + [f"stage1={run_or_checkpoint}", f"mode={mode}"]
    if config:
        return load_config(config, Stage2Config, items)
    return from_dict(Stage2Config, apply_overrides(to_dict(Stage2Config()), items), "stage-2 defaults")


class ModifyStylizer:
    """MODIFY stage 2 behind the common interface (module doc). ``names`` (optional, one per photo)
    seed each photo as tools/stylize.py does (by its file name); without them a photo is seeded by
    its pixels. ``noise_seed``: the generator noise of the rendered outputs (fixed: deterministic)."""

    multimodal = True

    def __init__(self, run_or_checkpoint, mode="test-time", config=None, overrides=(), work_dir="",
                 stage2_checkpoint="", log=None):
        from .train import stage2
        from .utils.paths import default_work_dir

        self.log = log or (lambda _msg: None)
        self.cfg = stage2_config(run_or_checkpoint, mode, config, overrides)
        _, stage1_ckpt = stage2.load_stage1(self.cfg.stage1)
        work_dir = work_dir or self.cfg.run.out_dir or default_work_dir(
            "stylizer", f"{os.path.realpath(stage1_ckpt)}|{mode}")
        self.model = stage2.Stage2Model(self.cfg, work_dir, self.log)
        self.z_dim = self.model.nets.remap_net.z_dim
        self.size = self.model.stage1_cfg.model.loss_size
        if mode == "offline":
            self._prepare_offline(stage2_checkpoint, work_dir)
        elif stage2_checkpoint:
            raise StylizerError(f"stage2_checkpoint is for modify-offline, not mode {mode!r}")

    def _prepare_offline(self, checkpoint, work_dir):
        """E' from a stage-2 checkpoint, or trained now over cfg.data as tools/stylize.py --mode offline."""
        from .data.dataset import build_dataset
        from .train import stage2
        from .train.common import RunCheckpoints, epoch_batches

        if checkpoint:
            self.model.resume(checkpoint)
            return
        cfg = self.cfg
        pipeline = build_dataset(stage2.source_data_config(cfg.data, self.model.stage1_cfg), log=self.log)
        batches = (b[0] for b in epoch_batches(pipeline, cfg.offline_steps))
        ckpts = RunCheckpoints(work_dir, cfg.run.keep_checkpoints, subdir="stylize_checkpoints")
        stage2.offline(self.model, batches, cfg.offline_steps, 0, ckpts, cfg.run.ckpt_every, self.log)

    def _each(self, x, names, render):
        """Drive the mode over the photos one at a time; ``render(name, xi)`` gives each output from
        the model state right after that photo's own update(s). So each call of stylize or variants
        adapts anew: test-time repeats the same updates (same result), online makes one more."""
        from .train import stage2

        x = check_photos(x)
        arrivals = [(name, x[i:i + 1]) for i, name in enumerate(photo_names(x, names))]
        outputs = []

        def emit(name, xi):
            outputs.append(render(name, xi))
            return name

        mode = self.cfg.mode
        if mode == "test-time":
            stage2.test_time(self.model, arrivals, emit, self.cfg.test_time_steps, self.log,
                             log_every=self.cfg.run.log_every)
        elif mode == "online":
            stage2.online(self.model, arrivals, emit, log=self.log, log_every=self.cfg.run.log_every)
        else:
            for name, xi in arrivals:
                emit(name, xi)
        return np.stack(outputs)

    def stylize(self, x, names=None, noise_seed=0):
        """x [B, 3, P, P] -> D(E'(x)) [B, 3, P, P] (P: the stage-1 run's model.loss_size)."""
        return self._each(x, names, lambda _n, xi: self.model.stylize(xi, noise_seed)[0])

    def variants(self, x, k, names=None, seed=None, noise_seed=0):
        """[B, K, 3, P, P]: K stylizations of each photo from K style samples z, drawn per photo
        from (seed, photo key) as tools/stylize.py --variants draws them (seed: run.seed)."""
        from .train.stage2 import photo_key

        seed = self.cfg.run.seed if seed is None else seed

        def render(name, xi):
            zs = np.random.default_rng([seed, photo_key(name)]).standard_normal((k, self.z_dim))
            return self.model.variants(xi, zs, noise_seed)

        return self._each(x, names, render)


_MODIFY_OPTIONS = [p for name, p in inspect.signature(ModifyStylizer.__init__).parameters.items()
                   if name not in ("self", "mode")]


def _modify_factory(mode):
    def factory(run_or_checkpoint, **opts):
        return ModifyStylizer(run_or_checkpoint, mode=mode, **opts)
    # what stylizer_options reports: ModifyStylizer's options but mode (it is in the name)
    factory.__signature__ = inspect.Signature(_MODIFY_OPTIONS)
    factory.multimodal = ModifyStylizer.multimodal
    return factory


MODIFY_MODES = {"modify": "test-time", "modify-online": "online", "modify-offline": "offline"}  # name -> stage-2 mode
register_stylizer("modify", _modify_factory("test-time"),
                  "MODIFY, test-time mode: per photo, test_time_steps updates of E' from stage 1 (the default)")
register_stylizer("modify-online", _modify_factory("online"),
                  "MODIFY, online mode: one update of E' per photo, in order, state kept")
register_stylizer("modify-offline", _modify_factory("offline"),
                  "MODIFY, offline mode: E' from stage2_checkpoint, or trained over data for offline_steps")
