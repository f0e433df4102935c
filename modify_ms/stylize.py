"""The stylize job (tools/stylize.py): inputs -> output plan -> stage-2 mode -> files.

Order of work, so that a bad request writes nothing: the request is validated, the
inputs are listed, every output path is planned and checked against the inputs
(``utils.paths``), a single photo is decoded and aligned, and only then are the
networks built. Work files (metrics, stage-2 checkpoints, the compile cache) go to a
work folder (``--work-dir``, by default a per-user cache folder), never beside an output.
A photo that cannot be read is skipped with its reason and the run goes on.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

from .data.builtin import SINGLE_PHOTOS
from .data.imageio import InputError
from .utils.paths import (OutputPathError, check_output_dir, check_output_file, default_work_dir, is_inside,
                          unique_stems)


@dataclasses.dataclass(frozen=True)
class StylizeRequest:
    """What the user asked for (tools/stylize.py's options), validated by ``validate``."""

    input: str
    output: str = ""  # one photo -> exactly this file (its extension picks the format)
    output_dir: str = ""  # one file per input, <stem><ext>
    ext: str = ".png"  # format of the files in output_dir
    align: str = "auto"
    variants: int = 0  # K stylizations from K style samples: <stem>_k{i}<ext> and a grid <stem>_variants<ext>
    interpolate: int = 0  # frames between two style samples (a row of the grid)
    watch: bool = False
    poll: float = 2.0
    resume: bool = False
    work_dir: str = ""
    allow_output_in_input: bool = False

    def validate(self):
        if self.variants < 0:
            raise InputError("--variants", f"must be >= 0, got {self.variants}")
        if self.interpolate < 0 or self.interpolate == 1:
            raise InputError("--interpolate", f"must be 0 or >= 2 frames, got {self.interpolate}")
        if not (math.isfinite(self.poll) and self.poll > 0):
            raise InputError("--poll", f"must be a positive number of seconds, got {self.poll}")
        if self.output and self.output_dir:
            raise InputError("--output", "give --output (one photo) or --output-dir, not both")
        if not self.output and not self.output_dir:
            raise InputError("--output", "give --output for one photo or --output-dir for several")
        if not self.ext.startswith("."):
            object.__setattr__(self, "ext", "." + self.ext)


# --------------------------------------------------------------------- inputs
def is_single(path: str) -> bool:
    return path in SINGLE_PHOTOS or (os.path.isfile(path) and not path.lower().endswith((".txt", ".zip")))


def list_inputs(path: str):
    """(names, source or None, single): what ``--input`` names, without decoding anything."""
    from .data.sources import open_source

    if not (path.startswith("builtin:") or os.path.exists(path)):
        raise InputError(path, "no such photo, folder or list")
    if is_single(path):
        return [path], None, True
    source = open_source(path)
    if not len(source):
        raise InputError(path, "holds no images")
    return list(source.names), source, False


def input_files(names: List[str], source) -> List[str]:
    """The inputs that are files on disk (what an output must never replace)."""
    if source is not None and hasattr(source, "archive"):
        return [source.archive]
    return [n for n in names if not n.startswith("builtin:")]


def _stem(name: str) -> str:
    return os.path.splitext(os.path.basename(name.replace("builtin:", "")))[0]


@dataclasses.dataclass(frozen=True)
class OutputSet:
    main: str
    variants: Tuple[str, ...] = ()
    grid: str = ""

    def all(self):
        return (self.main,) + self.variants + ((self.grid,) if self.grid else ())


class OutputPlan:
    """Output files per input name, checked before anything is written.

    One photo with ``--output``: exactly that path, and variants beside it named after it
    (``out_k0.png``); otherwise ``<output_dir>/<stem><ext>`` with stems made unique
    predictably (``a.jpg``, ``a.png`` -> ``a``, ``a_png``)."""

    def __init__(self, req: StylizeRequest, inputs: List[str], input_dirs: List[str]):
        self.req, self.inputs, self.input_dirs = req, inputs, input_dirs
        self.sets: Dict[str, OutputSet] = {}
        self.renamed: List[Tuple[str, str]] = []
        self._taken: set = set()
        if req.output_dir:
            check_output_dir(req.output_dir, input_dirs, req.allow_output_in_input)

    def _make(self, base: str, ext: str) -> OutputSet:
        k = self.req.variants
        variants = tuple(f"{base}_k{i}{ext}" for i in range(k))
        grid = f"{base}_variants{ext}" if (k or self.req.interpolate) else ""
        return OutputSet(base + ext, variants, grid)

    def add(self, names: List[str]) -> None:
        """Plan ``names`` (in order, after any planned before); raises OutputPathError naming
        the first path that would replace an input or be written twice."""
        if self.req.output:
            base, ext = os.path.splitext(self.req.output)
            planned = {names[0]: self._make(base, ext)}
        else:
            planned = {}
            for name in names:  # one at a time: a photo's variant names are taken before the next photo's
                (stem,), renamed = unique_stems([name], stem_of=_stem, taken=self._taken)
                self.renamed += renamed
                planned[name] = outs = self._make(os.path.join(self.req.output_dir, stem), self.req.ext)
                self._taken.update(os.path.splitext(os.path.basename(p))[0].lower() for p in outs.all())
        seen = {p for outs in self.sets.values() for p in outs.all()}
        for name, outs in planned.items():
            for path in outs.all():
                check_output_file(path, self.inputs)
                if path in seen:
                    raise OutputPathError(f"{path}: planned twice (rename the input {name} or drop --variants)")
                seen.add(path)
            self.sets[name] = outs

    def __getitem__(self, name: str) -> OutputSet:
        return self.sets[name]


def work_folder(req: StylizeRequest, stage1_ckpt: str, mode: str) -> str:
    target = os.path.abspath(req.output or req.output_dir)
    return req.work_dir or default_work_dir("stylize", f"{os.path.realpath(stage1_ckpt)}|{mode}|{target}")


# --------------------------------------------------------------------- photos
class Skips:
    """Photos that could not be used, with their reasons (logged as they happen, summarised at the end)."""

    def __init__(self, log):
        self.items: List[Tuple[str, str]] = []
        self.log = log

    def add(self, name: str, reason: str):
        self.items.append((name, reason))
        self.log(f"skipped {name}: {reason}")

    def summary(self) -> str:
        return f"{len(self.items)} photos skipped: " + "; ".join(f"{n} ({r})" for n, r in self.items[:10]) + \
            (" ..." if len(self.items) > 10 else "")


def read_photo(name: str, source, index: Optional[int], size: int, align: str) -> np.ndarray:
    """One photo -> float32 [1, 3, size, size]; InputError naming it when unusable."""
    from .data.align import Aligner
    from .data.builtin import single_photo
    from .data.prepare import load_photo, to_model_array

    if name in SINGLE_PHOTOS:
        return to_model_array(Aligner(size, align)(single_photo(name), name).image)[None]
    if source is None:
        return load_photo(name, size, align=align)[None]
    return to_model_array(Aligner(size, align, no_face="center")(source.read(index), name).image)[None]


def photos(names: List[str], source, size: int, align: str, skips: Skips) -> Iterator[Tuple[str, np.ndarray]]:
    for i, name in enumerate(names):
        try:
            yield name, read_photo(name, source, i, size, align)
        except InputError as exc:
            skips.add(name, exc.reason)


def watch(folder: str, size: int, align: str, poll: float, skips: Skips, exclude=()) -> Iterator:
    """Photos as they appear in ``folder`` (by arrival), until interrupted. A file that fails
    to read is retried once it changes (it may still have been copying)."""
    from .data.sources import scan_folder

    done, failed = set(), {}
    while True:
        names, _ = scan_folder(folder)
        new = [n for n in names if n not in done and not any(is_inside(n, e) for e in exclude)]
        new.sort(key=lambda n: (os.path.getmtime(n), n))
        for name in new:
            stamp = (os.path.getsize(name), os.path.getmtime(name))
            if failed.get(name) == stamp:
                continue
            try:
                x = read_photo(name, None, None, size, align)
            except InputError as exc:
                failed[name] = stamp
                skips.add(name, exc.reason)
                continue
            done.add(name)
            yield name, x
        time.sleep(poll)


# --------------------------------------------------------------------- writing
class OutputWriter:
    """Writes a photo's stylization, its K variants and the grid, right after that photo's update(s)."""

    def __init__(self, model, plan: OutputPlan, req: StylizeRequest, seed: int):
        self.model, self.plan, self.req, self.seed = model, plan, req, seed
        self.written: List[str] = []

    def __call__(self, name: str, x: np.ndarray) -> str:
        from .data.imageio import save_image_atomic
        from .data.prepare import from_model_array
        from .train.stage2 import photo_key
        from .utils.images import make_grid

        outs = self.plan[name]
        save_image_atomic(outs.main, from_model_array(self.model.stylize(x)[0]))
        self.written.append(outs.main)
        if outs.grid:
            rng = np.random.default_rng([self.seed, photo_key(name)])  # per photo: independent of order
            z_dim = self.model.nets.remap_net.z_dim
            rows = [x]
            if self.req.variants:
                variants = self.model.variants(x, rng.standard_normal((self.req.variants, z_dim)))
                rows.append(variants)
                for path, image in zip(outs.variants, variants):  # what evaluate.py's diversity reads
                    save_image_atomic(path, from_model_array(image))
                    self.written.append(path)
            if self.req.interpolate:
                z0, z1 = rng.standard_normal((2, z_dim))
                ts = np.linspace(0, 1, self.req.interpolate)[:, None]
                rows.append(self.model.variants(x, (1 - ts) * z0 + ts * z1))
            save_image_atomic(outs.grid, make_grid(rows))
            self.written.append(outs.grid)
        return outs.main


# --------------------------------------------------------------------- the job
def plan_outputs(req: StylizeRequest, mode: str, names, source, single, log) -> OutputPlan:
    """Every output path of the run, checked against the inputs before anything is built."""
    if not single and req.output:
        raise InputError(req.input, "several photos: give --output-dir instead of --output")
    if req.watch and (mode != "online" or not os.path.isdir(req.input)):
        raise InputError(req.input, "--watch needs --mode online and a folder")
    plan = OutputPlan(req, input_files(names, source), [req.input] if os.path.isdir(req.input) else [])
    if not req.watch:  # a watched folder's photos are planned as they arrive
        plan.add(names)
    for name, stem in plan.renamed:
        log(f"note: {name} is written as {stem}{req.ext} (another input has the same stem)")
    return plan


def graph_settings(cfg) -> str:
    """The config values compiled into stage 2's graphs as constants (loss weights, adversarial
    kind and penalty, optimizer, precision, recomputation), as canonical JSON. MindSpore's compile
    cache does not see a changed constant: a cache shared across these values served the graph of
    the first (measured: `--set weights.lpips=0` ignored on the second command)."""
    from .config import to_dict

    run = {k: v for k, v in to_dict(cfg.run).items() if k not in ("out_dir", "compile_cache_dir", "seed")}
    return json.dumps({"weights": to_dict(cfg.weights), "adversarial": to_dict(cfg.adversarial),
                       "optim": to_dict(cfg.optim), "run": run}, sort_keys=True)


def with_compile_cache(cfg, req: StylizeRequest, stage1_ckpt: str):
    """The config with its compile-cache folder set: in --work-dir, or a shared per-user one.
    MindSpore numbers cached graphs in compilation order, so commands share a cache only when
    they compile the same graph sequence (same model, mode, batch and variant counts) with the
    same constants in it (graph_settings)."""
    if cfg.run.compile_cache_dir:
        return cfg
    settings = hashlib.sha256(graph_settings(cfg).encode("utf-8")).hexdigest()[:16]
    key = f"{os.path.realpath(stage1_ckpt)}|{cfg.mode}|{cfg.data.batch_size}|{req.variants}|{req.interpolate}|{settings}"
    folder = os.path.join(req.work_dir, "compile_cache", settings) if req.work_dir else \
        default_work_dir("compile", key)
    return dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, compile_cache_dir=folder))


def run_mode(cfg, req, model, writer, arrivals, work_dir, skips, log):
    """Drive the configured stage-2 mode; every finished photo goes through ``writer``."""
    from .train import stage2
    from .train.common import MetricsLog, RunCheckpoints, epoch_batches, progress, worker_pipeline

    main = model.world.main  # offline under msrun: rank 0 alone writes metrics, checkpoints and outputs
    metrics = MetricsLog(work_dir, name="stylize_metrics.jsonl") if main else None
    ckpts = RunCheckpoints(work_dir, cfg.run.keep_checkpoints, subdir="stylize_checkpoints")
    resume = ckpts.latest() if req.resume else None
    try:
        if cfg.mode == "test-time":
            bar = (lambda total, desc: progress(total, 0, desc)) if is_single(req.input) else None
            stage2.test_time(model, arrivals, writer, cfg.test_time_steps, log, metrics, bar, cfg.run.log_every)
        elif cfg.mode == "online":
            state = model.resume(resume) if resume else None
            stage2.online(model, arrivals, writer, ckpts, cfg.run.ckpt_every, state, log, metrics,
                          cfg.online_updates, cfg.run.log_every)
        else:
            from .data.dataset import build_dataset

            start = int(model.resume(resume)["step"]) if resume else 0
            data_cfg = stage2.source_data_config(cfg.data, model.stage1_cfg)
            # a resumed run restarts the data order at epoch 0; under msrun, this worker's shard
            pipeline, _ = worker_pipeline(build_dataset(data_cfg, log=log), data_cfg, model.world, 0)
            batches = (b[0] for b in epoch_batches(pipeline, cfg.offline_steps - start))
            bar = progress(cfg.offline_steps, start, "stage 2 offline", enabled=main)
            stage2.offline(model, batches, cfg.offline_steps, start, ckpts, cfg.run.ckpt_every, log, metrics, bar,
                           cfg.run.log_every)
            bar.close()
            for name, x in arrivals if main else ():
                writer(name, x)
    finally:
        if metrics is not None:
            metrics.close()


def run_stylize(cfg, req: StylizeRequest, log: Callable[[str], None] = print) -> Tuple[List[str], Skips]:
    """Stylize ``req.input`` with the stage-2 config ``cfg``; returns (written files, skips)."""
    req.validate()
    names, source, single = list_inputs(req.input)
    if req.output_dir and source is not None and os.path.isdir(req.input):
        # with --allow-output-in-input, earlier outputs under the output folder are not inputs
        keep = [i for i, n in enumerate(names) if not is_inside(n, req.output_dir)]
        source = source.subset(keep)
        names = list(source.names)
    plan = plan_outputs(req, cfg.mode, names, source, single, log)
    if req.watch and cfg.online_updates:
        raise InputError(req.input, f"--watch is an endless stream: online_updates={cfg.online_updates} "
                                    f"replays a finite set (leave it 0 with --watch)")
    from .train import stage2  # MindSpore is imported from here on: everything above fails fast

    stage1_cfg, stage1_ckpt = stage2.load_stage1(cfg.stage1)
    size = stage1_cfg.model.loss_size
    skips = Skips(log)
    work_dir = work_folder(req, stage1_ckpt, cfg.mode)
    if single:  # decoded and aligned before anything is built: a bad photo writes nothing
        arrivals = iter([(names[0], read_photo(names[0], None, None, size, req.align))])
    elif req.watch:
        def planned(stream):
            for name, x in stream:
                plan.add([name])
                yield name, x
        exclude = [os.path.abspath(req.output_dir), work_dir]  # outputs are never read back as inputs
        arrivals = planned(watch(req.input, size, req.align, req.poll, skips, exclude))
    else:
        arrivals = photos(names, source, size, req.align, skips)
    cfg = with_compile_cache(cfg, req, stage1_ckpt)
    model = stage2.Stage2Model(cfg, work_dir, log)
    writer = OutputWriter(model, plan, req, cfg.run.seed)
    run_mode(cfg, req, model, writer, arrivals, work_dir, skips, log)
    if skips.items:
        log(skips.summary())
    if not writer.written and model.world.main:  # (the other msrun workers write nothing)
        raise InputError(req.input, "no photo could be stylized" + (f" ({skips.summary()})" if skips.items else ""))
    return writer.written, skips
