"""StarGAN v2's four networks as ``core/model.py`` defines them (BASELINES section 6.2).

Plain convolutions and linear layers with biases (no equalised learning rate), instance norm and
AdaIN, average-pool down and nearest up. Parameter names are the official state-dict keys
(``encode.0.conv1.weight``, ``shared.2.bias``, ``unshared.1.6.weight``, ``main.10.weight``), so the
importer's rules are one per network. Every network picks its output per sample by domain label
``y`` [B] (int32) with a one-hot mask: exact, and its gradient reaches only the chosen branch.

``first_dim`` (default 2**14 // img_size, the official width of the first layer) and
``hidden_dim`` (the mapping network's 512) exist so tests can build narrow networks; the depths
always follow the official formulas (log2(img_size) - 4 (+1 with w_hpf) down-blocks in G,
log2(img_size) - 2 in E and D).
"""
import math

import numpy as np
import mindspore as ms
from mindspore import nn, ops

SQRT2 = math.sqrt(2.0)
HPF_SIZES = (32, 64, 128)  # the official feature sizes (pixels) that get the high-pass skip


def official_first_dim(img_size):
    return 2 ** 14 // img_size


def conv(cin, cout, k, bias=True):
    """torch's Conv2d(cin, cout, k, 1, (k - 1) // 2 for odd k, else 0)."""
    return nn.Conv2d(cin, cout, k, stride=1, pad_mode="pad", padding=(k - 1) // 2, has_bias=bias)


def avg_pool2(x):
    b, c, h, w = x.shape
    return x.reshape(b, c, h // 2, 2, w // 2, 2).mean(axis=(3, 5))


def nearest_up2(x):
    b, c, h, w = x.shape
    return ops.broadcast_to(x.reshape(b, c, h, 1, w, 1), (b, c, h, 2, w, 2)).reshape(b, c, 2 * h, 2 * w)


def instance_norm(x, eps=1e-5):
    """torch's InstanceNorm2d without affine: per sample and channel, biased variance."""
    mean = x.mean(axis=(2, 3), keep_dims=True)
    centred = x - mean
    return centred * ops.rsqrt((centred * centred).mean(axis=(2, 3), keep_dims=True) + eps)


def pick_domain(out, y):
    """out [B, K, ...], y [B] int -> out[arange(B), y] [B, ...]."""
    mask = ops.one_hot(y, out.shape[1], ops.ones((), out.dtype), ops.zeros((), out.dtype))
    return (out * mask.reshape(mask.shape + (1,) * (out.ndim - 2))).sum(axis=1)


class InstanceNorm(nn.Cell):
    """torch's InstanceNorm2d(C, affine=True): parameters ``weight`` and ``bias`` [C]."""

    def __init__(self, channels):
        super().__init__()
        self.weight = ms.Parameter(ms.Tensor(np.ones(channels, np.float32)), name="weight")
        self.bias = ms.Parameter(ms.Tensor(np.zeros(channels, np.float32)), name="bias")

    def construct(self, x):
        c = self.weight.shape[0]
        return instance_norm(x) * self.weight.reshape(1, c, 1, 1) + self.bias.reshape(1, c, 1, 1)


class AdaIN(nn.Cell):
    """(1 + gamma(s)) * IN(x) + beta(s), gamma and beta the two halves of fc(s)."""

    def __init__(self, style_dim, channels):
        super().__init__()
        self.fc = nn.Dense(style_dim, 2 * channels)

    def construct(self, x, s):
        h = self.fc(s)
        c = h.shape[1] // 2
        gamma, beta = h[:, :c].reshape(-1, c, 1, 1), h[:, c:].reshape(-1, c, 1, 1)
        return (1 + gamma) * instance_norm(x) + beta


class ResBlk(nn.Cell):
    """Pre-activation residual block: ([IN] lrelu conv3 [pool] [IN] lrelu conv3 + [conv1x1] [pool]) / sqrt 2."""

    def __init__(self, dim_in, dim_out, normalize=False, downsample=False):
        super().__init__()
        self.normalize, self.downsample = normalize, downsample
        self.learned_sc = dim_in != dim_out
        self.conv1 = conv(dim_in, dim_in, 3)
        self.conv2 = conv(dim_in, dim_out, 3)
        if normalize:
            self.norm1 = InstanceNorm(dim_in)
            self.norm2 = InstanceNorm(dim_in)
        if self.learned_sc:
            self.conv1x1 = conv(dim_in, dim_out, 1, bias=False)
        self.actv = nn.LeakyReLU(0.2)

    def shortcut(self, x):
        if self.learned_sc:
            x = self.conv1x1(x)
        if self.downsample:
            x = avg_pool2(x)
        return x

    def residual(self, x):
        if self.normalize:
            x = self.norm1(x)
        x = self.conv1(self.actv(x))
        if self.downsample:
            x = avg_pool2(x)
        if self.normalize:
            x = self.norm2(x)
        return self.conv2(self.actv(x))

    def construct(self, x):
        return (self.shortcut(x) + self.residual(x)) / SQRT2


class AdainResBlk(nn.Cell):
    """Decoder block: AdaIN lrelu [up] conv3 AdaIN lrelu conv3, plus ([up] [conv1x1]) / sqrt 2 when
    w_hpf == 0. With w_hpf > 0 the official block returns the residual alone (its conv1x1, when it
    has one, stays in the state dict unused)."""

    def __init__(self, dim_in, dim_out, style_dim=64, w_hpf=0, upsample=False):
        super().__init__()
        self.w_hpf, self.upsample = w_hpf, upsample
        self.learned_sc = dim_in != dim_out
        self.conv1 = conv(dim_in, dim_out, 3)
        self.conv2 = conv(dim_out, dim_out, 3)
        self.norm1 = AdaIN(style_dim, dim_in)
        self.norm2 = AdaIN(style_dim, dim_out)
        if self.learned_sc:
            self.conv1x1 = conv(dim_in, dim_out, 1, bias=False)
        self.actv = nn.LeakyReLU(0.2)

    def shortcut(self, x):
        if self.upsample:
            x = nearest_up2(x)
        if self.learned_sc:
            x = self.conv1x1(x)
        return x

    def residual(self, x, s):
        x = self.actv(self.norm1(x, s))
        if self.upsample:
            x = nearest_up2(x)
        x = self.conv1(x)
        return self.conv2(self.actv(self.norm2(x, s)))

    def construct(self, x, s):
        out = self.residual(x, s)
        if self.w_hpf == 0:
            out = (out + self.shortcut(x)) / SQRT2
        return out


class HighPass(nn.Cell):
    """Depthwise 3x3 conv with [[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]] / w_hpf, zero padding 1
    (the official buffer ``hpf.filter``: derived from w_hpf, so a constant here)."""

    def __init__(self, w_hpf):
        super().__init__()
        kernel = np.full((3, 3), -1.0, np.float32)
        kernel[1, 1] = 8.0
        self.kernel = ms.Tensor((kernel / w_hpf).reshape(1, 1, 3, 3))

    def construct(self, x):
        c = x.shape[1]
        weight = ops.tile(self.kernel, (c, 1, 1, 1))
        return ops.conv2d(x, weight, pad_mode="pad", padding=1, groups=c)


class Generator(nn.Cell):
    """x [B, 3, S, S] in [-1, 1], s [B, style_dim] (, masks [B, 2, S, S]) -> [B, 3, S, S] (no tanh).

    Encoder: from_rgb, log2(S) - 4 (+1 with w_hpf) normalised down-blocks doubling the width up to
    max_conv_dim, two normalised blocks at the bottleneck; the decoder mirrors it with AdaIN blocks.
    With masks (w_hpf > 0, the FAN's two heatmap masks as channels 0 and 1): the encoder's inputs at
    32, 64 and 128 px are kept, and after each decoder block whose output has one of those sizes
    HPF(mask * kept) is added, mask channel 0 at 32 px and channel 1 above, bilinearly resized."""

    def __init__(self, img_size=256, style_dim=64, max_conv_dim=512, w_hpf=1, first_dim=None):
        super().__init__()
        dim_in = first_dim or official_first_dim(img_size)
        self.img_size, self.style_dim, self.w_hpf = img_size, style_dim, w_hpf
        self.from_rgb = conv(3, dim_in, 3)
        encode, decode = [], []
        repeat_num = int(np.log2(img_size)) - 4 + (1 if w_hpf > 0 else 0)
        dim_out = dim_in
        for _ in range(repeat_num):
            dim_out = min(dim_in * 2, max_conv_dim)
            encode.append(ResBlk(dim_in, dim_out, normalize=True, downsample=True))
            decode.insert(0, AdainResBlk(dim_out, dim_in, style_dim, w_hpf=w_hpf, upsample=True))
            dim_in = dim_out
        for _ in range(2):
            encode.append(ResBlk(dim_out, dim_out, normalize=True))
            decode.insert(0, AdainResBlk(dim_out, dim_out, style_dim, w_hpf=w_hpf))
        self.encode = nn.CellList(encode)
        self.decode = nn.CellList(decode)
        first = first_dim or official_first_dim(img_size)
        self.to_rgb = nn.SequentialCell([InstanceNorm(first), nn.LeakyReLU(0.2), conv(first, 3, 1)])
        # static: which encoder inputs are kept and which decoder outputs get the high-pass skip
        in_sizes = [img_size >> i for i in range(repeat_num)] + [img_size >> repeat_num] * 2
        self.keep = tuple(h in HPF_SIZES for h in in_sizes)
        out_sizes = [img_size >> repeat_num] * 2 + [img_size >> i for i in range(repeat_num - 1, -1, -1)]
        self.skip = tuple(h in HPF_SIZES for h in out_sizes)
        self.hpf = HighPass(w_hpf) if w_hpf > 0 else None

    def construct(self, x, s, masks=None):
        x = self.from_rgb(x)
        cache = ()
        for i, block in enumerate(self.encode):
            if masks is not None and self.keep[i]:
                cache = cache + (x,)
            x = block(x)
        for i, block in enumerate(self.decode):
            x = block(x, s)
            if masks is not None and self.skip[i]:
                size = x.shape[2]
                channel = 0 if size == HPF_SIZES[0] else 1
                mask = ops.interpolate(masks[:, channel:channel + 1], size=(size, size), mode="bilinear",
                                       align_corners=False)
                kept = cache[len(cache) - 1]  # the deepest kept input: the same size as x
                cache = cache[:len(cache) - 1]
                x = x + self.hpf(mask * kept)
        return self.to_rgb(x)


class MappingNetwork(nn.Cell):
    """z [B, latent_dim], y [B] -> s [B, style_dim]: 4 shared Linear+ReLU, then per domain 3
    Linear+ReLU and a Linear to style_dim."""

    def __init__(self, latent_dim=16, style_dim=64, num_domains=2, hidden_dim=512):
        super().__init__()
        shared = [nn.Dense(latent_dim, hidden_dim), nn.ReLU()]
        for _ in range(3):
            shared += [nn.Dense(hidden_dim, hidden_dim), nn.ReLU()]
        self.shared = nn.SequentialCell(shared)
        self.unshared = nn.CellList([nn.SequentialCell([
            nn.Dense(hidden_dim, hidden_dim), nn.ReLU(), nn.Dense(hidden_dim, hidden_dim), nn.ReLU(),
            nn.Dense(hidden_dim, hidden_dim), nn.ReLU(), nn.Dense(hidden_dim, style_dim)])
            for _ in range(num_domains)])
        self.latent_dim, self.num_domains = latent_dim, num_domains

    def construct(self, z, y):
        h = self.shared(z)
        return pick_domain(ops.stack([head(h) for head in self.unshared], axis=1), y)


def down_trunk(img_size, max_conv_dim, first_dim):
    """The trunk E and D share: conv3, log2(S) - 2 un-normalised down-blocks (S -> 4), lrelu,
    conv4 valid (-> 1x1), lrelu. Returns (cells, width)."""
    dim_in = first_dim or official_first_dim(img_size)
    cells = [conv(3, dim_in, 3)]
    dim_out = dim_in
    for _ in range(int(np.log2(img_size)) - 2):
        dim_out = min(dim_in * 2, max_conv_dim)
        cells.append(ResBlk(dim_in, dim_out, downsample=True))
        dim_in = dim_out
    cells += [nn.LeakyReLU(0.2), nn.Conv2d(dim_out, dim_out, 4, pad_mode="valid", has_bias=True),
              nn.LeakyReLU(0.2)]
    return cells, dim_out


class StyleEncoder(nn.Cell):
    """x [B, 3, S, S], y [B] -> s [B, style_dim]: the shared trunk, one Linear head per domain."""

    def __init__(self, img_size=256, style_dim=64, num_domains=2, max_conv_dim=512, first_dim=None):
        super().__init__()
        cells, dim_out = down_trunk(img_size, max_conv_dim, first_dim)
        self.shared = nn.SequentialCell(cells)
        self.unshared = nn.CellList([nn.Dense(dim_out, style_dim) for _ in range(num_domains)])

    def construct(self, x, y):
        h = self.shared(x)
        h = h.reshape(h.shape[0], -1)
        return pick_domain(ops.stack([head(h) for head in self.unshared], axis=1), y)


class Discriminator(nn.Cell):
    """x [B, 3, S, S], y [B] -> logit [B] of domain y: the trunk, then Conv1x1 to one logit per domain."""

    def __init__(self, img_size=256, num_domains=2, max_conv_dim=512, first_dim=None):
        super().__init__()
        cells, dim_out = down_trunk(img_size, max_conv_dim, first_dim)
        cells.append(conv(dim_out, num_domains, 1))
        self.main = nn.SequentialCell(cells)

    def construct(self, x, y):
        out = self.main(x)
        return pick_domain(out.reshape(out.shape[0], -1), y)


def weighted_cells(cell):
    """The Conv2d and Dense layers under ``cell``, in definition order (what torch's ``apply`` visits)."""
    return [c for _, c in cell.cells_and_names() if isinstance(c, (nn.Conv2d, nn.Dense))]


def _fan_in(weight):
    return int(np.prod(weight.shape[1:]))


def he_init(cell, rng):
    """The official ``he_init`` (applied to the trained networks): kaiming normal, fan_in, ReLU gain
    (std sqrt(2 / fan_in)); biases 0. Instance-norm affine parameters keep 1 and 0."""
    for layer in weighted_cells(cell):
        w = layer.weight
        w.set_data(ms.Tensor(rng.standard_normal(w.shape).astype(np.float32) * np.sqrt(2.0 / _fan_in(w))))
        if layer.bias is not None:
            layer.bias.set_data(ms.Tensor(np.zeros(layer.bias.shape, np.float32)))
    return cell


def torch_default_init(cell, rng):
    """torch's default Conv2d / Linear initialisation (weights and biases uniform in +-1/sqrt(fan_in)):
    what the official EMA copies start from (they are deep-copied before ``he_init``)."""
    for layer in weighted_cells(cell):
        w = layer.weight
        bound = 1.0 / np.sqrt(_fan_in(w))
        w.set_data(ms.Tensor(rng.uniform(-bound, bound, w.shape).astype(np.float32)))
        if layer.bias is not None:
            layer.bias.set_data(ms.Tensor(rng.uniform(-bound, bound, layer.bias.shape).astype(np.float32)))
    return cell


class StarGAN2Nets(nn.Cell):
    """The trained networks and their EMA copies under the official names (``generator``,
    ``mapping_network``, ``style_encoder``, ``discriminator``; ``*_ema``). ``model``: a
    StarGAN2ModelConfig; ``with_training``: the discriminator and the trained copies too (a
    stylizer builds the EMA copies only). With w_hpf > 0 also ``fan`` (frozen) and ``masks``
    (its HeatmapMasks)."""

    EMA = ("generator", "mapping_network", "style_encoder")

    def __init__(self, model, num_domains, with_training=True):
        super().__init__()
        self.model, self.num_domains = model, num_domains
        for name in self.EMA:
            setattr(self, f"{name}_ema", self.build(name))
            for p in getattr(self, f"{name}_ema").get_parameters():
                p.requires_grad = False
        self.with_training = with_training
        if with_training:
            for name in self.EMA + ("discriminator",):
                setattr(self, name, self.build(name))
        self.fan = self.masks = None
        if model.w_hpf > 0:  # the masks' FAN: frozen, from a converted wing file (the trainer fills it)
            from .wing import FAN, HeatmapMasks

            self.fan = FAN()
            for p in self.fan.get_parameters():
                p.requires_grad = False
            self.masks = HeatmapMasks(self.fan)

    def build(self, name):
        m, k = self.model, self.num_domains
        first = m.first_dim or None
        if name == "generator":
            return Generator(m.img_size, m.style_dim, m.max_conv_dim, m.w_hpf, first)
        if name == "mapping_network":
            return MappingNetwork(m.latent_dim, m.style_dim, k, m.hidden_dim)
        if name == "style_encoder":
            return StyleEncoder(m.img_size, m.style_dim, k, m.max_conv_dim, first)
        return Discriminator(m.img_size, k, m.max_conv_dim, first)

    def init_weights(self, seed):
        """The official start from ``seed``: he_init on the trained networks, torch's default
        initialisation on the EMA copies (BASELINES 6.2, 'Init')."""
        for i, name in enumerate(self.EMA):
            torch_default_init(getattr(self, f"{name}_ema"), np.random.default_rng([seed, 1, i]))
        if self.with_training:
            for i, name in enumerate(self.EMA + ("discriminator",)):
                he_init(getattr(self, name), np.random.default_rng([seed, 0, i]))

    def groups(self):
        names = [f"{n}_ema" for n in self.EMA]
        if self.with_training:
            names += list(self.EMA) + ["discriminator"]
        if self.fan is not None:
            names.append("fan")
        return {name: getattr(self, name) for name in names}
