"""PyTorch reference of BlendGAN (Liu et al., NeurIPS 2021) written from the paper's and the
official code's mathematics (test-only; ../BASELINES section 4.2, paper sec. 3.1-3.3).

Formulations differ on purpose from the MindSpore code: Gram matrices by einsum, NT-Xent as the
per-anchor sum of eq. 2, the blending as the official in-place clamp of ``add_weight`` and a
copy with rows < i set to 1, path lengths by torch.autograd.grad(create_graph=True).
State-dict keys follow the released ``blendgan.pt`` layout (g_ema: add_weight, embedder.embedder.
feature_extractor.vgg_layers.*, embedder.embedder_mlp.*, embedding.*, then rosinality's
generator keys), so torch.save of ``BlendGenerator`` writes a real-layout file.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .stylegan2_ref import EqualLinear, Generator, ResBlock, channels, conv_layer

VGG19_WIDTHS = (64, 128, 256, 512, 512)
STYLE_TAPS = (3, 8, 17, 26, 35)


def vgg19_features(widths=VGG19_WIDTHS):
    """torchvision's cfg "E" ``features``: 37 modules (convs 3x3 pad 1 with bias, ReLU, 2x2 max-pool)."""
    layers, cin = [], 3
    for width, n in zip(widths, (2, 2, 4, 4, 4)):
        for _ in range(n):
            layers += [nn.Conv2d(cin, width, 3, padding=1), nn.ReLU(inplace=False)]
            cin = width
        layers.append(nn.MaxPool2d(2, 2))
    return nn.Sequential(*layers)


def gram(f):
    b, c, h, w = f.shape
    return torch.einsum("bchw,bdhw->bcd", f, f) / (c * h * w)


class FeatureExtractor(nn.Module):
    def __init__(self, widths):
        super().__init__()
        self.vgg_layers = vgg19_features(widths)

    def forward(self, x):
        taps = []
        for i, layer in enumerate(self.vgg_layers):
            x = layer(x)
            if i in STYLE_TAPS:
                taps.append(x)
        return taps


class StyleEmbedder(nn.Module):
    def __init__(self, widths, input_size):
        super().__init__()
        self.feature_extractor = FeatureExtractor(widths)
        self.input_size = input_size

    def forward(self, x):
        x = F.adaptive_avg_pool2d(x, (self.input_size, self.input_size))
        return torch.cat([gram(f).flatten(1) for f in self.feature_extractor(x)], dim=1)


class StyleEncoder(nn.Module):
    """``embedder`` (Gram vector) -> ``embedder_mlp``: n_mlp EqualLinear, leaky ReLU on all but the last."""

    def __init__(self, style_dim=512, n_mlp=4, widths=VGG19_WIDTHS, input_size=256):
        super().__init__()
        self.embedder = StyleEmbedder(widths, input_size)
        dim = sum(c * c for c in (widths[0], widths[1], widths[2], widths[3], widths[4]))
        layers = [EqualLinear(dim, style_dim, act=n_mlp > 1)]
        layers += [EqualLinear(style_dim, style_dim, act=k < n_mlp - 2) for k in range(n_mlp - 1)]
        self.embedder_mlp = nn.Sequential(*layers)

    def forward(self, x):
        return self.embedder_mlp(self.embedder(x))


class ProjectionHead(nn.Module):
    def __init__(self, style_dim=512, n_layers=2):
        super().__init__()
        self.layers = nn.Sequential(*[EqualLinear(style_dim, style_dim, act=k < n_layers - 1)
                                      for k in range(n_layers)])

    def forward(self, z):
        return self.layers(z)


def nt_xent(p1, p2, tau):
    """Eq. 2 averaged over the 2N anchors, written per anchor."""
    z = torch.cat([p1, p2], 0)
    n2 = z.shape[0]
    sim = F.cosine_similarity(z[:, None, :], z[None, :, :], dim=2) / tau
    losses = []
    for i in range(n2):
        j = (i + n2 // 2) % n2
        others = torch.cat([sim[i, :i], sim[i, i + 1:]])
        losses.append(-(sim[i, j] - torch.logsumexp(others, 0)))
    return torch.stack(losses).mean()


class BlendGenerator(Generator):
    """rosinality's G (the reference's) plus add_weight, embedder and embedding, official names."""

    def __init__(self, size, sdim=512, n_mlp=8, cm=2, cmax=512, lr_mlp=0.01, embedder_mlp=4,
                 widths=VGG19_WIDTHS, style_input_size=256):
        super().__init__(size, sdim, n_mlp, cm, cmax, lr_mlp)
        self.add_weight = nn.Parameter(torch.ones(1, self.n_latent, 1))
        self.embedder = StyleEncoder(sdim, embedder_mlp, widths, style_input_size)
        self.embedding = nn.ModuleList([nn.Identity()] + [EqualLinear(sdim, sdim, lr_mul=lr_mlp, act=True)
                                                          for _ in range(n_mlp)])

    def embed(self, z):
        x = z * torch.rsqrt(z.pow(2).mean(1, keepdim=True) + 1e-8)
        for layer in list(self.embedding)[1:]:
            x = layer(x)
        return x

    def blended(self, w_face, z_embed, index):
        """The official composition: clamp add_weight in place, a copy with rows < index forced to 1."""
        with torch.no_grad():
            self.add_weight.data.clamp_(0.0, 1.0)
        a = self.add_weight.clone()
        if index is not None:
            a[:, :index] = 1.0
        if w_face.ndim == 2:
            w_face = w_face[:, None, :].repeat(1, self.n_latent, 1)
        w_s = self.embed(z_embed)[:, None, :]
        return w_face * a + w_s * (1 - a)

    def render(self, w_face, z_embed, index, noise=None):
        return self.forward(self.blended(w_face, z_embed, index), noise)


class ProjectionDiscriminator(nn.Module):
    def __init__(self, size, sdim=512, cm=2, cmax=512):
        super().__init__()
        ch = channels(cm, cmax)
        log_size = int(math.log2(size))
        convs = [conv_layer(3, ch[size], 1)]
        i_ch = ch[size]
        for r in range(log_size, 2, -1):
            convs.append(ResBlock(i_ch, ch[2 ** (r - 1)]))
            i_ch = ch[2 ** (r - 1)]
        self.convs = nn.Sequential(*convs)
        self.final_conv = conv_layer(i_ch + 1, ch[4], 3)
        self.l_out = EqualLinear(ch[4], 1)
        self.l_style = EqualLinear(sdim, ch[4])

    def forward(self, x, z):
        x = self.convs(x)
        b, c, h, w = x.shape
        g = min(b, 4)
        y = x.view(g, -1, 1, c, h, w)
        y = torch.sqrt(y.var(0, unbiased=False) + 1e-8).mean([2, 3, 4]).view(-1, 1, 1, 1).repeat(g, 1, h, w)
        h_vec = self.final_conv(torch.cat([x, y], 1)).sum([2, 3])
        return self.l_out(h_vec) + (self.l_style(z) * h_vec).sum(1, keepdim=True)


def r1_penalty(d, real, *cond):
    real = real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(d(real, *cond).sum(), real, create_graph=True)
    return grad.pow(2).reshape(grad.shape[0], -1).sum(1).mean()


def path_lengths(synthesis, w_plus, img_noise, noise):
    img = synthesis(w_plus, noise)
    (grad,) = torch.autograd.grad((img * img_noise).sum(), w_plus, create_graph=True)
    return torch.sqrt(grad.pow(2).sum(2).mean(1))


def path_penalty(lengths, mean_path_length, decay=0.01):
    target = mean_path_length + decay * (lengths.mean() - mean_path_length)
    return (lengths - target.detach()).pow(2).mean(), target.detach()


def randomize_blend_(module, seed=0):
    """Non-trivial values everywhere: stylegan2_ref.randomize_ rules, embedding like style (lr_mul 0.01),
    add_weight spread over [-0.3, 1.3] so the clamp acts, VGG weights of a sensible scale."""
    from .stylegan2_ref import randomize_

    randomize_(module, seed)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in module.named_parameters():
            r = torch.randn(p.shape, generator=g)
            if name == "add_weight":
                p.copy_(torch.linspace(-0.3, 1.3, p.numel()).reshape(p.shape))
            elif name.startswith("embedding."):
                p.copy_(r * (100.0 if name.endswith("weight") else 20.0))
            elif "vgg_layers" in name and name.endswith("weight"):
                p.copy_(r * math.sqrt(2.0 / (p.shape[1] * 9)))
            elif "vgg_layers" in name:
                p.copy_(0.05 + 0.05 * r)
    return module
