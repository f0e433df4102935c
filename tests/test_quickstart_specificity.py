"""Stage 1 reconstructs each input, not the data set's mean image (issue 17).

A collapsed stage 1 (E's code ignored, or too weak to move the decoder) still lowers its L2: the
decoder learns the mean image. Reconstruction specificity (modify_ms.eval.specificity: own-input
distance over other-input distance, 1 = the mean image, 0 = perfect) tells the two apart. Here
the quickstart's networks (narrowed) and optimiser train E and D with the L2 term alone (the
loss networks would only add minutes here) for a few dozen steps on four distinct built-in painted faces; the reconstructions, rendered as the sample
grid renders them (E on its running statistics), must follow their own inputs.
"""
import os

import numpy as np
import pytest

from modify_ms.config import load_config
from modify_ms.data.builtin import builtin_style_images
from modify_ms.eval.specificity import specificity
from modify_ms.train.config import Stage1Config
from modify_ms.train.stage1 import Stage1Trainer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 64
STEPS = 40
PICKS = (0, 1, 40, 80)  # astronaut, Grace Hopper, two LFW faces: four distinct painted inputs
# Measured (seed 0, quickstart lr 3e-3): 0.999 before training (every reconstruction the same
# picture), 0.369 after STEPS steps; with the decoder fed 0 * E's code (a throwaway patch of
# ModifyNets.w_plus) 0.999 after the same steps. (0.66 with the old lr 1e-3 and L2+LPIPS+ID.)
# Time: ~50 s of CPU (127 s wall on 2 shared cores), one compiled step cell.
THRESHOLD = 0.6
NARROW = [  # the quickstart's architecture at a width that trains in seconds
    "model.generator.style_dim=32", "model.generator.n_mlp=1", "model.generator.channel_max=16",
    "model.encoder.channels=[16, 16, 16, 16]",
    "model.discriminator.channel_max=16", "model.loss_nets.identity_channels=[16, 16, 16, 16]",
    "model.remap.n_layers=1", "run.compile_cache=false",
    "weights.generator=", "weights.encoder=",  # from random weights: the packaged prior is the quickstart's width
]


def inputs():
    """[4, 3, SIZE, SIZE] in [-1, 1], as the data pipeline feeds E."""
    images = builtin_style_images(SIZE)
    batch = np.stack([images[i] for i in PICKS]).astype(np.float32)
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2) / 127.5 - 1.0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run_dir = str(tmp_path_factory.mktemp("quickstart_specificity"))
    phases = f"phases=[{{steps: {STEPS}, weights: {{l2: 1.0}}, train: [encoder, decoder]}}]"
    cfg = load_config(os.path.join(REPO, "yaml", "quickstart.yaml"), Stage1Config,
                      NARROW + [phases, f"run.out_dir={run_dir}", f"data.batch_size={len(PICKS)}"])
    trainer = Stage1Trainer(cfg, run_dir, log=lambda _m: None)
    y = inputs()
    before = specificity(y, trainer.sample_rows(y)[1])
    for _ in range(STEPS):
        trainer.train_step(y, y)
    after = specificity(y, trainer.sample_rows(y)[1])
    return dict(before=before, after=after)


def test_untrained_reconstructions_are_one_picture(trained):
    """The starting point the test must move away from: a random decoder barely sees its code."""
    assert trained["before"] > 0.9, trained


def test_reconstructions_follow_their_inputs(trained):
    assert trained["after"] < THRESHOLD, (f"stage 1 collapsed towards the mean image: specificity "
                                          f"{trained['after']:.3f} (threshold {THRESHOLD}; "
                                          f"{trained['before']:.3f} untrained)")
