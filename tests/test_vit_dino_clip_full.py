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
