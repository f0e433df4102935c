"""Importers for LPIPS: the v0.1 linear layers and the torchvision AlexNet / VGG16 backbones.

Targets are the parameter names of ``modify_ms.losses.lpips.LPIPS``:
``lin{0..4}.model.1.weight`` (1, C, 1, 1) and ``net.features.N.{weight,bias}``.

* linear layers, two layouts (one rule table accepts either; a file holding both fails as
  "filled twice"): the ``lpips`` package's ``lin0.model.1.weight`` (also the files in
  ``lpips/weights/v0.1/``) and pSp's renamed ``0.1.weight`` (its ``criteria/lpips`` keeps a
  ModuleList of Sequential(Identity, Conv2d)).
* torchvision ImageNet weights (``alexnet-owt-*.pth``, ``vgg16-*.pth``): ``features.N.*`` onto
  ``net.features.N.*``; the classifier is consumed explicitly (shape-checked) and not loaded.

Public API: ``LIN_RULES``, ``torchvision_rules``, ``convert_lpips_lin``,
``convert_torchvision_features``, ``convert_lpips``; CLI ``lpips``, ``torchvision-alexnet``,
``torchvision-vgg16``.
"""
import numpy as np

from .mapping import Rule, map_state_dict

LIN_RULES = [
    Rule(r"lin([0-4])\.model\.1\.weight", r"lin\1.model.1.weight"),  # lpips package
    Rule(r"([0-4])\.1\.weight", r"lin\1.model.1.weight"),  # pSp criteria/lpips
]

CLASSIFIER_SHAPES = {
    "alex": {"classifier.1.weight": (4096, 9216), "classifier.1.bias": (4096,),
             "classifier.4.weight": (4096, 4096), "classifier.4.bias": (4096,),
             "classifier.6.weight": (1000, 4096), "classifier.6.bias": (1000,)},
    "vgg": {"classifier.0.weight": (4096, 25088), "classifier.0.bias": (4096,),
            "classifier.3.weight": (4096, 4096), "classifier.3.bias": (4096,),
            "classifier.6.weight": (1000, 4096), "classifier.6.bias": (1000,)},
}


def _classifier_check(net):
    def rule_for(key):
        expected = CLASSIFIER_SHAPES[net][key]

        def check(value):
            shape = tuple(np.shape(value))
            return None if shape == expected else f"shape {shape}, expected {expected}"

        return Rule(key.replace(".", r"\."), None, check=check)

    return [rule_for(k) for k in CLASSIFIER_SHAPES[net]]


def torchvision_rules(net, src="", dst="net."):
    """torchvision ``features.N.*`` -> ``net.features.N.*``; the classifier consumed (not loaded)."""
    if net not in CLASSIFIER_SHAPES:
        raise ValueError(f"torchvision LPIPS backbone must be 'alex' or 'vgg', got {net!r}")
    return [Rule(src + r"features\.(\d+)\.(weight|bias)", dst + r"features.\1.\2")] + _classifier_check(net)


def _subset(target_shapes, prefix):
    return {k: v for k, v in target_shapes.items() if k.startswith(prefix)}


def convert_lpips_lin(state, target_shapes, source_name="lpips"):
    """Linear layers only: onto the ``lin*`` names of an LPIPS cell's target shapes."""
    return map_state_dict(state, _subset(target_shapes, "lin"), LIN_RULES, source_name=source_name)


def convert_torchvision_features(state, target_shapes, net, source_name="torchvision"):
    """torchvision AlexNet/VGG16 state_dict onto the ``net.*`` names of an LPIPS cell's target shapes.

    Features past the last tapped ReLU hold no parameters in either network, so every
    ``features.*`` key maps.
    """
    return map_state_dict(state, _subset(target_shapes, "net."), torchvision_rules(net), source_name=source_name)


def convert_lpips(lin_state, backbone_state, target_shapes, net, lin_name="lpips", backbone_name="torchvision"):
    """A complete LPIPS parameter set from the two files (each strict on its own half)."""
    params = convert_torchvision_features(backbone_state, target_shapes, net, backbone_name)
    params.update(convert_lpips_lin(lin_state, target_shapes, lin_name))
    return {k: params[k] for k in target_shapes}
