"""StarGAN v2's FAN (wing) and its generator masks against the torch reference written from
their description (tests/reference/stargan2_ref.py: FAN, masks_from_heatmaps, fan_masks), with
random weights and BatchNorm statistics (eval mode), at the official size (the FAN's widths and
its 256 px input are fixed). Forward only (the official FAN is frozen, under no_grad).

PYNATIVE by default; GRAPH_MODE (and the masks of real faces end to end, compiled) marked slow.

Tolerances: heatmaps 1e-5 relative to their largest magnitude; the masks 1e-4 absolute on values
in [0, 1] (thresholding at 0.1 and the min-max normalisation divide by ranges of the heatmaps)."""
import numpy as np
import pytest
import torch

from parity_utils import assert_close, copy_torch_to_ms, m, t
from stargan2_modes import mode_graph_slow  # noqa: F401  (fixture)
from reference import stargan2_ref as ref

from baselines_ms.stargan2.wing import FAN, HeatmapMasks

BN = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}


def bn_name(key):
    """The test's own renaming of BatchNorm keys (not the importer's)."""
    module, leaf = key.rsplit(".", 1)
    last = module.rsplit(".", 1)[-1]
    is_bn = last.startswith("bn") or module.endswith("downsample.0")
    return f"{module}.{BN[leaf]}" if is_bn and leaf in BN else key


@pytest.fixture(scope="module")
def fans():
    torch_fan = ref.randomize_fan(ref.FAN(), 7)
    ms_fan = FAN()
    missing = copy_torch_to_ms(ms_fan, torch_fan, rename=bn_name, skip=lambda k: k.endswith("num_batches_tracked"))
    assert not missing, missing
    return ms_fan, torch_fan, HeatmapMasks(ms_fan)


@pytest.fixture(scope="module")
def faces():
    from modify_ms.data.builtin import builtin_photos

    return np.stack([p.transpose(2, 0, 1) / 127.5 - 1 for p in builtin_photos(256)[:2]]).astype(np.float32)


def test_fan_heatmaps(mode_graph_slow, fans, faces):
    ms_fan, torch_fan, _ = fans
    x = faces * 0.5 + 0.5
    with torch.no_grad():
        want = torch_fan(t(x))
    assert tuple(want.shape) == (2, 99, 64, 64)
    assert_close(ms_fan(m(x)), want, 1e-5, "FAN heatmaps")


def test_masks_preprocess(mode_graph_slow, fans):
    """preprocess alone on heatmaps with every part's peak placed (shifts, powers, zeroed maps)."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:256, 0:256].astype(np.float32)
    centres = rng.uniform(16, 240, (2, 98, 2, 1, 1)).astype(np.float32)  # one blob per landmark, as a FAN's
    maps = np.exp(-((yy - centres[:, :, 0]) ** 2 + (xx - centres[:, :, 1]) ** 2) / (2 * 10.0 ** 2))
    maps = (maps * rng.uniform(0.5, 1.0, (2, 98, 1, 1)) + 0.02 * rng.uniform(size=maps.shape)).astype(np.float32)
    _, _, masks = fans
    got = masks.preprocess(m(maps))
    want = ref.masks_from_heatmaps(t(maps))
    np.testing.assert_allclose(got.asnumpy(), want.numpy(), rtol=0, atol=1e-5)
    assert 0.01 < float(want[:, 1].mean()) < float(want[:, 0].mean()) < 0.9  # mask 2 leaves parts out
    assert bool((want[:, 1] <= want[:, 0] + 1e-6).all())


@pytest.mark.slow  # the whole mask path compiled in GRAPH_MODE
def test_masks_from_faces(fans, faces):
    _, torch_fan, masks = fans
    got = masks(m(faces)).asnumpy()
    want = ref.fan_masks(torch_fan, t(faces)).numpy()
    assert got.shape == (2, 2, 256, 256)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
