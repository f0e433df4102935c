"""The execution-mode fixture of the StarGAN v2 tests: like conftest's ``ms_mode`` (both modes,
GRAPH_MODE restored afterwards), with the GRAPH_MODE variant marked slow where the compilation
of a full network's gradient graph would take the suite past its time budget (PYNATIVE runs by
default; ``-m slow`` runs GRAPH too)."""
import mindspore as ms
import pytest

MODES = {"graph": ms.GRAPH_MODE, "pynative": ms.PYNATIVE_MODE}


@pytest.fixture(params=[pytest.param("graph", marks=pytest.mark.slow), "pynative"])
def mode_graph_slow(request):
    ms.set_context(mode=MODES[request.param])
    yield request.param
    ms.set_context(mode=ms.GRAPH_MODE)
