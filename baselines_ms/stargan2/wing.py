"""The FAN face-alignment network StarGAN v2 takes its generator's masks from (``core/wing.py``:
98 landmarks, Wing-loss hourglass; BASELINES 6.2), and the masks themselves.

Architecture (inference only: the official FAN is frozen, in eval mode, its BatchNorms on their
running statistics): a CoordConv stem (x, coordinate rows, coordinate columns, normalised radius
as 3 extra channels; 7x7 stride 2) -> BN -> ReLU, ConvBlocks 64->128 (then 2x2 average pool),
128->128, 128->256, one hourglass of depth 4 (a 1x1 CoordConv at 64x64 first; the boundary
channels exist only for a second stacked module, which the official FAN does not have), a
ConvBlock, 1x1 conv -> BN -> ReLU, 1x1 conv to 99 maps (98 landmarks + boundary).
A ConvBlock: three pre-activation (BN, ReLU) 3x3 convs without bias halving then quartering
the width, their outputs concatenated, plus the input (through BN-ReLU-1x1 conv when the width
changes).

``HeatmapMasks``: ``get_heatmap`` + ``preprocess`` as graph ops: resize to 256 (bilinear), map to
[0, 1], FAN, drop the boundary map, upsample x4 (bilinear, align_corners), then per map: zero
below 0.1, min-max normalise, part-specific circular row shifts and powers, some maps zeroed,
sums to mask 1 (all parts) and mask 2 (without chin, lips and eyebrows), NaN -> 0, clamp [0, 1].
Output [B, 2, 256, 256]: the Generator's ``masks``.

Parameter names follow the official keys, BatchNorm's as MindSpore's (gamma, beta,
moving_mean, moving_variance: the importer maps weight, bias, running_mean, running_var).
"""
import numpy as np
import mindspore as ms
from mindspore import nn, ops

from .networks import avg_pool2, nearest_up2  # one home for the resampling of both

BN_EPS = 1e-5  # torch's BatchNorm2d default
NUM_LANDMARKS = 98


def batch_norm(channels):
    """torch's BatchNorm2d in eval mode (running statistics)."""
    return nn.BatchNorm2d(channels, eps=BN_EPS, use_batch_statistics=False)


def coord_channels(size, with_r=True):
    """[1, 2 (+1), size, size]: row and column coordinates in [-1, 1] (and the radius / its max)."""
    rows = np.repeat((np.arange(size, dtype=np.float32) / (size - 1) * 2 - 1)[:, None], size, axis=1)
    cols = rows.T.copy()
    coords = [rows, cols]
    if with_r:
        rr = np.sqrt(rows ** 2 + cols ** 2)
        coords.append(rr / rr.max())
    return np.stack(coords)[None].astype(np.float32)


class CoordConv(nn.Cell):
    """conv(concat(x, coordinate channels)) at a fixed spatial size."""

    def __init__(self, size, in_channels, out_channels, kernel_size, stride, padding):
        super().__init__()
        self.coords = ms.Tensor(coord_channels(size))
        self.conv = nn.Conv2d(in_channels + 3, out_channels, kernel_size, stride=stride, pad_mode="pad",
                              padding=padding, has_bias=True)

    def construct(self, x):
        coords = ops.broadcast_to(self.coords, (x.shape[0],) + self.coords.shape[1:])
        return self.conv(ops.concat((x, coords), axis=1))


def conv3x3(cin, cout):
    return nn.Conv2d(cin, cout, 3, stride=1, pad_mode="pad", padding=1, has_bias=False)


class ConvBlock(nn.Cell):
    def __init__(self, in_planes, out_planes):
        super().__init__()
        half, quarter = out_planes // 2, out_planes // 4
        self.bn1, self.conv1 = batch_norm(in_planes), conv3x3(in_planes, half)
        self.bn2, self.conv2 = batch_norm(half), conv3x3(half, quarter)
        self.bn3, self.conv3 = batch_norm(quarter), conv3x3(quarter, quarter)
        self.has_downsample = in_planes != out_planes
        if self.has_downsample:
            self.downsample = nn.SequentialCell([batch_norm(in_planes), nn.ReLU(),
                                                 nn.Conv2d(in_planes, out_planes, 1, has_bias=False)])
        self.relu = nn.ReLU()

    def construct(self, x):
        out1 = self.conv1(self.relu(self.bn1(x)))
        out2 = self.conv2(self.relu(self.bn2(out1)))
        out3 = self.conv3(self.relu(self.bn3(out2)))
        residual = self.downsample(x) if self.has_downsample else x
        return ops.concat((out1, out2, out3), axis=1) + residual


class HourGlass(nn.Cell):
    """Depth-``depth`` hourglass of 256-wide ConvBlocks after a 1x1 CoordConv at 64x64. Blocks are
    named as the official ``b1_<level>``, ``b2_<level>``, ``b2_plus_1``, ``b3_<level>``."""

    def __init__(self, depth=4, features=256):
        super().__init__()
        self.depth = depth
        self.coordconv = CoordConv(64, features, features, 1, 1, 0)
        for level in range(depth, 0, -1):
            setattr(self, f"b1_{level}", ConvBlock(features, features))
            setattr(self, f"b2_{level}", ConvBlock(features, features))
            setattr(self, f"b3_{level}", ConvBlock(features, features))
        self.b2_plus_1 = ConvBlock(features, features)

    def level(self, depth, x):
        up1 = getattr(self, f"b1_{depth}")(x)
        low = getattr(self, f"b2_{depth}")(avg_pool2(x))
        low = self.level(depth - 1, low) if depth > 1 else self.b2_plus_1(low)
        return up1 + nearest_up2(getattr(self, f"b3_{depth}")(low))

    def construct(self, x):
        return self.level(self.depth, self.coordconv(x))


class FAN(nn.Cell):
    """x [B, 3, 256, 256] in [0, 1] -> [B, 99, 64, 64] heatmaps (98 landmarks + boundary)."""

    def __init__(self, num_landmarks=NUM_LANDMARKS):
        super().__init__()
        self.conv1 = CoordConv(256, 3, 64, 7, 2, 3)
        self.bn1 = batch_norm(64)
        self.conv2 = ConvBlock(64, 128)
        self.conv3 = ConvBlock(128, 128)
        self.conv4 = ConvBlock(128, 256)
        self.m0 = HourGlass(4, 256)
        self.top_m_0 = ConvBlock(256, 256)
        self.conv_last0 = nn.Conv2d(256, 256, 1, has_bias=True)
        self.bn_end0 = batch_norm(256)
        self.l0 = nn.Conv2d(256, num_landmarks + 1, 1, has_bias=True)
        self.relu = nn.ReLU()

    def construct(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = avg_pool2(self.conv2(x))
        x = self.conv4(self.conv3(x))
        ll = self.top_m_0(self.m0(x))
        ll = self.relu(self.bn_end0(self.conv_last0(ll)))
        return self.l0(ll)


# ------------------------------------------------------------------ masks (core/wing.py: preprocess)
# landmark index ranges [start, end) of the 98-point layout
CHIN, EYEBROWS, EYEBROWS_EDGES, NOSE = (8, 25), (33, 51), (33, 46), (51, 55)
NOSTRILS, EYES, LIP_EDGES, LIP_UPPER, LIP_LOWER, LIP_INNER = (55, 60), (60, 76), (76, 82), (77, 82), (83, 88), (88, 96)


def shift_rows(x, n):
    """Circular shift along the rows: n >= 0 moves content up n rows, n < 0 down |n|."""
    if n == 0:
        return x
    h = x.shape[2]
    k = n % h
    return ops.concat((x[:, :, k:], x[:, :, :k]), axis=2)


class HeatmapMasks(nn.Cell):
    """images [B, 3, S, S] in [-1, 1] -> masks [B, 2, 256, 256] (module doc), no gradients."""

    def __init__(self, fan):
        super().__init__()
        self.fan = fan
        keep = np.ones(NUM_LANDMARKS, np.float32)  # the maps preprocess zeroes
        keep[:CHIN[0]] = 0
        keep[CHIN[1]:33] = 0
        keep[[EYEBROWS_EDGES[0], EYEBROWS_EDGES[1], LIP_EDGES[0], LIP_EDGES[1]]] = 0
        self.keep = ms.Tensor(keep.reshape(1, -1, 1, 1))
        second = keep.copy()  # mask 2 leaves out the chin, the lips and the eyebrows
        second[CHIN[0]:CHIN[1]] = 0
        second[LIP_EDGES[0]:LIP_INNER[1]] = 0
        second[EYEBROWS[0]:EYEBROWS[1]] = 0
        self.second = ms.Tensor(second.reshape(1, -1, 1, 1))

    def construct(self, images):
        x = ops.interpolate(images, size=(256, 256), mode="bilinear", align_corners=False)
        maps = self.fan(x * 0.5 + 0.5)[:, :NUM_LANDMARKS]
        maps = ops.interpolate(maps, size=(256, 256), mode="bilinear", align_corners=True)
        return ops.stop_gradient(self.preprocess(maps))

    def preprocess(self, x):
        sw = x.shape[2] // 256
        x = ops.select(x < 0.1, ops.zeros_like(x), x)
        b, c, h, w = x.shape
        flat = x.reshape(b, c, h * w)
        low, high = flat.min(axis=2, keepdims=True), flat.max(axis=2, keepdims=True)
        x = ((flat - low) / (high - low + 1e-6)).reshape(b, c, h, w)
        parts = [(CHIN, 0, 3), (EYEBROWS, -7 * sw, 2), (NOSTRILS, 8 * sw, 4), (LIP_UPPER, -8 * sw, 4),
                 (LIP_LOWER, 8 * sw, 4), (LIP_INNER, -2 * sw, 3)]
        for (start, end), n, power in parts:  # in the official order (later ranges see earlier edits)
            x = self.replace(x, start, end, shift_rows(x[:, start:end], n) ** power)
        x = x * self.keep
        x = self.replace(x, NOSE[0] + 1, NOSE[1], shift_rows(x[:, NOSE[0] + 1:NOSE[1]], 4 * sw))
        eyes = x[:, EYES[0]:EYES[1]]
        x = self.replace(x, EYES[0], EYES[1], shift_rows(eyes, -8) ** 3 + shift_rows(eyes, -24))
        mask1 = (x * 1.0).sum(axis=1, keepdims=True)
        mask2 = (x * self.second).sum(axis=1, keepdims=True)
        # NaN -> 0 in mask 1 only: the official test of mask 2 reads mask 1 after it was cleared
        mask1 = ops.select(mask1 != mask1, ops.zeros_like(mask1), mask1)
        return ops.clip_by_value(ops.concat((mask1, mask2), axis=1), 0.0, 1.0)

    @staticmethod
    def replace(x, start, end, part):
        return ops.concat((x[:, :start], part, x[:, end:]), axis=1)
