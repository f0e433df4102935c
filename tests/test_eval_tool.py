"""tools/evaluate.py (modify_ms.commands.evaluate) end to end on tiny folders, random-weight networks."""
import os

os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")  # see test_eval_inception.py

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from mindspore import nn, ops  # noqa: E402

from modify_ms.data.imageio import save_image_atomic  # noqa: E402

from modify_ms.commands import evaluate  # noqa: E402  (tools/evaluate.py runs its main)


def _png(path, rng, base=None):
    image = base if base is not None else rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    save_image_atomic(str(path), image)
    return image


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    from modify_ms.losses.lpips import LPIPS
    from modify_ms.utils.checkpoint import save_arrays

    rng = np.random.default_rng(7)
    root = tmp_path_factory.mktemp("evaluate")
    for name in ("inputs", "outputs", "style"):
        (root / name).mkdir()
    for i in range(3):
        face = _png(root / "inputs" / f"face{i}.png", rng)
        if i < 2:  # face0: two identical stylizations (= the input); face1: two different ones
            _png(root / "outputs" / f"face{i}_k0.png", rng, face if i == 0 else None)
            _png(root / "outputs" / f"face{i}_k1.png", rng, face if i == 0 else None)
    for i in range(4):
        _png(root / "style" / f"s{i}.png", rng)
    (root / "weights.ckpt").write_bytes(b"stand-in weights: only hashed for the cache key")
    (root / "arcface.ckpt").write_bytes(b"stand-in: tiny_arcface replaces the loader (the tool checks it exists)")
    lpips = LPIPS("alex")  # the real v0.1 linear layers are non-negative: so are these random ones
    save_arrays({p.name: np.abs(p.asnumpy()) if p.name.startswith("lin") else p.asnumpy()
                 for p in lpips.get_parameters()}, str(root / "lpips.ckpt"),
                {"format": "modify_ms.lpips", "kwargs": {"net": "alex"}, "net": "alex"})
    return root


@pytest.fixture
def tiny_arcface(monkeypatch):
    """The real IR-SE50 is too big for a unit test; the tool's pipeline runs on a tiny one."""
    from modify_ms.losses.identity import IdentityLoss

    monkeypatch.setattr(evaluate, "load_arcface",
                        lambda path: IdentityLoss(256, 32, units=(1, 1, 1, 1), channels=(8, 8, 16, 16),
                                                  embedding_dim=16))


class _PooledColours(nn.Cell):
    """Stand-in FID network (the real one: tests/test_eval_inception.py and the slow test below):
    2x2 average-pooled colours, 12-d features, same extractor/cache/report path."""

    variant = "fid"
    transform_input = False

    def construct(self, x):
        return ops.adaptive_avg_pool2d(x, (2, 2)).reshape(x.shape[0], 12)


@pytest.fixture
def tiny_inception(monkeypatch):
    monkeypatch.setattr(evaluate, "load_inception", lambda path: (_PooledColours(), "fid"))


def _all_metrics_args(w, inception):
    return ["--outputs", str(w / "outputs"), "--inputs", str(w / "inputs"), "--style", str(w / "style"),
            "--inception", str(inception), "--arcface", str(w / "arcface.ckpt"), "--lpips", str(w / "lpips.ckpt"),
            "--report", str(w / "report"), "--cache-dir", str(w / "cache"), "--batch-size", "2", "--quiet",
            "--metric-size", "64"]


def test_evaluate_writes_tables_with_all_metrics(workspace, tiny_arcface, tiny_inception, capsys):
    w = workspace
    assert evaluate.main(_all_metrics_args(w, w / "weights.ckpt")) == 0
    out, err = capsys.readouterr()
    assert "| run | fid |" in out and "rank-deficient" in err and "face2" in err  # face2 has no output
    header, row = (w / "report.csv").read_text().splitlines()
    values = dict(zip(header.split(","), row.split(",")))
    assert values["fid_images"] == "4" and values["style_images"] == "4"
    assert np.isfinite(float(values["fid"]))
    assert values["identity_pairs"] == "4" and values["diversity_inputs"] == "2"
    assert values["variants_per_input"] == "2"
    assert float(values["identity_distance"]) > 0  # face1's outputs are other images
    assert float(values["lpips_diversity"]) > 0
    assert "rank-deficient" in (w / "report.md").read_text()
    cached = sorted(os.listdir(w / "cache"))  # style and output statistics (reuse: test_eval_metrics)
    assert len(cached) == 2 and all(n.startswith("fid_stats_") for n in cached)


@pytest.mark.slow
def test_evaluate_with_a_converted_fid_inception_checkpoint(workspace, tiny_arcface, tmp_path, capsys):
    """The real network from a MindSpore checkpoint (random weights): ~30-50 s on 2 busy cores."""
    from modify_ms.eval.inception import InceptionV3
    from modify_ms.utils.checkpoint import save_arrays

    ckpt = tmp_path / "fid.ckpt"
    save_arrays({p.name: p.asnumpy() for p in InceptionV3("fid").get_parameters()}, str(ckpt),
                {"variant": "fid", "transform_input": False})
    args = _all_metrics_args(workspace, ckpt) + ["--fid-method", "eigh", "--cache-dir", str(tmp_path / "c")]
    assert evaluate.main(args) == 0
    header, row = (workspace / "report.csv").read_text().splitlines()
    values = dict(zip(header.split(","), row.split(",")))
    assert np.isfinite(float(values["fid"])) and values["fid_images"] == "4"


def test_identical_outputs_give_zero_identity_distance_and_diversity(workspace, tiny_arcface, tmp_path):
    import shutil

    out = tmp_path / "same"
    out.mkdir()
    for k in range(2):
        shutil.copy(workspace / "outputs" / f"face0_k{k}.png", out / f"face0_k{k}.png")
    args = ["--outputs", str(out), "--inputs", str(workspace / "inputs"), "--arcface", str(workspace / "arcface.ckpt"),
            "--lpips", str(workspace / "lpips.ckpt"), "--quiet", "--metric-size", "64"]
    assert evaluate.main(args) == 0
    header, row = (out / "evaluation.csv").read_text().splitlines()
    values = dict(zip(header.split(","), row.split(",")))
    assert abs(float(values["identity_distance"])) < 1e-4 and abs(float(values["lpips_diversity"])) < 1e-4


def test_missing_folder_and_weights_are_one_line_errors(workspace, tmp_path, capsys):
    assert evaluate.main(["--outputs", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such folder" in err
    assert evaluate.main(["--outputs", str(workspace / "outputs"), "--style", str(workspace / "style"),
                          "--inception", str(tmp_path / "missing.ckpt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.ckpt: no such Inception weights file" in err
    (tmp_path / "model_ir_se50.pth").write_bytes(b"PK")
    assert evaluate.main(["--outputs", str(workspace / "outputs"), "--inputs", str(workspace / "inputs"),
                          "--arcface", str(tmp_path / "model_ir_se50.pth")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "weights_convert irse50" in err


def test_a_corrupt_image_is_left_out_and_listed(workspace, tiny_arcface, tiny_inception, tmp_path, capsys):
    """One truncated output and one non-image input: every metric runs on what is readable,
    the report lists the two files with their reasons, the exit code is 0."""
    import shutil

    outs, ins = tmp_path / "outputs", tmp_path / "inputs"
    shutil.copytree(workspace / "outputs", outs)
    shutil.copytree(workspace / "inputs", ins)
    data = (outs / "face1_k1.png").read_bytes()
    (outs / "face1_k1.png").write_bytes(data[: len(data) // 2])  # truncated PNG
    (ins / "face0.png").write_bytes(b"not an image at all")
    args = _all_metrics_args(workspace, workspace / "weights.ckpt")
    args[args.index("--outputs") + 1], args[args.index("--inputs") + 1] = str(outs), str(ins)
    args[args.index("--report") + 1] = str(tmp_path / "report")
    args[args.index("--cache-dir") + 1] = str(tmp_path / "cache")
    assert evaluate.main(args) == 0
    err = capsys.readouterr().err
    assert "2 unreadable images skipped" in err and "face1_k1.png" in err and "face0.png" in err
    header, row = (tmp_path / "report.csv").read_text().splitlines()
    values = dict(zip(header.split(","), row.split(",")))
    assert values["fid_images"] == "3"  # 4 outputs, one unreadable
    assert values["identity_pairs"] == "1"  # face0's input unreadable; face1 keeps its one readable output
    assert values["diversity_inputs"] == "1"  # face1 left with one stylization
    assert "unreadable images skipped" in (tmp_path / "report.md").read_text()


def test_method_options_without_method_are_refused(tmp_path):
    """--run/--variants/--opt say how --method stylizes: alone they are one line, exit 2 (subprocess:
    the parser leaves with os._exit)."""
    import subprocess
    import sys

    tool = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools", "evaluate.py")
    for args, fragment in ((["--run", "r"], "only with --method"), (["--method", "psp-unpaired"], "needs --run")):
        proc = subprocess.run([sys.executable, tool, "--outputs", str(tmp_path)] + args, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and fragment in proc.stderr
