"""Regenerate the packaged LPIPS v0.1 linear layers as plain arrays (run once, when the .pth change).

    python tools/export_lpips_linear.py

modify_ms reads ``modify_ms/assets/lpips_v0.1/<net>_linear.npz`` whenever no LPIPS file is
given, so the non-negative linear layers are never random. The .npz hold exactly the arrays
of the authors' ``<net>.pth`` (legacy PyTorch files, read here with weights_convert's
restricted reader), under the LPIPS cell's parameter names (``lin0.model.1.weight`` ...).
modify_ms itself cannot read the .pth: weights_convert depends on modify_ms, not the reverse.
tests/test_train_reproducible.py checks the .npz equal the .pth bit for bit.
"""
import os

import numpy as np

from ..assets import lpips_linear_layers
from ..losses.lpips import PACKAGED_LINEAR_NETS, packaged_linear_path


def linear_arrays(net):
    """{parameter name: float32 array} of the bundled ``<net>.pth``."""
    from weights_convert.torch_pickle import load_torch_file  # the one reader of .pth files

    return {name: np.asarray(value) for name, value in load_torch_file(lpips_linear_layers(net)).items()}


def main(argv=None):
    """No options (``argv`` is ignored): rewrites both packaged .npz files."""
    for net in PACKAGED_LINEAR_NETS:
        path = packaged_linear_path(net, must_exist=False)
        tmp = path + ".tmp.npz"
        np.savez(tmp, **linear_arrays(net))
        os.replace(tmp, path)
        print(path)


if __name__ == "__main__":
    main()
