"""MMFS's CLIP mapping network ``CLIPFeats2Wplus`` (../BASELINES 5.2): a CLIP embedding -> w+.

x [B, dim] is broadcast to ``n_tokens`` rows and a learned ``position_embedding`` [n_tokens, dim]
(init dim^-0.5 N(0, 1)) is added; ``n_layers`` pre-norm transformer encoder layers follow (torch's
``TransformerEncoderLayer(norm_first=True)``: self-attention with a packed in-projection, ReLU
feed-forward of ``ff_dim``, LayerNorm eps 1e-5, dropout in training), no final norm, then
leaky ReLU 0.2. Output [B, n_tokens, dim], batch-first (torch's runs sequence-first; same
mathematics).

The layers are :class:`modify_ms.models.vit.Block` (pre-norm, packed ``qkv``) with ReLU and
torch's three dropouts around the residual branches. Dropout of the attention weights (inside
torch's MultiheadAttention) is not applied: the library's ``Attention`` has none (eval-mode
outputs are identical; phase-3 training regularises slightly less). Initialisation is the
library's (truncated normal 0.02, not torch's xavier / kaiming uniform): the released files or a
phase-3 run replace it.

``TORCH_KEY_RULES``: (regex, template) pairs from the official keys after ``clip_mapper.``
(``transformer.layers.N.self_attn.in_proj_weight`` ...) onto this cell's names; the MMFS importer
(weights_convert/mmfs.py) consumes every key through them.
"""
from mindspore import Parameter, nn, ops
from mindspore.common.initializer import Normal, initializer

from modify_ms.models.vit import Block, Mlp

LAYER_NORM_EPS = 1e-5   # torch TransformerEncoderLayer default
OUTPUT_SLOPE = 0.2

TORCH_KEY_RULES = (
    (r"position_embedding", "position_embedding"),
    (r"transformer\.layers\.(\d+)\.self_attn\.in_proj_(weight|bias)", r"transformer.layers.\1.attn.qkv.\2"),
    (r"transformer\.layers\.(\d+)\.self_attn\.out_proj\.(weight|bias)", r"transformer.layers.\1.attn.proj.\2"),
    (r"transformer\.layers\.(\d+)\.linear1\.(weight|bias)", r"transformer.layers.\1.mlp.fc1.\2"),
    (r"transformer\.layers\.(\d+)\.linear2\.(weight|bias)", r"transformer.layers.\1.mlp.fc2.\2"),
    (r"transformer\.layers\.(\d+)\.(norm[12])\.weight", r"transformer.layers.\1.\2.gamma"),
    (r"transformer\.layers\.(\d+)\.(norm[12])\.bias", r"transformer.layers.\1.\2.beta"),
)


class MapperLayer(Block):
    """torch's pre-norm ``TransformerEncoderLayer`` (ReLU): x += drop1(attn(norm1 x));
    x += drop2(fc2(drop(relu(fc1(norm2 x)))))."""

    def __init__(self, dim, heads, ff_dim, dropout):
        super().__init__(dim, heads, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(dim, ff_dim, "gelu")
        self.mlp.act = nn.ReLU()
        self.drop_attn = nn.Dropout(p=dropout)
        self.drop_ff = nn.Dropout(p=dropout)
        self.drop_out = nn.Dropout(p=dropout)

    def construct(self, x, mask=None):
        x = x + self.drop_attn(self.attn(self.norm1(x), mask))
        mlp = self.mlp
        return x + self.drop_out(mlp.fc2(self.drop_ff(mlp.act(mlp.fc1(self.norm2(x))))))


class MapperTransformer(nn.Cell):
    """The stack of layers (``transformer.layers.N``, the official names' prefix)."""

    def __init__(self, dim, n_layers, heads, ff_dim, dropout):
        super().__init__()
        self.layers = nn.CellList([MapperLayer(dim, heads, ff_dim, dropout) for _ in range(n_layers)])

    def construct(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


class CLIPFeats2Wplus(nn.Cell):
    """construct(x [B, dim]) -> leaky_relu(transformer(x + position_embedding), 0.2) [B, n_tokens, dim]."""

    def __init__(self, n_tokens=10, dim=512, n_layers=4, n_heads=8, ff_dim=2048, dropout=0.1):
        super().__init__()
        self.n_tokens, self.dim = int(n_tokens), int(dim)
        self.position_embedding = Parameter(initializer(Normal(dim ** -0.5), (n_tokens, dim)),
                                            name="position_embedding")
        self.transformer = MapperTransformer(dim, n_layers, n_heads, ff_dim, dropout)
        self.activation = nn.LeakyReLU(OUTPUT_SLOPE)

    def construct(self, x):
        tokens = ops.expand_dims(x, 1) + ops.expand_dims(self.position_embedding, 0)
        return self.activation(self.transformer(tokens))
