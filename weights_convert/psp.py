"""Importer of pSp checkpoints (``psp_ffhq_encode.pt`` and other pSp training outputs).

The file is a dict: ``state_dict`` (``encoder.*`` GradualStyleEncoder keys, ``decoder.*``
rosinality StyleGAN2 Generator keys), ``opts`` (the training options, a dict or Namespace)
and ``latent_avg`` (n_styles x 512, or 512). Output: one MindSpore checkpoint whose names
are ``encoder.<GradualStyleEncoder param>``, ``decoder.<Generator param>`` and
``latent_avg``, and the JSON sidecar ``{"source": ..., "opts": {...}, "n_styles": ...}``.

Rules: the encoder's input layer/body use ``weights_convert.irse.backbone_rules`` (BatchNorm
by name, PReLU -> ``w``), the style heads and lateral convs keep their names, and the decoder
uses the StyleGAN2 importer's generator rules (one home: ``weights_convert.stylegan2``),
prefixed with ``decoder.``.

Public API: ``encoder_rules``, ``psp_rules``, ``convert_psp``, ``read_psp``,
``split_prefix``, ``build_psp_encoder``; CLI ``psp``.
"""
import math

import numpy as np

from .errors import CheckpointError
from .irse import OPTIONAL, backbone_rules
from .mapping import Rule, map_state_dict

ENCODER_HEAD_RULES = [
    Rule(r"encoder\.styles\.(\d+)\.convs\.(\d+)\.(weight|bias)", r"encoder.styles.\1.convs.\2.\3"),
    Rule(r"encoder\.styles\.(\d+)\.linear\.(weight|bias)", r"encoder.styles.\1.linear.\2"),
    Rule(r"encoder\.latlayer([12])\.(weight|bias)", r"encoder.latlayer\1.\2"),
]


def encoder_rules():
    return backbone_rules(r"encoder\.", "encoder.") + ENCODER_HEAD_RULES


def prefixed(rules, src, dst):
    """The same rules for keys under a prefix (``src`` a regex literal without groups, ``dst`` plain)."""
    out = []
    for rule in rules:
        if rule.target is None:
            target = None
        elif callable(rule.target):
            target = (lambda inner: lambda m: dst + inner(m))(rule.target)
        else:
            target = dst + rule.target
        out.append(Rule(src + rule.pattern, target, rule.transform, rule.check))
    return out


def generator_rules():
    """rosinality Generator rules, from the StyleGAN2 importer (never a second copy here)."""
    from . import stylegan2

    return stylegan2.GENERATOR_RULES


def generator_optional():
    from . import stylegan2

    return tuple(getattr(stylegan2, "GENERATOR_OPTIONAL", ()))


def psp_rules():
    return encoder_rules() + prefixed(generator_rules(), r"decoder\.", "decoder.") + [Rule(r"latent_avg", "latent_avg")]


def _opts_dict(opts):
    if opts is None:
        return {}
    if isinstance(opts, dict):
        return dict(opts)
    return dict(vars(opts))  # torch_pickle.Namespace


def _jsonable(value):
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def read_psp(path):
    """(state {key: array} incl. ``latent_avg`` when present, opts dict) of a pSp file, via torch_pickle."""
    from .torch_pickle import load_torch_file

    obj = load_torch_file(path, progress=True)
    if not isinstance(obj, dict) or not isinstance(obj.get("state_dict"), dict):
        raise CheckpointError(path, "not a pSp checkpoint (no 'state_dict' dict at the top level)")
    state = dict(obj["state_dict"])
    if obj.get("latent_avg") is not None:
        state["latent_avg"] = np.asarray(obj["latent_avg"])
    return state, _jsonable(_opts_dict(obj.get("opts")))


def n_styles_of(state, opts):
    if "latent_avg" in state and np.ndim(state["latent_avg"]) == 2:
        return int(state["latent_avg"].shape[0])
    size = int(opts.get("output_size", 1024))
    return 2 * int(round(math.log2(size))) - 2


def convert_psp(state, encoder_shapes, generator_shapes, latent_avg_shape=None, source_name="psp"):
    """Map a pSp state (from ``read_psp``) onto ``encoder.*``/``decoder.*``/``latent_avg`` names.

    ``latent_avg_shape`` None means the file has no latent_avg (pSp trained without it).
    """
    targets = {"encoder." + k: v for k, v in encoder_shapes.items()}
    targets.update({"decoder." + k: v for k, v in generator_shapes.items()})
    if latent_avg_shape is not None:
        targets["latent_avg"] = tuple(latent_avg_shape)
    optional = OPTIONAL + tuple(r"decoder\." + p for p in generator_optional())
    return map_state_dict(state, targets, psp_rules(), optional=optional, source_name=source_name)


def split_prefix(params, prefix):
    """{name without prefix: array} of the entries under ``prefix`` (e.g. 'encoder.')."""
    return {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}


def build_psp_encoder(params, meta, **encoder_kwargs):
    """A GradualStyleEncoder loaded from a converted pSp checkpoint (params, meta from load_ms_checkpoint).

    The mean latent is added to the output when the training options say so
    (``start_from_latent_avg``), as pSp does.
    """
    from modify_ms.models.psp_encoder import GradualStyleEncoder

    from .mapping import load_into

    opts = meta.get("opts", {})
    latent_avg = params.get("latent_avg") if opts.get("start_from_latent_avg", False) else None
    encoder = GradualStyleEncoder(n_styles=int(meta["n_styles"]), latent_avg=latent_avg, **encoder_kwargs)
    enc = split_prefix(params, "encoder.")
    if latent_avg is not None:
        enc["latent_avg"] = np.broadcast_to(np.asarray(latent_avg, np.float32).reshape(-1, encoder.style_dim),
                                            (encoder.n_styles, encoder.style_dim))
    load_into(encoder, enc, source_name="psp encoder")
    return encoder
