"""Explicit broadcasting for activation-sized tensors.

MindSpore 2.10's CPU kernels for a broadcasting binary op (x + b with b [1, C, 1, 1], x + noise
[B, 1, H, W], x * s [B, C, 1, 1]) and their gradients each keep a buffer of about four times the
output for as long as the compiled graph lives, outside the memory pool; the same op on operands
of one shape keeps none (docs/memory.md, "Where MindSpore's memory goes"). ``ops.broadcast_to``
first, then a same-shape op, costs one pooled, freed copy instead.
"""
from mindspore import ops


def expand_as(t, like):
    """``t`` broadcast to ``like``'s shape as a tensor of its own (torch's ``expand_as``, materialised)."""
    return ops.broadcast_to(t, like.shape)
