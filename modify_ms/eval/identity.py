"""Identity distance (MMFS protocol): mean of 1 - cos(R(input), R(output)) with ArcFace R.

The metric is written against a small interface so it does not depend on one
network: ``embed`` maps a batch of images in [-1, 1], NCHW, to embeddings
(L2-normalised by ArcFace; the cosine here renormalises anyway, so any
embedding works). Build ``embed`` from the project's ArcFace with
``modify_ms.losses.identity`` (its crop/resize is part of the embedding).
"""
import numpy as np
from mindspore import nn

from .resize import fit_square


def _as_numpy(value):
    return value.asnumpy() if hasattr(value, "asnumpy") else np.asarray(value)


def cosine_similarity_rows(a, b, eps=1e-12):
    """Row-wise cosine similarity of two [N, D] arrays, in float64."""
    a = np.asarray(a, np.float64).reshape(len(a), -1)
    b = np.asarray(b, np.float64).reshape(len(b), -1)
    norms = np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), eps)
    return np.sum(a * b, axis=1) / norms


def identity_distances(embed, inputs, outputs):
    """Per-pair 1 - cos(embed(input_i), embed(output_i)) for equal-length image batches in [-1, 1]."""
    inputs = np.asarray(inputs, np.float32)
    outputs = np.asarray(outputs, np.float32)
    if inputs.shape[0] != outputs.shape[0]:
        raise ValueError(f"identity_distances: {inputs.shape[0]} inputs but {outputs.shape[0]} outputs")
    e_in = _as_numpy(embed(inputs))
    e_out = _as_numpy(embed(outputs))
    return 1.0 - cosine_similarity_rows(e_in, e_out)


def identity_distance(embed, inputs, outputs):
    """Mean identity distance over pairs (a float)."""
    return float(np.mean(identity_distances(embed, inputs, outputs)))


class ArcFaceEmbedder(nn.Cell):
    """Images in [-1, 1] (any size) -> unit ArcFace embeddings, through ``IdentityLoss.embed``.

    Images are first brought to ``identity_loss``'s 256 x 256 frame (``fit_square``) so the
    face crop [35:223, 32:220] means what it means in training.
    """

    def __init__(self, identity_loss, size=256):
        super().__init__()
        self.identity = identity_loss
        self.size = size

    def construct(self, images):
        return self.identity.embed(fit_square(images, self.size))


def identity_distances_for_pairs(embed, pairs, reader, progress=None):
    """Per-output identity distances for [(input path, [output paths])] (inputs embedded once).

    ``embed``: host callable [N, 3, H, W] in [-1, 1] -> [N, D]; ``reader``: path -> HWC [0, 1],
    or None for an unreadable file (that output, or the whole pair for its input, is left out).
    """
    iterable = progress(pairs) if progress is not None else pairs
    distances = []
    for input_path, output_paths in iterable:
        source_image = reader(input_path)
        output_images = [im for im in (reader(p) for p in output_paths) if im is not None]
        if source_image is None or not output_images:
            continue
        source = _as_numpy(embed(_to_model(np.stack([source_image]))))
        outputs = _as_numpy(embed(_to_model(np.stack(output_images))))
        distances.append(1.0 - cosine_similarity_rows(np.repeat(source, len(outputs), axis=0), outputs))
    if not distances:
        from .files import EvalInputError

        raise EvalInputError("identity distance: no readable input/output pair")
    return np.concatenate(distances)


def _to_model(images_hwc01):
    """[N, H, W, 3] in [0, 1] -> [N, 3, H, W] in [-1, 1]."""
    return np.ascontiguousarray(images_hwc01.transpose(0, 3, 1, 2) * 2.0 - 1.0, dtype=np.float32)
