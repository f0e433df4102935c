"""Importer of pSp-format checkpoints: pSp (``psp_ffhq_encode.pt``) and e4e (``e4e_ffhq_encode.pt``).

The file is a dict: ``state_dict`` (``encoder.*`` keys, ``decoder.*`` rosinality StyleGAN2
Generator keys), ``opts`` (the training options, a dict or Namespace) and ``latent_avg``
(n_styles x 512, or 512). pSp and e4e write the same format with the same encoder keys;
``opts["encoder_type"]`` says which read-out the encoder has: ``GradualStyleEncoder``
(pSp; also when the option is absent, pSp's default) or ``Encoder4Editing`` (e4e, built at
its inference stage, every W+ offset on). Any other type is refused. Output: one MindSpore
checkpoint whose names are ``encoder.<encoder param>``, ``decoder.<Generator param>`` and
``latent_avg``, and the JSON sidecar (format ``modify_ms.psp``: encoder/decoder module,
class and kwargs, ``opts`` as JSON, whether latent_avg is present and whether pSp/e4e adds
it: ``start_from_latent_avg``, which e4e_ffhq_encode.pt sets).

Rules: the encoder's input layer/body use ``weights_convert.irse.backbone_rules`` (BatchNorm
by name, PReLU -> ``w``), the style heads and lateral convs keep their names, and the decoder
uses the StyleGAN2 importer's generator rules (one home: ``weights_convert.stylegan2``),
prefixed with ``decoder.``.

Public API: ``ENCODER_ARCHS``, ``encoder_rules``, ``psp_rules``, ``read_psp``, ``encoder_arch_of``,
``infer_encoder_kwargs``, ``convert_psp_state``, ``convert_psp_checkpoint``,
``convert_psp(src, dst, encoder_type=None)``, ``build_psp(path)``,
``load_inversion_encoder(path)`` (JoJoGAN's e4e inversion: image -> the W+ its decoder takes),
``split_prefix``, ``detect_layout``; CLI ``psp SRC DST [--encoder-type T]`` (pSp and e4e files).
"""
import importlib
import os
import re

import numpy as np

from modify_ms.utils.checkpoint import fill_cell, read_arrays, save_arrays

from .errors import CheckpointError
from .irse import OPTIONAL, backbone_rules, infer_ir_body
from .mapping import Rule, map_state_dict, target_shapes_of
from .stylegan2 import infer_generator_kwargs, rosinality_generator_rules

# opts["encoder_type"] -> (module, class) of the MindSpore encoder; the only classes build_psp builds
ENCODER_ARCHS = {
    "GradualStyleEncoder": ("modify_ms.models.psp_encoder", "GradualStyleEncoder"),
    "Encoder4Editing": ("modify_ms.models.e4e", "Encoder4Editing"),
}
DEFAULT_ENCODER_TYPE = "GradualStyleEncoder"  # pSp's train_options default (files without the option)
E4E_INFERENCE_STAGE = 18  # e4e's ProgressiveStage.Inference: how its pSp wrapper builds the encoder

ENCODER_HEAD_RULES = [
    Rule(r"encoder\.styles\.(\d+)\.convs\.(\d+)\.(weight|bias)", r"encoder.styles.\1.convs.\2.\3"),
    Rule(r"encoder\.styles\.(\d+)\.linear\.(weight|bias)", r"encoder.styles.\1.linear.\2"),
    Rule(r"encoder\.latlayer([12])\.(weight|bias)", r"encoder.latlayer\1.\2"),
]


def encoder_rules():
    return backbone_rules(r"encoder\.", "encoder.") + ENCODER_HEAD_RULES


def psp_rules(n_styles, style_dim):
    """Encoder + decoder (the StyleGAN2 importer's rosinality rules under ``decoder.``) + W+ ``latent_avg``
    ((S,) in older files: repeated per row, as pSp does)."""

    def rows(avg):
        return np.broadcast_to(avg.reshape(-1, style_dim), (n_styles, style_dim))

    return (encoder_rules() + rosinality_generator_rules("decoder.", "decoder.")
            + [Rule(r"latent_avg", "latent_avg", transform=rows)])


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
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def read_psp(path):
    """(state {key: array} incl. the top-level ``latent_avg`` when present, opts dict) of a pSp file."""
    from .torch_pickle import load_torch_file

    obj = load_torch_file(path, progress=True)
    if not isinstance(obj, dict) or not isinstance(obj.get("state_dict"), dict):
        raise CheckpointError(path, "not a pSp checkpoint (no 'state_dict' dict at the top level)")
    state = dict(obj["state_dict"])
    if obj.get("latent_avg") is not None:
        state["latent_avg"] = np.asarray(obj["latent_avg"])
    return state, _jsonable(_opts_dict(obj.get("opts")))


def encoder_arch_of(opts, path, expected=None):
    """The encoder class name ``opts`` names (a key of ENCODER_ARCHS); CheckpointError otherwise,
    or when ``expected`` is given and differs."""
    arch = opts.get("encoder_type", DEFAULT_ENCODER_TYPE)
    if arch not in ENCODER_ARCHS:
        raise CheckpointError(path, f"opts encoder_type {arch!r} is not supported "
                                    f"(supported: {', '.join(ENCODER_ARCHS)})")
    if expected is not None and arch != expected:
        raise CheckpointError(path, f"opts encoder_type is {arch!r}, not {expected!r}")
    return arch


def encoder_class(arch):
    """The MindSpore class of an ENCODER_ARCHS name (a fixed table: nothing named in a file is imported)."""
    module, name = ENCODER_ARCHS[arch]
    return getattr(importlib.import_module(module), name)


def split_prefix(params, prefix):
    """{name without prefix: array} of the entries under ``prefix`` (e.g. 'encoder.')."""
    return {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}


def infer_encoder_kwargs(state):
    """GradualStyleEncoder kwargs from the ``encoder.*`` shapes (n_styles, input_size, body, style_dim);
    e4e's Encoder4Editing has the same parameters (it adds ``progressive_stage``)."""
    units, channels, mode = infer_ir_body(state, "encoder.")
    heads = {}
    for key in state:
        m = re.fullmatch(r"encoder\.styles\.(\d+)\.convs\.(\d+)\.weight", key)
        if m:
            heads[int(m.group(1))] = max(heads.get(int(m.group(1)), 0), int(m.group(2)) // 2 + 1)
    if not heads or sorted(heads) != list(range(len(heads))):
        raise ValueError("no consecutive 'encoder.styles.N' heads: not a pSp/e4e encoder")
    style_dim = int(np.shape(state["encoder.styles.0.linear.weight"])[0])
    return {"n_styles": len(heads), "input_size": 16 * 2 ** heads[0], "units": list(units),
            "channels": list(channels), "mode": mode, "style_dim": style_dim}


def convert_psp_state(state, encoder_shapes, generator_shapes, source_name="psp"):
    """Map a pSp state (``read_psp``) onto ``encoder.*``, ``decoder.*`` and ``latent_avg`` names.

    The W+ ``latent_avg`` is kept as ``latent_avg`` (n_styles, S) (a (S,) file value is
    repeated per row, as pSp does). The decoder's own ``latent_avg`` (S,) is not in pSp's
    decoder state_dict and is set to the mean of those rows (pSp stores the generator's mean
    latent repeated per row, so that is the same vector). Without a top-level latent_avg
    (pSp trained without start_from_latent_avg) neither is written.
    """
    n_styles = len({k.split(".")[1] for k in encoder_shapes if k.startswith("styles.")})
    style_dim = encoder_shapes["styles.0.linear.weight"][0]
    targets = {"encoder." + k: v for k, v in encoder_shapes.items()}
    targets.update({"decoder." + k: v for k, v in generator_shapes.items() if k != "latent_avg"})
    has_avg = "latent_avg" in state
    if has_avg:
        targets["latent_avg"] = (n_styles, style_dim)
    params = map_state_dict(state, targets, psp_rules(n_styles, style_dim), optional=OPTIONAL,
                            source_name=source_name)
    if has_avg:
        params["decoder.latent_avg"] = params["latent_avg"].mean(axis=0)
    return params


def convert_psp_checkpoint(state, opts, source_name, encoder_type=None):
    """(params, sidecar meta) of a pSp/e4e checkpoint read by ``read_psp`` (nothing written).

    The encoder class follows ``opts["encoder_type"]`` (``encoder_arch_of``); e4e's is built at
    its inference stage. Architectures come from the shapes; every key must map
    (``convert_psp_state``)."""
    arch = encoder_arch_of(opts, source_name, encoder_type)
    from modify_ms.models.stylegan2 import Generator

    decoder_sd = split_prefix(state, "decoder.")
    try:
        enc_kw = infer_encoder_kwargs(state)
        dec_kw = dict(infer_generator_kwargs(decoder_sd, "rosinality"), lr_mlp=0.01)
    except ValueError as exc:
        raise CheckpointError(source_name, str(exc))
    if arch == "Encoder4Editing":
        enc_kw["progressive_stage"] = E4E_INFERENCE_STAGE
    try:
        encoder = encoder_class(arch)(**enc_kw)
        decoder = Generator(**dec_kw)
    except ValueError as exc:
        raise CheckpointError(source_name, f"cannot build the MindSpore models ({exc})")
    params = convert_psp_state(state, target_shapes_of(encoder), target_shapes_of(decoder), source_name=source_name)
    module = ENCODER_ARCHS[arch][0]
    meta = {
        "format": "modify_ms.psp",
        "source": os.path.abspath(source_name),
        "encoder": {"module": module, "arch": arch, "kwargs": enc_kw},
        "decoder": {"module": "modify_ms.models.stylegan2", "arch": "Generator", "kwargs": dec_kw},
        "has_latent_avg": "latent_avg" in params,
        "start_from_latent_avg": bool(opts.get("start_from_latent_avg", False)),
        "opts": opts,
        "num_params": len(params),
    }
    return params, meta


def convert_psp(src, dst, encoder_type=None):
    """``psp_*.pt`` / ``e4e_*.pt`` -> one MindSpore checkpoint (encoder.*, decoder.*, latent_avg) + JSON sidecar.

    ``encoder_type``: refuse the file unless its opts name this encoder class."""
    state, opts = read_psp(src)  # first: a bad file is reported without loading MindSpore
    encoder_arch_of(opts, src, encoder_type)
    params, meta = convert_psp_checkpoint(state, opts, src, encoder_type)
    save_arrays(params, dst, meta)
    return meta


def build_psp(path, add_latent_avg=None):
    """(encoder, Generator, meta) from a checkpoint written by ``convert_psp``.

    The encoder is the sidecar's class (GradualStyleEncoder or Encoder4Editing). The mean
    latent is added to its output when ``add_latent_avg`` says so (default: pSp's
    ``start_from_latent_avg`` option from the sidecar, as pSp's and e4e's forward do).
    """
    from modify_ms.models.stylegan2 import Generator

    params, meta = read_arrays(path)
    if meta.get("format") != "modify_ms.psp":
        raise CheckpointError(path, "no pSp sidecar (convert with: python -m weights_convert psp SRC DST)")
    arch = meta["encoder"].get("arch", DEFAULT_ENCODER_TYPE)
    if arch not in ENCODER_ARCHS or meta["encoder"].get("module", ENCODER_ARCHS[arch][0]) != ENCODER_ARCHS[arch][0]:
        raise CheckpointError(path + ".json", f"unknown encoder {meta['encoder'].get('module')}.{arch}")
    add = meta["start_from_latent_avg"] if add_latent_avg is None else add_latent_avg
    if add and "latent_avg" not in params:
        raise CheckpointError(path, "the checkpoint has no latent_avg to add")
    avg = params["latent_avg"] if add else None
    encoder = encoder_class(arch)(**meta["encoder"]["kwargs"], latent_avg=avg)
    enc = split_prefix(params, "encoder.")
    if add:
        enc["latent_avg"] = avg
    fill_cell(encoder, enc, path)
    decoder = Generator(**meta["decoder"]["kwargs"])
    dec = split_prefix(params, "decoder.")
    if "latent_avg" not in dec:
        dec["latent_avg"] = np.zeros(decoder.style_dim, np.float32)  # no mean latent in this file
    fill_cell(decoder, dec, path)
    return encoder, decoder, meta


def load_inversion_encoder(path):
    """JoJoGAN's inversion (``e4e_projection.py``): (encoder, decoder Generator, meta) of a converted
    e4e (or pSp) checkpoint, the encoder mapping a 256x256 face in [-1, 1] to the W+ its pSp wrapper
    hands the decoder, i.e. encoder output + latent_avg when the file's opts set
    ``start_from_latent_avg`` (e4e_ffhq_encode.pt does), one row per decoder layer."""
    encoder, decoder, meta = build_psp(path)
    if encoder.n_styles != decoder.n_latent:
        raise CheckpointError(path, f"the encoder gives {encoder.n_styles} W+ rows, "
                                    f"the decoder takes {decoder.n_latent}")
    return encoder, decoder, meta


def detect_layout(sd):
    if not any(k.startswith("encoder.styles.") for k in sd):
        return None
    try:
        kw = infer_encoder_kwargs(sd)
    except (ValueError, KeyError):
        return None
    return (f"pSp/e4e encoder ({kw['n_styles']} styles, input {kw['input_size']}; "
            "GradualStyleEncoder or Encoder4Editing as opts.encoder_type says)")


HELP = ("pSp or e4e checkpoint (psp_ffhq_encode.pt, e4e_ffhq_encode.pt) -> MindSpore encoder + decoder + "
        "latent_avg (.ckpt + .json with opts)")


def add_arguments(parser):
    parser.add_argument("src", help="pSp/e4e training checkpoint (dict with state_dict, opts, latent_avg)")
    parser.add_argument("dst", help="output MindSpore checkpoint (.ckpt); DST.json holds opts and architectures")
    parser.add_argument("--encoder-type", choices=sorted(ENCODER_ARCHS), default=None,
                        help="refuse the file unless its opts.encoder_type is this (e.g. Encoder4Editing for e4e); "
                             "default: build whichever it names")


def run(args):
    meta = convert_psp(args.src, args.dst, encoder_type=args.encoder_type)
    enc, dec = meta["encoder"]["kwargs"], meta["decoder"]["kwargs"]
    print(f"wrote {args.dst}: encoder {meta['encoder']['arch']}({enc['n_styles']} styles, {enc['mode']}), "
          f"decoder Generator(size={dec['size']}), latent_avg: {'yes' if meta['has_latent_avg'] else 'no'}, "
          f"{meta['num_params']} params")
    print(f"wrote {args.dst}.json (pSp opts: {len(meta['opts'])} entries)")
    return 0
