"""Reconstruction specificity (modify_ms.eval.specificity) against its definition."""
import numpy as np
import pytest

from modify_ms.eval.specificity import specificity


def _pairwise(inputs, recons):
    n = len(inputs)
    d = np.array([[((recons[i] - inputs[j]) ** 2).mean() for j in range(n)] for i in range(n)], np.float64)
    return np.trace(d) / n / ((d.sum() - np.trace(d)) / (n * (n - 1)))


def test_definition_perfect_and_mean_image():
    rng = np.random.default_rng(0)
    y = rng.uniform(-1, 1, (5, 3, 8, 8))
    noisy = y + 0.3 * rng.standard_normal(y.shape)
    assert specificity(y, noisy) == pytest.approx(_pairwise(y, noisy), rel=1e-9)
    assert specificity(y, y) == pytest.approx(0.0, abs=1e-12)
    mean_image = np.broadcast_to(y.mean(0), y.shape)  # a collapsed stage 1: the same picture for every input
    assert specificity(y, mean_image) == pytest.approx(1.0, rel=1e-9)
    assert specificity(y, noisy) < 0.5


def test_refuses_fewer_than_two_images():
    with pytest.raises(ValueError, match=">= 2 inputs"):
        specificity(np.zeros((1, 3, 4, 4)), np.zeros((1, 3, 4, 4)))
