"""CLIP (Radford et al. 2021; ViT-B/32 by default): image and text towers on :mod:`modify_ms.models.vit`.

* :class:`ClipVisual`: a :class:`~modify_ms.models.vit.VisionTransformer` with CLIP's options
  (patch conv without bias, ``ln_pre``, QuickGELU, LayerNorm eps 1e-5; final norm = ``ln_post`` on the
  class token) and the projection ``proj`` [width, embed_dim] (no bias).
* :class:`ClipText`: token embedding + positional embedding -> blocks under an additive causal mask
  (-inf strictly above the diagonal) -> ``ln_final`` -> the feature at the end-of-text position
  (argmax of the ids: EOT is the largest id) -> ``text_projection``.
* :class:`CLIP`: both towers and ``logit_scale``; ``encode_image`` / ``encode_text`` as in CLIP.
* :class:`ClipImageInput`: MMFS's tensor preprocessing of generated images ([-1, 1] -> [0, 1] ->
  antialiased bilinear to 224 x 224 -> CLIP mean/std); :func:`clip_preprocess_pil` is CLIP's own PIL
  transform (bicubic short side to 224, centre crop, RGB, mean/std), used for reference images.

The tokenizer is :mod:`modify_ms.models.clip_tokenizer`; ``python -m weights_convert clip`` converts
``ViT-B-32.pt`` (TorchScript archive) or a plain CLIP state dict.
"""
from dataclasses import asdict, dataclass

import numpy as np
import mindspore as ms
from mindspore import nn, ops
from mindspore.common.initializer import Normal, initializer

from ..nn.resample import Resize
from .dino import Normalize
from .vit import Block, VisionTransformer, layer_norm

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CLIP_EPS = 1e-5


@dataclass(frozen=True)
class ClipConfig:
    """CLIP ViT-B/32 by default (what ``build_model`` derives from its state dict)."""

    embed_dim: int = 512
    image_resolution: int = 224
    vision_layers: int = 12
    vision_width: int = 768
    vision_patch_size: int = 32
    context_length: int = 77
    vocab_size: int = 49408
    transformer_width: int = 512
    transformer_heads: int = 8
    transformer_layers: int = 12
    vision_heads: int = 12  # build_model: vision_width // 64


class ClipVisual(nn.Cell):
    """Image tower: ViT (``vit``) -> ``ln_post`` of the class token -> @ ``proj``."""

    def __init__(self, config=ClipConfig()):
        super().__init__()
        c = config
        self.vit = VisionTransformer(image_size=c.image_resolution, patch_size=c.vision_patch_size,
                                     width=c.vision_width, layers=c.vision_layers, heads=c.vision_heads,
                                     act="quick_gelu", eps=CLIP_EPS, qkv_bias=True, patch_bias=False, pre_norm=True)
        self.proj = ms.Parameter(initializer(Normal(c.vision_width ** -0.5), (c.vision_width, c.embed_dim),
                                             ms.float32), name="proj")

    def tokens(self, x, layers):
        """[B, 1 + patches, width] after the first ``layers`` blocks (class token first)."""
        return self.vit.tokens(x, layers)

    def construct(self, x):
        return ops.matmul(self.vit(x), self.proj)


def causal_mask(length):
    """[length, length] additive mask: 0 on and below the diagonal, -inf above."""
    return np.triu(np.full((length, length), -np.inf, np.float32), 1)


class ClipText(nn.Cell):
    """Text tower on [B, context_length] int32 ids (SOT ... EOT, zero padded)."""

    def __init__(self, config=ClipConfig()):
        super().__init__()
        c = config
        self.token_embedding = nn.Embedding(c.vocab_size, c.transformer_width, embedding_table=Normal(0.02))
        self.positional_embedding = ms.Parameter(
            initializer(Normal(0.01), (c.context_length, c.transformer_width), ms.float32), name="positional_embedding")
        self.blocks = nn.CellList([Block(c.transformer_width, c.transformer_heads, 4.0, "quick_gelu", CLIP_EPS)
                                   for _ in range(c.transformer_layers)])
        self.ln_final = layer_norm(c.transformer_width, CLIP_EPS)
        self.text_projection = ms.Parameter(
            initializer(Normal(c.transformer_width ** -0.5), (c.transformer_width, c.embed_dim), ms.float32),
            name="text_projection")
        self.mask = ms.Tensor(causal_mask(c.context_length))
        self.context_length = c.context_length

    def construct(self, ids):
        x = self.token_embedding(ids) + self.positional_embedding
        for block in self.blocks:
            x = block(x, self.mask)
        x = self.ln_final(x)
        # the feature at the EOT position, as a one-hot contraction (differentiable, static shapes)
        pick = ops.one_hot(ops.argmax(ids, dim=-1), self.context_length, ms.Tensor(1.0, ms.float32),
                           ms.Tensor(0.0, ms.float32))
        eot = ops.matmul(pick.expand_dims(1), x).squeeze(1)
        return ops.matmul(eot, self.text_projection)


class CLIP(nn.Cell):
    """``visual`` and ``text`` towers plus ``logit_scale`` (kept for the checkpoint; MMFS does not use it)."""

    def __init__(self, config=ClipConfig()):
        super().__init__()
        self.config = config
        self.visual = ClipVisual(config)
        self.text = ClipText(config)
        # shape (1,), not CLIP's (): a 0-d value does not survive the converters' contiguous copies
        self.logit_scale = ms.Parameter(ms.Tensor([np.log(1 / 0.07)], ms.float32), name="logit_scale",
                                        requires_grad=False)

    def encode_image(self, x):
        return self.visual(x)

    def encode_text(self, ids):
        return self.text(ids)

    def construct(self, x, ids):
        """CLIP's scaled cosine logits (image x text)."""
        img = ops.L2Normalize(axis=-1, epsilon=1e-12)(self.visual(x))
        txt = ops.L2Normalize(axis=-1, epsilon=1e-12)(self.text(ids))
        return ops.exp(self.logit_scale) * ops.matmul(img, txt.T)


def clip_kwargs(config):
    return asdict(config)


class ClipImageInput(nn.Cell):
    """MMFS's ``preprocess_clip_image``: [-1, 1] images of ``in_size`` -> 224 x 224 CLIP input."""

    def __init__(self, in_size, size=224, antialias=True):
        super().__init__()
        self.resize = Resize(in_size, (size, size), antialias)
        self.normalize = Normalize(CLIP_MEAN, CLIP_STD)

    def construct(self, x):
        return self.normalize(self.resize(x * 0.5 + 0.5))


def clip_preprocess_pil(image, size=224):
    """CLIP's ``_transform`` on a PIL image: bicubic short side -> ``size``, centre crop, RGB, mean/std.
    Returns [3, size, size] float32 (host side, for prompt images)."""
    from PIL import Image

    w, h = image.size
    if w <= h:
        new_w, new_h = size, int(size * h / w)
    else:
        new_w, new_h = int(size * w / h), size
    image = image.resize((new_w, new_h), Image.BICUBIC)
    left, top = int(round((new_w - size) / 2.0)), int(round((new_h - size) / 2.0))
    image = image.crop((left, top, left + size, top + size)).convert("RGB")
    x = np.asarray(image, np.float32) / 255.0
    return ((x - np.array(CLIP_MEAN, np.float32)) / np.array(CLIP_STD, np.float32)).transpose(2, 0, 1)


def load_clip(path):
    """The CLIP of a ``python -m weights_convert clip`` checkpoint."""
    from ..utils.checkpoint import CheckpointFileError, fill_cell, read_arrays

    arrays, meta = read_arrays(path)
    if meta.get("format") != "modify_ms.clip":
        raise CheckpointFileError(f"{path}: not a converted CLIP checkpoint (convert it with "
                                  "'python -m weights_convert clip')")
    network = CLIP(ClipConfig(**meta["kwargs"]))
    fill_cell(network, arrays, path)
    return network
