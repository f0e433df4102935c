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


def lpips_linear_layers(net="alex"):
    """Path of the bundled LPIPS v0.1 linear-layer file of ``net``."""
    if net not in LPIPS_NETS:
        raise ValueError(f"LPIPS network must be one of {LPIPS_NETS}, got {net!r}")
    return asset_path("lpips_v0.1", f"{net}.pth")


def key_manifests(kind="checkpoint"):
    """The parsed key/shape manifests: ``kind`` 'checkpoint' (MODIFY's networks) or 'baseline'."""
    with open(asset_path("manifests", f"{kind}_key_manifests.json"), encoding="utf-8") as fh:
        return json.load(fh)
