"""Config values reach the code that uses them, and the code refuses what it cannot honour.

Small and MindSpore-light: the w-norm term against numpy, the minibatch-stddev settings from the
config and from a converted file's sidecar, stage 2's source size, the paper's adversarial default.
"""
from types import SimpleNamespace

import numpy as np
import pytest
import mindspore as ms

from modify_ms.config import ConfigError, load_config
from modify_ms.data.config import DataConfig
from modify_ms.train.common import check_minibatch_stddev
from modify_ms.train.config import AdversarialConfig, Stage1Config
from modify_ms.train.stage2 import source_data_config
from modify_ms.train.steps import w_norm
from modify_ms.utils.checkpoint import CheckpointFileError


def test_w_norm_value_and_gradient(ms_mode):
    """mean_b ||offsets_b||_F (pSp's WNormLoss with start_from_latent_avg); d/dx = x_b / (B ||x_b||)."""
    x = np.random.default_rng(0).standard_normal((3, 5, 7)).astype(np.float32)
    norms = np.sqrt((x.astype(np.float64) ** 2).sum(axis=(1, 2)))
    value = w_norm(ms.Tensor(x))
    np.testing.assert_allclose(float(value.asnumpy()), norms.mean(), rtol=1e-6)
    grad = ms.grad(w_norm)(ms.Tensor(x)).asnumpy()
    np.testing.assert_allclose(grad, x / (3 * norms[:, None, None]), rtol=1e-5, atol=1e-7)


def _disc(group=4, feat=1):
    return SimpleNamespace(stddev_group=group, stddev_feat=feat)


@pytest.mark.parametrize("kwargs, model, ok", [
    ({}, _disc(), True),                                        # a rosinality file records nothing: (4, 1)
    ({"stddev_group": 4, "stddev_feat": 1}, _disc(), True),
    ({"stddev_group": 8, "stddev_feat": 1}, _disc(), False),    # NVlabs paper256: group 8
    ({"stddev_group": 8, "stddev_feat": 1}, _disc(8), True),
    ({"stddev_group": None, "stddev_feat": 1}, _disc(None), True),  # the whole batch
    ({"stddev_group": 4, "stddev_feat": 2}, _disc(), False),
])
def test_a_converted_discriminator_must_have_the_models_minibatch_stddev(kwargs, model, ok):
    meta = {"kwargs": dict(kwargs, size=64)}
    if ok:
        check_minibatch_stddev(model, meta, "D.ckpt")
    else:
        with pytest.raises(CheckpointFileError, match=r"D.ckpt: .*model.discriminator.stddev_group="):
            check_minibatch_stddev(model, meta, "D.ckpt")


def test_the_stddev_group_reaches_the_discriminator():
    from modify_ms.models.modify import ModifyNets

    cfg = load_config("yaml/quickstart.yaml", Stage1Config, ["model.discriminator.stddev_group=0",
                                                             "model.discriminator.stddev_feat=2"])
    nets = ModifyNets(cfg.model)
    assert nets.discriminator.stddev_group is None and nets.discriminator.stddev_feat == 2


def test_a_batch_the_stddev_group_does_not_divide_is_refused_before_training():
    with pytest.raises(ConfigError, match="batch 6 is not divisible by the group size 4"):
        load_config("yaml/quickstart.yaml", Stage1Config, ["data.batch_size=6"])
    load_config("yaml/quickstart.yaml", Stage1Config, ["data.batch_size=8"])
    load_config("yaml/quickstart.yaml", Stage1Config, ["data.batch_size=3"])  # group min(4, 3) = 3


def test_stage2_source_size_is_the_stage1_loss_size():
    stage1 = load_config("yaml/quickstart.yaml", Stage1Config)  # loss size 64
    data = DataConfig(path="builtin:photos", size=0, batch_size=2)
    assert source_data_config(data, stage1).size == 64
    assert source_data_config(DataConfig(path="builtin:photos", size=64), stage1).size == 64
    with pytest.raises(ConfigError, match="data.size is 256 but the stage-1 run's model.loss_size is 64"):
        source_data_config(DataConfig(path="builtin:photos", size=256), stage1)
    with pytest.raises(ConfigError, match="data.batch_size: .*batch 6"):
        source_data_config(DataConfig(path="builtin:photos", size=0, batch_size=6), stage1)
    with pytest.raises(ConfigError, match="data.size"):  # 0 means nothing in stage 1
        load_config("yaml/quickstart.yaml", Stage1Config, ["data.size=0"])


def test_the_paper_s_adversarial_loss_is_the_default():
    assert AdversarialConfig().kind == "wgan"
