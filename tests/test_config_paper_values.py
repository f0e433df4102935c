"""yaml/metfaces.yaml (stage 1) and yaml/ffhq_stylize.yaml (stage 2) carry the paper's values.

Each value is asserted one by one on the typed config that ``load_config`` builds, with the
source it comes from: "paper" = MODIFY (ICASSP 2023), section 2 (method) or section 3,
implementation details; "authors' code" = a fact of the authors' public code that the paper
leaves open (DESIGN.md, section 1). Choices the paper and the code disagree on (the adversarial
objective, the discriminator's upsampling) must be stated in the raw YAML, not left to a
default. No network is built: this test reads two small files.
"""
import os

import pytest

from modify_ms.config import load_config, safe_yaml
from modify_ms.models.layout import n_latent_for
from modify_ms.train.config import Stage1Config, Stage2Config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGE1_YAML = os.path.join(REPO, "yaml", "metfaces.yaml")
STAGE2_YAML = os.path.join(REPO, "yaml", "ffhq_stylize.yaml")


def raw(path):
    with open(path, encoding="utf-8") as fh:
        return safe_yaml(fh.read())


@pytest.fixture(scope="module")
def s1():
    return load_config(STAGE1_YAML, Stage1Config)


@pytest.fixture(scope="module")
def s2():
    return load_config(STAGE2_YAML, Stage2Config)


def test_stage1_model(s1):
    g = s1.model.generator
    # paper 2.1 + authors' code: StyleGAN2 config-f at 1024 (FFHQ checkpoint), w in W^{18 x 512}
    assert g.size == 1024
    assert g.style_dim == 512
    assert g.n_mlp == 8                        # config-f: 8 mapping layers
    assert g.channel_multiplier == 2           # config-f: channel multiplier 2
    assert g.channel_max == 512
    assert n_latent_for(g.size) == 18          # paper 2.1: 18 AdaIN inputs
    # DESIGN 1 (authors' code): xi = 9 by default (the paper ablates xi = 3..15)
    assert s1.model.remap.xi == 9
    # DESIGN 1 (authors' code): M = PixelNorm, 8 x EqualLinear(512, 512), then the xi rows
    assert s1.model.remap.n_layers == 8
    # paper 2.1: an FPN encoder over IR-SE50 as pSp (authors' code: GradualStyleEncoder, ir_se 50)
    assert s1.model.encoder.num_layers == 50
    # DESIGN 1 (authors' code): StyleGAN2 ResNet discriminator at the generator's resolution
    assert s1.model.discriminator.channel_multiplier == 2
    assert s1.model.discriminator.channel_max == 512
    # DESIGN 1 (authors' code): every loss at 256 (the 1024 output average-pooled), encoder input 256
    assert s1.model.loss_size == 256
    assert s1.data.size == 256
    # DESIGN 1 (authors' code): LPIPS on AlexNet (v0.1 layers), ArcFace IR-SE50 for L_id
    assert s1.model.loss_nets.lpips_net == "alex"
    assert s1.model.loss_nets.identity_num_layers == 50
    # DESIGN 1 (authors' code): 256 px images go up to 1024 for the discriminator, nearest-neighbour
    assert s1.model.disc_upsample == "nearest"
    # DESIGN 1 (authors' code): random generator noise
    assert s1.run.noise == "random"


def test_stage1_schedule_and_loss_weights(s1):
    # paper 3: {swap, lp, adv_r, adv_z, r, id} = {0, 0.8, 0.1, 0, 0.8, 1} for the first 150,000
    # iterations, then {1.0, 0, 0, 0.1, 0, 0} for the next 20,000
    assert len(s1.phases) == 2
    first, second = s1.phases
    assert first.steps == 150000
    assert first.weights.swap == 0.0
    assert first.weights.lpips == 0.8
    assert first.weights.adv_r == 0.1
    assert first.weights.adv_z == 0.0
    assert first.weights.l2 == 0.8
    assert first.weights.id == 1.0
    assert second.steps == 20000
    assert second.weights.swap == 1.0
    assert second.weights.lpips == 0.0
    assert second.weights.adv_r == 0.0
    assert second.weights.adv_z == 0.1
    assert second.weights.l2 == 0.0
    assert second.weights.id == 0.0
    # paper 3: "trained for 170,000 steps ... in the first stage"
    assert s1.total_steps == 170000
    # paper eq. 6: min over E, D, M. In the first phase M gets no gradient (no y_z term), so
    # E and D; in the second E, D and M.
    assert set(first.train) == {"encoder", "decoder"}
    assert set(second.train) == {"encoder", "decoder", "remap"}


def test_stage1_optimisation(s1):
    # paper 3: Adam, beta1 0.9, beta2 0.999, learning rate 1e-4, batch size 4 in the first stage
    # (the authors' code uses Ranger: optim.kind would say so)
    assert s1.optim.kind == "adam"
    assert s1.optim.lr == 1e-4
    assert s1.optim.beta1 == 0.9
    assert s1.optim.beta2 == 0.999
    assert s1.data.batch_size == 4
    # paper eq. 2, 5: y' is a re-sampled target image, different from y
    assert s1.data.resampled_real is True
    # DESIGN 1 (authors' code): one-sided Lipschitz gradient penalty, weight 10
    assert s1.adversarial.gp_weight == 10.0
    # the paper's config needs the pretrained files (FFHQ StyleGAN2, IR-SE50, LPIPS)
    assert s1.weights.require is True


def test_stage1_states_the_choices_paper_and_code_disagree_on(s1):
    """Paper eq. 2/5: WGAN; the authors' code: logistic. Whichever the file uses, it says so; so
    too the discriminator's upsampling (not in the paper) and the optimizer (paper Adam, code Ranger)."""
    text = raw(STAGE1_YAML)
    assert text.get("optim", {}).get("kind") == s1.optim.kind, "metfaces.yaml must state optim.kind"
    assert "kind" in text.get("adversarial", {}), "metfaces.yaml must state adversarial.kind"
    assert text["adversarial"]["kind"] in ("wgan", "logistic")
    assert s1.adversarial.kind == text["adversarial"]["kind"]
    assert "disc_upsample" in text.get("model", {}), "metfaces.yaml must state model.disc_upsample"
    assert s1.model.disc_upsample == text["model"]["disc_upsample"]


def test_stage2_values(s2):
    w = s2.weights
    # paper 3: {lambda_r, lambda_lp, lambda_id, lambda_adv^x} = {0.5, 0.8, 1, 0.01}
    assert w.l2 == 0.5
    assert w.lpips == 0.8
    assert w.id == 1.0
    assert w.adv == 0.01
    # paper 3: 20,000 steps for offline (and online) training, 50 for test-time training
    assert s2.offline_steps == 20000
    assert s2.test_time_steps == 50
    # paper eq. 7: no other term (the authors' code adds a w-norm of E'(x) with weight 0.005)
    assert w.w_norm == 0.0
    # paper 3: Adam(0.9, 0.999), lr 1e-4 "in both stages"
    assert s2.optim.kind == "adam"
    assert s2.optim.lr == 1e-4
    assert s2.optim.beta1 == 0.9
    assert s2.optim.beta2 == 0.999
    # DESIGN 1 (authors' code): one-sided Lipschitz gradient penalty, weight 10
    assert s2.adversarial.gp_weight == 10.0
    # images at the loss resolution of the stage-1 model (256, asserted for metfaces.yaml above): 0 says so
    assert s2.data.size == 0
    # paper 2.2: online training is 20k updates; 0 keeps one update per arrival unless asked (--set)
    assert s2.online_updates == 0


def test_stage2_states_its_adversarial_kind_as_stage1(s1, s2):
    """The adversarial kind and the optimizer are stated in the raw YAML; the objective is stage
    1's, since stage 2 continues training the stage-1 discriminator."""
    text = raw(STAGE2_YAML)
    assert text.get("optim", {}).get("kind") == s2.optim.kind, "ffhq_stylize.yaml must state optim.kind"
    assert "kind" in text.get("adversarial", {}), "ffhq_stylize.yaml must state adversarial.kind"
    assert s2.adversarial.kind == text["adversarial"]["kind"]
    assert s2.adversarial.kind == s1.adversarial.kind
