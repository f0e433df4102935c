"""Files that ship inside the package (no download; nothing read from beside the repository).

* ``lpips_v0.1/{alex,vgg,squeeze}.pth``: the LPIPS authors' v0.1 linear layers
  (BSD-2-Clause, see ``lpips_v0.1/LICENSE``), in PyTorch's legacy serialization,
  read through ``weights_convert``'s restricted reader, and the same arrays as
  ``{alex,vgg}_linear.npz`` (``tools/export_lpips_linear.py``; checked bit-exact by the
  tests), which ``modify_ms.losses.lpips`` loads whenever no LPIPS file is given: they
  are non-negative by definition, so the project never draws them at random.
* ``manifests/checkpoint_key_manifests.json`` and ``baseline_key_manifests.json``:
  every key and shape of the real PyTorch checkpoints the importers read (what
  ``python -m weights_convert inspect`` compares a file with).
* ``prior/prior64_{generator,encoder}.ckpt``: the quickstart's prior, a 64 px decoder and
  encoder the project trained on its built-in photos (``yaml/prior.yaml``, then
  ``tools/export_weights.py``; docs/prior.md), the toy counterpart of the paper's FFHQ
  StyleGAN2 and pretrained encoder. A config names them ``builtin:prior64_generator``.
* ``clip/bpe_simple_vocab_16e6.txt.gz``: CLIP's BPE merges (OpenAI, MIT, see ``clip/LICENSE``
  and ``clip/README.md``), read by ``modify_ms.models.clip_tokenizer``.
"""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
LPIPS_NETS = ("alex", "vgg", "squeeze")


def asset_path(*parts):
    path = os.path.join(HERE, *parts)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: packaged file missing (reinstall modify_ms)")
    return path


BUILTIN_WEIGHTS_PREFIX = "builtin:"
PRIOR_DIR = os.path.join(HERE, "prior")


def builtin_weight_names():
    """Names of the packaged weight files (``builtin:<name>`` in a config's weights section)."""
    if not os.path.isdir(PRIOR_DIR):
        return []
    return sorted(f[:-len(".ckpt")] for f in os.listdir(PRIOR_DIR) if f.endswith(".ckpt"))


def resolve_weight_path(path):
    """A weights-section path as given, or the packaged file a ``builtin:<name>`` stands for
    (a ValueError naming the known names when there is none)."""
    if not path or not path.startswith(BUILTIN_WEIGHTS_PREFIX):
        return path
    name = path[len(BUILTIN_WEIGHTS_PREFIX):]
    known = builtin_weight_names()
    if name not in known:
        raise ValueError(f"{path}: no such built-in weight file (known: {', '.join('builtin:' + k for k in known) or 'none'})")
    return os.path.join(PRIOR_DIR, name + ".ckpt")


def lpips_linear_layers(net="alex"):
    """Path of the bundled LPIPS v0.1 linear-layer file of ``net``."""
    if net not in LPIPS_NETS:
        raise ValueError(f"LPIPS network must be one of {LPIPS_NETS}, got {net!r}")
    return asset_path("lpips_v0.1", f"{net}.pth")


def key_manifests(kind="checkpoint"):
    """The parsed key/shape manifests: ``kind`` 'checkpoint' (MODIFY's networks) or 'baseline'."""
    with open(asset_path("manifests", f"{kind}_key_manifests.json"), encoding="utf-8") as fh:
        return json.load(fh)
