"""Inception-v3 (Szegedy et al. 2016) in the two layouts FID is computed with.

* ``variant="fid"``: the network of pytorch-fid, whose weights
  (``pt_inception-2015-12-05-*.pth``) are the TensorFlow FID graph ported to
  PyTorch. It differs from torchvision's Inception-v3 in four places: the
  average pools of the A, C and first E blocks exclude padding from the count
  (``count_include_pad=False``), the last E block (Mixed_7c) max-pools its pool
  branch, the classifier has 1008 classes, and there is no auxiliary head.
* ``variant="torchvision"``: torchvision's ``inception_v3`` (average pools count
  the padding, 1000 classes, an auxiliary head on Mixed_6e, optional
  ``transform_input``). The auxiliary head is built so that every key of a
  torchvision checkpoint maps to a parameter; like torchvision in eval mode,
  the forward pass never runs it.

Parameter names follow torchvision's (``Mixed_5b.branch1x1.conv.weight``,
``...bn.gamma``), so an importer maps checkpoints by name, never by position.
``construct`` returns the 2048-d pool features (after global average pooling,
before dropout and ``fc``): the features FID is defined on.
"""
import numpy as np
from mindspore import Tensor, nn, ops

VARIANTS = ("fid", "torchvision")
NUM_CLASSES = {"fid": 1008, "torchvision": 1000}
FEATURE_DIM = 2048
INPUT_SIZE = 299


def _four_sided(padding):
    """torch's (pad_h, pad_w) -> MindSpore's (top, bottom, left, right)."""
    if isinstance(padding, int):
        return padding
    pad_h, pad_w = padding
    return (pad_h, pad_h, pad_w, pad_w)


class BasicConv2d(nn.Cell):
    """conv (no bias) -> BatchNorm(eps=0.001) -> ReLU, the unit every Inception branch is made of."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, pad_mode="pad",
                              padding=_four_sided(padding), has_bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)
        self.relu = nn.ReLU()

    def construct(self, x):
        return self.relu(self.bn(self.conv(x)))


def _avg_pool_3x3(count_include_pad):
    # torchvision counts the zero padding in the mean; the TF graph pytorch-fid ports does not.
    return nn.AvgPool2d(kernel_size=3, stride=1, pad_mode="pad", padding=1, count_include_pad=count_include_pad)


class InceptionA(nn.Cell):
    """Mixed_5b/5c/5d: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1, concatenated."""

    def __init__(self, in_channels, pool_features, count_include_pad):
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, 1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.pool = _avg_pool_3x3(count_include_pad)
        self.branch_pool = BasicConv2d(in_channels, pool_features, 1)

    def construct(self, x):
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(self.pool(x))
        return ops.cat((b1, b5, b3, bp), axis=1)


class InceptionB(nn.Cell):
    """Mixed_6a (grid reduction 35 -> 17): 3x3/2 | 1x1-3x3-3x3/2 | maxpool/2."""

    def __init__(self, in_channels):
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2, pad_mode="valid")

    def construct(self, x):
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return ops.cat((b3, bd, self.pool(x)), axis=1)


class InceptionC(nn.Cell):
    """Mixed_6b..6e: 1x1 | factorised 7x7 | double factorised 7x7 | avgpool-1x1."""

    def __init__(self, in_channels, channels_7x7, count_include_pad):
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.pool = _avg_pool_3x3(count_include_pad)
        self.branch_pool = BasicConv2d(in_channels, 192, 1)

    def construct(self, x):
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = self.branch7x7dbl_1(x)
        bd = self.branch7x7dbl_3(self.branch7x7dbl_2(bd))
        bd = self.branch7x7dbl_5(self.branch7x7dbl_4(bd))
        bp = self.branch_pool(self.pool(x))
        return ops.cat((b1, b7, bd, bp), axis=1)


class InceptionD(nn.Cell):
    """Mixed_7a (grid reduction 17 -> 8): 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool/2."""

    def __init__(self, in_channels):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2, pad_mode="valid")

    def construct(self, x):
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_2(self.branch7x7x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(b7))
        return ops.cat((b3, b7, self.pool(x)), axis=1)


class InceptionE(nn.Cell):
    """Mixed_7b/7c: 1x1 | 1x1-(1x3, 3x1) | 1x1-3x3-(1x3, 3x1) | pool-1x1.

    ``pool`` is "avg" (count_include_pad as given) or "max" (pytorch-fid's Mixed_7c,
    following the TF graph).
    """

    def __init__(self, in_channels, pool, count_include_pad=True):
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 320, 1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        if pool == "max":
            self.pool = nn.MaxPool2d(kernel_size=3, stride=1, pad_mode="pad", padding=1)
        elif pool == "avg":
            self.pool = _avg_pool_3x3(count_include_pad)
        else:
            raise ValueError(f"InceptionE: pool must be 'avg' or 'max', got {pool!r}")
        self.branch_pool = BasicConv2d(in_channels, 192, 1)

    def construct(self, x):
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = ops.cat((self.branch3x3_2a(b3), self.branch3x3_2b(b3)), axis=1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = ops.cat((self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)), axis=1)
        bp = self.branch_pool(self.pool(x))
        return ops.cat((b1, b3, bd, bp), axis=1)


class InceptionAux(nn.Cell):
    """torchvision's auxiliary classifier on Mixed_6e (training-time only; kept for its weights)."""

    def __init__(self, in_channels, num_classes):
        super().__init__()
        self.pool = nn.AvgPool2d(kernel_size=5, stride=3, pad_mode="valid")
        self.conv0 = BasicConv2d(in_channels, 128, 1)
        self.conv1 = BasicConv2d(128, 768, 5)
        self.fc = nn.Dense(768, num_classes)

    def construct(self, x):
        x = self.conv1(self.conv0(self.pool(x)))
        return self.fc(ops.mean(x, axis=(2, 3)))


class InceptionV3(nn.Cell):
    """Inception-v3 returning 2048-d pool features; ``variant`` is "fid" or "torchvision".

    Input: NCHW float32 at 299 x 299, already normalised the way the weights
    expect (for FID: [-1, 1]). ``transform_input`` (torchvision only) re-maps
    ImageNet-normalised input to [-1, 1] per channel, as torchvision's
    pretrained model does.
    """

    def __init__(self, variant="fid", transform_input=False, aux_logits=None):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"InceptionV3: variant must be one of {VARIANTS}, got {variant!r}")
        if transform_input and variant != "torchvision":
            raise ValueError("InceptionV3: transform_input exists only in the torchvision variant")
        self.variant = variant
        self.transform_input = transform_input
        fid = variant == "fid"
        include_pad = not fid
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.maxpool1 = nn.MaxPool2d(kernel_size=3, stride=2, pad_mode="valid")
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.maxpool2 = nn.MaxPool2d(kernel_size=3, stride=2, pad_mode="valid")
        self.Mixed_5b = InceptionA(192, 32, include_pad)
        self.Mixed_5c = InceptionA(256, 64, include_pad)
        self.Mixed_5d = InceptionA(288, 64, include_pad)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, 128, include_pad)
        self.Mixed_6c = InceptionC(768, 160, include_pad)
        self.Mixed_6d = InceptionC(768, 160, include_pad)
        self.Mixed_6e = InceptionC(768, 192, include_pad)
        self.has_aux = (not fid) if aux_logits is None else bool(aux_logits)
        if self.has_aux:
            self.AuxLogits = InceptionAux(768, NUM_CLASSES[variant])
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, "avg", include_pad)
        self.Mixed_7c = InceptionE(2048, "max" if fid else "avg", include_pad)
        self.fc = nn.Dense(FEATURE_DIM, NUM_CLASSES[variant])
        # torchvision's transform_input: x_c * std_c / 0.5 + (mean_c - 0.5) / 0.5
        mean = np.array([0.485, 0.456, 0.406], np.float32)
        std = np.array([0.229, 0.224, 0.225], np.float32)
        self.input_scale = Tensor((std / 0.5).reshape(1, 3, 1, 1))
        self.input_shift = Tensor(((mean - 0.5) / 0.5).reshape(1, 3, 1, 1))

    def construct(self, x):
        if self.transform_input:
            x = x * self.input_scale + self.input_shift
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(self.maxpool1(x)))
        x = self.maxpool2(x)
        x = self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(x)))
        x = self.Mixed_6a(x)
        x = self.Mixed_6e(self.Mixed_6d(self.Mixed_6c(self.Mixed_6b(x))))
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x)))
        return ops.mean(x, axis=(2, 3))

    def logits(self, features):
        """Class logits from pool features (``fc``; dropout is identity at evaluation)."""
        return self.fc(features)


class InceptionFeatureExtractor(nn.Cell):
    """Images in [0, 1] (NCHW, any size) -> 2048-d pool features, as pytorch-fid computes them.

    Resizes to 299 x 299 with bilinear interpolation (align_corners=False, no
    antialiasing: ``F.interpolate`` as pytorch-fid calls it), then normalises:
    "fid" weights take [-1, 1]; torchvision weights take ImageNet mean/std
    normalisation (as torchvision documents), which the pretrained model's
    ``transform_input=True`` turns back into [-1, 1].
    """

    def __init__(self, network, resize=True):
        super().__init__()
        self.network = network
        self.resize = resize
        self.imagenet = network.variant == "torchvision"
        self.mean = Tensor(np.array([0.485, 0.456, 0.406], np.float32).reshape(1, 3, 1, 1))
        self.std = Tensor(np.array([0.229, 0.224, 0.225], np.float32).reshape(1, 3, 1, 1))
        self.network.set_train(False)

    def construct(self, images):
        x = images
        if self.resize:
            x = ops.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        if self.imagenet:
            x = (x - self.mean) / self.std
        else:
            x = 2.0 * x - 1.0
        return self.network(x)
