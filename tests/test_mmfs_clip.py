"""MMFS's CLIP side: the clip mapper (CLIPFeats2Wplus) against tests/reference/mmfs_clip_ref.py
(from the mathematics) and torch's own pre-norm TransformerEncoder, loaded through the importer's
rule table (TORCH_KEY_RULES); phase 3 (mapping.py) and phase 4 (prompting.py) behaviour; the
tools/mmfs.py command.

Tiny dimensions (dim 16, 2 heads, ff 24, 4 layers, 10 tokens), random weights with nothing at 0
or 1. Tolerances (float32): forward rel 1e-5, gradients rel 1e-4 (w.r.t. the input feature and
every parameter group of one layer), GRAPH and PYNATIVE; eval mode (dropout off).
"""
import os

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


# ---------------------------------------------------------------- phase 3 (mapping.py)
def tiny_config(out_dir, extra=()):
    """test_baselines_mmfs's tiny quickstart with a clip mapper (dim 16, 2 heads, ff 32, 2 layers)."""
    from test_baselines_mmfs import tiny_config as base

    mapper = "model.stylizer.clip_mapper={dim: 16, n_heads: 2, ff_dim: 32, n_layers: 2}"
    return base(out_dir, ["then=[]", mapper] + list(extra))


def snapshot(cell):
    return {n: p.asnumpy().copy() for n, p in cell.parameters_and_names()}


def moved(before, after):
    return {n for n in after if not np.array_equal(after[n], before[n])}


def test_phase3_trains_only_the_clip_mapper_and_the_loss_falls(tmp_path):
    """Fixed photos and draws (one objective): the loss falls; only clip_mapper.* moves in the
    Stylizer and its EMA; D and CLIP do not."""
    from baselines_ms.mmfs.mapping import ClipMappingTrainer

    cfg = tiny_config(str(tmp_path / "run"), ["phase=clip_mapping", "clip_mapping.lr=0.002"])
    trainer = ClipMappingTrainer(cfg, str(tmp_path / "run"), log=lambda _m: None)
    nets = trainer.nets
    before = {k: snapshot(getattr(nets, k)) for k in ("stylizer", "stylizer_ema", "discriminator")}
    before_clip = snapshot(trainer.clip)
    rng = np.random.default_rng(0)
    face = m(np.tanh(rng.standard_normal((2, 3, 64, 64))).astype(np.float32))
    draw = trainer.draw(2)
    losses = []
    for _ in range(8):
        losses.append(float(trainer.cells["step"](face, *draw)[0].asnumpy()))
        trainer.cells["ema"]()
    assert losses[-1] < 0.95 * losses[0], losses
    for key in ("stylizer", "stylizer_ema"):
        changed = moved(before[key], snapshot(getattr(nets, key)))
        assert changed == {n for n in before[key] if n.startswith("clip_mapper.")}, (key, sorted(changed)[:3])
    assert not moved(before["discriminator"], snapshot(nets.discriminator))
    assert not moved(before_clip, snapshot(trainer.clip))


@pytest.mark.slow
def test_phase3_run_through_train_mmfs(tmp_path):
    """phase clip_mapping through trainer.train_mmfs: the run folder, a checkpoint whose
    stylizer_ema has the clip mapper, samples, metrics; a resume continues."""
    import json
    import os

    from baselines_ms.mmfs.trainer import train_mmfs

    out = str(tmp_path / "run")
    cfg = tiny_config(out, ["phase=clip_mapping", "clip_mapping.steps=3", "run.ckpt_every=2",
                            "run.sample_every=3"])
    trainer = train_mmfs(cfg, out, max_steps=2, log=lambda _m: None)
    assert trainer.step == 2
    trainer = train_mmfs(cfg, out, resume=True, log=lambda _m: None)
    assert trainer.step == 3
    from modify_ms.train.common import resolve_checkpoint
    from modify_ms.utils.checkpoint import read_arrays

    arrays, _ = read_arrays(resolve_checkpoint(out))
    assert any(k.startswith("stylizer_ema/clip_mapper.") for k in arrays)
    assert any(k.startswith("optim.clip_mapping/") for k in arrays)
    records = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
    assert [r["step"] for r in records if "l1" in r][-1] == 3
    assert os.listdir(os.path.join(out, "samples"))


# ---------------------------------------------------------------- phase 4 (prompting.py)
@pytest.fixture(scope="module")
def few_shot_parts(tmp_path_factory):
    """A tiny Stylizer pair with a clip mapper, the random tiny CLIP and DINO stand-ins of the
    real architectures, the tiny config."""
    from baselines_ms.mmfs.mapping import build_clip
    from baselines_ms.mmfs.networks import Stylizer
    from baselines_ms.mmfs.trainer import build_structure_loss
    from modify_ms.train.common import seed_everything

    cfg = tiny_config(str(tmp_path_factory.mktemp("fs") / "run"), ["phase=few_shot", "few_shot.text=a painting",
                                                                   "model.dino.patch_size=16"])
    seed_everything(0)
    quiet = lambda _m: None  # noqa: E731
    return cfg, Stylizer(cfg.model.stylizer), build_clip(cfg, quiet), build_structure_loss(cfg, quiet)


@pytest.mark.parametrize("prompt", [pytest.param("text", marks=pytest.mark.slow), "image"])
def test_few_shot_changes_only_the_decoder(few_shot_parts, prompt):
    """3 fine-tuning steps: decoder0..4b / to_rgb0..4 move (trained copy and EMA); encoder,
    mapping_z, clip_mapper bit-identical; CLIP and DINO untouched; the losses finite."""
    from PIL import Image

    from baselines_ms.mmfs.networks import Stylizer, decoder_trained
    from baselines_ms.mmfs.prompting import PromptTuning
    from baselines_ms.blendgan.trainer import copy_params

    cfg, base, clip, structure = few_shot_parts
    trained, ema = Stylizer(cfg.model.stylizer), Stylizer(cfg.model.stylizer)
    copy_params(trained, base)
    copy_params(ema, base)
    rng = np.random.default_rng(5)
    kwargs = {"text": "a watercolor painting"} if prompt == "text" else {
        "image": Image.fromarray(rng.integers(0, 255, (48, 40, 3), dtype=np.uint8))}
    before, before_clip, before_dino = snapshot(base), snapshot(clip), snapshot(structure)
    tuning = PromptTuning(trained, ema, clip, structure, cfg.few_shot, **kwargs)
    assert (tuning.prompt.basis is not None) == (prompt == "image")
    photos = np.tanh(rng.standard_normal((2, 3, 64, 64))).astype(np.float32)
    for _ in range(3):
        total, terms = tuning.step(photos, rng)
        assert np.isfinite(float(total.asnumpy())) and all(np.isfinite(float(v.asnumpy())) for v in terms)
    if prompt == "image":
        assert float(terms[2].asnumpy()) > 0
    for net in (trained, ema):
        changed = moved(before, snapshot(net))
        assert changed == {n for n in before if decoder_trained(n)}, sorted(changed ^ {n for n in before
                                                                                      if decoder_trained(n)})[:4]
    assert not moved(before_clip, snapshot(clip)) and not moved(before_dino, snapshot(structure))
    assert tuning.styles(2).shape == (2, 10, 16)


# ---------------------------------------------------------------- tools/mmfs.py
def test_mmfs_tool_bad_prompt_is_one_line(tmp_path):
    """A style image that is not an image: one line, exit 2, nothing written."""
    from cli_harness import assert_one_line_error, run_tool

    bad = tmp_path / "ref.png"
    bad.write_text("not an image")
    out = tmp_path / "out"
    proc = run_tool(["tools/mmfs.py", "--stylizer", str(tmp_path / "none"), "--style-image", str(bad),
                     "--photos", "builtin:astronaut", "--out", str(out)], cwd=str(tmp_path))
    assert_one_line_error(proc, "ref.png", "not a readable image")
    assert not out.exists()


@pytest.fixture(scope="module")
def phase3_run(tmp_path_factory):
    from baselines_ms.mmfs.trainer import train_mmfs

    out = str(tmp_path_factory.mktemp("p3") / "run")
    cfg = tiny_config(out, ["phase=clip_mapping", "clip_mapping.steps=2", "run.ckpt_every=2", "run.sample_every=2"])
    train_mmfs(cfg, out, log=lambda _m: None)
    return out


@pytest.mark.slow
def test_mmfs_tool_one_shot_on_builtin_photos(phase3_run, tmp_path):
    """From a phase-3 run and a style image: 2 fine-tuning steps, then one PNG per photo (64 px)."""
    from PIL import Image

    from cli_harness import run_tool

    ref_path = tmp_path / "ref.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(ref_path)
    out = tmp_path / "out"
    proc = run_tool(["tools/mmfs.py", "--stylizer", phase3_run, "--style-image", str(ref_path), "--photos",
                     "builtin:astronaut", "builtin:grace_hopper", "--out", str(out), "--steps", "2"],
                    cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = sorted(os.listdir(out / "stylized"))
    assert files == ["astronaut.png", "grace_hopper.png"]
    assert Image.open(out / "stylized" / files[0]).size == (64, 64)


@pytest.mark.slow
def test_stylize_tool_text_option_on_a_phase3_run(phase3_run, tmp_path):
    """tools/stylize.py --method mmfs --text ...: the registry's prompt path (fine-tunes first)."""
    from PIL import Image

    from cli_harness import run_tool

    src, out = tmp_path / "p0.png", tmp_path / "out.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(src)
    proc = run_tool(["tools/stylize.py", "--method", "mmfs", "--run", phase3_run, "--text", "pop art",
                     "--input", str(src), "--output", str(out), "--align", "none"], cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out.is_file()


@pytest.mark.slow
def test_phase4_run_through_train_mmfs(phase3_run, tmp_path):
    """phase few_shot through trainer.train_mmfs from a phase-3 run: a checkpoint with optim.few_shot,
    the decoder moved and the encoder not (against the phase-3 EMA Stylizer)."""
    from baselines_ms.mmfs.trainer import train_mmfs
    from modify_ms.train.common import resolve_checkpoint
    from modify_ms.utils.checkpoint import read_arrays

    out = str(tmp_path / "run")
    cfg = tiny_config(out, ["phase=few_shot", "few_shot.steps=2", "few_shot.text=a watercolor painting",
                            f"weights.stylizer={phase3_run}", "model.dino.patch_size=16", "run.ckpt_every=2",
                            "run.sample_every=2"])
    assert train_mmfs(cfg, out, log=lambda _m: None).step == 2
    start, _ = read_arrays(resolve_checkpoint(phase3_run))
    end, _ = read_arrays(resolve_checkpoint(out))
    assert any(k.startswith("optim.few_shot/") for k in end)
    key = "stylizer_ema/"
    changed = {k[len(key):] for k in end if k.startswith(key) and not np.array_equal(end[k], start[k])}
    assert changed and all(k.startswith(("decoder", "to_rgb")) for k in changed), sorted(changed)[:4]
