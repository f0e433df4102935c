"""Importer of DINO ViT weights (``dino_vitbase8_pretrain.pth``: the flat state dict ``dino_vitb8`` loads
with strict=True, layout ``dino_vitbase8_pretrain_pth``, 150 tensors) onto
:func:`modify_ms.models.dino.dino_vit`.

The architecture is read from the shapes, as a ViT's state dict determines it: width (class token),
patch size (patch conv), depth (blocks), trained grid (positional embedding), MLP ratio (fc1); heads are
width // 64 (every DINO ViT: S/16, S/8, B/16, B/8), ``--heads`` overrides. Every key maps by
:data:`DINO_RULES` (LayerNorm weight/bias -> gamma/beta, everything else by name), strictly.

Public API: ``DINO_RULES``, ``dino_config_of(state)``, ``convert_dino_state(state, source_name)``,
``convert_dino(src, dst)``, ``detect_layout``; CLI ``dino SRC DST [--heads N]``; the converted file is
loaded by :func:`modify_ms.models.dino.load_dino`.
"""
import os
import re

import numpy as np

from modify_ms.utils.checkpoint import save_arrays

from .errors import CheckpointError
from .mapping import Rule, map_state_dict, target_shapes_of

HEAD_WIDTH = 64
LN = {"weight": "gamma", "bias": "beta"}


def _ln(match):
    return f"{match.group(1)}.{LN[match.group(2)]}"


def vit_block_rules(src, dst, names):
    """Rules for one family of pre-norm blocks: ``src`` regex prefix (with one group: the block index)
    -> ``dst`` template prefix; ``names`` maps the source's sub-layer names onto the ViT's
    (norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2); a packed qkv may be named ``in_proj``."""
    rules = []
    for source, target in names.items():
        if target.startswith("norm"):
            rules.append(Rule(rf"{src}\.{re.escape(source)}\.(weight|bias)",
                              lambda m, t=target: f"{dst.format(m.group(1))}.{t}.{LN[m.group(2)]}"))
        else:
            rules.append(Rule(rf"{src}\.{re.escape(source)}\.(weight|bias)",
                              lambda m, t=target: f"{dst.format(m.group(1))}.{t}.{m.group(2)}"))
    return rules


DINO_BLOCK_NAMES = {name: name for name in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")}

DINO_RULES = [
    Rule(r"cls_token", "cls_token"),
    Rule(r"pos_embed", "pos_embed"),
    Rule(r"patch_embed\.proj\.(weight|bias)", r"patch_embed.proj.\1"),
    Rule(r"(norm)\.(weight|bias)", _ln),
] + vit_block_rules(r"blocks\.(\d+)", "blocks.{}", DINO_BLOCK_NAMES)


def _need(state, key, ndim, path):
    value = state.get(key)
    if not isinstance(value, np.ndarray) or value.ndim != ndim:
        raise CheckpointError(path, f"not a DINO ViT state dict: no {ndim}-d '{key}'")
    return value


def dino_config_of(state, heads=None, path="checkpoint"):
    """The :class:`~modify_ms.models.dino.DinoConfig` a DINO ViT state dict determines."""
    from modify_ms.models.dino import DinoConfig

    width = int(_need(state, "cls_token", 3, path).shape[-1])
    patch = int(_need(state, "patch_embed.proj.weight", 4, path).shape[-1])
    tokens = int(_need(state, "pos_embed", 3, path).shape[1]) - 1
    grid = int(round(tokens ** 0.5))
    if grid * grid != tokens:
        raise CheckpointError(path, f"positional embedding of {tokens} patches is not a square grid")
    layers = len({m.group(1) for k in state for m in [re.fullmatch(r"blocks\.(\d+)\.norm1\.weight", k)] if m})
    hidden = int(_need(state, "blocks.0.mlp.fc1.weight", 2, path).shape[0])
    heads = int(heads) if heads else max(1, width // HEAD_WIDTH)
    return DinoConfig(image_size=grid * patch, patch_size=patch, width=width, layers=layers, heads=heads,
                      mlp_ratio=hidden / width)


def convert_dino_state(state, heads=None, source_name="dino"):
    """(params {MindSpore name: float32 array}, DinoConfig) of a DINO ViT state dict (strict)."""
    from modify_ms.models.dino import dino_vit

    config = dino_config_of(state, heads, source_name)
    params = map_state_dict(state, target_shapes_of(dino_vit(config)), DINO_RULES, source_name=source_name)
    return params, config


def read_state(path):
    """A flat state dict from a torch.save file ({'state_dict': ...} and {'model': ...} unwrapped)."""
    from .torch_pickle import load_torch_file

    obj = load_torch_file(path, progress=True)
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict) and len(obj) <= 4:
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, np.ndarray) for v in obj.values()):
        raise CheckpointError(path, "not a state dict (expected a dict of tensors)")
    return obj


def convert_dino(src, dst, heads=None):
    from modify_ms.models.dino import dino_kwargs

    params, config = convert_dino_state(read_state(src), heads, source_name=src)
    meta = {"format": "modify_ms.dino", "module": "modify_ms.models.dino", "arch": "dino_vit",
            "kwargs": dino_kwargs(config), "source": os.path.abspath(src), "num_params": len(params),
            "num_values": int(sum(v.size for v in params.values()))}
    save_arrays(params, dst, meta)
    return meta


def detect_layout(sd):
    if {"cls_token", "pos_embed", "patch_embed.proj.weight", "norm.weight"} <= set(sd):
        config = dino_config_of(sd)
        return (f"DINO ViT (patch {config.patch_size}, width {config.width}, {config.layers} blocks, "
                f"trained at {config.image_size} px)")
    return None


HELP = "DINO ViT (dino_vitbase8_pretrain.pth & co.) -> MindSpore VisionTransformer (.ckpt + .json)"


def add_arguments(parser):
    parser.add_argument("src", help="DINO backbone weights, e.g. dino_vitbase8_pretrain.pth")
    parser.add_argument("dst", help="output MindSpore checkpoint (.ckpt)")
    parser.add_argument("--heads", type=int, default=None, help="attention heads (default: width // 64)")


def run(args):
    meta = convert_dino(args.src, args.dst, args.heads)
    kwargs = ", ".join(f"{k}={v}" for k, v in meta["kwargs"].items())
    print(f"wrote {args.dst}: dino_vit({kwargs}), {meta['num_params']} params, {meta['num_values']:,} values")
    print(f"wrote {args.dst}.json")
    return 0
