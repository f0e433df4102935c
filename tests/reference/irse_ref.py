"""PyTorch reference for IR-SE ResNets, ArcFace and the pSp GradualStyleEncoder, written from the
mathematics (ArcFace IR units, squeeze-excitation, FPN), with the state_dict keys of the real
``model_ir_se50.pth`` and ``psp_ffhq_encode.pt`` so it can also write checkpoints in those layouts.
Test-only; never imports the code under test.
"""
import math

import torch
from torch import nn
import torch.nn.functional as F

UNITS = {50: (3, 4, 14, 3), 100: (3, 13, 30, 3), 152: (3, 8, 36, 3)}


class SE(nn.Module):
    def __init__(self, c, reduction=16):
        super().__init__()
        h = max(1, c // reduction)
        self.fc1 = nn.Conv2d(c, h, 1, bias=False)
        self.fc2 = nn.Conv2d(h, c, 1, bias=False)

    def forward(self, x):
        s = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(s))))


class Unit(nn.Module):
    def __init__(self, cin, cout, stride, se=True):
        super().__init__()
        self.stride = stride
        self.project = cin != cout
        if self.project:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        layers = [nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.PReLU(cout),
                  nn.Conv2d(cout, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)]
        if se:
            layers.append(SE(cout))
        self.res_layer = nn.Sequential(*layers)

    def forward(self, x):
        short = self.shortcut_layer(x) if self.project else x[:, :, ::self.stride, ::self.stride]
        return self.res_layer(x) + short


def make_body(units, channels, se=True):
    cells, ends, cin = [], [], channels[0]
    for n, c in zip(units, channels):
        for i in range(n):
            cells.append(Unit(cin if i == 0 else c, c, 2 if i == 0 else 1, se))
        cin = c
        ends.append(len(cells) - 1)
    return nn.Sequential(*cells), ends


def make_input_layer(c):
    return nn.Sequential(nn.Conv2d(3, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.PReLU(c))


class ArcFace(nn.Module):
    """keys: input_layer.*, body.N.*, output_layer.{0 bn2d, 3 linear, 4 bn1d}."""

    def __init__(self, input_size=112, units=UNITS[50], channels=(64, 128, 256, 512), emb=512, se=True):
        super().__init__()
        self.input_layer = make_input_layer(channels[0])
        self.body, _ = make_body(units, channels, se)
        side = input_size // 16
        self.output_layer = nn.Sequential(nn.BatchNorm2d(channels[-1]), nn.Dropout(0.6), nn.Flatten(),
                                          nn.Linear(channels[-1] * side * side, emb), nn.BatchNorm1d(emb))

    def features(self, x):
        return self.body(self.input_layer(x))

    def forward(self, x):
        e = self.output_layer(self.features(x))
        return e / e.norm(2, 1, keepdim=True)


class EqualLinearRef(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.scale = 1.0 / math.sqrt(cin)

    def forward(self, x):
        return F.linear(x, self.weight * self.scale, self.bias)


class StyleHead(nn.Module):
    def __init__(self, cin, cout, spatial):
        super().__init__()
        layers = []
        for i in range(int(math.log2(spatial))):
            layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, 2, 1), nn.LeakyReLU(0.01)]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinearRef(cout, cout)
        self.cout = cout

    def forward(self, x):
        return self.linear(self.convs(x).reshape(-1, self.cout))


class PSPEncoder(nn.Module):
    """keys: input_layer.*, body.N.*, styles.K.convs.*, styles.K.linear.*, latlayer1/2.*"""

    def __init__(self, n_styles=18, input_size=256, units=UNITS[50], channels=(64, 128, 256, 512)):
        super().__init__()
        self.input_layer = make_input_layer(channels[0])
        self.body, ends = make_body(units, channels)
        self.taps = ends[1:]
        self.styles = nn.ModuleList([
            StyleHead(channels[3], channels[3], input_size // (16 if i < 3 else 8 if i < 7 else 4))
            for i in range(n_styles)])
        self.latlayer1 = nn.Conv2d(channels[2], channels[3], 1)
        self.latlayer2 = nn.Conv2d(channels[1], channels[3], 1)
        self.n_styles = n_styles

    def forward(self, x):
        x = self.input_layer(x)
        feats = []
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in self.taps:
                feats.append(x)
        c1, c2, c3 = feats

        def up_add(a, b):
            return F.interpolate(a, size=b.shape[2:], mode="bilinear", align_corners=True) + b

        p2 = up_add(c3, self.latlayer1(c2))
        p1 = up_add(p2, self.latlayer2(c1))
        rows = [self.styles[j](c3 if j < 3 else p2 if j < 7 else p1) for j in range(self.n_styles)]
        return torch.stack(rows, 1)


@torch.no_grad()
def randomize(module, seed=0):
    """Every parameter and BN statistic random, away from 0 and 1 (PReLU slopes in (0.05, 0.5))."""
    g = torch.Generator().manual_seed(seed)
    for name, t in module.state_dict().items():
        if name.endswith("num_batches_tracked"):
            continue
        if name.endswith("running_var"):
            t.copy_(0.5 + torch.rand(t.shape, generator=g))
        elif name.endswith("running_mean") or name.endswith("bias"):
            t.copy_(0.1 * torch.randn(t.shape, generator=g))
        elif t.ndim == 1 and ("res_layer.2" in name or "input_layer.2" in name):
            t.copy_(0.05 + 0.45 * torch.rand(t.shape, generator=g))  # PReLU slopes
        elif t.ndim == 1:
            t.copy_(0.7 + 0.6 * torch.rand(t.shape, generator=g))  # BN gammas
        elif name.endswith("linear.weight") and t.ndim == 2 and "styles" in name:
            t.copy_(torch.randn(t.shape, generator=g))  # EqualLinear: raw N(0,1), scaled in forward
        else:
            fan_in = t[0].numel()
            t.copy_(torch.randn(t.shape, generator=g) / math.sqrt(fan_in))
    return module
