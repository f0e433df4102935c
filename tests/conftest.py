"""Shared test set-up.

MindSpore's execution mode is process-global, so tests that check both modes
take the ``ms_mode`` fixture, which sets the mode for the test and restores
GRAPH_MODE afterwards. Compiled cells are expensive on 2 CPU cores: build
networks once per module (module-scoped fixtures) and use tiny shapes.

The suite runs on two pytest-xdist workers (pytest.ini); each module stays on one worker so
its module-scoped networks are built once, and modules sharing a session fixture are one
group (``SHARED_FIXTURE_GROUPS``) so that fixture is built once too.
"""
import os
import sys

import numpy as np
import pytest

os.environ.setdefault("GLOG_v", "3")  # MindSpore: errors only
# oneDNN's AVX-512/AMX float32 convolution path is 30-100x slower than its AVX2 path on
# these CPUs; the cap must be set before the first convolution of the process.
os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)


def _refuse_reads_beside_the_repository():
    """A user's clone has nothing beside it (no ``../shared``): any test or program that
    opens a file in a sibling of the repository fails loudly, here and in CI, where a
    copy of the reference shelf does sit beside the clone."""
    parent = os.path.dirname(REPO) + os.sep
    repo = REPO + os.sep

    def hook(event, args):
        if event != "open" or not args or not isinstance(args[0], (str, bytes, os.PathLike)):
            return
        path = os.path.abspath(os.fsdecode(args[0]))
        if path.startswith(parent) and not (path + os.sep).startswith(repo) and not path.startswith(_TMP):
            raise RuntimeError(f"test read outside the repository: {path} (copy what tests need into it)")

    sys.addaudithook(hook)


import tempfile  # noqa: E402

_TMP = os.path.realpath(tempfile.gettempdir()) + os.sep
_refuse_reads_beside_the_repository()
# work files of the tools (compile caches, stage-2 state, MindSpore debug dumps) go to a
# per-session folder, inherited by every CLI subprocess, never the user's ~/.cache
os.environ["MODIFY_MS_CACHE"] = tempfile.mkdtemp(prefix="modify_ms_test_cache_")

import mindspore as ms  # noqa: E402

ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")

MODES = {"graph": ms.GRAPH_MODE, "pynative": ms.PYNATIVE_MODE}


# modules that share a session-scoped fixture: one xdist group, so one worker builds it once
SHARED_FIXTURE_GROUPS = {"test_hostile_stylize": "stage1_run", "test_modify_cli": "stage1_run",
                         "test_compare_cli": "stage1_run"}


# the longest groups (measured), scheduled first so that the two workers finish together
LONGEST_FIRST = ("test_distributed", "stage1_run", "test_modify_train", "test_baselines_psp_unpaired",
                 "test_train_stage1_cli", "test_trainer_defects", "test_quickstart_specificity")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the xdist_group marks
def pytest_collection_modifyitems(config, items):
    """Every test's xdist group is its module (or the module's shared-fixture group); the
    longest groups go first (xdist hands groups out in collection order)."""
    groups = {}
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else item.nodeid.split("::")[0]
        groups[item.nodeid] = SHARED_FIXTURE_GROUPS.get(module, module)
        item.add_marker(pytest.mark.xdist_group(groups[item.nodeid]))
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda it: rank.get(groups[it.nodeid], len(rank)))  # stable: module order kept


@pytest.fixture(params=["graph", "pynative"])
def ms_mode(request):
    ms.set_context(mode=MODES[request.param])
    yield request.param
    ms.set_context(mode=ms.GRAPH_MODE)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def key_manifests():
    """Every key and shape of the real checkpoints (packaged with modify_ms)."""
    from modify_ms.assets import key_manifests as load

    return load("checkpoint")


@pytest.fixture(scope="session")
def stage1_run(tmp_path_factory):
    """A tiny stage-1 run made through the real CLI (stopped after 4 steps with --max-steps,
    then --resume to the end at 6), shared by every test that stylizes with a stage-1 model."""
    from tiny_run import make_stage1_run

    return make_stage1_run(str(tmp_path_factory.mktemp("cli_stage1") / "run"))
