"""mindspore.dataset pipelines: shapes, range, seeded determinism, MODIFY's re-sampled
real stream, sharding, sources (folder / zip / txt list / built-in), config checks.

The synthetic sets here are flat images whose grey level encodes their index
(value = 20 * index + 10), so each batch row tells which image it came from."""
import os
import zipfile

import numpy as np
import pytest

from modify_ms.config import ConfigError, from_dict
from modify_ms.data import DataConfig, build_dataset
from modify_ms.data.dataset import EpochSampler
from modify_ms.data.imageio import save_image_atomic
from modify_ms.data.sources import DataSourceError

N = 10


@pytest.fixture(scope="module")
def index_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("indexed")
    for i in range(N):
        sub = root / ("a" if i % 2 else "b")
        save_image_atomic(str(sub / f"img_{i:02d}.png"), np.full((20, 24, 3), 20 * i + 10, np.uint8))
    (root / "labels.json").write_text("{}")  # ignored: not an image
    return root


def _index_of(batch):
    """(B, 3, H, W) in [-1, 1] -> image indices encoded by the grey level."""
    level = (batch.reshape(batch.shape[0], -1).mean(axis=1) + 1.0) * 127.5
    return np.rint((level - 10) / 20).astype(int).tolist()


def _epochs(cfg, epochs=2):
    pipe = build_dataset(cfg, log=lambda _t: None)
    it = pipe.dataset.create_dict_iterator(num_epochs=epochs, output_numpy=True)
    out = []
    for _ in range(epochs):
        rows = [(b["image"], b.get("real")) for b in it]
        out.append(rows)
    return pipe, out


def _cfg(path, **kw):
    base = dict(path=str(path), size=16, batch_size=2, num_workers=2, seed=7)
    base.update(kw)
    return DataConfig(**base)


def test_shapes_range_and_static_batches():
    cfg = DataConfig(path="builtin:photos", size=32, batch_size=4, num_workers=2, resampled_real=True)
    pipe, epochs = _epochs(cfg, 1)
    assert pipe.columns == ("image", "real")
    assert pipe.batches_per_epoch == 102 // 4 == len(epochs[0])  # remainder dropped
    for image, real in epochs[0]:
        for array in (image, real):
            assert array.shape == (4, 3, 32, 32) and array.dtype == np.float32
            assert array.min() >= -1.0 and array.max() <= 1.0
    stacked = np.concatenate([img for img, _ in epochs[0]])
    assert stacked.min() < -0.9 and stacked.max() > 0.9 and stacked.std() > 0.2


def test_seeded_determinism_and_fresh_epochs(index_folder):
    state = np.random.get_state()
    cfg = _cfg(index_folder, resampled_real=True)
    _, first = _epochs(cfg)
    _, again = _epochs(cfg)
    _, other_seed = _epochs(_cfg(index_folder, resampled_real=True, seed=8))
    assert np.array_equal(np.random.get_state()[1], state[1])  # global numpy seed untouched
    order = [[i for img, _ in ep for i in _index_of(img)] for ep in first]
    assert order == [[i for img, _ in ep for i in _index_of(img)] for ep in again]
    for ep_a, ep_b in zip(first, again):
        for (img_a, real_a), (img_b, real_b) in zip(ep_a, ep_b):
            np.testing.assert_array_equal(img_a, img_b)
            np.testing.assert_array_equal(real_a, real_b)
    assert sorted(order[0]) == sorted(order[1]) == list(range(N))  # every image once per epoch
    assert order[0] != order[1]  # a new shuffle each epoch
    assert order != [[i for img, _ in ep for i in _index_of(img)] for ep in other_seed]
    _, unshuffled = _epochs(_cfg(index_folder, shuffle=False), 1)
    assert [i for img, _ in unshuffled[0] for i in _index_of(img)] == sorted(range(N), key=lambda i: (i % 2 == 0, i))


def test_resampled_real_is_never_the_input_image(index_folder):
    _, epochs = _epochs(_cfg(index_folder, resampled_real=True, batch_size=5), 3)
    reals = []
    for ep in epochs:
        for image, real in ep:
            pairs = list(zip(_index_of(image), _index_of(real)))
            assert all(a != b for a, b in pairs)
            reals += [b for _, b in pairs]
    assert len(set(reals)) > N // 2  # y' really is re-sampled, not a fixed partner
    sampler = EpochSampler(N, seed=3, flip=True)
    for epoch in range(50):
        plan = sampler.plan(epoch)
        assert np.all(plan[:, 0] != plan[:, 1]) and np.all((plan[:, 1] >= 0) & (plan[:, 1] < N))
    assert np.array_equal(EpochSampler(1).plan(0)[:, :2], [[0, 0]])  # a one-image set has no other image


def test_flip_is_seeded(index_folder):
    save_dir = index_folder.parent / "asym"
    img = np.zeros((16, 16, 3), np.uint8)
    img[:, :8] = 255
    for i in range(4):
        save_image_atomic(str(save_dir / f"{i}.png"), img)
    cfg = _cfg(save_dir, flip=True, batch_size=4, seed=1)
    _, eps = _epochs(cfg, 4)
    flips = [bool(row[0, 0, 0] < 0) for ep in eps for image, _ in ep for row in image]  # left half dark = flipped
    assert 0 < sum(flips) < len(flips)
    _, again = _epochs(cfg, 4)
    assert flips == [bool(row[0, 0, 0] < 0) for ep in again for image, _ in ep for row in image]
    _, plain = _epochs(_cfg(save_dir, flip=False, batch_size=4), 2)
    assert all(row[0, 0, 0] > 0 for ep in plain for image, _ in ep for row in image)


def test_shards_partition_the_data(index_folder):
    shards = []
    for shard_id in range(3):
        pipe, epochs = _epochs(_cfg(index_folder, num_shards=3, shard_id=shard_id, batch_size=3), 2)
        assert pipe.batches_per_epoch == 1
        shards.append([sorted(i for img, _ in ep for i in _index_of(img)) for ep in epochs])
    for epoch in range(2):
        seen = [i for shard in shards for i in shard[epoch]]
        assert len(seen) == len(set(seen)) == 9  # disjoint, equal length (10 // 3 each)
    for shard_id in range(3):  # the strided split of the same permutation, also in the sampler
        plans = [EpochSampler(N, seed=7, num_shards=3, shard_id=s).plan(5)[:, 0] for s in range(3)]
        assert len(set(np.concatenate(plans).tolist())) == 9


def test_zip_and_file_list_sources_match_the_folder(index_folder, tmp_path):
    files = sorted(str(p) for p in index_folder.rglob("*.png"))
    archive = tmp_path / "set.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in files:
            zf.write(path, os.path.relpath(path, index_folder))
        zf.writestr("__MACOSX/._img_00.png", b"junk")
        zf.writestr("bad.png", b"not a png at all, just text" * 3)
    listing = tmp_path / "list.txt"
    listing.write_text("# training images\n" + "\n".join(os.path.relpath(p, tmp_path) for p in files)
                       + "\nmissing.png\n")
    results = {}
    for name, path in (("folder", index_folder), ("zip", archive), ("txt", listing)):
        pipe, epochs = _epochs(_cfg(path, batch_size=5, shuffle=False, num_workers=1), 1)
        results[name] = np.concatenate([img for img, _ in epochs[0]])
        results[name + "_skipped"] = pipe.skipped
    np.testing.assert_array_equal(results["folder"], results["zip"])
    np.testing.assert_array_equal(results["folder"], results["txt"])
    assert [(n, r) for n, r in results["zip_skipped"]] == [("bad.png", "not an image file (unknown or corrupt format)")]
    assert results["txt_skipped"][0][0].endswith("missing.png")
    assert "file not found (listed at" in results["txt_skipped"][0][1]


def test_worker_processes(index_folder):
    _, threads = _epochs(_cfg(index_folder, num_workers=2, resampled_real=True, multiprocessing=False), 1)
    _, procs = _epochs(_cfg(index_folder, num_workers=2, resampled_real=True, multiprocessing=True), 1)
    for (a, ra), (b, rb) in zip(threads[0], procs[0]):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(ra, rb)


def test_bad_configs_and_too_small_sets(index_folder, tmp_path):
    cfg = from_dict(DataConfig, {"path": "builtin:painted", "size": 64, "batch_size": 2})
    assert cfg.size == 64 and cfg.drop_remainder
    for bad, message in (({"path": "x", "size": 4}, "data.size must be in"),
                         ({"path": "x", "num_shards": 2, "shard_id": 2}, "data.shard_id must be in"),
                         ({"path": "x", "batch_size": 0}, "data.batch_size must be >= 1"),
                         ({"size": 64}, "data.path is empty"),
                         ({"path": "x", "align": "mtcnn"}, "must be one of"),
                         ({"path": "x", "sise": 64}, "unknown key 'sise'")):
        with pytest.raises(ConfigError, match=message):
            from_dict(DataConfig, bad, "stage1.yaml")
    with pytest.raises(DataSourceError, match="fewer than batch_size 16"):
        build_dataset(_cfg(index_folder, batch_size=16), log=lambda _t: None)
    with pytest.raises(DataSourceError, match="data path not found"):
        build_dataset(_cfg(tmp_path / "nowhere"), log=lambda _t: None)
    with pytest.raises(DataSourceError, match="unknown built-in data set"):
        build_dataset(_cfg("builtin:monet"), log=lambda _t: None)


def test_align_pre_pass_uses_the_cache(tmp_path):
    from modify_ms.data.align import dlib_available
    from modify_ms.data.builtin import astronaut_photo

    if not dlib_available():
        pytest.skip("alignment extra not installed")
    folder = tmp_path / "raw"
    save_image_atomic(str(folder / "astro.png"), astronaut_photo())
    save_image_atomic(str(folder / "astro_copy.jpg"), astronaut_photo())
    save_image_atomic(str(folder / "wall.png"), np.full((64, 64, 3), 128, np.uint8))
    logs = []
    cfg = _cfg(folder, align="dlib", cache_dir=str(tmp_path / "cache"), num_workers=1, flip=False)
    pipe = build_dataset(cfg, log=logs.append)
    assert len(pipe.source) == 2 and pipe.skipped[0][1] == "no face found"
    assert any("2 aligned (ffhq)" in line for line in logs)
    cached = sorted(os.listdir(tmp_path / "cache" / "aligned_dlib_16"))
    assert len(cached) == 2
    logs.clear()
    build_dataset(cfg, log=logs.append)
    assert any("0 aligned (ffhq), 2 already done" in line for line in logs)


def _truncate(path, keep=0.5):
    data = open(path, "rb").read()
    with open(path, "wb") as fh:
        fh.write(data[: int(len(data) * keep)])


def test_an_image_unreadable_mid_run_is_replaced_by_the_next_and_reported(tmp_path):
    """A truncated file passes the default header check; the worker that meets it uses the next
    readable image (static batches, same order every run) and the main process logs it once."""
    folder = tmp_path / "flat"
    for i in range(6):
        save_image_atomic(str(folder / f"img_{i:02d}.png"), np.full((20, 24, 3), 20 * i + 10, np.uint8))
    _truncate(str(folder / "img_02.png"))
    cfg = _cfg(folder, shuffle=False, flip=False, resampled_real=True, batch_size=3, multiprocessing=True)
    runs = []
    for _ in range(2):
        logs = []
        pipe = build_dataset(cfg, log=logs.append)
        assert len(pipe.source) == 6 and not pipe.skipped  # the header check let it through
        it = pipe.dataset.create_tuple_iterator(output_numpy=True, num_epochs=2)
        epochs = [[pipe.arrays(batch) for batch in it] for _ in range(2)]
        runs.append((epochs, logs, pipe.skips))
    (epochs, logs, skips), (again, _, _) = runs
    for epoch in epochs:
        assert [i for image, _ in epoch for i in _index_of(image)] == [0, 1, 3, 3, 4, 5]
        assert all(image.shape == real.shape == (3, 3, 16, 16) for image, real in epoch)
        assert 2 not in [i for _, real in epoch for i in _index_of(real)]
    for ep_a, ep_b in zip(epochs, again):
        for a, b in zip(ep_a, ep_b):
            np.testing.assert_array_equal(a[0], b[0])
            np.testing.assert_array_equal(a[1], b[1])
    noted = [line for line in logs if "img_02.png" in line]
    assert len(noted) == 1 and "truncated" in noted[0], logs  # once, with its reason, over two epochs
    assert list(skips.reasons) == [2] and skips.replaced >= 2
    assert "1 unreadable images skipped" in skips.summary() and "img_02.png" in skips.summary()


def test_data_with_no_readable_image_stops_with_one_line(tmp_path):
    folder = tmp_path / "broken"
    for i in range(2):
        save_image_atomic(str(folder / f"img_{i}.png"), np.full((20, 24, 3), 50, np.uint8))
        _truncate(str(folder / f"img_{i}.png"))
    with pytest.raises(DataSourceError, match="none of the 2 images can be decoded .first: .*img_0.png"):
        build_dataset(_cfg(folder, batch_size=1), log=lambda _t: None)
