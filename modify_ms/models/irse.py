"""IR / IR-SE ResNets (ArcFace "improved residual" units, Deng et al. 2019), as pSp and ArcFace use them.

Parameter names mirror the PyTorch state_dict keys of ``model_ir_se50.pth`` once
BatchNorm is renamed (weight/bias/running_mean/running_var ->
gamma/beta/moving_mean/moving_variance) and PReLU ``weight`` -> ``w``:

    input_layer.{0 conv, 1 bn, 2 prelu}
    body.N.shortcut_layer.{0 conv1x1, 1 bn}          (only where channels change)
    body.N.res_layer.{0 bn, 1 conv3x3, 2 prelu, 3 conv3x3 (stride), 4 bn, 5 se.fc1/fc2}
    output_layer.{0 bn2d, 1 dropout, 2 flatten, 3 linear, 4 bn1d}   (ArcFace only)

Widths/depths are knobs (``channels``, ``units``) so tests can run tiny networks of
the real depth; the defaults are the real IR-SE50. ``frozen=True`` builds every
BatchNorm with ``use_batch_statistics=False``, so a parent's ``set_train(True)``
can never switch it to batch statistics or update its moving averages.
"""
from mindspore import nn, ops

from ..nn import expand_as

UNITS = {50: (3, 4, 14, 3), 100: (3, 13, 30, 3), 152: (3, 8, 36, 3)}
CHANNELS = (64, 128, 256, 512)
SE_REDUCTION = 16


def units_for(num_layers):
    if num_layers not in UNITS:
        raise ValueError(f"IR-SE depth must be one of {sorted(UNITS)}, got {num_layers}")
    return UNITS[num_layers]


def batch_norm(channels, frozen, dims=2):
    """torch BatchNorm defaults (eps 1e-5, torch momentum 0.1 = MindSpore 0.9)."""
    cls = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
    return cls(channels, eps=1e-5, momentum=0.9, use_batch_statistics=False if frozen else None)


def conv(in_c, out_c, kernel, stride=1, padding=0, bias=False):
    return nn.Conv2d(in_c, out_c, kernel, stride=stride, pad_mode="pad", padding=padding, has_bias=bias)


class SEModule(nn.Cell):
    """Squeeze-excitation: x * sigmoid(fc2(relu(fc1(mean_hw(x))))), 1x1 convs without bias."""

    def __init__(self, channels, reduction=SE_REDUCTION):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = conv(channels, hidden, 1)
        self.fc2 = conv(hidden, channels, 1)

    def construct(self, x):
        s = x.mean(axis=(2, 3), keep_dims=True)
        s = ops.sigmoid(self.fc2(ops.relu(self.fc1(s))))
        return x * expand_as(s, x)


class Subsample(nn.Cell):
    """Identity shortcut with stride, x[..., ::s, ::s], as torch's MaxPool2d(kernel_size=1, stride).

    A pooling cell rather than a strided slice: StridedSliceGrad fails on CPU in PYNATIVE.
    """

    def __init__(self, stride):
        super().__init__()
        self.stride = stride
        self.pool = nn.MaxPool2d(kernel_size=1, stride=stride, pad_mode="valid")

    def construct(self, x):
        if self.stride == 1:
            return x
        return self.pool(x)


class BottleneckIR(nn.Cell):
    """Pre-activation unit BN-conv3x3-PReLU-conv3x3(stride)-BN[-SE] plus a (projected) shortcut."""

    def __init__(self, in_channel, depth, stride, use_se=True, frozen=False):
        super().__init__()
        if in_channel == depth:
            self.shortcut_layer = Subsample(stride)
        else:
            self.shortcut_layer = nn.SequentialCell([conv(in_channel, depth, 1, stride), batch_norm(depth, frozen)])
        layers = [batch_norm(in_channel, frozen), conv(in_channel, depth, 3, 1, 1), nn.PReLU(depth),
                  conv(depth, depth, 3, stride, 1), batch_norm(depth, frozen)]
        if use_se:
            layers.append(SEModule(depth))
        self.res_layer = nn.SequentialCell(layers)

    def construct(self, x):
        return self.res_layer(x) + self.shortcut_layer(x)


def input_layer(channels, frozen=False):
    """conv3x3(3 -> C, no bias), BN, PReLU: stride 1, keeps the resolution."""
    return nn.SequentialCell([conv(3, channels, 3, 1, 1), batch_norm(channels, frozen), nn.PReLU(channels)])


def ir_body(units=UNITS[50], channels=CHANNELS, mode="ir_se", frozen=False):
    """The flat list of units (``body.N``); each block starts with a stride-2 unit.

    Returns (CellList, block_ends) where block_ends[k] is the index of the last unit
    of block k (for IR-SE50: 2, 6, 20, 23 -- pSp's FPN taps are the last three).
    """
    if mode not in ("ir", "ir_se"):
        raise ValueError(f"IR body mode must be 'ir' or 'ir_se', got {mode!r}")
    if len(units) != len(channels):
        raise ValueError(f"IR body: {len(units)} blocks of units but {len(channels)} channel widths")
    cells, ends, in_c = [], [], channels[0]
    for n, depth in zip(units, channels):
        for i in range(n):
            cells.append(BottleneckIR(in_c if i == 0 else depth, depth, 2 if i == 0 else 1, mode == "ir_se", frozen))
        in_c = depth
        ends.append(len(cells) - 1)
    return nn.CellList(cells), tuple(ends)


class IRSEBackbone(nn.Cell):
    """ArcFace ``Backbone(input_size, num_layers, mode)``: the face-recognition embedding network.

    Input (B, 3, S, S) in [-1, 1] with S = ``input_size`` (112 for ``model_ir_se50.pth``);
    output (B, embedding_dim), L2-normalised. The body downsamples by 16, so the
    output layer's linear has C * (S/16)^2 inputs (512 * 7 * 7 = 25088 for the real one).
    Dropout is only active when the network is in training mode and not frozen.
    """

    def __init__(self, input_size=112, num_layers=50, mode="ir_se", drop_ratio=0.4, units=None, channels=CHANNELS,
                 embedding_dim=512, frozen=False):
        super().__init__()
        if input_size % 16:
            raise ValueError(f"IRSEBackbone: input_size must be a multiple of 16, got {input_size}")
        units = tuple(units) if units is not None else units_for(num_layers)
        self.input_layer = input_layer(channels[0], frozen)
        self.body, self.block_ends = ir_body(units, channels, mode, frozen)
        side = input_size // 16
        dropout = nn.Dropout(p=drop_ratio) if drop_ratio > 0 and not frozen else nn.Identity()
        self.output_layer = nn.SequentialCell([
            batch_norm(channels[-1], frozen), dropout, nn.Flatten(),
            nn.Dense(channels[-1] * side * side, embedding_dim, has_bias=True), batch_norm(embedding_dim, frozen, 1)])
        self.input_size = input_size

    def features(self, x):
        """Output of the body (B, C, S/16, S/16), before the output layer."""
        x = self.input_layer(x)
        for unit in self.body:
            x = unit(x)
        return x

    def construct(self, x):
        emb = self.output_layer(self.features(x))
        # ArcFace's l2_norm divides by the norm with no epsilon; embeddings are never zero in practice.
        return emb / ops.norm(emb, 2, 1, keepdim=True)


def freeze(cell):
    """Stop gradients into every parameter of ``cell`` and put it in inference mode."""
    for param in cell.get_parameters():
        param.requires_grad = False
    cell.set_train(False)
    return cell
