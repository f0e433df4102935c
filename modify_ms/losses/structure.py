"""MMFS's DINO-ViT structure loss (Stage II and fine-tuning; Splice's self-similarity loss).

L_ST = sum over the batch of mean_{i,j} (S(fake)_{ij} - S(real)_{ij})^2, where S is the cosine
self-similarity matrix of the keys of DINO's block ``layer`` (the last, 11, for ViT-B/8): all heads
side by side, class token included, [N, N] with N = 1 + 28 * 28 at 224 px. The norm product is
clamped at 1e-8 as MMFS's ``attn_cosine_sim``. The paper writes a Frobenius norm; the official
code (``calculate_global_ssim_loss``) takes this mean square per image and sums over the batch,
which is what is computed here. The real side is under stop-gradient; DINO is frozen.
"""
from mindspore import nn, ops

from ..models.dino import DINO_MAX_SIZE, DINO_RESIZE, DinoInput
from ..models.irse import freeze

SIMILARITY_EPS = 1e-8


def cosine_self_similarity(x, eps=SIMILARITY_EPS):
    """[B, N, D] -> [B, N, N]: <x_i, x_j> / max(|x_i| |x_j|, eps)."""
    norms = ops.sqrt((x * x).sum(axis=-1, keepdims=True))  # [B, N, 1]
    dots = ops.matmul(x, x.transpose(0, 2, 1))
    # the outer product by broadcasting: the gradient of a [1, N, 1] @ [1, 1, N] matmul fails to
    # compile in MindSpore 2.10 GRAPH_MODE (batch 1, inner size 1)
    return dots / ops.maximum(norms * norms.transpose(0, 2, 1), eps)


class DinoStructureLoss(nn.Cell):
    """construct(fake, real) on [-1, 1] images of ``in_size`` -> scalar L_ST.

    ``dino``: a :class:`~modify_ms.models.vit.VisionTransformer` built for the resized input
    (``DinoInput(in_size).out_size``; 224 x 224 for square images); ``layer`` defaults to its last block;
    ``size`` / ``max_size`` are torchvision's ``Resize(224, max_size=480)`` arguments.
    """

    def __init__(self, dino, in_size, layer=None, antialias=True, size=DINO_RESIZE, max_size=DINO_MAX_SIZE):
        super().__init__()
        self.input = DinoInput(in_size, size, max_size, antialias)
        if tuple(dino.input_size) != tuple(self.input.out_size):
            raise ValueError(f"DINO is built for {dino.input_size} inputs; the structure loss feeds it "
                             f"{self.input.out_size} (build it with input_size={self.input.out_size})")
        self.dino = freeze(dino)
        self.layer = len(dino.blocks) - 1 if layer is None else int(layer)

    def similarity(self, images):
        return cosine_self_similarity(self.dino.keys(self.input(images), self.layer))

    def construct(self, fake, real):
        target = ops.stop_gradient(self.similarity(real))
        diff = self.similarity(fake) - target
        return (diff * diff).mean(axis=(1, 2)).sum()
