"""Helpers for MindSpore-vs-PyTorch parity tests (import from tests: ``from parity_utils import ...``)."""
import numpy as np
import mindspore as ms
import torch


def copy_torch_to_ms(ms_cell, torch_module, rename=lambda k: k, skip=lambda k: False):
    """Copy every torch parameter/buffer into the MindSpore parameter of the same (renamed) name.

    Strict: every MindSpore parameter must be filled, except those named in ``ms_only``.
    This is a test helper with identity naming, not the importer under test.
    """
    ms_params = dict(ms_cell.parameters_and_names())
    filled = set()
    for key, value in torch_module.state_dict().items():
        if skip(key):
            continue
        name = rename(key)
        if name not in ms_params:
            raise KeyError(f"torch key {key} -> {name} has no MindSpore parameter")
        param = ms_params[name]
        arr = value.detach().cpu().numpy().astype(np.float32).reshape(param.shape)
        param.set_data(ms.Tensor(arr))
        filled.add(name)
    return set(ms_params) - filled


def rel_err(actual, expected):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return float(np.abs(actual - expected).max() / max(np.abs(expected).max(), 1e-12))


def assert_close(actual, expected, rel=1e-5, what="value"):
    """Max abs difference relative to the reference's max magnitude must be below ``rel``."""
    actual = actual.asnumpy() if hasattr(actual, "asnumpy") else np.asarray(actual)
    expected = expected.detach().cpu().numpy() if isinstance(expected, torch.Tensor) else np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert np.all(np.isfinite(actual)), f"{what}: non-finite values"
    err = rel_err(actual, expected)
    assert err < rel, f"{what}: relative error {err:.3g} >= {rel:.1g}"


def t(x):
    return torch.from_numpy(np.ascontiguousarray(x))


def m(x):
    return ms.Tensor(np.ascontiguousarray(x))
