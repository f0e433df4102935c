"""PyTorch reference for Inception-v3 pool features, written from the architecture.

Plain functions over a torch-layout state dict (torchvision key names), so a
random state dict shaped like a real checkpoint drives both this reference and
the MindSpore network (through the importer). Two variants:

* "torchvision": Szegedy et al. 2016 as torchvision defines it; the 3x3 average
  pools of the A/C/E blocks count the zero padding; optional transform_input.
* "fid": the pytorch-fid port of the TF FID graph; those average pools exclude
  the padding, and Mixed_7c's pool branch is a 3x3 max pool (stride 1, pad 1).

Never imports the code under test.
"""
import torch
import torch.nn.functional as F

BN_EPS = 0.001


def basic_conv(sd, name, x, stride=1, padding=0):
    """conv (no bias) -> BatchNorm (running statistics, eps 0.001) -> ReLU."""
    x = F.conv2d(x, sd[f"{name}.conv.weight"], stride=stride, padding=padding)
    x = F.batch_norm(x, sd[f"{name}.bn.running_mean"], sd[f"{name}.bn.running_var"],
                     sd[f"{name}.bn.weight"], sd[f"{name}.bn.bias"], training=False, eps=BN_EPS)
    return F.relu(x)


def _avg3(x, include_pad):
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=include_pad)


def block_a(sd, n, x, include_pad):
    b1 = basic_conv(sd, f"{n}.branch1x1", x)
    b5 = basic_conv(sd, f"{n}.branch5x5_2", basic_conv(sd, f"{n}.branch5x5_1", x), padding=2)
    b3 = basic_conv(sd, f"{n}.branch3x3dbl_1", x)
    b3 = basic_conv(sd, f"{n}.branch3x3dbl_2", b3, padding=1)
    b3 = basic_conv(sd, f"{n}.branch3x3dbl_3", b3, padding=1)
    bp = basic_conv(sd, f"{n}.branch_pool", _avg3(x, include_pad))
    return torch.cat([b1, b5, b3, bp], 1)


def block_b(sd, n, x):
    b3 = basic_conv(sd, f"{n}.branch3x3", x, stride=2)
    bd = basic_conv(sd, f"{n}.branch3x3dbl_1", x)
    bd = basic_conv(sd, f"{n}.branch3x3dbl_2", bd, padding=1)
    bd = basic_conv(sd, f"{n}.branch3x3dbl_3", bd, stride=2)
    return torch.cat([b3, bd, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


def block_c(sd, n, x, include_pad):
    b1 = basic_conv(sd, f"{n}.branch1x1", x)
    b7 = basic_conv(sd, f"{n}.branch7x7_1", x)
    b7 = basic_conv(sd, f"{n}.branch7x7_2", b7, padding=(0, 3))
    b7 = basic_conv(sd, f"{n}.branch7x7_3", b7, padding=(3, 0))
    bd = basic_conv(sd, f"{n}.branch7x7dbl_1", x)
    bd = basic_conv(sd, f"{n}.branch7x7dbl_2", bd, padding=(3, 0))
    bd = basic_conv(sd, f"{n}.branch7x7dbl_3", bd, padding=(0, 3))
    bd = basic_conv(sd, f"{n}.branch7x7dbl_4", bd, padding=(3, 0))
    bd = basic_conv(sd, f"{n}.branch7x7dbl_5", bd, padding=(0, 3))
    bp = basic_conv(sd, f"{n}.branch_pool", _avg3(x, include_pad))
    return torch.cat([b1, b7, bd, bp], 1)


def block_d(sd, n, x):
    b3 = basic_conv(sd, f"{n}.branch3x3_2", basic_conv(sd, f"{n}.branch3x3_1", x), stride=2)
    b7 = basic_conv(sd, f"{n}.branch7x7x3_1", x)
    b7 = basic_conv(sd, f"{n}.branch7x7x3_2", b7, padding=(0, 3))
    b7 = basic_conv(sd, f"{n}.branch7x7x3_3", b7, padding=(3, 0))
    b7 = basic_conv(sd, f"{n}.branch7x7x3_4", b7, stride=2)
    return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


def block_e(sd, n, x, pool):
    """pool: "avg_pad" (torchvision), "avg_nopad" (fid Mixed_7b), "max" (fid Mixed_7c)."""
    b1 = basic_conv(sd, f"{n}.branch1x1", x)
    b3 = basic_conv(sd, f"{n}.branch3x3_1", x)
    b3 = torch.cat([basic_conv(sd, f"{n}.branch3x3_2a", b3, padding=(0, 1)),
                    basic_conv(sd, f"{n}.branch3x3_2b", b3, padding=(1, 0))], 1)
    bd = basic_conv(sd, f"{n}.branch3x3dbl_1", x)
    bd = basic_conv(sd, f"{n}.branch3x3dbl_2", bd, padding=1)
    bd = torch.cat([basic_conv(sd, f"{n}.branch3x3dbl_3a", bd, padding=(0, 1)),
                    basic_conv(sd, f"{n}.branch3x3dbl_3b", bd, padding=(1, 0))], 1)
    if pool == "max":
        p = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
    else:
        p = _avg3(x, pool == "avg_pad")
    bp = basic_conv(sd, f"{n}.branch_pool", p)
    return torch.cat([b1, b3, bd, bp], 1)


def transform_input(x):
    """torchvision: ImageNet-normalised input -> (raw - 0.5) / 0.5 per channel."""
    mean = (0.485, 0.456, 0.406)
    std = (0.229, 0.224, 0.225)
    chans = [x[:, c:c + 1] * (std[c] / 0.5) + (mean[c] - 0.5) / 0.5 for c in range(3)]
    return torch.cat(chans, 1)


def inception_pool_features(sd, x, variant, transform=False):
    """2048-d pool features of a 299x299 input already scaled as the weights expect."""
    fid = variant == "fid"
    pad = not fid
    if transform:
        x = transform_input(x)
    x = basic_conv(sd, "Conv2d_1a_3x3", x, stride=2)
    x = basic_conv(sd, "Conv2d_2a_3x3", x)
    x = basic_conv(sd, "Conv2d_2b_3x3", x, padding=1)
    x = F.max_pool2d(x, kernel_size=3, stride=2)
    x = basic_conv(sd, "Conv2d_3b_1x1", x)
    x = basic_conv(sd, "Conv2d_4a_3x3", x)
    x = F.max_pool2d(x, kernel_size=3, stride=2)
    for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d"):
        x = block_a(sd, name, x, pad)
    x = block_b(sd, "Mixed_6a", x)
    for name in ("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):
        x = block_c(sd, name, x, pad)
    x = block_d(sd, "Mixed_7a", x)
    x = block_e(sd, "Mixed_7b", x, "avg_nopad" if fid else "avg_pad")
    x = block_e(sd, "Mixed_7c", x, "max" if fid else "avg_pad")
    return x.mean(dim=(2, 3))


def aux_logits(sd, x_mixed_6e):
    """torchvision's auxiliary head (5x5/3 avg pool, 1x1 conv, 5x5 conv, global pool, fc)."""
    x = F.avg_pool2d(x_mixed_6e, kernel_size=5, stride=3)
    x = basic_conv(sd, "AuxLogits.conv0", x)
    x = basic_conv(sd, "AuxLogits.conv1", x)
    x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
    return F.linear(x, sd["AuxLogits.fc.weight"], sd["AuxLogits.fc.bias"])


def fid_features(sd, images01, variant="fid"):
    """pytorch-fid's pipeline: [0,1] images -> bilinear resize to 299 -> [-1,1] -> pool features.

    For torchvision weights the pretrained pipeline is ImageNet normalisation
    followed by transform_input, which is the same map to [-1, 1].
    """
    x = F.interpolate(images01, size=(299, 299), mode="bilinear", align_corners=False)
    if variant == "fid":
        return inception_pool_features(sd, 2 * x - 1, "fid")
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return inception_pool_features(sd, (x - mean) / std, "torchvision", transform=True)
