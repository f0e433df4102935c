"""PyTorch reference for LPIPS v0.1 (AlexNet / VGG16), written from the paper's definition, with
torchvision's ``features.N`` / ``classifier.N`` keys and the lpips package's ``linK.model.1.weight``
keys. Test-only; never imports the code under test.
"""
import torch
from torch import nn

SHIFT = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
SCALE = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)


def alexnet_features():
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, 1, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, 1, 1), nn.ReLU(), nn.Conv2d(384, 256, 3, 1, 1), nn.ReLU(),
        nn.Conv2d(256, 256, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(3, 2))


def vgg16_features():
    layers, cin = [], 3
    for stage, (cout, n) in enumerate([(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)]):
        for _ in range(n):
            layers += [nn.Conv2d(cin, cout, 3, 1, 1), nn.ReLU()]
            cin = cout
        layers.append(nn.MaxPool2d(2, 2))
    return nn.Sequential(*layers)


class TorchvisionNet(nn.Module):
    """Key layout of torchvision's alexnet / vgg16; ``classifier=True`` adds the ImageNet head (58M/124M
    values) for writing complete checkpoints."""

    def __init__(self, net="alex", classifier=False):
        super().__init__()
        if net == "alex":
            self.features = alexnet_features()
            if classifier:
                self.classifier = nn.Sequential(nn.Dropout(), nn.Linear(9216, 4096), nn.ReLU(), nn.Dropout(),
                                                nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 1000))
            self.taps = (1, 4, 7, 9, 11)
        else:
            self.features = vgg16_features()
            if classifier:
                self.classifier = nn.Sequential(nn.Linear(25088, 4096), nn.ReLU(), nn.Dropout(),
                                                nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(), nn.Linear(4096, 1000))
            self.taps = (3, 8, 15, 22, 29)

    def tapped(self, x):
        outs = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                outs.append(x)
            if i == self.taps[-1]:
                break
        return outs


class Lin(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(c, 1, 1, bias=False))


class LPIPSRef(nn.Module):
    CHANNELS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}

    def __init__(self, net="alex", classifier=False):
        super().__init__()
        self.net = TorchvisionNet(net, classifier)
        for k, c in enumerate(self.CHANNELS[net]):
            setattr(self, f"lin{k}", Lin(c))

    def forward(self, x, y):
        """Per-sample distance (B,)."""
        fx = self.net.tapped((x - SHIFT) / SCALE)
        fy = self.net.tapped((y - SHIFT) / SCALE)
        total = 0
        for k, (a, b) in enumerate(zip(fx, fy)):
            a = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            b = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + getattr(self, f"lin{k}").model((a - b) ** 2).mean((1, 2, 3))
        return total


@torch.no_grad()
def randomize(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    for name, t in module.state_dict().items():
        if name.startswith("lin"):
            t.copy_(0.05 + torch.rand(t.shape, generator=g))  # LPIPS weights are non-negative
        elif name.endswith("bias"):
            t.copy_(0.1 * torch.randn(t.shape, generator=g))
        else:
            t.copy_(torch.randn(t.shape, generator=g) * (2.0 / t[0].numel()) ** 0.5)
    return module
