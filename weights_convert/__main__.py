"""``python -m weights_convert``: inspect and convert PyTorch checkpoints.

Subcommands
-----------
``inspect FILE``
    Format (zip / legacy / nvlabs-pkl), top-level keys, tensor and value
    counts, and the layout of every state_dict found, detected by the
    ``detect_layout`` function of each importer module and by exact key/shape
    comparison with the packaged ``modify_ms/assets/manifests/checkpoint_key_manifests.json``.
``stylegan2 SRC DST [--which g_ema|g|d] [--size N] [--channel-multiplier M]``
    rosinality .pt or stylegan2-ada .pkl (auto-detected) -> MindSpore .ckpt.
``inception SRC DST [--variant auto|fid|torchvision]``
    pytorch-fid ``pt_inception-2015-12-05-*.pth`` or torchvision ``inception_v3``
    weights (auto-detected) -> MindSpore FID Inception .ckpt.

``irse50 SRC DST [--target identity|encoder] [--image-size N]``
    ArcFace ``model_ir_se50.pth`` -> identity-loss network or pSp encoder backbone.
``psp SRC DST [--encoder-type GradualStyleEncoder|Encoder4Editing]``
    pSp ``psp_ffhq_encode.pt`` or e4e ``e4e_ffhq_encode.pt`` -> encoder (the class
    ``opts.encoder_type`` names; ``--encoder-type`` refuses any other) + decoder +
    latent_avg (opts in the sidecar).
``jojogan SRC DST``
    JoJoGAN style generator (``jojo.pt``, ``arcane_*.pt``, ...: ``{'g': ...}``) -> the
    MindSpore Generator checkpoint the ``stylegan2`` subcommand writes.
``blendgan SRC DST [--what auto|generator|psp-encoder|style-encoder|vgg19]``
    BlendGAN ``blendgan.pt`` (generator with its style encoder), ``psp_encoder.pt``,
    ``style_encoder.pt``, or torchvision ``vgg19-dcbe5e1e.pth`` (auto-detected).
``stargan2 SRC DST``
    StarGAN v2 ``100000_nets_ema.ckpt`` (celeba_hq with its FAN, afhq), ``_nets.ckpt`` (with the
    discriminator) or ``wing.ckpt`` (the FAN alone) -> MindSpore generator, mapping network,
    style encoder (+ discriminator, FAN).
``lpips DST --net alex|vgg --lin LIN.pth --backbone TORCHVISION.pth``
    LPIPS v0.1 linear layers (lpips or pSp layout) + torchvision ImageNet weights.
``dino SRC DST [--heads N]``
    DINO ViT backbone (``dino_vitbase8_pretrain.pth``) -> MindSpore VisionTransformer.
``clip SRC DST``
    CLIP ViT (``ViT-B-32.pt``: TorchScript archive, read without running it; or a
    plain state dict) -> MindSpore CLIP (image and text towers).

Every subcommand takes ``--max-bytes SIZE`` (e.g. ``32G``): the most decoded
tensor data one input file may hold (default 16 GiB or
``$MODIFY_MS_MAX_CHECKPOINT_BYTES``).

Adding an importer: put a module in :data:`IMPORTERS` (subcommand -> module
name). The module provides ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int`` (exit code), and may provide
``detect_layout(state_dict) -> str | None`` for ``inspect``. Its input files are
the arguments named in :data:`INPUT_ARGS`, its output the ``dst`` argument
(written with ``DST.json`` beside it).

Before anything is read, DST is checked: not a folder, not under a file, not
one of the inputs (nor DST.json); a missing folder above DST is created when
the output is written. Errors (unreadable file, keys that do not map, bad
arguments or paths) are printed as ONE line ``error: <file>: <problem>`` on
stderr, exit code 2, no traceback.
"""
import argparse
import importlib
import json
import os
import sys

os.environ.setdefault("GLOG_v", "3")  # MindSpore: errors only

# subcommand -> module (relative to this package) implementing HELP/add_arguments/run
IMPORTERS = {
    "stylegan2": "weights_convert.stylegan2",
    "inception": "weights_convert.inception",
    "irse50": "weights_convert.irse",
    "psp": "weights_convert.psp",
    "jojogan": "weights_convert.jojogan",
    "lpips": "weights_convert.lpips_weights",
    "dino": "weights_convert.dino",
    "clip": "weights_convert.clip",
    "blendgan": "weights_convert.blendgan",
    "stargan2": "weights_convert.stargan2",
    "mmfs": "weights_convert.mmfs",
}

MANIFESTS_ENV = "MODIFY_MS_KEY_MANIFESTS"  # optional path to checkpoint_key_manifests.json
INPUT_ARGS = ("file", "src", "lin", "backbone")  # argument names that are input files
OUTPUT_ARG = "dst"
SIDECAR_SUFFIX = ".json"  # modify_ms.utils.checkpoint.save_arrays writes DST and DST.json


def _manifests():
    """The packaged key manifests, or the file named by $MODIFY_MS_KEY_MANIFESTS."""
    from modify_ms.assets import key_manifests

    path = os.environ.get(MANIFESTS_ENV, "")
    if path:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    return key_manifests("checkpoint")


def _state_dicts(obj):
    """[(label, {key: array})] for the state_dicts inside a loaded checkpoint."""
    import numpy as np

    def is_sd(x):
        return isinstance(x, dict) and x and all(isinstance(v, np.ndarray) for v in x.values())

    if is_sd(obj):
        return [("(top level)", obj)]
    found = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if is_sd(v):
                found.append((str(k), v))
            elif isinstance(v, dict) and any(is_sd(x) for x in v.values()):
                found.extend((f"{k}.{kk}", vv) for kk, vv in v.items() if is_sd(vv))
    return found


def _detectors():
    out = []
    for name in IMPORTERS.values():
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(module, "detect_layout"):
            out.append((name, module.detect_layout))
    return out


def describe_layouts(sd, manifests=None):
    """Layout names matching a state_dict (exact manifest matches first)."""
    import numpy as np

    manifests = _manifests() if manifests is None else manifests
    keys = {k for k in sd if "num_batches_tracked" not in k}
    found = []
    for name, manifest in manifests.items():
        mkeys = {k for k in manifest if "num_batches_tracked" not in k}
        if keys == mkeys and all(tuple(np.shape(sd[k])) == tuple(manifest[k]) for k in keys):
            found.append(f"{name} (exact keys and shapes)")
    for _, detect in _detectors():
        try:
            label = detect(sd)
        except Exception:  # a detector failing on a foreign layout just does not match
            label = None
        if label:
            found.append(label)
    return found


def cmd_inspect(args):
    import numpy as np

    from .torch_pickle import detect_format, is_torchscript, load_torch_file, load_torchscript_tensors

    fmt = detect_format(args.file)
    if fmt == "pickle":
        from .nvlabs_pkl import load_nvlabs_pkl

        loaded = load_nvlabs_pkl(args.file)
        print(f"{args.file}: nvlabs-pkl")
        meta = loaded.pop("meta")
        print("  networks: " + ", ".join(loaded) + "; other keys: " + ", ".join(meta.get("other_keys", [])))
        print("  " + ", ".join(f"{k}={meta[k]}" for k in ("z_dim", "w_dim", "c_dim", "img_resolution") if k in meta))
        parts = list(loaded.items())
    elif is_torchscript(args.file):  # e.g. CLIP's ViT-B-32.pt: its tensors, read without running it
        parts = [("module tensors", load_torchscript_tensors(args.file, progress=True))]
        print(f"{args.file}: TorchScript archive (torch.jit.save; its code is not read)")
    else:
        obj = load_torch_file(args.file, progress=True)
        print(f"{args.file}: {fmt} torch.save file")
        if isinstance(obj, dict):
            print("  top-level keys: " + ", ".join(map(str, obj)))
        else:
            print(f"  top level: {type(obj).__name__}")
        parts = _state_dicts(obj)
    if not parts:
        print("  no state_dict found")
    for label, sd in parts:
        total = int(sum(np.size(v) for v in sd.values()))
        print(f"  [{label}] {len(sd)} tensors, {total:,} values")
        layouts = describe_layouts(sd)
        for name in layouts or ["unknown layout"]:
            print(f"      layout: {name}")
    return 0


class _OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one ``error:`` line (exit code 2) like every other error."""

    def error(self, message):
        self.exit(2, f"error: {self.prog}: {message} (see --help)\n")


def _size_argument(text):
    from .limits import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc))


def build_parser():
    parser = _OneLineParser(prog="python -m weights_convert", description=__doc__.split("\n\n")[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--max-bytes", type=_size_argument, default=None, metavar="SIZE",
                        help="most decoded tensor data one input file may hold, e.g. 512M, 32G "
                             "(default: $MODIFY_MS_MAX_CHECKPOINT_BYTES or 16G)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("inspect", parents=[common], help="show format, keys and detected layout of a checkpoint")
    p.add_argument("file")
    p.set_defaults(func=cmd_inspect)
    for name, module_name in IMPORTERS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, parents=[common], help=module.HELP)
        module.add_arguments(p)
        p.set_defaults(func=module.run)
    return parser


def check_paths(args):
    """Refuse an output that is a folder, lies under a file, or would replace an input
    (DST or its DST.json sidecar), before anything is read or written."""
    from modify_ms.utils.paths import check_output_file

    dst = getattr(args, OUTPUT_ARG, None)
    if dst is None:
        return
    inputs = [getattr(args, name) for name in INPUT_ARGS if getattr(args, name, None)]
    for output in (dst, dst + SIDECAR_SUFFIX):
        check_output_file(output, inputs, image=False)


def _run(args):
    from .limits import limit_total_bytes

    check_paths(args)
    if args.max_bytes is None:
        return args.func(args)
    with limit_total_bytes(args.max_bytes):
        return args.func(args)


def main(argv=None):
    from modify_ms.utils.checkpoint import CheckpointFileError
    from modify_ms.utils.paths import OutputPathError

    from .errors import MappingError

    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error already printed as one line (2)
        return int(exc.code or 0)
    try:
        return int(_run(args) or 0)
    except (CheckpointFileError, MappingError, OutputPathError) as exc:
        print(f"error: {exc}", file=sys.stderr)
    except OSError as exc:  # writing the output: permissions, full disk
        where = exc.filename or getattr(args, OUTPUT_ARG, None) or args.command
        print(f"error: {where}: {exc.strerror or exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
    except Exception as exc:  # a bug, still one line: the contract is no traceback
        text = " ".join(str(exc).split())[:300]
        print(f"error: {args.command}: internal error ({type(exc).__name__}: {text}); please report it",
              file=sys.stderr)
    return 2


if __name__ == "__main__":
    from modify_ms.commands import exit_now  # skips MindSpore's "Exception ignored in Cell.__del__" teardown noise

    exit_now(main())
