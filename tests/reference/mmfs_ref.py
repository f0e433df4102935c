"""PyTorch reference of MMFS's Stylizer written from the mathematics (test-only; ../BASELINES 5.2).

Built from the StyleGAN2 pieces of ``stylegan2_ref`` (fused grouped modulated convolutions,
generic upfirdn FIR filtering), not from the code under test. The encoder is the ROS discriminator
trunk's ConvLayer / ResBlock chain (ngf, ngf, 2ngf, 4ngf, 8ngf, four blur-downsampling ResBlocks),
the decoder StyleGAN2's layers from S/16 up, the output clamped to [-1, 1]. Style rows are
seq-first [10, B, D] as the official code stores them; keys follow the official ``G_ema_model``
layout (blur kernels as buffers), so ``torch.save`` of ``state_dict()`` is a real-layout file.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .stylegan2_ref import EqualLinear, ResBlock, StyledConv, ToRGB, channels, conv_layer, randomize_


class Stylizer(nn.Module):
    def __init__(self, size, ngf=64, sdim=512, n_mlp=8, cm=2, cmax=512, lr_mlp=0.01):
        super().__init__()
        ch = channels(cm, cmax)
        res = [size // 2 ** (4 - k) for k in range(5)]
        c = [ch[r] for r in res]
        self.res = res
        w = [ngf, ngf, 2 * ngf, 4 * ngf, 8 * ngf]
        self.encoder = nn.Sequential(conv_layer(3, w[0], 3), *[ResBlock(w[i], w[i + 1]) for i in range(4)],
                                     conv_layer(w[4], c[0], 3))
        self.mapping_z = nn.ModuleList([nn.Identity()] + [EqualLinear(sdim, sdim, lr_mul=lr_mlp, act=True)
                                                          for _ in range(n_mlp)])
        self.decoder0 = StyledConv(c[0], c[0], sdim)
        self.to_rgb0 = ToRGB(c[0], sdim, up=False)
        for k in range(1, 5):
            setattr(self, f"decoder{k}a", StyledConv(c[k - 1], c[k], sdim, up=True))
            setattr(self, f"decoder{k}b", StyledConv(c[k], c[k], sdim))
            setattr(self, f"to_rgb{k}", ToRGB(c[k], sdim))

    def mapping(self, z):
        x = z * torch.rsqrt(z.pow(2).mean(1, keepdim=True) + 1e-8)
        for layer in list(self.mapping_z)[1:]:
            x = layer(x)
        return x

    def styles(self, z):
        """[10, B, D]: one w for every row (seq-first, as the official get_styles)."""
        return self.mapping(z).unsqueeze(0).repeat(10, 1, 1)

    def noise_shapes(self, batch):
        return [(batch, 1, self.res[0], self.res[0])] + [(batch, 1, r, r) for r in self.res[1:] for _ in range(2)]

    def forward(self, image, styles, noise):
        """``styles`` [10, B, D]; ``noise`` 9 maps [B, 1, r, r]."""
        out = self.decoder0(self.encoder(image), styles[0], noise[0])
        skip = self.to_rgb0(out, styles[1])
        for k in range(1, 5):
            out = getattr(self, f"decoder{k}a")(out, styles[2 * k - 1], noise[2 * k - 1])
            out = getattr(self, f"decoder{k}b")(out, styles[2 * k], noise[2 * k])
            skip = getattr(self, f"to_rgb{k}")(out, styles[2 * k + 1], skip)
        return F.hardtanh(skip)


def randomize_stylizer_(module, seed=0):
    """stylegan2_ref.randomize_ (nothing at 0 or 1), then the mapping's stored values 1/lr_mul larger
    (it only knows G's ``style.``) and smaller RGB weights, so that the hardtanh clips only part."""
    randomize_(module, seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.startswith("mapping_z."):
                p.mul_(100.0 if name.endswith("weight") else 20.0)
            elif name.startswith("to_rgb") and name.endswith("conv.weight"):
                p.mul_(0.3)
    return module


def l1(a, b):
    return (a - b).abs().mean()


def stage1_loss(stylizer, discriminator, real, z, noise, lambda_l1=1.0, lambda_feat=4.0, taps=(1, 3, 4, 5)):
    """MMFS stage I: L1(fake, real) + lambda_feat * sum over the D taps of L1(D_l(fake), D_l(real))."""
    fake = stylizer(real, stylizer.styles(z), noise)
    _, f_fake = discriminator(fake, return_features=True)
    _, f_real = discriminator(real, return_features=True)
    feat = sum(l1(f_fake[i], f_real[i]) for i in taps if i < len(f_fake))
    return lambda_l1 * l1(fake, real) + lambda_feat * feat, fake

