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
``convert_arcface_backbone``, ``init_encoder_from_arcface``, ``OPTIONAL``; CLI ``irse50``.
"""
import re

import numpy as np

from .errors import MappingError
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
    from .mapping import load_into

    shapes = target_shapes_of(encoder)
    missing = sorted(set(encoder_backbone_shapes(shapes)) - set(backbone_params))
    unknown = sorted(set(backbone_params) - set(shapes))
    if missing or unknown:
        raise MappingError("encoder backbone", {MappingError.UNFILLED: missing, MappingError.UNUSED: unknown})
    params = {name: p.asnumpy() for name, p in encoder.parameters_and_names()}
    params.update(backbone_params)
    load_into(encoder, params, source_name="encoder backbone")
    return encoder
