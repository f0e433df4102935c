"""PixelNorm: x / sqrt(mean(x^2 over features) + 1e-8), the mapping network's input normalisation."""
from mindspore import nn, ops


class PixelNorm(nn.Cell):
    def __init__(self, eps=1e-8):
        super().__init__()
        self.eps = eps

    def construct(self, x):
        return x * ops.rsqrt(ops.mean(x * x, axis=1, keep_dims=True) + self.eps)


class CrossDeviceBatchNorm(nn.Cell):
    """A built ``nn.BatchNorm2d`` whose training statistics are the global batch's (torch's
    SyncBatchNorm): the per-channel sum, then the sum of centred squares, are AllReduced over the
    workers. It takes over the BatchNorm's parameters under the same names (checkpoints do not
    change) and its inference path (moving statistics). Moving statistics follow MindSpore's
    momentum (moving = momentum * moving + (1 - momentum) * batch) with the unbiased variance, as
    nn.BatchNorm2d.
    AllReduce's backward sums the gradients of the statistics over the workers, which is what
    the global batch's gradient needs once the gradient reducer averages. With one worker it is
    nn.BatchNorm2d itself (no collective), which is how it is checked without msrun."""

    def __init__(self, bn, world_size):
        super().__init__()
        self.moving_mean, self.moving_variance = bn.moving_mean, bn.moving_variance  # (nn.BatchNorm2d's order)
        self.gamma, self.beta = bn.gamma, bn.beta
        # nn.BatchNorm2d keeps 1 - momentum: the weight of the batch's statistics in the moving ones
        self.eps, self.new_weight = float(bn.eps), float(bn.momentum)
        self.world_size = world_size
        self.all_reduce = ops.AllReduce() if world_size > 1 else None
        self.bn_infer = bn.bn_infer

    def construct(self, x):
        if not self.training:
            return self.bn_infer(x, self.gamma, self.beta, self.moving_mean, self.moving_variance)[0]
        b, c, h, w = x.shape
        count = b * h * w * self.world_size
        mean = self.global_sum(x.sum(axis=(0, 2, 3))) / count
        centred = x - mean.reshape(1, c, 1, 1)
        var = self.global_sum((centred * centred).sum(axis=(0, 2, 3))) / count
        stat_mean, stat_var = ops.stop_gradient(mean), ops.stop_gradient(var * count / max(count - 1, 1))
        scale = (self.gamma * ops.rsqrt(var + self.eps)).reshape(1, c, 1, 1)
        out = centred * scale + self.beta.reshape(1, c, 1, 1)
        new = self.new_weight
        out = ops.depend(out, ops.assign(self.moving_mean, (1 - new) * self.moving_mean + new * stat_mean))
        return ops.depend(out, ops.assign(self.moving_variance, (1 - new) * self.moving_variance + new * stat_var))

    def global_sum(self, x):
        return x if self.all_reduce is None else self.all_reduce(x)


def sync_batch_norms(cell, world_size):
    """Swap every BatchNorm2d under ``cell`` that uses batch statistics in training for a
    CrossDeviceBatchNorm over ``world_size`` workers; the parameters keep their names. Returns
    the number swapped. Call before optimizers or step cells are built."""
    names = {id(p): p.name for p in cell.get_parameters()}
    swapped = 0
    for _, parent in list(cell.cells_and_names()):
        for key, child in list(parent.name_cells().items()):
            if isinstance(child, nn.BatchNorm2d) and child.use_batch_statistics is not False:
                replacement = CrossDeviceBatchNorm(child, world_size)
                if isinstance(parent, nn.SequentialCell):
                    parent[list(parent.name_cells()).index(key)] = replacement
                else:
                    setattr(parent, key, replacement)
                swapped += 1
    for p in cell.get_parameters():  # a cell put into a parent prefixes its parameters' names again
        p.name = names[id(p)]
    return swapped
