"""Torch reference of MMFS's CLIP side, written from the mathematics (../BASELINES 5.1, 5.2).

* :class:`ClipMapperRef`: CLIPFeats2Wplus. tokens = x [B, D] broadcast to n rows + position
  embedding; per layer (pre-norm): h = LN1(x); x += W_o softmax(q k^T / sqrt(d_h)) v + b_o with
  [q; k; v] = W_in h + b_in split per head; x += W_2 relu(W_1 LN2(x) + b_1) + b_2; no final norm;
  leaky_relu 0.2. No dropout (the reference is the eval-mode function). Parameter names are the
  official state-dict keys (``transformer.layers.N.self_attn.in_proj_weight`` ...), so the same
  state dict loads into torch's own ``nn.TransformerEncoder`` (:func:`torch_encoder_mapper`).
* :func:`l1`, :func:`feature_l1`: phase 3's loss terms on given tensors.
"""
import math

import torch
import torch.nn.functional as F


def layer_norm(x, weight, bias, eps=1e-5):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


class _Norm(torch.nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(dim))
        self.bias = torch.nn.Parameter(torch.zeros(dim))


class _Linear(torch.nn.Module):
    def __init__(self, d_in, d_out):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(d_out, d_in) / math.sqrt(d_in))
        self.bias = torch.nn.Parameter(torch.zeros(d_out))

    def forward(self, x):
        return x @ self.weight.t() + self.bias


class _SelfAttention(torch.nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = torch.nn.Parameter(torch.randn(3 * dim, dim) / math.sqrt(dim))
        self.in_proj_bias = torch.nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = _Linear(dim, dim)

    def forward(self, x):
        b, n, d = x.shape
        dh = d // self.heads
        q, k, v = (x @ self.in_proj_weight.t() + self.in_proj_bias).split(d, dim=-1)
        q, k, v = (y.reshape(b, n, self.heads, dh).transpose(1, 2) for y in (q, k, v))
        weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dh), dim=-1)
        return self.out_proj((weights @ v).transpose(1, 2).reshape(b, n, d))


class _Layer(torch.nn.Module):
    def __init__(self, dim, heads, ff):
        super().__init__()
        self.self_attn = _SelfAttention(dim, heads)
        self.linear1, self.linear2 = _Linear(dim, ff), _Linear(ff, dim)
        self.norm1, self.norm2 = _Norm(dim), _Norm(dim)

    def forward(self, x):
        x = x + self.self_attn(layer_norm(x, self.norm1.weight, self.norm1.bias))
        return x + self.linear2(torch.relu(self.linear1(layer_norm(x, self.norm2.weight, self.norm2.bias))))


class _Stack(torch.nn.Module):
    def __init__(self, dim, n_layers, heads, ff):
        super().__init__()
        self.layers = torch.nn.ModuleList([_Layer(dim, heads, ff) for _ in range(n_layers)])


class ClipMapperRef(torch.nn.Module):
    """forward(x [B, D]) -> [B, n_tokens, D] (batch-first)."""

    def __init__(self, n_tokens=10, dim=512, n_layers=4, heads=8, ff=2048):
        super().__init__()
        self.position_embedding = torch.nn.Parameter(torch.randn(n_tokens, dim) * dim ** -0.5)
        self.transformer = _Stack(dim, n_layers, heads, ff)

    def forward(self, x):
        h = x[:, None, :] + self.position_embedding[None]
        for layer in self.transformer.layers:
            h = layer(h)
        return F.leaky_relu(h, 0.2)


def randomize_(module, seed, scale=0.3):
    """Every parameter random, nothing at 0 or 1 (LayerNorm weights around 1, biases off 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if name.endswith("norm1.weight") or name.endswith("norm2.weight"):
                p.copy_(1.0 + 0.2 * noise)
            elif p.ndim == 1:
                p.copy_(0.1 * noise)
            else:
                p.copy_(scale * noise / math.sqrt(p.shape[-1]) * 2.0)
    return module


class TorchEncoderMapper(torch.nn.Module):
    """The same function on torch's own ``TransformerEncoder(TransformerEncoderLayer(norm_first=True))``
    (what the official code builds), sequence-first inside, batch-first out."""

    def __init__(self, n_tokens, dim, n_layers, heads, ff, dropout=0.1):
        super().__init__()
        self.position_embedding = torch.nn.Parameter(torch.zeros(n_tokens, dim))
        layer = torch.nn.TransformerEncoderLayer(dim, heads, ff, dropout=dropout, norm_first=True)
        self.transformer = torch.nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)

    def forward(self, x):
        seq = x.unsqueeze(0) + self.position_embedding.unsqueeze(1)
        return F.leaky_relu(self.transformer(seq), 0.2).transpose(0, 1)


def l1(a, b):
    return (a - b).abs().mean()


def feature_l1(fake_feats, real_feats):
    return sum(l1(f, r.detach()) for f, r in zip(fake_feats, real_feats))
