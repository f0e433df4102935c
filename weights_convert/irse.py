"""Importer of ArcFace IR-SE weights (``model_ir_se50.pth``, the ``Backbone(112, 50, 'ir_se')`` state_dict).

Two targets:

* the identity loss (``modify_ms.losses.identity.IdentityLoss``): every key, output layer
  included, onto ``facenet.*`` (``arcface_rules('facenet.')``);
* the pSp encoder's backbone (``GradualStyleEncoder``'s ``input_layer.*`` and ``body.*``): pSp
  initialises its encoder from this file with ``strict=False``, i.e. input layer + body only;
  here the output layer is consumed explicitly (shape-checked, not loaded) and the style
  heads keep their own initialisation.

Rules: BatchNorm by name (weight/bias/running_mean/running_var ->
gamma/beta/moving_mean/moving_variance; ``num_batches_tracked`` optional), PReLU
``weight`` -> ``w`` (same (C,) shape), convs/linear as they are.

Public API: ``batchnorm_rule``, ``backbone_rules``, ``arcface_rules``, ``convert_arcface``,
``convert_arcface_backbone``, ``init_encoder_from_arcface``, ``infer_ir_body``,
``infer_arcface_kwargs``, ``read_arcface``, ``convert_irse50(src, dst, target, image_size)``,
``detect_layout``; CLI ``irse50`` (HELP/add_arguments/run). The converted identity-loss file is
loaded by ``modify_ms.losses.builders`` (``build_identity_loss``, ``load_identity_weights``).
"""
import math
import os
import re

import numpy as np

from modify_ms.utils.checkpoint import fill_cell, save_arrays

from .errors import CheckpointError, MappingError
from .mapping import Rule, map_state_dict, target_shapes_of

BN_NAMES = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}
OPTIONAL = (r".*num_batches_tracked",)
ARCFACE_FILE = "model_ir_se50.pth"


def batchnorm_rule(pattern, target):
    """torch BatchNorm ``<pattern>.{weight,bias,running_mean,running_var}`` -> ``<target>.{gamma,...}``.

    ``pattern`` is a regex prefix, ``target`` a template using its groups.
    """
    n_groups = re.compile(pattern).groups

    def name(match):
        return match.expand(target) + "." + BN_NAMES[match.group(n_groups + 1)]

    return Rule(pattern + r"\.(weight|bias|running_mean|running_var)", name)


def backbone_rules(src="", dst=""):
    """Rules for ``input_layer`` and ``body`` (IR and IR-SE units), keys prefixed ``src``/``dst``.

    ``src`` is a regex-escaped literal prefix (e.g. ``r"encoder\\."``), ``dst`` a plain prefix.
    """
    unit = src + r"body\.(\d+)\."
    out = dst + r"body.\1."
    return [
        Rule(src + r"input_layer\.0\.weight", dst + "input_layer.0.weight"),
        batchnorm_rule(src + r"input_layer\.1", dst + "input_layer.1"),
        Rule(src + r"input_layer\.2\.weight", dst + "input_layer.2.w"),  # PReLU slopes (C,)
        Rule(unit + r"shortcut_layer\.0\.weight", out + r"shortcut_layer.0.weight"),
        batchnorm_rule(unit + r"shortcut_layer\.1", out + "shortcut_layer.1"),
        batchnorm_rule(unit + r"res_layer\.([04])", out + r"res_layer.\2"),
        Rule(unit + r"res_layer\.([13])\.weight", out + r"res_layer.\2.weight"),
        Rule(unit + r"res_layer\.2\.weight", out + r"res_layer.2.w"),
        Rule(unit + r"res_layer\.5\.(fc[12])\.weight", out + r"res_layer.5.\2.weight"),
    ]


def arcface_rules(dst=""):
    """The whole ArcFace file onto an ``IRSEBackbone`` whose names are prefixed ``dst``."""
    return backbone_rules("", dst) + [
        batchnorm_rule(r"output_layer\.([04])", dst + r"output_layer.\1"),
        Rule(r"output_layer\.3\.(weight|bias)", dst + r"output_layer.3.\1"),
    ]


def _consumed_output_layer():
    """Output-layer keys present in the file but not part of pSp's encoder: consumed with a sanity check."""

    def check(value):
        return None if np.ndim(value) in (1, 2) else f"unexpected rank {np.ndim(value)}"

    return [Rule(r"output_layer\.\d+\.(weight|bias|running_mean|running_var)", None, check=check)]


def convert_arcface(state, target_shapes, dst="", source_name=ARCFACE_FILE):
    """{MindSpore name: array} for an IRSEBackbone (``dst=''``) or IdentityLoss (``dst='facenet.'``)."""
    return map_state_dict(state, target_shapes, arcface_rules(dst), optional=OPTIONAL, source_name=source_name)


def encoder_backbone_shapes(encoder_shapes):
    return {k: v for k, v in encoder_shapes.items() if k.startswith(("input_layer.", "body."))}


def convert_arcface_backbone(state, encoder_shapes, source_name=ARCFACE_FILE):
    """Input layer + body of the ArcFace file onto a GradualStyleEncoder's ``input_layer.*``/``body.*``."""
    return map_state_dict(state, encoder_backbone_shapes(encoder_shapes), backbone_rules() + _consumed_output_layer(),
                          optional=OPTIONAL, source_name=source_name)


def init_encoder_from_arcface(encoder, backbone_params):
    """Set the encoder's input layer and body from converted params; style heads stay as they are."""
    shapes = target_shapes_of(encoder)
    missing = sorted(set(encoder_backbone_shapes(shapes)) - set(backbone_params))
    unknown = sorted(set(backbone_params) - set(shapes))
    if missing or unknown:
        raise MappingError("encoder backbone", {MappingError.UNFILLED: missing, MappingError.UNUSED: unknown})
    params = {name: p.asnumpy() for name, p in encoder.parameters_and_names()}
    params.update(backbone_params)
    fill_cell(encoder, params, "encoder backbone")
    return encoder


# ------------------------------------------------------------------ architecture from shapes
def infer_ir_body(sd, prefix=""):
    """(units, channels, mode) of an IR/IR-SE body from its keys and shapes."""
    depths = {}
    for key, value in sd.items():
        m = re.fullmatch(re.escape(prefix) + r"body\.(\d+)\.res_layer\.1\.weight", key)
        if m:
            depths[int(m.group(1))] = int(np.shape(value)[0])
    if not depths or sorted(depths) != list(range(len(depths))):
        raise ValueError(f"no consecutive '{prefix}body.N.res_layer.1.weight' keys: not an IR-SE state_dict")
    units, channels = [], []
    for i in range(len(depths)):
        if not channels or depths[i] != channels[-1]:
            channels.append(depths[i])
            units.append(0)
        units[-1] += 1
    input_c = np.shape(sd.get(prefix + "input_layer.0.weight", np.zeros((channels[0],))))[0]
    if len(channels) != 4 or input_c != channels[0]:
        raise ValueError(f"IR body with channels {channels} (input {input_c}): expected 4 blocks")
    mode = "ir_se" if prefix + "body.0.res_layer.5.fc1.weight" in sd else "ir"
    return tuple(units), tuple(channels), mode


def infer_arcface_kwargs(sd):
    """IRSEBackbone kwargs (input_size, units, channels, mode, embedding_dim) from an ArcFace state_dict."""
    units, channels, mode = infer_ir_body(sd)
    if "output_layer.3.weight" not in sd:
        raise ValueError("no 'output_layer.3.weight' key: not an ArcFace Backbone state_dict")
    emb, flat = np.shape(sd["output_layer.3.weight"])
    side = int(round(math.sqrt(flat / channels[-1])))
    if side * side * channels[-1] != flat:
        raise ValueError(f"output linear has {flat} inputs, not {channels[-1]} x side^2")
    return {"input_size": 16 * side, "units": list(units), "channels": list(channels), "mode": mode,
            "embedding_dim": int(emb)}


def detect_layout(sd):
    try:
        kw = infer_arcface_kwargs(sd)
    except (ValueError, KeyError):
        return None
    from modify_ms.models.irse import UNITS

    depth = {v: k for k, v in UNITS.items()}.get(tuple(kw["units"]), "custom")
    return f"ArcFace IR{'-SE' if kw['mode'] == 'ir_se' else ''}{depth} Backbone, input {kw['input_size']}"


# ------------------------------------------------------------------ files and command line
def read_arcface(path):
    from .torch_pickle import load_torch_file

    obj = load_torch_file(path, progress=True)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, np.ndarray) for v in obj.values()):
        raise CheckpointError(path, "not an ArcFace state_dict (expected a dict of tensors)")
    obj = {k[7:] if k.startswith("module.") else k: v for k, v in obj.items()}  # DataParallel saves
    return obj


def convert_irse50(src, dst, target="identity", image_size=256):
    """``model_ir_se50.pth`` -> MindSpore checkpoint for the identity loss or the pSp encoder backbone."""
    sd = read_arcface(src)  # first: a bad file is reported without loading MindSpore
    from modify_ms.losses.identity import IdentityLoss
    from modify_ms.models.psp_encoder import GradualStyleEncoder

    try:
        kw = infer_arcface_kwargs(sd)
    except ValueError as exc:
        raise CheckpointError(src, str(exc))
    meta = {"source": os.path.abspath(src), "target": target, "arcface_kwargs": kw}
    if target == "identity":
        loss = IdentityLoss(image_size, kw["input_size"], units=kw["units"], channels=kw["channels"],
                            embedding_dim=kw["embedding_dim"])
        params = convert_arcface(sd, target_shapes_of(loss), "facenet.", source_name=src)
        meta.update({"format": "modify_ms.identity_loss", "module": "modify_ms.losses.identity",
                     "arch": "IdentityLoss", "kwargs": {"image_size": image_size, "face_size": kw["input_size"],
                                                        "units": kw["units"], "channels": kw["channels"],
                                                        "embedding_dim": kw["embedding_dim"]}})
    elif target == "encoder":
        encoder = GradualStyleEncoder(n_styles=1, units=kw["units"], channels=kw["channels"], mode=kw["mode"])
        params = convert_arcface_backbone(sd, target_shapes_of(encoder), source_name=src)
        meta.update({"format": "modify_ms.irse_backbone", "module": "modify_ms.models.psp_encoder",
                     "arch": "GradualStyleEncoder (input_layer + body)",
                     "kwargs": {"units": kw["units"], "channels": kw["channels"], "mode": kw["mode"]},
                     "ignored_source_entries": ["output_layer.* (pSp loads input_layer + body only)"]})
    else:
        raise ValueError(f"target must be 'identity' or 'encoder', got {target!r}")
    meta["num_params"] = len(params)
    save_arrays(params, dst, meta)
    return meta


HELP = "ArcFace model_ir_se50.pth -> identity-loss network or pSp encoder backbone (.ckpt + .json)"


def add_arguments(parser):
    parser.add_argument("src", help="ArcFace IR-SE state_dict (model_ir_se50.pth)")
    parser.add_argument("dst", help="output MindSpore checkpoint (.ckpt); DST.json describes it")
    parser.add_argument("--target", choices=("identity", "encoder"), default="identity",
                        help="identity: the whole network for the ID loss (names facenet.*); encoder: "
                             "input_layer + body to initialise a pSp encoder (default: identity)")
    parser.add_argument("--image-size", type=int, default=256,
                        help="identity target: size of the images the loss sees (crop box scales; default 256)")


def run(args):
    meta = convert_irse50(args.src, args.dst, args.target, args.image_size)
    print(f"wrote {args.dst}: {meta['arch']}, {meta['num_params']} params "
          f"({meta['arcface_kwargs']['mode']}, units {meta['arcface_kwargs']['units']})")
    print(f"wrote {args.dst}.json")
    return 0
