"""Reproducibility pieces of training: the packaged LPIPS linear layers equal the authors' files
bit for bit and are used when no LPIPS file is given; ``seed_everything`` fixes weight
initialisation; the loss networks a run saves load back exactly and refuse unfit files."""
import os

import numpy as np
import pytest

from modify_ms.assets import lpips_linear_layers
from modify_ms.losses.lpips import PACKAGED_LINEAR_NETS, packaged_linear_layers
from modify_ms.train.config import LossNetsConfig, WeightsConfig
from modify_ms.train.common import (LOSS_NETS_FILE, LossNets, load_loss_nets, load_pretrained, save_loss_nets,
                                    seed_everything)
from modify_ms.utils.checkpoint import CheckpointFileError

TINY_LOSS_NETS = LossNetsConfig(identity_units=(1, 1, 1, 1), identity_channels=(16, 16, 16, 16))


@pytest.mark.parametrize("net", PACKAGED_LINEAR_NETS)
def test_packaged_npz_equals_the_authors_pth(net):
    from weights_convert.torch_pickle import load_torch_file

    reference = load_torch_file(lpips_linear_layers(net))
    packaged = packaged_linear_layers(net)
    assert sorted(packaged) == sorted(reference) == [f"lin{k}.model.1.weight" for k in range(5)]
    for name, value in reference.items():
        assert packaged[name].dtype == value.dtype == np.float32
        assert packaged[name].tobytes() == np.ascontiguousarray(value).tobytes(), name


def _params(cell):
    return {n: p.asnumpy().copy() for n, p in cell.parameters_and_names()}


def _stub_nets():
    """load_pretrained's E/D/Dis side with nothing to load (no weight file names them)."""
    from types import SimpleNamespace

    return SimpleNamespace(decoder=None, encoder=None, discriminator=None, n_latent=2)


@pytest.mark.parametrize("net", PACKAGED_LINEAR_NETS)
def test_no_lpips_file_means_the_packaged_linear_layers(net):
    seed_everything(3)
    loss_nets = LossNets(LossNetsConfig(lpips_net=net, identity_units=(1, 1, 1, 1),
                                        identity_channels=(16, 16, 16, 16)), 64)
    notes = []
    load_pretrained(_stub_nets(), loss_nets, WeightsConfig(require=False), notes.append)
    params = _params(loss_nets.lpips)
    for name, value in packaged_linear_layers(net).items():
        assert np.array_equal(params[name], value), name
        assert value.min() >= 0 and value.max() > 0
    assert any("lpips" in n and "packaged v0.1" in n for n in notes), notes


def test_seed_everything_fixes_initial_weights():
    seed_everything(11)
    a = _params(LossNets(TINY_LOSS_NETS, 64))
    seed_everything(11)
    b = _params(LossNets(TINY_LOSS_NETS, 64))
    seed_everything(12)
    c = _params(LossNets(TINY_LOSS_NETS, 64))
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert any(not np.array_equal(a[k], c[k]) for k in a if "identity" in k or "net." in k)


def test_loss_nets_round_trip_and_refusals(tmp_path):
    seed_everything(5)
    saved = LossNets(TINY_LOSS_NETS, 64)
    save_loss_nets(saved, str(tmp_path))
    assert (tmp_path / LOSS_NETS_FILE).is_file() and (tmp_path / (LOSS_NETS_FILE + ".json")).is_file()
    seed_everything(6)
    other = LossNets(TINY_LOSS_NETS, 64)
    load_loss_nets(other, str(tmp_path))
    want, got = _params(saved), _params(other)
    assert want.keys() == got.keys() and all(np.array_equal(want[k], got[k]) for k in want)

    with pytest.raises(CheckpointFileError, match="missing"):
        load_loss_nets(other, str(tmp_path / "elsewhere"))
    wider = LossNets(LossNetsConfig(identity_units=(1, 1, 1, 1), identity_channels=(16, 16, 16, 32)), 64)
    with pytest.raises(CheckpointFileError, match="does not fit"):
        load_loss_nets(wider, str(tmp_path))
    (tmp_path / (LOSS_NETS_FILE + ".json")).write_text('{"format": "something else"}')
    with pytest.raises(CheckpointFileError, match="not a loss-network"):
        load_loss_nets(other, str(tmp_path))
