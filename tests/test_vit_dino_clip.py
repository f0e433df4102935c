"""DINO ViT, CLIP's towers, their preprocessing and MMFS's three losses on them: parity with
tests/reference/vit_ref.py (GRAPH and PYNATIVE, forward and gradients w.r.t. the images), tiny
configurations of the real architectures (width 32, 2 blocks, 8-px patches on 32-px images),
random weights everywhere (vit_ref.randomize), loaded through the importers' own rule tables.

Tolerances (float32): forward rel 1e-5 (ViTs, CLIP), 1e-4 (losses, whose values are small
differences); gradients rel 1e-4 (2e-4 for the losses).
"""
import numpy as np
import pytest
import torch
import mindspore as ms
from mindspore import nn

from modify_ms.losses.clip_losses import DirectionalClipLoss, TokenProjectionLoss, clip_direction, projection_basis
from modify_ms.losses.structure import DinoStructureLoss, cosine_self_similarity
from modify_ms.models.clip import CLIP, ClipConfig
from modify_ms.models.dino import DinoConfig, DinoInput, dino_vit
from modify_ms.models.vit import Block, bicubic_matrix
from modify_ms.nn.resample import bilinear_matrix, short_side_size
from modify_ms.utils.checkpoint import fill_cell
from parity_utils import assert_close, m, t
from reference import vit_ref
from weights_convert.clip import clip_rules
from weights_convert.dino import DINO_RULES, vit_block_rules, DINO_BLOCK_NAMES
from weights_convert.mapping import map_state_dict, target_shapes_of

DINO_CFG = DinoConfig(image_size=32, patch_size=8, width=32, layers=2, heads=4)
CLIP_CFG = ClipConfig(embed_dim=16, image_resolution=32, vision_layers=2, vision_width=32, vision_patch_size=8,
                      context_length=8, vocab_size=60, transformer_width=32, transformer_heads=4,
                      transformer_layers=2, vision_heads=4)
ODD_SIZE = (40, 48)  # a 5 x 6 patch grid: DINO's positional interpolation of the trained 4 x 4


def numpy_state(module):
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


def load_dino(ref, input_size=None):
    cell = dino_vit(DINO_CFG, input_size=input_size)
    fill_cell(cell, map_state_dict(numpy_state(ref), target_shapes_of(cell), DINO_RULES), "dino reference")
    return cell


class Weighted(nn.Cell):
    """(sum(f(x) * w), f(x)): a scalar whose gradient w.r.t. x checks every output, and the output
    itself as an auxiliary value, so one compiled graph gives both."""

    def __init__(self, f):
        super().__init__()
        self.f = f

    def construct(self, x, w):
        y = self.f(x)
        return (y * w).sum(), y


def check_parity(cell, ref_fn, x, rel=1e-5, grad_rel=1e-4, what="output", rng=None):
    rng = rng or np.random.default_rng(0)
    xt = t(x).requires_grad_(True)
    expected = ref_fn(xt)
    w = rng.standard_normal(expected.shape).astype(np.float32)
    (expected * t(w)).sum().backward()
    grad, (out,) = ms.grad(Weighted(cell), grad_position=0, has_aux=True)(m(x), m(w))
    assert_close(out, expected.detach(), rel, what)
    assert_close(grad, xt.grad, grad_rel, f"d {what} / d input")


# ---------------------------------------------------------------- the pieces
def test_resize_matrices_match_torch_interpolate(rng):
    x = rng.standard_normal((1, 2, 37, 23)).astype(np.float32)
    for size in ((16, 11), (50, 31), (37, 23)):
        for antialias in (True, False):
            r, c = bilinear_matrix(37, size[0], antialias), bilinear_matrix(23, size[1], antialias)
            ours = np.einsum("ih,bchw,jw->bcij", r, x, c)
            theirs = vit_ref.resize(t(x), size, antialias).numpy()
            assert_close(ours, theirs, 1e-5, f"resize to {size}, antialias={antialias}")
    assert short_side_size((512, 512), 224, 480) == (224, 224)
    assert short_side_size((512, 1536), 224, 480) == (160, 480)  # long side capped, aspect kept
    assert short_side_size((300, 200), 224, None) == (336, 224)


def test_bicubic_matrix_matches_torch_scale_factor(rng):
    grid = rng.standard_normal((1, 3, 4, 4)).astype(np.float32)
    for rows, cols in ((5, 6), (3, 7), (8, 8)):
        theirs = torch.nn.functional.interpolate(t(grid), scale_factor=((rows + 0.1) / 4, (cols + 0.1) / 4),
                                                 mode="bicubic").numpy()
        ours = np.einsum("ih,bchw,jw->bcij", bicubic_matrix(4, (rows + 0.1) / 4), grid,
                         bicubic_matrix(4, (cols + 0.1) / 4))
        assert_close(ours, theirs, 1e-5, f"bicubic 4x4 -> {rows}x{cols}")


@pytest.fixture(scope="module")
def block_pair():
    ref = vit_ref.randomize(vit_ref.DinoBlock(32, 4), seed=3)
    cell = Block(32, 4, act="gelu", eps=1e-6)
    rules = vit_block_rules(r"blocks\.(\d+)", "blocks.{}", DINO_BLOCK_NAMES)
    state = {f"blocks.0.{k}": v for k, v in numpy_state(ref).items()}
    params = map_state_dict(state, {f"blocks.0.{k}": v for k, v in target_shapes_of(cell).items()}, rules)
    fill_cell(cell, {k[len("blocks.0."):]: v for k, v in params.items()}, "block reference")
    return cell, ref


def test_vit_block_parity(ms_mode, block_pair, rng):
    cell, ref = block_pair
    check_parity(cell, ref, rng.standard_normal((2, 9, 32)).astype(np.float32), what="ViT block", rng=rng)


@pytest.fixture(scope="module")
def dino_pair():
    ref = vit_ref.randomize(vit_ref.DinoViT(32, 8, 32, 2, 4), seed=5)
    return load_dino(ref, ODD_SIZE), ref


def test_dino_vit_parity(ms_mode, dino_pair, rng):
    """At 40 x 48 (positional interpolation); the trained-grid path is the CLIP tower's."""
    cell, ref = dino_pair
    x = rng.standard_normal((2, 3) + ODD_SIZE).astype(np.float32)
    check_parity(cell, ref, x, what=f"DINO ViT at {ODD_SIZE}", rng=rng)


@pytest.fixture(scope="module")
def clip_pair():
    ref = vit_ref.randomize(vit_ref.CLIPRef(**{k: getattr(CLIP_CFG, k) for k in CLIP_CFG.__dataclass_fields__}),
                            seed=7)
    cell = CLIP(CLIP_CFG)
    state = numpy_state(ref)
    fill_cell(cell, map_state_dict(state, target_shapes_of(cell), clip_rules(CLIP_CFG)), "clip reference")
    return cell, ref


def test_clip_image_tower_parity(ms_mode, clip_pair, rng):
    cell, ref = clip_pair
    x = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)
    check_parity(cell.visual, ref.encode_image, x, what="CLIP encode_image", rng=rng)


class TextObjective(nn.Cell):
    def __init__(self, text):
        super().__init__()
        self.text = text

    def construct(self, ids, w):
        y = self.text(ids)
        return (y * w).sum(), y


def test_clip_text_tower_parity(ms_mode, clip_pair, rng):
    """Forward, and gradients w.r.t. the embeddings and a block's packed projection (ids are integers)."""
    cell, ref = clip_pair
    ids = np.zeros((3, 8), np.int32)
    ids[0, :4] = [58, 5, 17, 59]  # SOT, two tokens, EOT (the largest id) then padding
    ids[1, :8] = [58, 1, 2, 3, 4, 5, 6, 59]  # a full context
    ids[2, :2] = [58, 59]  # the empty text
    ref.zero_grad()
    expected = ref.encode_text(torch.from_numpy(ids.astype(np.int64)))
    w = rng.standard_normal(expected.shape).astype(np.float32)
    (expected * t(w)).sum().backward()
    names = ["positional_embedding", "blocks.1.attn.qkv.weight", "text_projection"]
    params = dict(cell.text.parameters_and_names())
    grads, (out,) = ms.grad(TextObjective(cell.text), grad_position=None, weights=[params[n] for n in names],
                            has_aux=True)(ms.Tensor(ids), m(w))
    assert_close(out, expected.detach(), 1e-5, "CLIP encode_text")
    torch_grads = [ref.positional_embedding.grad, ref.transformer.resblocks[1].attn.in_proj_weight.grad,
                   ref.text_projection.grad]
    for name, g, tg in zip(names, grads, torch_grads):
        assert_close(g, tg, 1e-4, f"d encode_text / d {name}")


# ---------------------------------------------------------------- the losses
def test_structure_loss_parity(ms_mode, dino_pair, rng):
    """Non-square 64 x 80 inputs: resized (short side 32, antialiased) to 32 x 40, a 4 x 5 grid."""
    _, ref = dino_pair
    in_size = (64, 80)
    out = DinoInput(in_size, size=32, max_size=None).out_size
    loss = DinoStructureLoss(load_dino(ref, out), in_size, size=32, max_size=None)
    fake = rng.uniform(-1, 1, (2, 3) + in_size).astype(np.float32)
    real = rng.uniform(-1, 1, (2, 3) + in_size).astype(np.float32)
    ft = t(fake).requires_grad_(True)
    expected = vit_ref.structure_loss(ref, ft, t(real), out, layer=1)
    expected.backward()
    value_and_grad = ms.value_and_grad(loss, grad_position=0)
    value, grad = value_and_grad(m(fake), m(real))
    assert_close(value, expected.detach(), 1e-4, "structure loss")
    assert_close(grad, ft.grad, 2e-4, "d structure loss / d fake")
    same, _ = value_and_grad(m(real), m(real))
    assert float(same.asnumpy()) < 1e-10  # zero on identical images


@pytest.mark.parametrize("prompt", ["text", "image"])
def test_directional_clip_loss_parity(ms_mode, clip_pair, rng, prompt):
    """Text prompt: a fixed direction; image prompt: the source is the batch's mean real embedding."""
    cell, ref = clip_pair
    loss = DirectionalClipLoss(cell.visual, (64, 64), source_from_batch=prompt == "image")
    fake = rng.uniform(-1, 1, (2, 3, 64, 64)).astype(np.float32)
    real = rng.uniform(-1, 1, (2, 3, 64, 64)).astype(np.float32)
    target, source = rng.standard_normal((1, 16)), rng.standard_normal((1, 16))
    target /= np.linalg.norm(target)
    source /= np.linalg.norm(source)
    if prompt == "text":
        target = clip_direction(target, source)
    target = target.astype(np.float32)
    ft = t(fake).requires_grad_(True)
    expected = vit_ref.directional_clip_loss(ref, ft, t(real), t(target), 32,
                                             prompt=t(target) if prompt == "image" else None)
    expected.backward()
    value, grad = ms.value_and_grad(loss, grad_position=0)(m(fake), m(real), m(target))
    assert_close(value, expected.detach(), 1e-5, f"directional CLIP loss ({prompt} prompt)")
    assert_close(grad, ft.grad, 2e-4, f"d directional CLIP loss / d fake ({prompt} prompt)")


def test_clip_direction():
    prompt, source = np.array([[3.0, 4.0]]), np.array([[0.6, -0.8]])
    np.testing.assert_allclose(clip_direction(prompt, source), [[0.0, 1.6]], atol=1e-7)


def test_token_projection_loss_parity(ms_mode, clip_pair, rng):
    """CLIP tokens after block 2 of the tiny tower (MMFS: block 4 of 12); basis from the prompt's SVD."""
    cell, ref = clip_pair
    prompt = rng.uniform(-1, 1, (1, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        prompt_tokens = ref.visual.tokens(vit_ref.clip_input(t(prompt), 32), 2).numpy()
    basis = projection_basis(prompt_tokens)
    assert basis.shape == (32, 16)  # [width, min(width, 16 patch tokens)]
    torch_basis = vit_ref.token_basis(ref, t(prompt), 32, layers=2).numpy()
    assert_close(basis @ basis.T, torch_basis @ torch_basis.T, 1e-5, "projector U U^T")
    loss = TokenProjectionLoss(cell.visual, (64, 64), basis, layers=2)
    fake = rng.uniform(-1, 1, (2, 3, 64, 64)).astype(np.float32)
    ft = t(fake).requires_grad_(True)
    expected = vit_ref.token_projection_loss(ref, ft, t(torch_basis), 32, layers=2)
    expected.backward()
    value_and_grad = ms.value_and_grad(loss, grad_position=0)
    value, grad = value_and_grad(m(fake))
    assert_close(value, expected.detach(), 1e-4, "token projection loss")
    assert_close(grad, ft.grad, 2e-4, "d token projection loss / d fake")
    # the prompt's own tokens lie in its span: (numerically) no loss (batch of 2: the compiled shape)
    own, _ = value_and_grad(m(np.concatenate([prompt, prompt])))
    assert float(own.asnumpy()) < 1e-5


def test_clip_pil_preprocessing():
    """CLIP's PIL transform: short side to 224 (bicubic), centre crop, RGB, CLIP mean/std per channel."""
    from PIL import Image

    from modify_ms.models.clip import CLIP_MEAN, CLIP_STD, clip_preprocess_pil

    flat = clip_preprocess_pil(Image.new("RGB", (300, 200), (10, 128, 250)))
    assert flat.shape == (3, 224, 224) and flat.dtype == np.float32
    expected = (np.array([10, 128, 250]) / 255.0 - np.array(CLIP_MEAN)) / np.array(CLIP_STD)
    np.testing.assert_allclose(flat[:, 100, 100], expected, rtol=1e-5)
    # a left half black, right half white landscape: the centre crop keeps the middle (both halves)
    stripes = np.zeros((200, 400, 3), np.uint8)
    stripes[:, 200:] = 255
    x = clip_preprocess_pil(Image.fromarray(stripes).convert("L"))  # grey input -> RGB
    assert x.shape == (3, 224, 224)
    assert x[0, 112, 10] < -1.5 and x[0, 112, 213] > 1.5  # black left edge, white right edge
    assert abs(int(np.argmax(np.diff(x[0, 112]))) - 111) <= 1  # the edge at the centre of the crop


class SimilarityObjective(nn.Cell):
    def construct(self, x, w):
        return (cosine_self_similarity(x) * w).sum()


def test_self_similarity_gradient_at_batch_one(rng):
    """Batch 1 in GRAPH_MODE (a [1, N, 1] @ [1, 1, N] matmul's gradient does not compile in MindSpore 2.10)."""
    x = rng.standard_normal((1, 7, 5)).astype(np.float32)
    w = rng.standard_normal((1, 7, 7)).astype(np.float32)
    xt = t(x).requires_grad_(True)
    (vit_ref.self_similarity(xt) * t(w)).sum().backward()
    assert_close(ms.grad(SimilarityObjective())(m(x), m(w)), xt.grad, 1e-5, "d self-similarity / d keys")
