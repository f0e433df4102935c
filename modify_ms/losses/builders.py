"""The one way to get the frozen loss networks (ArcFace identity, LPIPS) with their weights,
for training and for evaluation alike.

Weight files are the ``.ckpt`` written by ``python -m weights_convert irse50 --target identity``
and ``python -m weights_convert lpips``; their JSON sidecar names the architecture. Loading is
strict both ways (``modify_ms.utils.checkpoint.fill_cell``) and every problem is one
``CheckpointFileError`` line naming the file.

* ``build_identity_loss(path, **overrides)`` / ``build_lpips(path=None, net='alex', **overrides)``:
  a new cell built from the file's sidecar (``overrides`` change constructor arguments, e.g.
  ``image_size=256`` or ``reduction='none'``). ``build_lpips`` without a file: the packaged v0.1
  linear layers over a random backbone (smoke tests only).
* ``load_identity_weights(cell, path)`` / ``load_lpips_weights(cell, net, path=None)``: fill a cell
  the caller built from its own config (training's ``LossNets``); the same files, the same checks.
"""
from ..utils.checkpoint import CheckpointFileError, fill_cell, read_arrays

# format in the converted file's sidecar, what the file is, how to make it
IDENTITY = ("modify_ms.identity_loss", "identity-loss", "python -m weights_convert irse50 --target identity")
LPIPS_FILE = ("modify_ms.lpips", "LPIPS", "python -m weights_convert lpips")


def _read_converted(path, kind, require_sidecar):
    """(arrays, meta) of a converted weight file whose sidecar says it is ``kind``; a sidecar
    naming another format (an LPIPS file given as ArcFace) is refused, and so is a missing one
    when ``require_sidecar`` (it holds the architecture)."""
    fmt, what, hint = kind
    arrays, meta = read_arrays(path)
    found = meta.get("format")
    if found == fmt or not (found or require_sidecar):
        return arrays, meta
    if found:
        raise CheckpointFileError(f"{path}: a {found} file, not {what} weights (convert with: {hint})")
    raise CheckpointFileError(f"{path}: no {what} sidecar (convert with: {hint})")


def load_identity_weights(cell, path):
    """Fill an ``IdentityLoss`` from a converted ArcFace file; returns ``cell``."""
    arrays, _ = _read_converted(path, IDENTITY, require_sidecar=False)
    fill_cell(cell, arrays, path)
    return cell


def load_lpips_weights(cell, net, path=None):
    """Fill an ``LPIPS(net)`` from a converted file, or, without one, only its linear layers from
    the packaged v0.1 ones of ``net`` (the backbone keeps its initialisation); returns ``cell``."""
    if path:
        arrays, _ = _read_converted(path, LPIPS_FILE, require_sidecar=False)
        fill_cell(cell, arrays, path)
        return cell
    from .lpips import packaged_linear_layers

    fill_cell(cell, packaged_linear_layers(net), f"packaged LPIPS v0.1 {net} linear layers",
              allow_missing=("net.",))
    return cell


def build_identity_loss(path, **overrides):
    """``IdentityLoss`` as the converted file's sidecar describes it, with its weights."""
    from .identity import IdentityLoss

    arrays, meta = _read_converted(path, IDENTITY, require_sidecar=True)
    cell = IdentityLoss(**dict(meta["kwargs"], **overrides))
    fill_cell(cell, arrays, path)
    return cell


def build_lpips(path=None, net="alex", **overrides):
    """``LPIPS`` as the converted file's sidecar describes it, with its weights; without a file,
    ``LPIPS(net)`` with the packaged linear layers over a random backbone."""
    from .lpips import LPIPS

    if not path:
        return load_lpips_weights(LPIPS(net, **overrides), net)
    arrays, meta = _read_converted(path, LPIPS_FILE, require_sidecar=True)
    cell = LPIPS(**dict(meta["kwargs"], **overrides))
    fill_cell(cell, arrays, path)
    return cell
