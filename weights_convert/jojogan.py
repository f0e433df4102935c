"""Importer of JoJoGAN's fine-tuned style generators (``arcane_caitlyn.pt``, ``jojo.pt``, ``disney.pt``,
``art.pt``, ``sketch_multi.pt``, ``supergirl.pt`` and their ``_preserve_color`` variants).

Such a file is ``{"g": state_dict}`` with the keys of a rosinality ``Generator(1024, 512, 8, 2)``
(171 tensors, noise buffers and blur kernels included); JoJoGAN reads ``ckpt["g"]`` and nothing
else, so other top-level entries are ignored (and listed in the sidecar), and a file without a
``"g"`` state_dict is refused. The conversion IS the StyleGAN2 importer's
(``weights_convert.stylegan2.convert_stylegan2(src, dst, which="g")``: its rules, its strict
mapping, its writer), so the output is a ``modify_ms.stylegan2`` checkpoint that
``weights_convert.stylegan2.build_from_checkpoint`` and every other loader of converted
generators load as they load ``stylegan2-ffhq-config-f.pt``'s.

The file has no mean latent: the StyleGAN2 importer estimates it (mean of mapping(z) over
4096 z ~ N(0, I), seed 0) and says so in the sidecar. JoJoGAN never trains the mapping, so
this is the FFHQ generator's mean latent up to sampling noise.

Public API: ``WHICH``, ``jojogan_generator_state(obj, path)``, ``convert_jojogan(src, dst)``;
CLI ``jojogan SRC DST``.
"""
import numpy as np

from .errors import CheckpointError

WHICH = "g"  # the only entry JoJoGAN's stylize.ipynb / predict.py load


def jojogan_generator_state(obj, path):
    """The ``"g"`` state_dict of a loaded JoJoGAN style-generator file; CheckpointError if it has none."""
    if not isinstance(obj, dict):
        raise CheckpointError(path, f"not a JoJoGAN style generator: top level is {type(obj).__name__}, "
                                    "not a dict with 'g'")
    sd = obj.get(WHICH)
    if not (isinstance(sd, dict) and sd and all(isinstance(v, np.ndarray) for v in sd.values())):
        keys = ", ".join(map(str, list(obj)[:10])) or "none"
        raise CheckpointError(path, f"not a JoJoGAN style generator: no 'g' state_dict (top-level keys: {keys})")
    return sd


def convert_jojogan(src, dst):
    """JoJoGAN ``{"g": ...}`` file -> MindSpore Generator ``dst`` (+ ``dst.json``), as the StyleGAN2
    importer writes it; returns the sidecar meta."""
    from .stylegan2 import convert_stylegan2
    from .torch_pickle import load_torch_file

    # the layout check reads the file once more than convert_stylegan2 does: a file that is not
    # JoJoGAN's (a bare state_dict, a g_ema-only or NVlabs file) is refused, not converted
    jojogan_generator_state(load_torch_file(src, progress=False), src)
    return convert_stylegan2(src, dst, which=WHICH, progress=True)


HELP = "JoJoGAN style generator (jojo.pt, arcane_*.pt, ...: {'g': rosinality G(1024)}) -> MindSpore Generator .ckpt"


def add_arguments(parser):
    parser.add_argument("src", help="JoJoGAN fine-tuned generator file (dict with 'g')")
    parser.add_argument("dst", help="output MindSpore checkpoint (.ckpt); DST.json as the stylegan2 subcommand writes")


def run(args):
    meta = convert_jojogan(args.src, args.dst)
    kwargs = ", ".join(f"{k}={v}" for k, v in meta["kwargs"].items())
    print(f"wrote {args.dst}: Generator({kwargs}) from JoJoGAN 'g', {meta['num_params']} params, "
          f"{meta['num_values']:,} values")
    print(f"  latent_avg: {meta['latent_avg']}")
    if meta["ignored_source_entries"]:
        print("  ignored: " + ", ".join(meta["ignored_source_entries"]))
    print(f"wrote {args.dst}.json")
    return 0
