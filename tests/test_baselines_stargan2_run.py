"""StarGAN v2 end to end on the built-in data, through the tools a user runs.

A tiny run (32 px, narrow networks, batch 2) made by tools/train_baseline.py, stopped after 2
iterations and resumed to 3 (module-scoped; every checkpoint kept), then:

* metrics.jsonl: every update's terms for every iteration; lambda_ds decays linearly as configured
  (ds_iter 4: 1.0, 0.75, 0.5);
* the checkpoints: each EMA parameter equals lerp(trained, previous EMA, ema_beta) exactly as the
  official moving_average (checkpoint 3 against checkpoint 2);
* the registry: ``create_stylizer('stargan2', run)`` stylizes photos into the target domain; two z
  give different outputs of the same photo (``variants``); reference-guided synthesis from an
  image file; an unknown target is one line;
* tools/stylize.py --method stargan2 (with --variants), tools/evaluate.py --method stargan2 and
  tools/compare.py on the run.

Marked slow: the two training invocations compile the four update graphs twice (about 65 CPU
seconds, 3 min 20 s wall on the shared 2-core machine); run with -m slow.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETTINGS = ["model.img_size=32", "model.style_dim=8", "model.latent_dim=4", "model.max_conv_dim=16",
            "model.first_dim=4", "model.hidden_dim=16", "batch_size=2", "steps=3", "losses.ds_iter=4", "ema_beta=0.9", "run.ckpt_every=1",
            "run.sample_every=3", "run.log_every=1", "run.keep_checkpoints=5"]


def tool(name, *args, timeout=600):
    return subprocess.run([sys.executable, os.path.join(REPO, "tools", name), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("stargan2_run") / "run")
    import yaml

    with open(os.path.join(REPO, "yaml", "baselines", "stargan2_quickstart.yaml"), encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    for domain in data["domains"]:  # (a list: --set cannot reach into it)
        domain["size"] = 32
    config = str(tmp_path_factory.mktemp("stargan2_cfg") / "tiny.yaml")
    with open(config, "w", encoding="utf-8") as fh:
        yaml.safe_dump(data, fh)
    sets = [a for s in SETTINGS + [f"run.out_dir={out}"] for a in ("--set", s)]
    first = tool("train_baseline.py", "--config", config, *sets, "--max-steps", "2")
    assert first.returncode == 0, first.stderr[-2000:]
    second = tool("train_baseline.py", "--resume", out)
    assert second.returncode == 0, second.stderr[-2000:]
    return out


def records(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as fh:
        return [r for r in map(json.loads, fh) if "d_latent" in r]


def test_metrics_and_diversity_decay(run_dir):
    rows = records(run_dir)
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert [r["lambda_ds"] for r in rows] == pytest.approx([1.0, 0.75, 0.5])
    for r in rows:
        for key in ("d_latent_real", "d_latent_fake", "d_latent_reg", "d_ref_real", "g_latent_adv",
                    "g_latent_sty", "g_latent_ds", "g_latent_cyc", "g_ref_adv", "g_ref_sty"):
            assert np.isfinite(r[key]) and r[key] >= 0, key
    assert os.path.isfile(os.path.join(run_dir, "samples", "step_00000003.png"))


def test_ema_follows_the_official_rule(run_dir):
    from modify_ms.utils.checkpoint import read_arrays

    ckpt = lambda s: read_arrays(os.path.join(run_dir, "checkpoints", f"step_{s:08d}.ckpt"))[0]
    before, after = ckpt(2), ckpt(3)
    checked = 0
    for key, ema in after.items():
        net = key.split("/")[0]
        if not net.endswith("_ema"):
            continue
        trained = after[key.replace("_ema/", "/", 1)]
        np.testing.assert_allclose(ema, trained + 0.9 * (before[key] - trained), rtol=0, atol=1e-6, err_msg=key)
        checked += 1
    assert checked > 50
    assert not np.allclose(after["generator_ema/from_rgb.weight"], after["generator/from_rgb.weight"])


@pytest.fixture(scope="module")
def photos():
    from modify_ms.data.builtin import builtin_photos

    return np.stack([p.transpose(2, 0, 1) / 127.5 - 1 for p in builtin_photos(32)[:3]]).astype(np.float32)


def test_registry_stylizes_latent_and_reference_guided(run_dir, photos, tmp_path):
    from modify_ms.data.imageio import save_image_atomic
    from modify_ms.stylizers import StylizerError, create_stylizer

    s = create_stylizer("stargan2", run_dir, target="art")
    assert s.multimodal and s.size == 32
    out = s.stylize(photos)
    assert out.shape == photos.shape and np.abs(out).max() <= 1.0
    assert np.array_equal(out, s.stylize(photos))  # deterministic
    ks = s.variants(photos, 2)
    assert ks.shape == (3, 2, 3, 32, 32)
    assert np.abs(ks[:, 0] - ks[:, 1]).mean() > 1e-4  # different z, different outputs of the same photo
    ref = str(tmp_path / "ref.png")
    save_image_atomic(ref, ((photos[0].transpose(1, 2, 0) + 1) * 127.5).round().astype(np.uint8))
    by_ref = create_stylizer("stargan2", run_dir, reference=ref).stylize(photos)
    assert by_ref.shape == photos.shape and not np.allclose(by_ref, out)
    with pytest.raises(StylizerError, match="target must be one of"):
        create_stylizer("stargan2", run_dir, target="sculpture")


def test_stylize_and_compare_tools(run_dir, photos, tmp_path):
    from modify_ms.data.imageio import save_image_atomic

    src = tmp_path / "photos"
    src.mkdir()
    for i, p in enumerate(photos):
        save_image_atomic(str(src / f"p{i}.png"), ((p.transpose(1, 2, 0) + 1) * 127.5).round().astype(np.uint8))
    out = tmp_path / "styled"
    result = tool("stylize.py", "--method", "stargan2", "--run", run_dir, "--input", str(src), "--output-dir",
                  str(out), "--variants", "2", "--align", "none")
    assert result.returncode == 0, result.stderr[-2000:]
    assert {"p0.png", "p0_k0.png", "p0_k1.png", "p0_variants.png"} <= set(os.listdir(out))
    result = tool("evaluate.py", "--method", "stargan2", "--run", run_dir, "--inputs", str(src), "--outputs",
                  str(tmp_path / "evaluated"), "--variants", "2", "--align", "none")
    assert result.returncode == 0, result.stderr[-2000:]
    assert os.path.isfile(tmp_path / "evaluated" / "evaluation.md")
    result = tool("compare.py", "--photos", str(src), "--method", f"stargan2={run_dir}", "--out",
                  str(tmp_path / "cmp"), "--align", "none", "--variants", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    table = json.load(open(tmp_path / "cmp" / "table.json"))
    assert "stargan2" in json.dumps(table)
    assert os.path.isfile(tmp_path / "cmp" / "grid.png")
