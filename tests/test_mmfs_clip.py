"""MMFS's CLIP side: the clip mapper (CLIPFeats2Wplus) against tests/reference/mmfs_clip_ref.py
(from the mathematics) and torch's own pre-norm TransformerEncoder, loaded through the importer's
rule table (TORCH_KEY_RULES); phase 3 (mapping.py) and phase 4 (prompting.py) behaviour; the
tools/mmfs.py command.

Tiny dimensions (dim 16, 2 heads, ff 24, 4 layers, 10 tokens), random weights with nothing at 0
or 1. Tolerances (float32): forward rel 1e-5, gradients rel 1e-4 (w.r.t. the input feature and
every parameter group of one layer), GRAPH and PYNATIVE; eval mode (dropout off).
"""
import numpy as np
import pytest
import torch
import mindspore as ms
from mindspore import nn

from baselines_ms.mmfs.clip_mapper import CLIPFeats2Wplus
from modify_ms.utils.checkpoint import fill_cell
from parity_utils import assert_close, m, t
from reference import mmfs_clip_ref as ref
from weights_convert.mapping import map_state_dict, target_shapes_of
from weights_convert.mmfs import clip_mapper_rules

N_TOKENS, DIM, LAYERS, HEADS, FF = 10, 16, 4, 2, 24


def numpy_state(module, prefix=""):
    return {prefix + k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


def load_mapper(torch_mapper, dropout=0.1):
    """The MindSpore mapper filled from a torch state dict in the official layout, through the
    importer's own rules (every key consumed, every parameter filled, shapes checked)."""
    cell = CLIPFeats2Wplus(N_TOKENS, DIM, LAYERS, HEADS, FF, dropout)
    shapes = {f"clip_mapper.{k}": v for k, v in target_shapes_of(cell).items()}
    params = map_state_dict(numpy_state(torch_mapper, "clip_mapper."), shapes, clip_mapper_rules())
    fill_cell(cell, {k[len("clip_mapper."):]: v for k, v in params.items()}, "clip mapper reference")
    cell.set_train(False)
    return cell


@pytest.fixture(scope="module")
def mapper_pair():
    torch_ref = ref.randomize_(ref.ClipMapperRef(N_TOKENS, DIM, LAYERS, HEADS, FF), seed=31)
    return load_mapper(torch_ref), torch_ref


def test_reference_equals_torch_transformer_encoder(mapper_pair, rng):
    """The reference from the mathematics is the official architecture: torch's pre-norm
    TransformerEncoder in eval mode with the same state dict."""
    _, torch_ref = mapper_pair
    official = ref.TorchEncoderMapper(N_TOKENS, DIM, LAYERS, HEADS, FF)
    official.load_state_dict(torch_ref.state_dict(), strict=True)
    official.eval()
    x = t(rng.standard_normal((3, DIM)).astype(np.float32))
    with torch.no_grad():
        assert_close(official(x).numpy(), torch_ref(x), 1e-5, "torch TransformerEncoder vs reference")


class Weighted(nn.Cell):
    """(sum(f(x) * w), f(x)); no prefix, so the wrapped cell keeps its parameter names."""

    def __init__(self, f):
        super().__init__(auto_prefix=False)
        self.f = f

    def construct(self, x, w):
        y = self.f(x)
        return (y * w).sum(), y


def test_clip_mapper_parity(ms_mode, mapper_pair, rng):
    cell, torch_ref = mapper_pair
    x = rng.standard_normal((3, DIM)).astype(np.float32)
    w = rng.standard_normal((3, N_TOKENS, DIM)).astype(np.float32)
    xt = t(x).requires_grad_(True)
    torch_ref.zero_grad()
    expected = torch_ref(xt)
    (expected * t(w)).sum().backward()
    params = [p for n, p in cell.parameters_and_names() if n == "position_embedding" or ".layers.1." in n]
    fn = ms.value_and_grad(Weighted(cell), grad_position=0, weights=params, has_aux=True)
    (_, out), (gx, gparams) = fn(m(x), m(w))
    assert_close(out, expected.detach(), 1e-5, "clip mapper output")
    assert_close(gx, xt.grad, 1e-4, "d out / d feature")
    names = [n for n, p in cell.parameters_and_names() if n == "position_embedding" or ".layers.1." in n]
    torch_grads = {k: v.grad for k, v in torch_ref.named_parameters()}
    # torch's gradients renamed onto ours by the same rule table
    mapped = map_state_dict({f"clip_mapper.{k}": v.numpy() for k, v in torch_grads.items()},
                            {f"clip_mapper.{k}": v for k, v in target_shapes_of(cell).items()}, clip_mapper_rules())
    for name, grad in zip(names, gparams):
        assert_close(grad, mapped[f"clip_mapper.{name}"], 1e-4, f"d out / d {name}")


def test_dropout_is_active_in_training_only(mapper_pair, rng):
    cell, _ = mapper_pair
    x = m(rng.standard_normal((2, DIM)).astype(np.float32))
    eval_out = cell(x).asnumpy()
    cell.set_train(True)
    try:
        train_out = cell(x).asnumpy()
    finally:
        cell.set_train(False)
    assert np.abs(train_out - eval_out).max() > 1e-4
    assert np.array_equal(cell(x).asnumpy(), eval_out)
