"""MMFS's CLIP losses for zero- and one-shot fine-tuning (``style_based_pix2pixII_model.py``, phase 4).

* :class:`DirectionalClipLoss`: mean over the batch of 1 - cos(n(E(fake)) - n(E(real)), direction),
  E = CLIP's image encoder on MMFS's tensor preprocessing, n = L2 normalisation; ``direction`` is the
  prompt's normalised embedding minus the source's: the normalised text embedding of "photo" for a
  text prompt (:func:`clip_direction`), the batch mean of n(E(real)) for an image prompt.
* :class:`TokenProjectionLoss`: the 4th block's CLIP tokens of the output (class token dropped,
  each token L2-normalised) should lie in the span of the prompt image's tokens:
  mean |U U^T t - t| with U the left singular vectors of the prompt's normalised tokens
  (:func:`projection_basis`, reduced SVD of [width, n_tokens] on the host, once per prompt).

The real image and the direction carry no gradient; CLIP is frozen. :func:`text_prompt_direction`
and :func:`image_prompt` compute the prompt side once, on the host.
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
    """construct(fake, real, target) -> scalar; images [-1, 1] of ``in_size``.

    ``source_from_batch=False`` (text prompts): ``target`` is the direction [1 or B, E],
    n(prompt) - n(E_text(source text)) (:func:`clip_direction`).
    ``source_from_batch=True`` (image prompts, as MMFS): ``target`` is the prompt's normalised
    embedding [1, E] and the source is the mean over the batch of n(E(real)) (not re-normalised),
    so the direction follows each batch.
    """

    def __init__(self, clip_visual, in_size, source_from_batch=False, antialias=True):
        super().__init__()
        self.input = ClipImageInput(in_size, clip_visual.vit.input_size[0], antialias)
        self.visual = freeze(clip_visual)
        self.source_from_batch = bool(source_from_batch)

    def embed(self, images):
        return l2_normalize(self.visual(self.input(images)))

    def construct(self, fake, real, target):
        real_embedding = ops.stop_gradient(self.embed(real))
        direction = ops.stop_gradient(target)
        if self.source_from_batch:
            direction = direction - real_embedding.mean(axis=0, keep_dims=True)
        delta = self.embed(fake) - real_embedding
        return (1.0 - cosine_similarity(delta, direction)).mean()


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


# ---------------------------------------------------------------- prompts (host side, once per run)
def _normalized(x):
    x = np.asarray(x.asnumpy() if hasattr(x, "asnumpy") else x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), NORM_EPS)


def text_prompt_direction(clip, text, source_text="photo", tokenizer=None):
    """[1, E] direction of a text prompt: n(E_text(text)) - n(E_text(source_text)) (MMFS's default
    source prompt is "photo")."""
    from ..models.clip_tokenizer import tokenize

    ids = (tokenizer or tokenize)([text, source_text])
    embeddings = _normalized(clip.encode_text(ms.Tensor(ids)))
    return clip_direction(embeddings[:1], embeddings[1:])


def image_prompt(clip, image, layers=PROJECTION_LAYERS):
    """(n(E(prompt)) [1, E], tokens [1 + n, width] after ``layers`` blocks) of a PIL prompt image,
    through CLIP's own PIL preprocessing: the target of :class:`DirectionalClipLoss` with
    ``source_from_batch=True`` and the input of :func:`projection_basis`."""
    from ..models.clip import clip_preprocess_pil

    x = ms.Tensor(clip_preprocess_pil(image, clip.visual.vit.input_size[0])[None])
    embedding = _normalized(clip.encode_image(x)).astype(np.float32)
    return embedding, clip.visual.tokens(x, layers).asnumpy()[0]
