"""MMFS's CLIP losses for zero- and one-shot fine-tuning (``style_based_pix2pixII_model.py``, phase 4).

* :class:`DirectionalClipLoss`: mean over the batch of 1 - cos(n(E(fake)) - n(E(real)), direction),
  E = CLIP's image encoder on MMFS's tensor preprocessing, n = L2 normalisation; ``direction`` is the
  prompt's normalised embedding minus the source's (:func:`clip_direction`).
* :class:`TokenProjectionLoss`: the 4th block's CLIP tokens of the output (class token dropped,
  each token L2-normalised) should lie in the span of the prompt image's tokens:
  mean |U U^T t - t| with U the left singular vectors of the prompt's normalised tokens
  (:func:`projection_basis`, reduced SVD of [width, n_tokens] on the host, once per prompt).

The real image and the direction carry no gradient; CLIP is frozen.
"""
import numpy as np
import mindspore as ms
from mindspore import nn, ops

from ..models.clip import ClipImageInput
from ..models.irse import freeze

NORM_EPS = 1e-12  # torch F.normalize
COSINE_EPS = 1e-8  # torch F.cosine_similarity
PROJECTION_LAYERS = 4  # MMFS hooks CLIP visual transformer.resblocks[3]: the output of the 4th block


def l2_normalize(x, eps=NORM_EPS):
    """x / max(|x|, eps) along the last axis (torch ``F.normalize``)."""
    return x / ops.maximum(ops.sqrt((x * x).sum(axis=-1, keepdims=True)), eps)


def cosine_similarity(a, b, eps=COSINE_EPS):
    """<a, b> / max(|a| |b|, eps) along the last axis."""
    dots = (a * b).sum(axis=-1)
    norms = ops.sqrt((a * a).sum(axis=-1)) * ops.sqrt((b * b).sum(axis=-1))
    return dots / ops.maximum(norms, eps)


def clip_direction(prompt_embedding, source_embedding):
    """[1, E] host array: n(prompt) - source (MMFS: source is the normalised 'photo' text embedding,
    or the mean over the batch of the normalised image embeddings of the inputs, not re-normalised)."""
    prompt = np.asarray(prompt_embedding, np.float64)
    prompt = prompt / np.maximum(np.linalg.norm(prompt, axis=-1, keepdims=True), NORM_EPS)
    return (prompt - np.asarray(source_embedding, np.float64)).astype(np.float32).reshape(1, -1)


class DirectionalClipLoss(nn.Cell):
    """construct(fake, real, direction) -> scalar; images [-1, 1] of ``in_size``, direction [1 or B, E]."""

    def __init__(self, clip_visual, in_size, antialias=True):
        super().__init__()
        self.input = ClipImageInput(in_size, clip_visual.vit.input_size[0], antialias)
        self.visual = freeze(clip_visual)

    def embed(self, images):
        return l2_normalize(self.visual(self.input(images)))

    def construct(self, fake, real, direction):
        delta = self.embed(fake) - ops.stop_gradient(self.embed(real))
        return (1.0 - cosine_similarity(delta, ops.stop_gradient(direction))).mean()


def normalized_tokens(tokens):
    """[..., n, width]: the class token dropped, each token L2-normalised (host arrays)."""
    t = np.asarray(tokens, np.float64)[..., 1:, :]
    return t / np.maximum(np.linalg.norm(t, axis=-1, keepdims=True), NORM_EPS)


def projection_basis(prompt_tokens):
    """U [width, r] from the prompt image's CLIP tokens [1 + n, width] (class token first, as
    ``ClipVisual.tokens`` returns them): reduced SVD of the normalised tokens arranged [width, n]."""
    tokens = normalized_tokens(prompt_tokens)
    if tokens.ndim == 3:
        if tokens.shape[0] != 1:
            raise ValueError("projection_basis takes the tokens of ONE prompt image")
        tokens = tokens[0]
    u, _, _ = np.linalg.svd(tokens.T, full_matrices=False)
    return u.astype(np.float32)


class TokenProjectionLoss(nn.Cell):
    """construct(fake) -> mean |t P - t| over the output's normalised tokens t, P = U U^T."""

    def __init__(self, clip_visual, in_size, basis, layers=PROJECTION_LAYERS, antialias=True):
        super().__init__()
        self.input = ClipImageInput(in_size, clip_visual.vit.input_size[0], antialias)
        self.visual = freeze(clip_visual)
        basis = np.asarray(basis, np.float32)
        if basis.ndim != 2 or basis.shape[0] != clip_visual.vit.width:
            raise ValueError(f"projection basis must be [{clip_visual.vit.width}, r], got {basis.shape}")
        self.projector = ms.Tensor(basis @ basis.T)
        self.layers = int(layers)

    def construct(self, fake):
        tokens = l2_normalize(self.visual.tokens(self.input(fake), self.layers)[:, 1:])
        return ops.abs(ops.matmul(tokens, self.projector) - tokens).mean()
