"""PyTorch references for DINO's ViT, CLIP's two towers and MMFS's DINO/CLIP losses, written from
the mathematics (DINO paper + ``vision_transformer.py`` semantics, CLIP paper + ``model.py``
semantics, MMFS sec. 3 / its loss definitions), with the upstream state-dict key names so that the
importers under test can map them. Test-only; never imports the code under test.

* DINO: attention written out (packed ``qkv``), exact GELU, LayerNorm eps 1e-6, positional
  embedding resampled with ``F.interpolate(mode='bicubic', scale_factor=((h + 0.1) / g, (w + 0.1) / g))``.
* CLIP: torch's ``nn.MultiheadAttention`` (packed ``in_proj_weight``), sequence-first as CLIP runs
  it, QuickGELU, eps 1e-5, causal mask, EOT = argmax(ids).
* Resizes: ``F.interpolate(mode='bilinear', align_corners=False, antialias=...)``.
"""
import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn


# ---------------------------------------------------------------- DINO
class DinoAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1) * (d // self.heads) ** -0.5).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, d))


class DinoMlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class DinoBlock(nn.Module):
    def __init__(self, dim, heads, mlp_ratio=4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = DinoAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = DinoMlp(dim, int(dim * mlp_ratio))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, patch, dim):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class DinoViT(nn.Module):
    def __init__(self, image_size=32, patch=8, dim=32, depth=2, heads=4, mlp_ratio=4.0):
        super().__init__()
        self.patch = patch
        self.patch_embed = PatchEmbed(patch, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + (image_size // patch) ** 2, dim))
        self.blocks = nn.ModuleList([DinoBlock(dim, heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def interpolate_pos_encoding(self, h, w):
        n = self.pos_embed.shape[1] - 1
        rows, cols = h // self.patch, w // self.patch
        if rows * cols == n and rows == cols:
            return self.pos_embed
        g = int(math.sqrt(n))
        grid = self.pos_embed[:, 1:].reshape(1, g, g, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, scale_factor=((rows + 0.1) / g, (cols + 0.1) / g), mode="bicubic")
        assert grid.shape[-2:] == (rows, cols)
        grid = grid.permute(0, 2, 3, 1).reshape(1, rows * cols, -1)
        return torch.cat((self.pos_embed[:, :1], grid), dim=1)

    def prepare_tokens(self, x):
        tokens = self.patch_embed(x)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        return torch.cat((cls, tokens), dim=1) + self.interpolate_pos_encoding(x.shape[2], x.shape[3])

    def last_keys(self, x, layer):
        """Output of block ``layer``'s qkv, k third (what MMFS's hook reads), [B, N, D]."""
        h = self.prepare_tokens(x)
        for block in self.blocks[:layer]:
            h = block(h)
        d = h.shape[-1]
        return self.blocks[layer].attn.qkv(self.blocks[layer].norm1(h))[:, :, d:2 * d]

    def forward(self, x):
        h = self.prepare_tokens(x)
        for block in self.blocks:
            h = block(h)
        return self.norm(h)[:, 0]


# ---------------------------------------------------------------- CLIP
class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width, heads, attn_mask=None):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict([("c_fc", nn.Linear(width, 4 * width)), ("gelu", QuickGELU()),
                                              ("c_proj", nn.Linear(4 * width, width))]))
        self.ln_2 = nn.LayerNorm(width)
        self.attn_mask = attn_mask

    def forward(self, x):  # [L, B, D]
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False, attn_mask=self.attn_mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width, layers, heads, attn_mask=None):
        super().__init__()
        self.resblocks = nn.Sequential(*[ResidualAttentionBlock(width, heads, attn_mask) for _ in range(layers)])

    def forward(self, x):
        return self.resblocks(x)


class VisualTransformer(nn.Module):
    def __init__(self, resolution, patch, width, layers, heads, output_dim):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, patch, patch, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(width))
        self.positional_embedding = nn.Parameter(torch.zeros((resolution // patch) ** 2 + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, layers, heads)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(torch.zeros(width, output_dim))

    def embed(self, x):
        x = self.conv1(x).flatten(2).transpose(1, 2)
        cls = self.class_embedding.to(x.dtype) + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype)
        return self.ln_pre(torch.cat([cls, x], dim=1) + self.positional_embedding)

    def tokens(self, x, layers):
        """Output of ``transformer.resblocks[layers - 1]`` (MMFS's hook), batch-first [B, N, D]."""
        h = self.embed(x).permute(1, 0, 2)
        for block in self.transformer.resblocks[:layers]:
            h = block(h)
        return h.permute(1, 0, 2)

    def forward(self, x):
        h = self.transformer(self.embed(x).permute(1, 0, 2)).permute(1, 0, 2)
        return self.ln_post(h[:, 0, :]) @ self.proj


class CLIPRef(nn.Module):
    """``clip/model.py:CLIP`` for a ViT image tower, keys as in its state dict."""

    def __init__(self, embed_dim=16, image_resolution=32, vision_layers=2, vision_width=32, vision_patch_size=8,
                 context_length=8, vocab_size=60, transformer_width=32, transformer_heads=4, transformer_layers=2,
                 vision_heads=4):
        super().__init__()
        self.visual = VisualTransformer(image_resolution, vision_patch_size, vision_width, vision_layers,
                                        vision_heads, embed_dim)
        mask = torch.full((context_length, context_length), float("-inf")).triu_(1)
        self.transformer = Transformer(transformer_width, transformer_layers, transformer_heads, mask)
        self.token_embedding = nn.Embedding(vocab_size, transformer_width)
        self.positional_embedding = nn.Parameter(torch.zeros(context_length, transformer_width))
        self.ln_final = nn.LayerNorm(transformer_width)
        self.text_projection = nn.Parameter(torch.zeros(transformer_width, embed_dim))
        self.logit_scale = nn.Parameter(torch.ones([]) * math.log(1 / 0.07))

    def encode_image(self, x):
        return self.visual(x)

    def encode_text(self, ids):
        x = self.token_embedding(ids) + self.positional_embedding
        x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
        x = self.ln_final(x)
        return x[torch.arange(x.shape[0]), ids.argmax(dim=-1)] @ self.text_projection

    def forward(self, image, ids):
        return self.encode_image(image), self.encode_text(ids)


def randomize(module, seed=0):
    """Random values everywhere (no 0 or 1 left): weights ~ N(0, 1/fan_in), biases and LayerNorm shifts
    ~ 0.1 N, LayerNorm scales ~ 1 + 0.2 N, embeddings ~ 0.5 N."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            shape = p.shape
            if name.endswith("bias"):
                p.copy_(0.1 * torch.randn(shape, generator=g))
            elif ("ln" in name or "norm" in name) and p.dim() == 1:
                p.copy_(1.0 + 0.2 * torch.randn(shape, generator=g))
            elif p.dim() <= 1 or "embedding" in name or name in ("cls_token", "pos_embed"):
                p.copy_(0.5 * torch.randn(shape, generator=g) if p.dim() else torch.tensor(2.5))
            elif name.endswith("proj") or name == "text_projection":  # [in, out] parameters
                p.copy_(torch.randn(shape, generator=g) / math.sqrt(shape[0]))
            else:  # Linear [out, in] / Conv [out, in, k, k]
                p.copy_(torch.randn(shape, generator=g) / math.sqrt(p[0].numel()))
    return module


# ---------------------------------------------------------------- preprocessing and losses
IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
CLIP_MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
CLIP_STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)


def resize(x, size, antialias=True):
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=antialias)


def dino_input(x, size, antialias=True):
    return (resize(x * 0.5 + 0.5, size, antialias) - IMAGENET_MEAN) / IMAGENET_STD


def clip_input(x, size):
    return (resize(x * 0.5 + 0.5, (size, size), True) - CLIP_MEAN) / CLIP_STD


def self_similarity(k, eps=1e-8):
    norms = k.norm(dim=-1, keepdim=True)
    return (k @ k.transpose(1, 2)) / torch.clamp(norms @ norms.transpose(1, 2), min=eps)


def structure_loss(dino, fake, real, size, layer):
    """Sum over the batch of MSE between the key self-similarities (real side detached)."""
    with torch.no_grad():
        target = self_similarity(dino.last_keys(dino_input(real, size), layer))
    sim = self_similarity(dino.last_keys(dino_input(fake, size), layer))
    return sum(F.mse_loss(sim[b], target[b]) for b in range(fake.shape[0]))


def directional_clip_loss(clip, fake, real, direction, size, prompt=None):
    """``prompt`` given (image prompts): direction = prompt - mean over the batch of n(E(real))."""
    with torch.no_grad():
        e_real = F.normalize(clip.encode_image(clip_input(real, size)), dim=-1)
        if prompt is not None:
            direction = prompt - e_real.mean(dim=0, keepdim=True)
    e_fake = F.normalize(clip.encode_image(clip_input(fake, size)), dim=-1)
    return (1 - F.cosine_similarity(e_fake - e_real, direction, dim=-1)).mean()


def token_basis(clip, prompt, size, layers=4):
    """U of the reduced SVD of the prompt's normalised tokens, [width, n] (torch.linalg.svd)."""
    with torch.no_grad():
        t = F.normalize(clip.visual.tokens(clip_input(prompt, size), layers)[0, 1:].double(), dim=-1)
        u, _, _ = torch.linalg.svd(t.T, full_matrices=False)
    return u.float()


def token_projection_loss(clip, fake, basis, size, layers=4):
    t = F.normalize(clip.visual.tokens(clip_input(fake, size), layers)[:, 1:], dim=-1)  # [B, n, D]
    t = t.transpose(1, 2)  # [B, D, n] as MMFS arranges the tokens
    return F.l1_loss(basis @ basis.T @ t, t)
