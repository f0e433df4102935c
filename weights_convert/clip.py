"""Importer of CLIP weights onto :class:`modify_ms.models.clip.CLIP`: the released ``ViT-B-32.pt``
(a TorchScript archive, read by ``torch_pickle.load_torchscript_tensors`` without running any of its
code) or a plain state dict of ``clip/model.py:CLIP`` (``torch.save(model.state_dict())``), layout
``clip_vit_b32_jit_state_dict``.

The architecture is derived from the shapes as ``clip.model.build_model`` does (heads = width // 64).
Rules (:func:`clip_rules`): the image tower onto ``visual.vit.*`` (``conv1`` -> ``patch_embed.proj``,
``class_embedding`` [D] -> ``cls_token`` [1, 1, D], ``positional_embedding`` [N, D] -> ``pos_embed``
[1, N, D], ``ln_pre``, ``ln_post`` -> ``norm``; per block ``ln_1/ln_2`` -> ``norm1/norm2``,
``attn.in_proj_*`` -> ``attn.qkv.*``, ``attn.out_proj`` -> ``attn.proj``, ``mlp.c_fc/c_proj`` ->
``mlp.fc1/fc2``), the text tower onto ``text.*``, ``logit_scale``. Consumed without loading, each
checked: the archive's scalars ``input_resolution``, ``context_length``, ``vocab_size`` (equal to what the
shapes say) and any ``attn_mask`` tensor attribute of the text blocks (CLIP's causal mask). fp16
tensors (the archive's Linear/Conv weights) are widened to float32 exactly.

Public API: ``clip_rules(config)``, ``clip_config_of(state)``, ``read_clip_state(path)``,
``convert_clip_state(state, source_name)``, ``convert_clip(src, dst)``, ``detect_layout``;
CLI ``clip SRC DST``; the converted file is loaded by :func:`modify_ms.models.clip.load_clip`.
"""
import os
import re

import numpy as np

from modify_ms.utils.checkpoint import save_arrays

from .dino import HEAD_WIDTH, LN, read_state, vit_block_rules
from .errors import CheckpointError
from .mapping import Rule, expect_value, map_state_dict, target_shapes_of

CLIP_BLOCK_NAMES = {"ln_1": "norm1", "attn.in_proj": "attn.qkv", "attn.out_proj": "attn.proj", "ln_2": "norm2",
                    "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}


def _packed_qkv_rules(src, dst):
    """``attn.in_proj_weight`` / ``attn.in_proj_bias`` (MultiheadAttention's packed names)."""
    return [Rule(rf"{src}\.attn\.in_proj_(weight|bias)", lambda m: f"{dst.format(m.group(1))}.attn.qkv.{m.group(2)}")]


def _block_rules(src, dst):
    names = {k: v for k, v in CLIP_BLOCK_NAMES.items() if k != "attn.in_proj"}
    return vit_block_rules(src, dst, names) + _packed_qkv_rules(src, dst)


def _ln_rule(src, dst):
    return Rule(rf"{re.escape(src)}\.(weight|bias)", lambda m: f"{dst}.{LN[m.group(1)]}")


def _scalar_check(expected):
    def check(value):
        value = np.asarray(value)
        if value.size != 1 or int(value.reshape(())) != expected:
            return f"value {value.reshape(-1)[:1].tolist()}, expected {expected}"
        return None

    return check


def clip_rules(config):
    from modify_ms.models.clip import causal_mask

    v, t = "visual.vit", "text"
    return [
        Rule(r"visual\.class_embedding", f"{v}.cls_token", transform=lambda a: a.reshape(1, 1, -1)),
        Rule(r"visual\.positional_embedding", f"{v}.pos_embed", transform=lambda a: a[None]),
        Rule(r"visual\.conv1\.weight", f"{v}.patch_embed.proj.weight"),
        _ln_rule("visual.ln_pre", f"{v}.ln_pre"),
        _ln_rule("visual.ln_post", f"{v}.norm"),
        Rule(r"visual\.proj", "visual.proj"),
        Rule(r"token_embedding\.weight", f"{t}.token_embedding.embedding_table"),
        Rule(r"positional_embedding", f"{t}.positional_embedding"),
        _ln_rule("ln_final", f"{t}.ln_final"),
        Rule(r"text_projection", f"{t}.text_projection"),
        Rule(r"logit_scale", "logit_scale", transform=lambda a: a.reshape(1)),
        Rule(r"input_resolution", None, check=_scalar_check(config.image_resolution)),
        Rule(r"context_length", None, check=_scalar_check(config.context_length)),
        Rule(r"vocab_size", None, check=_scalar_check(config.vocab_size)),
        Rule(r"transformer\.resblocks\.\d+\.attn_mask", None, check=expect_value(causal_mask(config.context_length))),
    ] + _block_rules(r"visual\.transformer\.resblocks\.(\d+)", f"{v}.blocks.{{}}") \
      + _block_rules(r"transformer\.resblocks\.(\d+)", f"{t}.blocks.{{}}")


def _shape(state, key, ndim, path):
    value = state.get(key)
    if not isinstance(value, np.ndarray) or value.ndim != ndim:
        raise CheckpointError(path, f"not a CLIP state dict: no {ndim}-d '{key}'")
    return value.shape


def _count(state, pattern):
    return len({m.group(1) for k in state for m in [re.fullmatch(pattern, k)] if m})


def clip_config_of(state, path="checkpoint"):
    """The :class:`~modify_ms.models.clip.ClipConfig` of a CLIP ViT state dict (as ``build_model``)."""
    from modify_ms.models.clip import ClipConfig

    if "visual.layer1.0.conv1.weight" in state:
        raise CheckpointError(path, "a CLIP ResNet (modified ResNet image tower); only ViT CLIP models are supported")
    vision_width, _, patch, _ = _shape(state, "visual.conv1.weight", 4, path)
    tokens = _shape(state, "visual.positional_embedding", 2, path)[0] - 1
    grid = int(round(tokens ** 0.5))
    if grid * grid != tokens:
        raise CheckpointError(path, f"visual positional embedding of {tokens} patches is not a square grid")
    context_length, width = _shape(state, "positional_embedding", 2, path)
    return ClipConfig(embed_dim=int(_shape(state, "text_projection", 2, path)[1]), image_resolution=int(patch * grid),
                      vision_layers=_count(state, r"visual\.transformer\.resblocks\.(\d+)\.attn\.in_proj_weight"),
                      vision_width=int(vision_width), vision_patch_size=int(patch), context_length=int(context_length),
                      vocab_size=int(_shape(state, "token_embedding.weight", 2, path)[0]), transformer_width=int(width),
                      transformer_heads=max(1, int(width) // HEAD_WIDTH),
                      transformer_layers=_count(state, r"transformer\.resblocks\.(\d+)\.attn\.in_proj_weight"),
                      vision_heads=max(1, int(vision_width) // HEAD_WIDTH))


def read_clip_state(path):
    """The CLIP tensors of ``path``: a TorchScript archive (``ViT-B-32.pt``) or a torch.save state dict."""
    from .torch_pickle import is_torchscript, load_torchscript_tensors

    if is_torchscript(path):
        return load_torchscript_tensors(path, progress=True)
    return read_state(path)


def convert_clip_state(state, source_name="clip"):
    """(params {MindSpore name: float32 array}, ClipConfig) of a CLIP state dict (strict)."""
    from modify_ms.models.clip import CLIP

    config = clip_config_of(state, source_name)
    params = map_state_dict(state, target_shapes_of(CLIP(config)), clip_rules(config), source_name=source_name)
    return params, config


def convert_clip(src, dst):
    from modify_ms.models.clip import clip_kwargs

    state = read_clip_state(src)
    params, config = convert_clip_state(state, source_name=src)
    consumed = sorted(k for k in state if k in ("input_resolution", "context_length", "vocab_size")
                      or k.endswith(".attn_mask"))
    meta = {"format": "modify_ms.clip", "module": "modify_ms.models.clip", "arch": "CLIP",
            "kwargs": clip_kwargs(config), "source": os.path.abspath(src), "num_params": len(params),
            "num_values": int(sum(v.size for v in params.values())),
            "checked_not_loaded": consumed}
    save_arrays(params, dst, meta)
    return meta


def detect_layout(sd):
    if {"visual.conv1.weight", "token_embedding.weight", "text_projection"} <= set(sd):
        c = clip_config_of(sd)
        name = "ViT-B/32" if (c.vision_width, c.vision_patch_size) == (768, 32) else f"ViT, patch {c.vision_patch_size}"
        return (f"CLIP {name} (vision width {c.vision_width} x {c.vision_layers} blocks, "
                f"text width {c.transformer_width} x {c.transformer_layers} blocks)")
    return None


HELP = "CLIP ViT (ViT-B-32.pt TorchScript archive, or a CLIP state dict) -> MindSpore CLIP (.ckpt + .json)"


def add_arguments(parser):
    parser.add_argument("src", help="ViT-B-32.pt as released (TorchScript; never run) or torch.save(model.state_dict())")
    parser.add_argument("dst", help="output MindSpore checkpoint (.ckpt)")


def run(args):
    meta = convert_clip(args.src, args.dst)
    kwargs = ", ".join(f"{k}={v}" for k, v in meta["kwargs"].items())
    print(f"wrote {args.dst}: CLIP({kwargs}), {meta['num_params']} params, {meta['num_values']:,} values")
    if meta["checked_not_loaded"]:
        print("  checked, not loaded: " + ", ".join(meta["checked_not_loaded"][:6])
              + (" ..." if len(meta["checked_not_loaded"]) > 6 else ""))
    print(f"wrote {args.dst}.json")
    return 0
