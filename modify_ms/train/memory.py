"""Recomputation (activation checkpointing) of the generator's and discriminator's blocks: ``run.recompute``.

``apply_recompute`` marks every StyledConv / ToRGB (generator synthesis) and ResBlock
(discriminator) with MindSpore's ``Cell.recompute()``: in the backward pass the operators
inside a marked block are run again from the block's input instead of keeping their
outputs from the forward pass (the block's own output is kept, MindSpore's default).
The results are the same (same operators on the same inputs; tests/test_recompute.py),
only the memory and the time change.

Measured on this CPU (docs/memory.md): MindSpore 2.10 GRAPH_MODE on CPU does recompute
(the step takes longer) but its dataflow runtime runs the recomputed operators as soon
as their inputs exist, i.e. right after the forward pass, so the peak does not fall there;
the option is meant for devices whose runtime orders the recomputation into the backward
pass (Ascend/GPU graph kernels).

Not marked: the pSp encoder's IR-SE units. They hold BatchNorm in training mode, whose
running-statistics update is a side effect that a recomputation would repeat (MindSpore:
"if the computation involves ... global variables, the equivalence is not guaranteed").
"""
import mindspore as ms

from ..models.stylegan2 import ResBlock, StyledConv, ToRGB

RECOMPUTED_BLOCKS = (StyledConv, ToRGB, ResBlock)  # generator synthesis, discriminator residual blocks


def recomputed_blocks(cell):
    """The (name, sub-cell) of ``cell`` that ``apply_recompute`` marks, outermost only (MindSpore:
    a cell under a marked parent must not be marked again)."""
    found = []
    for name, sub in cell.cells_and_names():
        if isinstance(sub, RECOMPUTED_BLOCKS) and not any(name.startswith(parent + ".") for parent, _ in found):
            found.append((name, sub))
    return found


def is_recomputed(cell):
    """Whether ``cell`` (or a parent of it, through it) was marked by ``Cell.recompute()``."""
    return bool(getattr(cell, "_has_config_recompute", False))


def apply_recompute(cells, enabled):
    """Mark the blocks of each cell in ``cells`` (networks, or a cell holding them: ModifyNets,
    JoJoNets) for recomputation when ``enabled``; returns the number of blocks marked (0 when
    off). Call before the step cells first run: a graph keeps what it was compiled with.

    With the compile cache on, the cache folder gets a ``-recompute`` suffix: MindSpore's cache
    tells graphs apart by their Python sources, not by these marks, so a run with the other
    setting must not load this one's graphs."""
    if not enabled:
        return 0
    marked = 0
    for cell in cells if isinstance(cells, (list, tuple)) else (cells,):
        for _name, block in recomputed_blocks(cell):
            if not is_recomputed(block):  # a shared network (JoJoNets' generator) is marked once
                block.recompute()
                marked += 1
    cache = ms.get_context("compile_cache_path")
    if ms.get_context("enable_compile_cache") and cache and not cache.rstrip("/").endswith("-recompute"):
        ms.set_context(compile_cache_path=cache.rstrip("/") + "-recompute")
    return marked
