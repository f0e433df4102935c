"""Shared test set-up.

MindSpore's execution mode is process-global, so tests that check both modes
take the ``ms_mode`` fixture, which sets the mode for the test and restores
GRAPH_MODE afterwards. Compiled cells are expensive on 2 CPU cores: build
networks once per module (module-scoped fixtures) and use tiny shapes.
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
SHARED = os.path.join(os.path.dirname(REPO), "shared")
FIXTURES = os.path.join(SHARED, "fixtures")
if REPO not in sys.path:
    sys.path.insert(0, REPO)

import mindspore as ms  # noqa: E402

ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")

MODES = {"graph": ms.GRAPH_MODE, "pynative": ms.PYNATIVE_MODE}


@pytest.fixture(params=["graph", "pynative"])
def ms_mode(request):
    ms.set_context(mode=MODES[request.param])
    yield request.param
    ms.set_context(mode=ms.GRAPH_MODE)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def fixtures_dir():
    if not os.path.isdir(FIXTURES):
        pytest.fail(f"shared fixtures not found at {FIXTURES}")
    return FIXTURES


@pytest.fixture(scope="session")
def key_manifests(fixtures_dir):
    import json

    with open(os.path.join(fixtures_dir, "checkpoint_key_manifests.json")) as fh:
        return json.load(fh)
