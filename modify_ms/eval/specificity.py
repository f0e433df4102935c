"""Reconstruction specificity: does a reconstruction follow its own input, or the data set's mean?

For inputs y_1..y_n and reconstructions r_1..r_n, with d(a, b) the mean squared pixel difference:

    specificity = mean_i d(r_i, y_i) / mean_{i != j} d(r_i, y_j)

1.0: each reconstruction is as far from its own input as from the others (the mean image, or
noise); 0: perfect reconstructions. A collapsed stage 1 shows 1.0 however low its L2 falls.
"""
import numpy as np


def specificity(inputs, recons):
    """inputs, recons: [N, C, H, W] arrays, N >= 2 distinct images. Returns a float."""
    y = np.asarray(inputs, np.float64).reshape(len(inputs), -1)
    r = np.asarray(recons, np.float64).reshape(len(recons), -1)
    if y.shape != r.shape or len(y) < 2:
        raise ValueError(f"specificity needs >= 2 inputs and as many reconstructions, got {y.shape}, {r.shape}")
    # d[i, j] = mean((r_i - y_j)^2), from the expanded square (no N x N x D intermediate)
    d = ((r ** 2).sum(1)[:, None] + (y ** 2).sum(1)[None, :] - 2.0 * r @ y.T) / y.shape[1]
    n = len(y)
    own = np.trace(d) / n
    others = (d.sum() - np.trace(d)) / (n * (n - 1))
    return float(own / others) if others > 0 else float("inf")
