"""Stage 1 through the real command line, twice, on a folder holding a truncated JPEG.

The data section keeps its defaults (header verification, two worker processes), so the
truncated file passes the check at start-up and is only met by a data worker: the run must
complete, name the file with its reason, and summarise the skip at the end. The same command
run twice (each in its own scratch folder, the run folder relative to it) must give
byte-identical checkpoints, loss networks, config and samples, and the same metrics apart from
the timings: ``--seed`` fixes the initial weights, the data order and the host noise.
Two 2-step GRAPH_MODE runs of a tiny model: about a minute each on 2 shared cores.
"""
import json
import os

import numpy as np
import pytest

from cli_harness import REPO, run_tool, tree
from test_modify_train import TINY

ARCH = [s for s in TINY if s.startswith(("model.", "weights."))]  # the narrow model, from random weights
PHASE = "phases=[{steps: 2, weights: {lpips: 0.8, adv_r: 0.1, l2: 0.8, id: 1.0}, train: [encoder, decoder]}]"
BAD = "img_03.jpg"


def _style_folder(folder):
    """Eight 64 px JPEGs of the built-in painted set, one of them truncated to half its bytes."""
    from PIL import Image
    from modify_ms.data.sources import open_source

    os.makedirs(folder)
    source = open_source("builtin:painted", 64)
    for i in range(8):
        Image.fromarray(source.read(i)).save(os.path.join(folder, f"img_{i:02d}.jpg"), quality=90)
    path = os.path.join(folder, BAD)
    data = open(path, "rb").read()
    with open(path, "wb") as fh:
        fh.write(data[: len(data) // 2])
    return folder


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    data = _style_folder(str(tmp_path_factory.mktemp("style") / "images"))
    argv = ["tools/train_modify.py", "--config", os.path.join(REPO, "yaml", "quickstart.yaml"), "--seed", "3"]
    cache = str(tmp_path_factory.mktemp("compile_cache"))  # the second run loads the first one's graphs
    for item in ARCH + [PHASE, f"data.path={data}", "data.batch_size=2", "run.out_dir=run",
                        f"run.compile_cache_dir={cache}", "run.sample_every=1", "run.ckpt_every=1"]:
        argv += ["--set", item]
    runs = []
    for name in ("first", "second"):
        cwd = str(tmp_path_factory.mktemp(name))
        proc = run_tool(argv, cwd=cwd)
        runs.append((proc, cwd, tree(cwd)))
    return runs


def test_a_truncated_jpeg_is_skipped_and_reported(two_runs):
    proc, cwd, files = two_runs[0]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "finished at step 2" in proc.stdout
    noted = [line for line in proc.stderr.splitlines() if BAD in line]
    assert any("skipped unreadable image" in line and "truncated" in line for line in noted), proc.stderr
    assert any("1 unreadable images skipped during the run" in line for line in noted), proc.stderr
    # everything the run wrote is inside its run folder
    assert all(path == "run" or path.startswith("run" + os.sep) for path in files), sorted(files)
    for name in ("config.yaml", "loss_nets.ckpt", "loss_nets.ckpt.json", "metrics.jsonl",
                 "checkpoints/step_00000002.ckpt", "samples/step_00000002.png"):
        assert os.path.join("run", name) in files, name


def _metrics_without_timings(cwd):
    with open(os.path.join(cwd, "run", "metrics.jsonl"), encoding="utf-8") as fh:
        return [{k: v for k, v in json.loads(line).items() if k != "sec"} for line in fh]


def test_the_same_command_twice_gives_the_same_bytes(two_runs):
    (_, cwd_a, files_a), (proc_b, cwd_b, files_b) = two_runs
    assert proc_b.returncode == 0, proc_b.stderr[-3000:]
    assert files_a.keys() == files_b.keys()
    differing = [p for p in files_a if files_a[p] != files_b[p] and not p.endswith("metrics.jsonl")]
    assert not differing, differing
    metrics_a, metrics_b = _metrics_without_timings(cwd_a), _metrics_without_timings(cwd_b)
    assert metrics_a == metrics_b
    steps = [m for m in metrics_a if "loss" in m]
    samples = [m for m in metrics_a if "specificity" in m]  # one line per sample grid
    assert [m["step"] for m in steps] == [1, 2] and [m["step"] for m in samples] == [1, 2]
    assert all(np.isfinite(v) for m in steps for v in m.values())
    assert all(0 < m["specificity"] < 10 and m["samples"] == f"samples/step_{m['step']:08d}.png" for m in samples)
