"""Importer of Inception-v3 weights for FID (``modify_ms.eval.inception.InceptionV3``).

Two layouts, told apart from the keys (``detect_variant``):

* ``fid``: pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` (the
  TensorFlow FID graph ported to PyTorch): torchvision's key names, no
  ``AuxLogits.*``, ``fc`` with 1008 classes.
* ``torchvision``: torchvision's ``inception_v3`` ImageNet weights
  (``inception_v3_google-*.pth``): 580 keys with the auxiliary head
  (``AuxLogits.*``) and a 1000-class ``fc``. The auxiliary head is loaded
  into the network (built for that purpose) so that every key maps.

Rules map by name: convs as they are; BatchNorm ``weight/bias/running_mean/
running_var`` -> ``gamma/beta/moving_mean/moving_variance`` (``num_batches_tracked``
optional: older files lack it); ``fc``/``AuxLogits.fc`` as they are (nn.Dense
stores [out, in] like torch).

Public API: ``detect_variant``, ``inception_rules``, ``convert_inception``,
``convert_inception_file``, ``OPTIONAL``, ``FID_FILE``; CLI subcommand ``inception``.
"""
import os

import numpy as np

from modify_ms.utils.checkpoint import save_arrays

from .errors import CheckpointError
from .irse import batchnorm_rule
from .mapping import Rule, map_state_dict, target_shapes_of
from .torch_pickle import flatten_state_dict, load_torch_file

FID_FILE = "pt_inception-2015-12-05-6726825d.pth"
OPTIONAL = (r".*num_batches_tracked",)
FC_CLASSES = {1008: "fid", 1000: "torchvision"}
# A module path such as "Mixed_6b.branch7x7dbl_3" or "AuxLogits.conv0" (no regex dots inside names).
_MODULE = r"((?:AuxLogits\.)?(?:Conv2d_\w+|Mixed_\w+|conv[01])(?:\.branch\w+)?)"


def detect_variant(shapes, source_name="file"):
    """'fid' or 'torchvision' from {key: shape} (torch or MindSpore names; both keep ``fc``/``AuxLogits``)."""
    if "fc.weight" not in shapes:
        raise CheckpointError(source_name, "not an Inception-v3 state_dict (no 'fc.weight')")
    classes = int(tuple(shapes["fc.weight"])[0])
    variant = FC_CLASSES.get(classes)
    if variant is None:
        raise CheckpointError(source_name, f"Inception-v3 'fc.weight' has {classes} classes; "
                              "expected 1008 (pytorch-fid) or 1000 (torchvision)")
    has_aux = any(k.startswith("AuxLogits.") for k in shapes)
    if variant == "fid" and has_aux:
        raise CheckpointError(source_name, "1008-class fc (pytorch-fid layout) but AuxLogits keys present")
    return variant


def inception_rules():
    """Rules for both layouts (the target shapes decide which keys exist)."""
    return [
        Rule(_MODULE + r"\.conv\.weight", r"\1.conv.weight"),
        batchnorm_rule(_MODULE + r"\.bn", r"\1.bn"),
        Rule(r"((?:AuxLogits\.)?fc)\.(weight|bias)", r"\1.\2"),
    ]


def _state_dict(obj, source_name):
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise CheckpointError(source_name, f"expected a state_dict, found {type(obj).__name__}")
    state = flatten_state_dict(obj)
    if not state:
        raise CheckpointError(source_name, "holds no tensors")
    return state


def convert_inception(state, variant=None, source_name="file"):
    """(params {MindSpore name: float32 array}, variant) for ``InceptionV3(variant)``.

    ``variant=None`` detects it from the keys; a given variant that disagrees with them fails.
    """
    from modify_ms.eval.inception import InceptionV3

    found = detect_variant({k: np.shape(v) for k, v in state.items()}, source_name)
    if variant is not None and variant != found:
        raise CheckpointError(source_name, f"holds the {found} layout, not {variant}")
    shapes = target_shapes_of(InceptionV3(found, transform_input=found == "torchvision"))
    params = map_state_dict(state, shapes, inception_rules(), optional=OPTIONAL, source_name=source_name)
    return params, found


def convert_inception_file(src, dst=None, variant=None):
    """Read a .pth, map it, and (when ``dst``) write a MindSpore .ckpt + JSON sidecar. Returns (params, meta)."""
    name = os.path.basename(src)
    state = _state_dict(load_torch_file(src, progress=True), src)
    params, found = convert_inception(state, variant, source_name=src)
    meta = {"network": "modify_ms.eval.inception.InceptionV3", "variant": found,
            "transform_input": found == "torchvision", "source": name, "num_params": len(params)}
    if dst is not None:
        save_arrays(params, dst, meta)
    return params, meta


HELP = "pytorch-fid pt_inception-*.pth or torchvision inception_v3 .pth -> MindSpore FID Inception .ckpt (+ .json)"


def detect_layout(state):
    """'inception-v3 (...)' for the inspect command, None for other layouts."""
    if "fc.weight" not in state or "Mixed_7c.branch_pool.conv.weight" not in state:
        return None
    try:
        variant = detect_variant({k: np.shape(v) for k, v in state.items()})
    except CheckpointError:
        return None
    return f"inception-v3, {variant} layout (weights_convert inception)"


def add_arguments(parser):
    parser.add_argument("src", help=f"{FID_FILE} (pytorch-fid) or torchvision inception_v3_google-*.pth")
    parser.add_argument("dst", help="output MindSpore .ckpt (a .json sidecar is written beside it)")
    parser.add_argument("--variant", choices=("auto", "fid", "torchvision"), default="auto",
                        help="layout of src (default: detected from its keys)")


def run(args):
    variant = None if args.variant == "auto" else args.variant
    _, meta = convert_inception_file(args.src, args.dst, variant)
    print(f"{args.dst}: Inception-v3 ({meta['variant']} layout), {meta['num_params']} parameters from {meta['source']}")
    return 0
