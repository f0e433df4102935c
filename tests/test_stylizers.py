"""The stylizer registry (modify_ms.stylizers): names, errors, and MODIFY's entries.

A tiny stage-1 run (the TINY sizes of test_modify_train, no training step: the round trip
does not need trained weights) is made in-process; stage 2 runs in PYNATIVE with the
adversarial weight 0 (no discriminator step, so no gradient-penalty graph to compile) and 1
test-time step. GRAPH_MODE is restored after the module.

* create_stylizer("modify", run).stylize(photo) equals what Stage2Model gives through
  stage2.test_time (what tools/stylize.py --mode test-time writes) for the same photo name:
  fails if the registry skipped the adaptation or seeded the photo differently. (Whether a second
  photo restarts from stage 1 is not checked here: under PYNATIVE, Stage2Model.reset leaves Adam
  in a state whose next update differs from a fresh optimizer's; GRAPH_MODE is exact, and
  test_modify_train checks order independence there.)
* modify-offline takes E' from a stage-2 checkpoint; variants(x, k) are [B, K, 3, P, P], different
  from each other, from the photo's own z draws.
* An unknown name is a one-line StylizerError listing the registered names (baselines included
  once baselines_ms is imported); the library imports no baselines itself.
* Plugins: every entry point of group modify_ms.stylizers is registered once, lazily (not at
  import), by create_stylizer / list_stylizers; a broken one is one warning line naming it (no
  traceback), the others still load, and its reason is in the error of a name then unknown. An
  option a method does not take is a one-line StylizerError before the factory runs. With the
  installed package, list_stylizers() finds psp-unpaired through setup.py's entry point in a
  fresh interpreter, without importing MindSpore; modify_ms's source never imports baselines_ms.

Tolerance: the round trip is bit-exact (the same float32 ops on the same inputs).
"""
import os
import subprocess
import sys

import numpy as np
import pytest
import mindspore as ms

from modify_ms.config import load_config
from modify_ms.stylizers import StylizerError, create_stylizer, list_stylizers
from modify_ms.train import stage2
from modify_ms.train.common import RunCheckpoints, save_loss_nets, write_resolved_config
from modify_ms.train.config import Stage1Config, Stage2Config
from modify_ms.train.stage1 import Stage1Trainer
from test_modify_train import REPO, TINY

STEPS, SIZE = 1, 64
STAGE2 = ["run.mode=pynative", "run.compile_cache=false", "weights.adv=0", "weights.lpips=0", "weights.id=0",
          f"test_time_steps={STEPS}",
          "optim.lr=0.001"]


@pytest.fixture(scope="module", autouse=True)
def pynative():
    """The whole module in PYNATIVE (the stylizers run op by op: nothing compiles), GRAPH after."""
    ms.set_context(mode=ms.PYNATIVE_MODE)
    yield
    ms.set_context(mode=ms.GRAPH_MODE)


@pytest.fixture(scope="module")
def stage1_dir(tmp_path_factory):
    run_dir = str(tmp_path_factory.mktemp("registry_stage1"))
    cfg = load_config(os.path.join(REPO, "yaml", "quickstart.yaml"), Stage1Config,
                      TINY + [f"run.out_dir={run_dir}", "run.mode=pynative"])
    trainer = Stage1Trainer(cfg, run_dir, log=lambda _m: None)
    write_resolved_config(cfg, run_dir)
    save_loss_nets(trainer.loss_nets, run_dir)
    trainer.save()
    return run_dir


@pytest.fixture(scope="module")
def photo():
    return np.random.default_rng(3).uniform(-1, 1, (1, 3, SIZE, SIZE)).astype(np.float32)


@pytest.fixture(scope="module")
def modify(stage1_dir, tmp_path_factory):
    return create_stylizer("modify", stage1_dir, overrides=STAGE2, work_dir=str(tmp_path_factory.mktemp("registry_work")))


@pytest.fixture(scope="module")
def stage2_ckpts(tmp_path_factory):
    """Where the round trip leaves its adapted E' as a stage-2 checkpoint (for modify-offline)."""
    return RunCheckpoints(str(tmp_path_factory.mktemp("registry_stage2")), subdir="stage2")


def test_modify_round_trip_equals_stage2_model(stage1_dir, modify, photo, stage2_ckpts, tmp_path):
    cfg = load_config(os.path.join(REPO, "yaml", "ffhq_stylize.yaml"), Stage2Config,
                      STAGE2 + [f"stage1={stage1_dir}"])
    model = stage2.Stage2Model(cfg, str(tmp_path), log=lambda _m: None)
    written = {}

    def emit(name, x):
        written[name] = model.stylize(x)
        return name

    (before, after), = stage2.test_time(model, [("a.png", photo)], emit, STEPS, log=lambda _m: None).values()
    got = modify.stylize(photo, names=["a.png"])
    assert got.shape == (1, 3, SIZE, SIZE)
    np.testing.assert_array_equal(got, written["a.png"])
    assert after != before, "the test-time update changed nothing: the round trip would be vacuous"
    # the adapted state as a stage-2 checkpoint, for modify-offline below
    model.save(stage2_ckpts, 1, {"mode": "offline"})


def test_modify_offline_variants_from_a_stage2_checkpoint(stage1_dir, photo, stage2_ckpts, tmp_path):
    """modify-offline loads E' from stage2_checkpoint (no update): variants(x, k) are
    [B, K, 3, P, P], distinct, the z of each photo drawn as tools/stylize.py draws them."""
    ckpt = stage2_ckpts.latest()
    assert ckpt, "run after test_modify_round_trip_equals_stage2_model (it writes the checkpoint)"
    offline = create_stylizer("modify-offline", stage1_dir, overrides=STAGE2, work_dir=str(tmp_path),
                              stage2_checkpoint=ckpt)
    out = offline.variants(photo, 3, names=["a.png"])
    assert offline.multimodal and out.shape == (1, 3, 3, SIZE, SIZE)
    assert np.abs(out[0, 0] - out[0, 1]).max() > 1e-4 and np.abs(out[0, 1] - out[0, 2]).max() > 1e-4
    zs = np.random.default_rng([offline.cfg.run.seed, stage2.photo_key("a.png")]).standard_normal((3, offline.z_dim))
    np.testing.assert_array_equal(out[0], offline.model.variants(photo, zs))


def test_unknown_name_is_one_line_listing_the_names():
    with pytest.raises(StylizerError) as info:
        create_stylizer("stargan", "runs/x")
    message = str(info.value)
    assert "\n" not in message and "'stargan'" in message
    for name in ("modify", "modify-online", "modify-offline", "psp-unpaired"):
        assert name in message and name in list_stylizers()


def test_library_finds_the_baselines_through_entry_points_only():
    """A fresh interpreter: importing the registry imports neither baselines_ms nor MindSpore;
    listing finds psp-unpaired (setup.py's entry point) and still imports no MindSpore; and no
    module of modify_ms names baselines_ms in an import."""
    code = ("import sys; import modify_ms.stylizers as s; print('baselines_ms' in sys.modules, 'mindspore' in sys.modules);"
            " print(s.list_stylizers()); print('mindspore' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    imported, listed, after = out.split("\n")[:3]
    assert imported == "False False" and after == "False", out
    assert {"modify", "modify-offline", "modify-online", "psp-unpaired"} <= set(eval(listed)), out
    for base, _, files in os.walk(os.path.join(REPO, "modify_ms")):
        for name in files:
            if name.endswith(".py"):
                with open(os.path.join(base, name), encoding="utf-8") as fh:
                    bad = [l for l in fh if l.lstrip().startswith(("import baselines_ms", "from baselines_ms"))]
                assert not bad, f"{name} imports baselines_ms: {bad}"


class _FakeEntryPoint:
    def __init__(self, name, value, target, loads):
        self.name, self.value, self._target, self._loads = name, value, target, loads

    def load(self):
        self._loads.append(self.name)
        if isinstance(self._target, Exception):
            raise self._target
        return self._target


class _FakeStylizer:
    multimodal = False

    def __init__(self, run_or_checkpoint, strength=1.0):
        self.run, self.strength = run_or_checkpoint, strength


@pytest.fixture
def fake_plugins(monkeypatch, capsys):
    """The registry as a fresh process sees it, with two fake installed plugins: 'fake' (registers
    _FakeStylizer) and 'broken' (its module fails to import)."""
    from modify_ms import stylizers

    loads = []

    def register():
        stylizers.register_stylizer("fake", _FakeStylizer, "a test plugin")

    points = [_FakeEntryPoint("broken", "nowhere.module:register", ImportError("No module named 'nowhere'"), loads),
              _FakeEntryPoint("fake", "tests.fake:register", register, loads)]
    monkeypatch.setattr(stylizers, "_REGISTRY", {k: v for k, v in stylizers._REGISTRY.items()
                                                 if k.startswith("modify")})
    monkeypatch.setattr(stylizers, "_plugins", {"loaded": False, "errors": {}})
    monkeypatch.setattr(stylizers, "_entry_points", lambda: points)
    capsys.readouterr()
    return loads


def test_plugins_register_once_and_a_broken_one_is_one_line(fake_plugins, capsys):
    from modify_ms import stylizers

    assert fake_plugins == [], "loaded before anything asked for the registry"
    names = list_stylizers()
    assert "fake" in names and "modify" in names and "broken" not in names
    err = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
    assert len(err) == 1 and "'broken'" in err[0] and "nowhere.module:register" in err[0] and "Traceback" not in err[0]
    made = create_stylizer("fake", "runs/x", strength=0.5)
    assert isinstance(made, _FakeStylizer) and (made.run, made.strength) == ("runs/x", 0.5)
    list_stylizers()
    assert fake_plugins == ["broken", "fake"], "plugins are loaded once per process"
    assert capsys.readouterr().err == ""
    assert stylizers.is_multimodal("fake") is False and stylizers.stylizer_options("fake") == ["strength"]


def test_unknown_name_says_which_plugin_failed(fake_plugins):
    with pytest.raises(StylizerError) as info:
        create_stylizer("jojogan", "runs/x")
    message = str(info.value)
    assert "\n" not in message and "'broken'" in message and "No module named 'nowhere'" in message


def test_an_option_the_method_does_not_take_is_one_line(fake_plugins):
    with pytest.raises(StylizerError) as info:
        create_stylizer("fake", "runs/x", steps=3)
    assert str(info.value) == "fake takes no option 'steps' (it takes: strength)"
    with pytest.raises(StylizerError) as info:  # MODIFY's factories say their options too
        create_stylizer("modify", "runs/x", mode="online")
    assert "modify takes no option 'mode'" in str(info.value) and "overrides" in str(info.value)
