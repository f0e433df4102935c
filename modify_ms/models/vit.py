"""Vision transformer pieces shared by DINO ViT-B/8 and CLIP's towers (the one home of each).

* :class:`Attention`: multi-head self-attention with ONE packed projection ``qkv``
  ([3D, D], rows in q, k, v order: DINO's ``attn.qkv``, CLIP's ``in_proj_weight``),
  scale 1/sqrt(head_dim), optional additive mask, output projection ``proj``.
  :meth:`Attention.keys` gives the keys of all heads side by side ([B, N, D]), what
  MMFS's structure loss reads from DINO's last block.
* :class:`Block`: pre-norm residual block, x += attn(norm1 x); x += mlp(norm2 x).
* :class:`VisionTransformer`: patch embedding (conv k = s = patch), class token,
  positional embedding (interpolated as DINO does when the input grid differs from
  the trained one), optional ``ln_pre`` (CLIP), the blocks, final ``norm`` on the class
  token. :meth:`VisionTransformer.tokens` / :meth:`VisionTransformer.keys` give any
  layer's tokens and keys.

Batch-first [B, N, D] throughout (CLIP's torch code runs sequence-first; the
mathematics is the same). Parameter names follow DINO's state dict (LayerNorm
weight/bias are MindSpore's gamma/beta); the importers map CLIP's names onto them.

Positional interpolation is fixed by ``input_size`` at construction: the bicubic
resampling of the trained grid is a pair of constant matrices (torch's bicubic with
A = -0.75, DINO's scale factors ``(grid_out + 0.1) / grid``), so GRAPH_MODE sees a
static graph and the gradient w.r.t. the embedding flows through two matmuls.
"""
import math

import numpy as np
import mindspore as ms
from mindspore import nn, ops
from mindspore.common.initializer import Normal, TruncatedNormal, initializer

BICUBIC_A = -0.75  # torch's cubic convolution coefficient
DINO_GRID_EPS = 0.1  # DINO adds 0.1 to the target grid to avoid float floor errors (DINO issue #8)


class QuickGELU(nn.Cell):
    """CLIP's activation, x * sigmoid(1.702 x)."""

    def construct(self, x):
        return x * ops.sigmoid(1.702 * x)


def activation(name):
    """'gelu' (exact erf GELU, DINO) or 'quick_gelu' (CLIP)."""
    if name == "gelu":
        return nn.GELU(approximate=False)
    if name == "quick_gelu":
        return QuickGELU()
    raise ValueError(f"activation must be 'gelu' or 'quick_gelu', got {name!r}")


def layer_norm(dim, eps):
    return nn.LayerNorm((dim,), epsilon=eps)


def dense(in_dim, out_dim, bias=True, std=0.02):
    return nn.Dense(in_dim, out_dim, has_bias=bias, weight_init=TruncatedNormal(std), bias_init="zeros")


class Attention(nn.Cell):
    """softmax(q k^T / sqrt(d) + mask) v over ``heads`` heads, then ``proj``."""

    def __init__(self, dim, heads, qkv_bias=True):
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not a multiple of {heads} heads")
        self.dim = dim
        self.heads = heads
        self.head_dim = dim // heads
        self.scale = self.head_dim ** -0.5
        self.qkv = dense(dim, 3 * dim, bias=qkv_bias)
        self.proj = dense(dim, dim)

    def keys(self, x):
        """[B, N, D]: the k third of ``qkv(x)`` (heads side by side, as MMFS concatenates them)."""
        return self.qkv(x)[:, :, self.dim:2 * self.dim]

    def split_heads(self, x):
        b, n, _ = x.shape
        return x.reshape(b, n, self.heads, self.head_dim).transpose(0, 2, 1, 3)

    def construct(self, x, mask=None):
        b, n, _ = x.shape
        qkv = self.qkv(x)
        q = self.split_heads(qkv[:, :, :self.dim])
        k = self.split_heads(qkv[:, :, self.dim:2 * self.dim])
        v = self.split_heads(qkv[:, :, 2 * self.dim:])
        logits = ops.matmul(q * self.scale, k.transpose(0, 1, 3, 2))
        if mask is not None:
            logits = logits + mask
        out = ops.matmul(ops.softmax(logits, axis=-1), v)
        return self.proj(out.transpose(0, 2, 1, 3).reshape(b, n, self.dim))


class Mlp(nn.Cell):
    """fc1 -> activation -> fc2 (DINO's Mlp; CLIP's c_fc / c_proj)."""

    def __init__(self, dim, hidden, act):
        super().__init__()
        self.fc1 = dense(dim, hidden)
        self.act = activation(act)
        self.fc2 = dense(hidden, dim)

    def construct(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Cell):
    """Pre-norm transformer block: x += attn(norm1 x, mask); x += mlp(norm2 x)."""

    def __init__(self, dim, heads, mlp_ratio=4.0, act="gelu", eps=1e-6, qkv_bias=True):
        super().__init__()
        self.norm1 = layer_norm(dim, eps)
        self.attn = Attention(dim, heads, qkv_bias)
        self.norm2 = layer_norm(dim, eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act)

    def keys(self, x):
        """Keys this block's attention computes from its input ``x``."""
        return self.attn.keys(self.norm1(x))

    def construct(self, x, mask=None):
        x = x + self.attn(self.norm1(x), mask)
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Cell):
    """[B, 3, H, W] -> [B, (H/p)(W/p), D] with a conv of kernel = stride = p (row-major patches)."""

    def __init__(self, patch_size, dim, bias=True):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(3, dim, patch_size, stride=patch_size, pad_mode="valid", has_bias=bias,
                              weight_init=TruncatedNormal(0.02), bias_init="zeros")

    def construct(self, x):
        y = self.proj(x)
        b, d = y.shape[0], y.shape[1]
        return y.reshape(b, d, -1).transpose(0, 2, 1)


# ---------------------------------------------------------------- DINO's positional interpolation
def _cubic_weights(t):
    """Weights of the 4 taps at offsets -1, 0, 1, 2 for fractional position ``t`` (torch's A = -0.75)."""
    a = BICUBIC_A

    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return far(t + 1), near(t), near(1 - t), far(2 - t)


def bicubic_matrix(in_size, scale_factor):
    """[out, in] matrix of torch's ``interpolate(mode='bicubic', scale_factor=s, align_corners=False)``
    along one axis: out = floor(in * s), source x = (i + 0.5) / s - 0.5, taps clamped to the border."""
    out_size = int(math.floor(in_size * scale_factor))
    m = np.zeros((out_size, in_size), np.float64)
    for i in range(out_size):
        src = (i + 0.5) / scale_factor - 0.5
        base = math.floor(src)
        for offset, w in zip((-1, 0, 1, 2), _cubic_weights(src - base)):
            m[i, min(max(base + offset, 0), in_size - 1)] += w
    return m


def dino_grid_matrices(grid, out_rows, out_cols):
    """(rows [out_rows, grid], cols [out_cols, grid]) resampling the trained ``grid x grid`` positional
    embedding as DINO's ``interpolate_pos_encoding``: scale factors ((out + 0.1) / grid)."""
    rows = bicubic_matrix(grid, (out_rows + DINO_GRID_EPS) / grid)
    cols = bicubic_matrix(grid, (out_cols + DINO_GRID_EPS) / grid)
    if rows.shape[0] != out_rows or cols.shape[0] != out_cols:  # DINO asserts the same
        raise ValueError(f"positional grid {grid} cannot be resampled to {out_rows}x{out_cols}")
    return rows, cols


def as_pair(size):
    if isinstance(size, int):
        return size, size
    rows, cols = size
    return int(rows), int(cols)


class VisionTransformer(nn.Cell):
    """ViT trained on ``image_size`` squares, fed ``input_size`` (rows, cols; default = trained).

    DINO: ``patch_bias=True, pre_norm=False, act='gelu', eps=1e-6``; CLIP's image tower:
    ``patch_bias=False, pre_norm=True, act='quick_gelu', eps=1e-5``. ``construct`` returns the
    final ``norm`` of the class token, [B, D].
    """

    def __init__(self, image_size=224, patch_size=16, width=768, layers=12, heads=12, mlp_ratio=4.0,
                 act="gelu", eps=1e-6, qkv_bias=True, patch_bias=True, pre_norm=False, input_size=None):
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image size {image_size} is not a multiple of the patch size {patch_size}")
        self.patch_size = patch_size
        self.width = width
        self.grid = image_size // patch_size
        self.input_size = as_pair(input_size or image_size)
        rows, cols = (s // patch_size for s in self.input_size)
        self.num_tokens = 1 + rows * cols
        self.patch_embed = PatchEmbed(patch_size, width, patch_bias)
        self.cls_token = ms.Parameter(initializer(Normal(1e-6), (1, 1, width), ms.float32), name="cls_token")
        self.pos_embed = ms.Parameter(initializer(TruncatedNormal(0.02), (1, 1 + self.grid ** 2, width), ms.float32),
                                      name="pos_embed")
        self.ln_pre = layer_norm(width, eps) if pre_norm else None
        self.blocks = nn.CellList([Block(width, heads, mlp_ratio, act, eps, qkv_bias) for _ in range(layers)])
        self.norm = layer_norm(width, eps)
        # DINO interpolates unless the token count AND the aspect match the trained grid
        self.resample = (rows, cols) != (self.grid, self.grid)
        if self.resample:
            row_m, col_m = dino_grid_matrices(self.grid, rows, cols)
            self.row_matrix = ms.Tensor(row_m.astype(np.float32))
            self.col_matrix = ms.Tensor(col_m.astype(np.float32))
        self.out_grid = (rows, cols)

    def position_embedding(self):
        """[1, N, D] for the input grid (the trained one, or DINO's bicubic resampling of it)."""
        if not self.resample:
            return self.pos_embed
        cls_pos = self.pos_embed[:, :1]
        grid = self.pos_embed[0, 1:].reshape(self.grid, self.grid, self.width).transpose(2, 0, 1)  # [D, g, g]
        grid = ops.matmul(ops.matmul(self.row_matrix, grid), self.col_matrix.T)  # [D, rows, cols]
        rows, cols = self.out_grid
        grid = grid.reshape(self.width, rows * cols).T.reshape(1, rows * cols, self.width)
        return ops.concat((cls_pos, grid), axis=1)

    def embed(self, x):
        """[B, 3, H, W] -> [B, N, D]: class token + patches + positions (+ ln_pre)."""
        patches = self.patch_embed(x)
        cls = ops.broadcast_to(self.cls_token, (patches.shape[0], 1, self.width))
        tokens = ops.concat((cls, patches), axis=1) + self.position_embedding()
        if self.ln_pre is not None:
            tokens = self.ln_pre(tokens)
        return tokens

    def tokens(self, x, layers):
        """[B, N, D] tokens after the first ``layers`` blocks (0: the embedding)."""
        h = self.embed(x)
        for block in self.blocks[:layers]:
            h = block(h)
        return h

    def keys(self, x, layer):
        """[B, N, D] keys of block ``layer`` (0-based; all heads side by side, class token first)."""
        return self.blocks[layer].keys(self.tokens(x, layer))

    def construct(self, x):
        h = self.tokens(x, len(self.blocks))
        return self.norm(h[:, 0])
