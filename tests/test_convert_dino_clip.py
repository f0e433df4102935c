"""The DINO and CLIP importers on the real key layouts (``dino_vitbase8_pretrain_pth``,
``clip_vit_b32_jit_state_dict`` in modify_ms/assets/manifests/baseline_key_manifests.json: every key
name, 12 + 12 blocks, the archive's scalar entries), at narrow widths, from files torch itself writes
(``torch.save`` state dicts, one with CLIP's fp16 dtypes, and a ``torch.jit.save`` archive read
without running it), through ``python -m weights_convert`` (its ``main``), then loaded and run
against the torch reference; and CLIP's tokenizer against ids of the published tokenizer.

Tolerance: converted networks vs torch rel 1e-5 (float32).
"""
import os
from typing import Dict, List

import numpy as np
import pytest
import torch
import mindspore as ms

from modify_ms.losses.clip_losses import image_prompt, text_prompt_direction
from modify_ms.models.clip import clip_preprocess_pil, load_clip
from modify_ms.models.clip_tokenizer import ClipTokenizer, _category_class, tokenize
from modify_ms.models.dino import load_dino
from cli_harness import run_tool
from parity_utils import assert_close, m
from reference import vit_ref
from weights_convert.__main__ import main as convert_main
from weights_convert.errors import CheckpointError
from weights_convert.torch_pickle import is_torchscript, load_torch_file, load_torchscript_tensors


@pytest.fixture(scope="module")
def manifests():
    from modify_ms.assets import key_manifests

    return key_manifests("baseline")


@pytest.fixture
def pynative():
    ms.set_context(mode=ms.PYNATIVE_MODE)  # one forward of a converted 12-block network: no compile
    yield
    ms.set_context(mode=ms.GRAPH_MODE)


def one_line_error(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0], err
    return err[0]


# ---------------------------------------------------------------- DINO
@pytest.fixture(scope="module")
def dino_file(tmp_path_factory, manifests):
    """dino_vitb8's 150 keys (12 blocks), width 64, 8-px patches trained at 16 px."""
    ref = vit_ref.randomize(vit_ref.DinoViT(image_size=16, patch=8, dim=64, depth=12, heads=1), seed=11).eval()
    state = ref.state_dict()
    assert list(state) == list(manifests["dino_vitbase8_pretrain_pth"]["keys"])
    path = str(tmp_path_factory.mktemp("dino") / "dino_vitbase8_pretrain.pth")
    torch.save(state, path)
    return path, ref


def test_dino_importer_cli(dino_file, tmp_path, pynative, capsys, rng):
    src, ref = dino_file
    assert convert_main(["inspect", src]) == 0
    assert "layout: DINO ViT (patch 8, width 64, 12 blocks, trained at 16 px)" in capsys.readouterr().out
    dst = str(tmp_path / "dino.ckpt")
    assert convert_main(["dino", src, dst]) == 0
    assert "wrote" in capsys.readouterr().out
    x = rng.standard_normal((2, 3, 24, 16)).astype(np.float32)  # a 3 x 2 grid: interpolated positions
    cell = load_dino(dst, input_size=(24, 16))
    with torch.no_grad():
        expected = ref(torch.from_numpy(x))
    assert_close(cell(m(x)), expected, 1e-5, "converted DINO")
    from modify_ms.utils.checkpoint import CheckpointFileError

    with pytest.raises(CheckpointFileError, match="not a converted CLIP checkpoint"):
        load_clip(dst)  # a DINO file handed to the CLIP loader says so


def test_dino_importer_is_strict(dino_file, tmp_path, capsys):
    src, _ = dino_file
    state = load_torch_file(src)
    extra = dict(state, **{"head.weight": np.ones((3, 64), np.float32)})
    missing = {k: v for k, v in state.items() if k != "blocks.11.mlp.fc2.bias"}
    for name, bad in (("extra", extra), ("missing", missing)):
        path = str(tmp_path / f"{name}.pth")
        torch.save({k: torch.from_numpy(np.array(v)) for k, v in bad.items()}, path)
        if name == "extra":  # the real command line, in a subprocess
            proc = run_tool(["-m", "weights_convert", "dino", path, f"{name}.ckpt"], cwd=str(tmp_path))
            assert proc.returncode == 2
            lines = proc.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr, lines
            line = lines[0]
        else:
            assert convert_main(["dino", path, str(tmp_path / f"{name}.ckpt")]) == 2
            line = one_line_error(capsys)
        assert ("head.weight" if name == "extra" else "blocks.11.mlp.fc2.bias") in line
        assert not os.path.exists(tmp_path / f"{name}.ckpt")


# ---------------------------------------------------------------- CLIP
CLIP_TINY = dict(embed_dim=16, image_resolution=16, vision_layers=12, vision_width=64, vision_patch_size=8,
                 context_length=77, vocab_size=49408, transformer_width=64, transformer_heads=1,
                 transformer_layers=12, vision_heads=1)


class JitCLIP(vit_ref.CLIPRef):
    """What the released archive holds: the CLIP module plus the three scalar buffers."""

    def __init__(self):
        super().__init__(**CLIP_TINY)
        self.register_buffer("input_resolution", torch.tensor(CLIP_TINY["image_resolution"]))
        self.register_buffer("context_length", torch.tensor(CLIP_TINY["context_length"]))
        self.register_buffer("vocab_size", torch.tensor(CLIP_TINY["vocab_size"]))


@pytest.fixture(scope="module")
def clip_ref(manifests):
    ref = vit_ref.randomize(JitCLIP(), seed=13).eval()
    manifest = manifests["clip_vit_b32_jit_state_dict"]
    assert set(ref.state_dict()) == set(manifest["keys"])
    return ref, manifest


def check_clip(dst, ref, rng):
    cell = load_clip(dst)
    image = rng.standard_normal((2, 3, 16, 16)).astype(np.float32)
    ids = tokenize(["a photo of a face", "pop art"])
    with torch.no_grad():
        img, txt = ref(torch.from_numpy(image), torch.from_numpy(ids.astype(np.int64)))
    assert_close(cell.encode_image(m(image)), img, 1e-5, "converted CLIP encode_image")
    assert_close(cell.encode_text(ms.Tensor(ids)), txt, 1e-5, "converted CLIP encode_text")
    return cell


def check_prompts(cell, ref, rng):
    """The prompt side of MMFS's fine-tuning: a text direction and an image prompt's embedding and tokens."""
    from PIL import Image

    direction = text_prompt_direction(cell, "pop art")
    with torch.no_grad():
        e = torch.nn.functional.normalize(ref.encode_text(torch.from_numpy(tokenize(["pop art", "photo"]).astype(
            np.int64))), dim=-1)
    assert_close(direction, (e[:1] - e[1:]).numpy(), 1e-5, "text prompt direction")
    image = Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8))  # landscape: crop across
    embedding, tokens = image_prompt(cell, image, layers=4)
    x = torch.from_numpy(clip_preprocess_pil(image, 16)[None])
    assert tuple(x.shape) == (1, 3, 16, 16)
    with torch.no_grad():
        assert_close(embedding, torch.nn.functional.normalize(ref.encode_image(x), dim=-1), 1e-5, "image prompt")
        assert_close(tokens, ref.visual.tokens(x, 4)[0], 1e-5, "image prompt tokens")


def test_clip_importer_torchscript_archive(clip_ref, tmp_path, pynative, capsys, rng):
    """A ``torch.jit.save`` archive in ViT-B-32.pt's layout: the restricted reader gets exactly the
    tensors torch.jit.load's state_dict holds, without running the archive's code."""
    ref, _ = clip_ref
    src = str(tmp_path / "ViT-B-32.pt")
    image, ids = torch.zeros(1, 3, 16, 16), torch.from_numpy(tokenize("photo").astype(np.int64))
    torch.jit.save(torch.jit.trace(ref, (image, ids), check_trace=False), src)
    assert is_torchscript(src)
    with pytest.raises(CheckpointError, match="TorchScript archive"):
        load_torch_file(src)
    tensors = load_torchscript_tensors(src)
    jit_state = torch.jit.load(src).state_dict()
    assert set(jit_state) <= set(tensors)
    assert set(tensors) - set(jit_state) <= {k for k in tensors if k.endswith(".attn_mask")}
    for k, v in jit_state.items():
        np.testing.assert_array_equal(tensors[k], v.numpy(), err_msg=k)
    assert convert_main(["inspect", src]) == 0
    report = capsys.readouterr().out
    assert "TorchScript archive" in report and "layout: CLIP ViT, patch 8 (vision width 64 x 12 blocks, text width 64 x 12 blocks)" in report
    dst = str(tmp_path / "clip.ckpt")
    assert convert_main(["clip", src, dst]) == 0
    assert "wrote" in capsys.readouterr().out
    check_clip(dst, ref, rng)


class _TypedAttributes(torch.nn.Module):
    sizes: List[int]
    scales: List[float]
    table: Dict[str, int]

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(3, 2))
        self.register_buffer("steps", torch.tensor(7))
        self.sizes, self.scales, self.table = [1, 2], [0.5], {"a": 1}

    def forward(self, x):
        return x @ self.weight * self.sizes[0] * self.scales[0] * self.table["a"]


def test_torchscript_reader_reads_typed_attributes_and_never_the_code(tmp_path):
    """Scripted attributes pickled through torch.jit._pickle's typed-list builders read as data; the
    archive's code/ is never read: with every code file replaced by a program that would fail, the
    tensors come back the same (and equal to torch.jit.load's state_dict)."""
    import zipfile

    src = str(tmp_path / "typed.pt")
    torch.jit.save(torch.jit.script(_TypedAttributes()), src)
    expected = {k: v.numpy() for k, v in torch.jit.load(src).state_dict().items()}
    forged = str(tmp_path / "forged.pt")
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(forged, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if "/code/" in info.filename:
                data = b"raise SystemExit('code was run')\n"
            zout.writestr(info.filename, data)
    for path in (src, forged):
        tensors = load_torchscript_tensors(path)
        assert set(tensors) == set(expected)
        for k in expected:
            np.testing.assert_array_equal(tensors[k], expected[k])


def test_torchscript_archive_naming_code_is_refused(tmp_path, capsys):
    """A TorchScript-shaped archive whose data.pkl names a callable outside the allow-list: one error
    line, nothing called, no output written."""
    import pickle
    import zipfile

    class Call:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    src = str(tmp_path / "evil.pt")
    with zipfile.ZipFile(src, "w", zipfile.ZIP_STORED) as z:
        z.writestr("evil/data.pkl", pickle.dumps({"visual.proj": Call()}, protocol=2))
        z.writestr("evil/constants.pkl", pickle.dumps((), protocol=2))
        z.writestr("evil/code/__torch__.py", "")
    assert is_torchscript(src)
    assert convert_main(["clip", src, str(tmp_path / "out.ckpt")]) == 2
    assert "refused to unpickle" in one_line_error(capsys)
    assert not os.path.exists(tmp_path / "pwned") and not os.path.exists(tmp_path / "out.ckpt")


def test_clip_importer_fp16_state_dict(clip_ref, tmp_path, pynative, capsys, rng):
    """A plain state dict with the dtypes of CLIP's convert_weights (fp16 Linear/Conv/projections, per
    the manifest), read back exactly widened; the reference runs on the same fp16-rounded values."""
    ref, manifest = clip_ref
    dtypes = manifest["dtype_after_convert_weights"]
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if dtypes.get(name) == "float16":
                p.copy_(p.half().float())
    state = {k: (v.half() if dtypes.get(k) == "float16" else v) for k, v in ref.state_dict().items()}
    src = str(tmp_path / "clip_state.pt")
    torch.save(state, src)
    dst = str(tmp_path / "clip.ckpt")
    assert convert_main(["clip", src, dst]) == 0
    capsys.readouterr()
    cell = check_clip(dst, ref, rng)
    check_prompts(cell, ref, rng)
    bad = dict(state, vocab_size=torch.tensor(1000))  # a scalar that disagrees with the shapes
    torch.save(bad, src)
    assert convert_main(["clip", src, str(tmp_path / "bad.ckpt")]) == 2
    assert "vocab_size" in one_line_error(capsys)


# ---------------------------------------------------------------- tokenizer
# Ids from the published tokenizer: clip-anytorch 2.6.0 (PyPI wheel) clip/simple_tokenizer.py
# SimpleTokenizer().encode(text), run once outside this project with ftfy 6.3.1 and regex installed.
PUBLISHED_IDS = {
    "photo": [1125],
    "a photo of a face": [320, 1125, 539, 320, 1710],
    "pop art": [2852, 794],
    "watercolor painting": [14211, 3086],
    "Hello, World!": [3306, 267, 1002, 256],
    "  Multiple   spaces\tand\nnewlines ": [6470, 9006, 537, 1218, 3418],
    "don't you'll we've I'm it's they'd": [847, 713, 592, 1342, 649, 1200, 328, 880, 585, 568, 889, 1896],
    "3.14159 and 42nd": [274, 269, 272, 275, 272, 276, 280, 537, 275, 273, 1764],
    "caf\u00e9 na\u00efve r\u00e9sum\u00e9": [15304, 1097, 35689, 563, 29106, 7054, 4166],
    "&amp; &lt;tag&gt; &quot;quoted&quot;": [261, 283, 3640, 285, 257, 27706, 257],
    "emoji \U0001F600 \u2764": [16327, 7334, 2720],
    "\u201ccurly quotes\u201d and \u2018single\u2019": [257, 20795, 5808, 257, 537, 568, 17005, 262],
    "\uff26\uff55\uff4c\uff4c\uff57\uff49\uff44\uff54\uff48 text": [9407, 23571, 4160],
    "\ufb01ne \ufb02ow": [3797, 5608],
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8": [39121, 44353, 34002, 252, 21575, 2429, 228, 47121, 32421, 486],
    "a<|endoftext|>b": [320, 49407, 321],
    "supercalifragilisticexpialidocious": [1642, 2857, 13093, 2076, 5868, 26850, 835, 639, 38466],
    "''s ...!!! ---": [8445, 338, 38351, 11079],
    "x\u00b2 \u00bd": [343, 41175, 33613],
}


@pytest.fixture(scope="module")
def tokenizer():
    return ClipTokenizer()


def test_tokenizer_matches_published_ids(tokenizer):
    for text, ids in PUBLISHED_IDS.items():
        assert tokenizer.encode(text) == ids, text
    assert len(tokenizer.encoder) == 49408 and tokenizer.sot == 49406 and tokenizer.eot == 49407
    assert tokenizer.decode(tokenizer.encode("a photo of a face")).strip() == "a photo of a face"


def test_tokenize_frames_pads_and_truncates(tokenizer):
    out = tokenizer(["a photo of a face", "photo"])
    assert out.dtype == np.int32 and out.shape == (2, 77)
    assert out[0, :7].tolist() == [49406, 320, 1125, 539, 320, 1710, 49407] and not out[0, 7:].any()
    assert out[1, :3].tolist() == [49406, 1125, 49407] and not out[1, 3:].any()
    long = " ".join(["photo"] * 80)
    with pytest.raises(ValueError, match="longer than the context"):
        tokenizer(long)
    cut = tokenizer(long, truncate=True)[0]
    assert cut[0] == 49406 and cut[-1] == 49407 and (cut[1:-1] == 1125).all()


def test_letter_and_number_classes_are_unicode_categories():
    """The \\p{L} / \\p{N} classes spelled for ``re`` agree with the ``regex`` module's over the BMP
    characters this Python's Unicode database assigns (``regex`` may know a newer Unicode version,
    whose new letters are unassigned, category Cn, here)."""
    regex = pytest.importorskip("regex")
    import re
    import unicodedata

    bmp = "".join(chr(c) for c in [*range(0xD800), *range(0xE000, 0x10000)] if unicodedata.category(chr(c)) != "Cn")
    for prefix, prop in (("L", r"\p{L}"), ("N", r"\p{N}")):
        ours = "".join(re.findall(f"[{_category_class(prefix)}]", bmp))
        theirs = "".join(regex.findall(prop, bmp))
        assert ours == theirs, prefix
