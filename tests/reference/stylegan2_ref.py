"""PyTorch reference of StyleGAN2 written from the paper's mathematics (test-only).

Deliberately a different formulation from the MindSpore code: modulated convs are the
fused per-sample grouped convolutions of the paper (weights scaled by styles, then
demodulated), FIR filtering is generic upfirdn (zero insertion, pad, true convolution).
State-dict keys and shapes follow the rosinality layout, blur kernels and noises as
buffers, so ``torch.save`` of these modules produces real-layout checkpoints.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def fir_kernel(taps=(1, 3, 3, 1)):
    k = torch.tensor(taps, dtype=torch.float32)
    k = k[None, :] * k[:, None]
    return k / k.sum()


def upfirdn2d(x, kernel, up=1, down=1, pad=(0, 0)):
    """Upsample by zero insertion, pad, convolve with ``kernel`` (true convolution), subsample."""
    b, c, h, w = x.shape
    x = x.reshape(b * c, 1, h, w)
    if up > 1:
        z = x.new_zeros(b * c, 1, h * up, w * up)
        z[:, :, ::up, ::up] = x
        x = z
    x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
    x = F.conv2d(x, torch.flip(kernel, [0, 1])[None, None])
    x = x[:, :, ::down, ::down]
    return x.reshape(b, c, x.shape[2], x.shape[3])


def lrelu_gain(x):
    return F.leaky_relu(x, 0.2) * math.sqrt(2)


class EqualLinear(nn.Module):
    def __init__(self, i, o, bias_init=0.0, lr_mul=1.0, act=False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(o, i) / lr_mul)
        self.bias = nn.Parameter(torch.full((o,), float(bias_init)))
        self.scale, self.lr_mul, self.act = lr_mul / math.sqrt(i), lr_mul, act

    def forward(self, x):
        y = x @ (self.weight * self.scale).t() + self.bias * self.lr_mul
        return lrelu_gain(y) if self.act else y


class ModConv(nn.Module):
    def __init__(self, i, o, k, sdim, demod=True, up=False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, o, i, k, k))
        self.modulation = EqualLinear(sdim, i, bias_init=1.0)
        self.demod, self.up, self.k = demod, up, k
        if up:
            self.blur = nn.Module()
            self.blur.register_buffer("kernel", fir_kernel() * 4)

    def forward(self, x, style):
        b, i, h, w = x.shape
        s = self.modulation(style)
        wgt = self.weight / math.sqrt(i * self.k * self.k) * s[:, None, :, None, None]   # [B, O, I, k, k]
        if self.demod:
            wgt = wgt * torch.rsqrt(wgt.pow(2).sum([2, 3, 4]) + 1e-8)[:, :, None, None, None]
        o = wgt.shape[1]
        if self.up:
            wt = wgt.transpose(1, 2).reshape(b * i, o, self.k, self.k)
            y = F.conv_transpose2d(x.reshape(1, b * i, h, w), wt, stride=2, groups=b)
            y = y.reshape(b, o, y.shape[2], y.shape[3])
            return upfirdn2d(y, self.blur.kernel, pad=(1, 1))
        y = F.conv2d(x.reshape(1, b * i, h, w), wgt.reshape(b * o, i, self.k, self.k), padding=self.k // 2, groups=b)
        return y.reshape(b, o, h, w)


class Noise(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))


class Act(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(c))

    def forward(self, x):
        return lrelu_gain(x + self.bias.view(1, -1, *([1] * (x.dim() - 2))))


class StyledConv(nn.Module):
    def __init__(self, i, o, sdim, up=False):
        super().__init__()
        self.conv, self.noise, self.activate = ModConv(i, o, 3, sdim, up=up), Noise(), Act(o)

    def forward(self, x, s, n):
        return self.activate(self.conv(x, s) + self.noise.weight * n)


class ToRGB(nn.Module):
    def __init__(self, i, sdim, up=True):
        super().__init__()
        if up:
            self.upsample = nn.Module()
            self.upsample.register_buffer("kernel", fir_kernel() * 4)
        self.conv = ModConv(i, 3, 1, sdim, demod=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x, s, skip=None):
        y = self.conv(x, s) + self.bias
        if skip is not None:
            y = y + upfirdn2d(skip, self.upsample.kernel, up=2, pad=(2, 1))
        return y


def channels(cm, cmax):
    t = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * cm, 128: 128 * cm, 256: 64 * cm, 512: 32 * cm, 1024: 16 * cm}
    return {r: min(c, cmax) for r, c in t.items()}


class Generator(nn.Module):
    def __init__(self, size, sdim=512, n_mlp=8, cm=2, cmax=512, lr_mlp=0.01):
        super().__init__()
        ch = channels(cm, cmax)
        self.log_size = int(math.log2(size))
        self.n_latent = self.log_size * 2 - 2
        self.num_layers = (self.log_size - 2) * 2 + 1
        # index 0 is the parameter-free pixel norm, so keys read ``style.1.weight``
        self.style = nn.ModuleList([nn.Identity()] + [EqualLinear(sdim, sdim, lr_mul=lr_mlp, act=True)
                                                      for _ in range(n_mlp)])
        self.input = nn.Module()
        self.input.input = nn.Parameter(torch.randn(1, ch[4], 4, 4))
        self.conv1 = StyledConv(ch[4], ch[4], sdim)
        self.to_rgb1 = ToRGB(ch[4], sdim, up=False)
        self.convs, self.to_rgbs = nn.ModuleList(), nn.ModuleList()
        i_ch = ch[4]
        for r in range(3, self.log_size + 1):
            o_ch = ch[2 ** r]
            self.convs.append(StyledConv(i_ch, o_ch, sdim, up=True))
            self.convs.append(StyledConv(o_ch, o_ch, sdim))
            self.to_rgbs.append(ToRGB(o_ch, sdim))
            i_ch = o_ch
        self.noises = nn.Module()
        for li in range(self.num_layers):
            r = 2 ** ((li + 5) // 2)
            self.noises.register_buffer(f"noise_{li}", torch.randn(1, 1, r, r))

    def mapping(self, z):
        x = z * torch.rsqrt(z.pow(2).mean(1, keepdim=True) + 1e-8)
        for layer in list(self.style)[1:]:
            x = layer(x)
        return x

    def forward(self, w_plus, noise=None):
        if noise is None:
            noise = [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]
        out = self.input.input.repeat(w_plus.shape[0], 1, 1, 1)
        out = self.conv1(out, w_plus[:, 0], noise[0])
        skip = self.to_rgb1(out, w_plus[:, 1])
        i = 1
        for b in range(len(self.to_rgbs)):
            out = self.convs[2 * b](out, w_plus[:, i], noise[2 * b + 1])
            out = self.convs[2 * b + 1](out, w_plus[:, i + 1], noise[2 * b + 2])
            skip = self.to_rgbs[b](out, w_plus[:, i + 2], skip)
            i += 2
        return skip


class EqualConv(nn.Module):
    def __init__(self, i, o, k, stride=1, padding=0, bias=True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(o, i, k, k))
        self.bias = nn.Parameter(torch.zeros(o)) if bias else None
        self.scale, self.stride, self.padding = 1 / math.sqrt(i * k * k), stride, padding

    def forward(self, x):
        return F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)


class BlurBuf(nn.Module):
    def __init__(self, pad):
        super().__init__()
        self.register_buffer("kernel", fir_kernel())
        self.pad = pad

    def forward(self, x):
        return upfirdn2d(x, self.kernel, pad=self.pad)


def conv_layer(i, o, k, down=False, bias=True, act=True):
    layers = []
    if down:
        p = 2 + (k - 1)
        layers.append(BlurBuf(((p + 1) // 2, p // 2)))
    layers.append(EqualConv(i, o, k, stride=2 if down else 1, padding=0 if down else k // 2, bias=bias and not act))
    if act:
        layers.append(Act(o))
    return nn.Sequential(*layers)


class ResBlock(nn.Module):
    def __init__(self, i, o):
        super().__init__()
        self.conv1 = conv_layer(i, i, 3)
        self.conv2 = conv_layer(i, o, 3, down=True)
        self.skip = conv_layer(i, o, 1, down=True, bias=False, act=False)

    def forward(self, x):
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2)


def nvlabs_minibatch_std(x, group_size, num_channels=1):
    """stylegan2-ada's MinibatchStdLayer, step by step as NVlabs writes it.

    G = min(group_size, N) (N when group_size is None); x viewed as [G, N/G, F, C/F, H, W]:
    subtract the group mean, mean of squares over the group, sqrt(. + 1e-8), average over
    channels and pixels -> [N/G, F], repeated over the group and the pixels, appended as
    F channels. A batch G does not divide fails in the reshape (torch RuntimeError), as NVlabs'.
    """
    n, c, h, w = x.shape
    g = n if group_size is None else min(group_size, n)
    f = num_channels
    y = x.reshape(g, -1, f, c // f, h, w)
    y = y - y.mean(dim=0)
    y = y.square().mean(dim=0)
    y = (y + 1e-8).sqrt()
    y = y.mean(dim=[2, 3, 4])
    y = y.reshape(-1, f, 1, 1)
    y = y.repeat(g, 1, h, w)
    return torch.cat([x, y], dim=1)


class Discriminator(nn.Module):
    """Rosinality's minibatch stddev (group min(B, 4), one feature) unless ``nvlabs_mbstd``
    = (group_size, num_channels) selects NVlabs' layer (:func:`nvlabs_minibatch_std`)."""

    def __init__(self, size, cm=2, cmax=512, nvlabs_mbstd=None):
        super().__init__()
        self.nvlabs_mbstd = nvlabs_mbstd
        ch = channels(cm, cmax)
        log_size = int(math.log2(size))
        convs = [conv_layer(3, ch[size], 1)]
        i_ch = ch[size]
        for r in range(log_size, 2, -1):
            convs.append(ResBlock(i_ch, ch[2 ** (r - 1)]))
            i_ch = ch[2 ** (r - 1)]
        self.convs = nn.Sequential(*convs)
        self.final_conv = conv_layer(i_ch + (1 if nvlabs_mbstd is None else nvlabs_mbstd[1]), ch[4], 3)
        self.final_linear = nn.Sequential(EqualLinear(ch[4] * 16, ch[4], act=True), EqualLinear(ch[4], 1))

    def forward(self, x, return_features=False):
        feats = []
        for block in self.convs:
            x = block(x)
            feats.append(x)
        if self.nvlabs_mbstd is not None:
            out = self.final_conv(nvlabs_minibatch_std(x, *self.nvlabs_mbstd))
        else:
            b, c, h, w = x.shape
            g = min(b, 4)
            y = x.view(g, -1, 1, c, h, w)
            y = torch.sqrt(y.var(0, unbiased=False) + 1e-8).mean([2, 3, 4]).view(-1, 1, 1, 1).repeat(g, 1, h, w)
            out = self.final_conv(torch.cat([x, y], 1))
        out = self.final_linear(out.flatten(1))
        return (out, feats) if return_features else out


def randomize_(module, seed=0):
    """Give every parameter and noise buffer non-trivial values (no zeros or ones left)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            r = torch.randn(p.shape, generator=g)
            if name.endswith("noise.weight"):
                p.copy_(0.3 + 0.2 * torch.rand(p.shape, generator=g))
            elif "modulation.bias" in name:
                p.copy_(1.0 + 0.2 * r)
            elif name.startswith("style."):  # lr_mul 0.01: stored values are 1/lr_mul larger
                p.copy_(r * (100.0 if name.endswith("weight") else 20.0))
            elif name.endswith("bias"):
                p.copy_(0.1 + 0.2 * r)
            else:
                p.copy_(r)
        for name, buf in module.named_buffers():
            if "noise_" in name:
                buf.copy_(torch.randn(buf.shape, generator=g))
    return module
