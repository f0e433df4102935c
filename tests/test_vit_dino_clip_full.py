"""Slow: DINO ViT-B/8 and CLIP ViT-B/32 at their real sizes. Files in the exact key AND shape layouts of
``dino_vitbase8_pretrain_pth`` and ``clip_vit_b32_jit_state_dict`` (random weights, CLIP's with the
fp16 dtypes of convert_weights), converted through ``python -m weights_convert`` and run against the
torch references (PYNATIVE: one forward each). Tolerance rel 1e-4 (12 blocks of width 768, float32).

Run with ``python -m pytest -q -n0 -m slow tests/test_vit_dino_clip_full.py``.
"""
import numpy as np
import pytest
import torch
import mindspore as ms

from modify_ms.models.clip import load_clip
from modify_ms.models.clip_tokenizer import tokenize
from modify_ms.models.dino import load_dino
from parity_utils import assert_close, m
from reference import vit_ref
from weights_convert.__main__ import main as convert_main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def manifests():
    from modify_ms.assets import key_manifests

    return key_manifests("baseline")


@pytest.fixture
def pynative():
    ms.set_context(mode=ms.PYNATIVE_MODE)
    yield
    ms.set_context(mode=ms.GRAPH_MODE)


def shapes(state):
    return {k: list(v.shape) for k, v in state.items()}


def test_dino_vitb8_full_size(manifests, tmp_path, pynative, capsys, rng):
    ref = vit_ref.randomize(vit_ref.DinoViT(image_size=224, patch=8, dim=768, depth=12, heads=12), seed=17).eval()
    manifest = manifests["dino_vitbase8_pretrain_pth"]
    assert shapes(ref.state_dict()) == manifest["keys"]
    src, dst = str(tmp_path / "dino_vitbase8_pretrain.pth"), str(tmp_path / "dino.ckpt")
    torch.save(ref.state_dict(), src)
    assert convert_main(["dino", src, dst]) == 0
    assert "heads=12" in capsys.readouterr().out
    for size, check in (((224, 224), "cls_224"), ((224, 160), "cls_224x160")):
        x = rng.standard_normal((1, 3) + size).astype(np.float32)
        with torch.no_grad():
            expected = ref(torch.from_numpy(x))
        out = load_dino(dst, input_size=size)(m(x))
        assert list(out.shape) == manifest["check_shapes"][check]
        assert_close(out, expected, 1e-4, f"DINO ViT-B/8 at {size}")


def test_clip_vitb32_full_size(manifests, tmp_path, pynative, capsys, rng):
    manifest = manifests["clip_vit_b32_jit_state_dict"]
    ref = vit_ref.randomize(vit_ref.CLIPRef(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768,
                                            vision_patch_size=32, context_length=77, vocab_size=49408,
                                            transformer_width=512, transformer_heads=8, transformer_layers=12,
                                            vision_heads=12), seed=19).eval()
    dtypes = manifest["dtype_after_convert_weights"]
    with torch.no_grad():  # the reference runs on the fp16-rounded values the file holds
        for name, p in ref.named_parameters():
            if dtypes.get(name) == "float16":
                p.copy_(p.half().float())
    state = {k: (v.half() if dtypes.get(k) == "float16" else v) for k, v in ref.state_dict().items()}
    state.update(input_resolution=torch.tensor(224), context_length=torch.tensor(77), vocab_size=torch.tensor(49408))
    assert shapes(state) == manifest["keys"]
    src, dst = str(tmp_path / "clip_vit_b32_state.pt"), str(tmp_path / "clip.ckpt")
    torch.save(state, src)
    del state
    assert convert_main(["clip", src, dst]) == 0
    capsys.readouterr()
    cell = load_clip(dst)
    image = rng.standard_normal((1, 3, 224, 224)).astype(np.float32)
    ids = tokenize(["a watercolor painting of a face"])
    with torch.no_grad():
        img, txt = ref(torch.from_numpy(image), torch.from_numpy(ids.astype(np.int64)))
    out_img, out_txt = cell.encode_image(m(image)), cell.encode_text(ms.Tensor(ids))
    assert list(out_img.shape) == manifest["check_shapes"]["encode_image"]
    assert list(out_txt.shape) == manifest["check_shapes"]["encode_text"]
    assert_close(out_img, img, 1e-4, "CLIP ViT-B/32 encode_image")
    assert_close(out_txt, txt, 1e-4, "CLIP ViT-B/32 encode_text")


def test_mmfs_losses_full_size(manifests, rng):
    """GRAPH_MODE: the three losses at MMFS's sizes (512 px inputs resized to 224, 785 DINO tokens,
    the 4th CLIP block's 49 tokens), value and gradient vs torch with the same weights (converted by
    the importers' rule tables). Tolerance rel 1e-3 (value), 2e-3 (gradient): sums over 785 x 785
    similarities and 12 blocks of width 768 in float32."""
    from mindspore import nn

    from modify_ms.losses.clip_losses import DirectionalClipLoss, TokenProjectionLoss, projection_basis
    from modify_ms.losses.structure import DinoStructureLoss
    from modify_ms.models.clip import CLIP, ClipConfig
    from modify_ms.models.dino import DinoConfig, dino_vit
    from modify_ms.utils.checkpoint import fill_cell
    from weights_convert.clip import clip_rules
    from weights_convert.dino import DINO_RULES
    from weights_convert.mapping import map_state_dict, target_shapes_of

    def numpy_state(module):
        return {k: v.detach().numpy() for k, v in module.state_dict().items()}

    dino_ref = vit_ref.randomize(vit_ref.DinoViT(224, 8, 768, 12, 12), seed=23).eval().requires_grad_(False)
    dino = dino_vit(DinoConfig(), input_size=(224, 224))
    fill_cell(dino, map_state_dict(numpy_state(dino_ref), target_shapes_of(dino), DINO_RULES), "dino")
    clip_ref = vit_ref.randomize(vit_ref.CLIPRef(512, 224, 12, 768, 32, 77, 49408, 512, 8, 12, 12), seed=29).eval()
    clip_ref.requires_grad_(False)
    clip = CLIP(ClipConfig())
    fill_cell(clip, map_state_dict(numpy_state(clip_ref), target_shapes_of(clip), clip_rules(ClipConfig())), "clip")

    size = (512, 512)
    fake = rng.uniform(-1, 1, (2, 3) + size).astype(np.float32)
    real = rng.uniform(-1, 1, (2, 3) + size).astype(np.float32)
    prompt_image = rng.uniform(-1, 1, (1, 3) + size).astype(np.float32)
    with torch.no_grad():
        prompt_tokens = clip_ref.visual.tokens(vit_ref.clip_input(torch.from_numpy(prompt_image), 224), 4).numpy()
        prompt = torch.nn.functional.normalize(clip_ref.encode_image(vit_ref.clip_input(
            torch.from_numpy(prompt_image), 224)), dim=-1)
    basis = projection_basis(prompt_tokens)

    class Objective(nn.Cell):
        def __init__(self):
            super().__init__()
            self.st = DinoStructureLoss(dino, size)
            self.clip = DirectionalClipLoss(clip.visual, size, source_from_batch=True)
            self.proj = TokenProjectionLoss(clip.visual, size, basis)

        def construct(self, x, y, p):
            st, cl, pr = self.st(x, y), self.clip(x, y, p), self.proj(x)
            return 0.5 * st + cl + 100.0 * pr, (st, cl, pr)

    (total, parts), grad = ms.value_and_grad(Objective(), grad_position=0, has_aux=True)(
        m(fake), m(real), m(prompt.numpy()))
    x = torch.from_numpy(fake).requires_grad_(True)
    y = torch.from_numpy(real)
    st = vit_ref.structure_loss(dino_ref, x, y, (224, 224), 11)
    cl = vit_ref.directional_clip_loss(clip_ref, x, y, None, 224, prompt=prompt)
    pr = vit_ref.token_projection_loss(clip_ref, x, torch.from_numpy(basis), 224)
    (0.5 * st + cl + 100.0 * pr).backward()
    for name, ours, theirs in zip(("structure", "directional CLIP", "token projection"), parts, (st, cl, pr)):
        assert_close(ours, theirs.detach(), 1e-3, f"{name} loss at 512 px")
    assert_close(grad, x.grad, 2e-3, "d (0.5 L_ST + L_CLIP + 100 L_PROJ) / d fake at 512 px")
