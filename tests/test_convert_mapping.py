"""weights_convert.mapping: strict rule tables and MindSpore checkpoint files."""
import json
import os

import numpy as np
import pytest

from modify_ms.utils.checkpoint import CheckpointFileError, fill_cell, read_arrays, save_arrays
from weights_convert.errors import CheckpointError, MappingError
from weights_convert.mapping import Rule, expect_value, map_state_dict, target_shapes_of

KERNEL = np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64.0

RULES = [
    Rule(r"fc(\d+)\.weight", r"dense.\1.weight"),
    Rule(r"fc(\d+)\.bias", lambda m: f"dense.{int(m.group(1))}.bias"),
    Rule(r"const", "input", transform=lambda a: a[None]),
    Rule(r"blur\.kernel", None, check=expect_value(KERNEL)),
]
TARGET = {"dense.0.weight": (3, 2), "dense.0.bias": (3,), "input": (1, 2, 4, 4)}


def _source(rng):
    return {"fc0.weight": rng.standard_normal((3, 2)), "fc0.bias": rng.standard_normal(3),
            "const": rng.standard_normal((2, 4, 4)), "blur.kernel": KERNEL.copy(),
            "bn.num_batches_tracked": np.array(3)}


def test_maps_transforms_and_orders(rng):
    src = _source(rng)
    out = map_state_dict(src, TARGET, RULES, optional=[r".*num_batches_tracked"])
    assert list(out) == list(TARGET)
    assert all(v.dtype == np.float32 and v.flags.c_contiguous for v in out.values())
    np.testing.assert_array_equal(out["input"][0], src["const"].astype(np.float32))


@pytest.mark.parametrize("edit, category, key", [
    (lambda s: s.update(extra=np.ones(1)), MappingError.UNUSED, "extra"),
    (lambda s: s.pop("fc0.bias"), MappingError.UNFILLED, "dense.0.bias"),
    (lambda s: s.update({"fc0.weight": np.ones((2, 3))}), MappingError.SHAPES, "fc0.weight"),
    (lambda s: s.update({"fc7.weight": np.ones((3, 2))}), "rules naming unknown target params", "fc7.weight"),
    (lambda s: s.update({"blur.kernel": KERNEL * 4}), "consumed keys failing their check", "blur.kernel"),
])
def test_each_problem_is_named(rng, edit, category, key):
    src = _source(rng)
    edit(src)
    with pytest.raises(MappingError) as info:
        map_state_dict(src, TARGET, RULES, optional=[r".*num_batches_tracked"], source_name="f.pt")
    err = info.value
    assert category in err.problems and err.mentions(key), str(err)
    assert str(err).startswith("f.pt: ") and "\n" not in str(err)


def test_all_problems_in_one_error_and_truncated(rng):
    src = _source(rng)
    src.pop("fc0.bias")
    for i in range(20):
        src[f"junk{i}"] = np.zeros(1)
    with pytest.raises(MappingError) as info:
        map_state_dict(src, TARGET, RULES, source_name="f.pt")
    err = info.value
    assert len(err.unused) == 21 and err.unfilled == ["dense.0.bias"]
    assert "and 13 more" in str(err) and "unfilled target params: dense.0.bias" in str(err)


def test_ambiguous_and_twice(rng):
    rules = RULES + [Rule(r"fc0\.weight", "dense.0.weight"), Rule(r"alias", "input")]
    src = _source(rng)
    src["alias"] = np.zeros((1, 2, 4, 4))
    with pytest.raises(MappingError) as info:
        map_state_dict(src, TARGET, rules, optional=[r".*num_batches_tracked"])
    assert "source keys matching several rules" in info.value.problems
    assert "target params filled twice" in info.value.problems


def test_consumed_rule_needs_check():
    with pytest.raises(ValueError):
        Rule("x", None)


@pytest.fixture(scope="module")
def small_cell():
    import mindspore as ms
    from mindspore import nn

    class Small(nn.Cell):
        def __init__(self):
            super().__init__()
            self.dense = nn.Dense(2, 3)
            self.latent_avg = ms.Parameter(ms.Tensor(np.zeros(4, np.float32)), requires_grad=False)

        def construct(self, x):
            return self.dense(x)

    return Small()


def test_target_shapes_and_fill_cell(small_cell, rng):
    shapes = target_shapes_of(small_cell)
    assert shapes == {"dense.weight": (3, 2), "dense.bias": (3,), "latent_avg": (4,)}
    params = {k: rng.standard_normal(s) for k, s in shapes.items()}
    fill_cell(small_cell, params, "params")
    np.testing.assert_array_equal(small_cell.latent_avg.asnumpy(), params["latent_avg"].astype(np.float32))
    with pytest.raises(CheckpointFileError, match="does not fit") as info:
        fill_cell(small_cell, {**params, "extra": np.ones(1), "dense.bias": np.ones(2)}, "params")
    assert "extra" in str(info.value) and "dense.bias (2,) vs (3,)" in str(info.value)


def test_save_and_read_arrays(tmp_path, rng):
    params = {"b.weight": rng.standard_normal((2, 3)), "latent_avg": rng.standard_normal(5),
              "noise_strength": np.array([0.5])}
    params = {k: v.astype(np.float32) for k, v in params.items()}  # converters write float32; dtypes are kept
    path = str(tmp_path / "out.ckpt")
    meta = {"arch": "Generator", "kwargs": {"size": 8}}
    save_arrays(params, path, meta)
    assert sorted(os.listdir(tmp_path)) == ["out.ckpt", "out.ckpt.json"]  # no tmp left over
    loaded, loaded_meta = read_arrays(path)
    assert list(loaded) == list(params) and loaded_meta == meta
    for k in params:
        np.testing.assert_array_equal(loaded[k], params[k])
        assert loaded[k].dtype == np.float32
    save_arrays(params, path, {"again": 1})  # overwriting works
    assert json.load(open(path + ".json")) == {"again": 1}


def test_read_arrays_errors(tmp_path):
    with pytest.raises(CheckpointFileError, match="no such checkpoint file"):
        read_arrays(str(tmp_path / "none.ckpt"))
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(CheckpointFileError) as info:
        read_arrays(str(bad))
    assert "\n" not in str(info.value) and "not a readable MindSpore checkpoint" in str(info.value)
