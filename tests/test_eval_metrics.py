"""FID maths, statistics cache, identity distance, LPIPS diversity and output pairing.

FID references are closed forms (never the code under test): for N(mu1, S1), N(mu2, S2) with
commuting covariances S = Q diag(s) Q^T (same Q), FID = ||mu1 - mu2||^2 + sum(s1 + s2 - 2 sqrt(s1 s2)).
"""
import os

os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")  # see test_eval_inception.py

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import mindspore as ms  # noqa: E402

from modify_ms.eval import fid as fidmod  # noqa: E402
from modify_ms.eval.diversity import (LPIPSDistance, diversity_of_output_groups, lpips_diversity,  # noqa: E402
                                      mean_pairwise_lpips, pair_indices)
from modify_ms.eval.extract import BatchedFeatures  # noqa: E402
from modify_ms.eval.fid import (FIDError, feature_statistics, fid_from_features, frechet_distance,  # noqa: E402
                                load_statistics, save_statistics, statistics_key)
from modify_ms.eval.files import EvalInputError, group_outputs, list_images, pair_by_stem, read_image  # noqa: E402
from modify_ms.eval.identity import (ArcFaceEmbedder, cosine_similarity_rows, identity_distance,  # noqa: E402
                                     identity_distances, identity_distances_for_pairs)
from modify_ms.data.imageio import save_image_atomic  # noqa: E402


def closed_form(mu1, s1, mu2, s2):
    """Fréchet distance of Gaussians with commuting covariances, from their eigenvalues."""
    return float(np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2.0 * np.sqrt(s1 * s2)))


def random_rotation(rng, dim):
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    return q * np.sign(np.diag(r))


# ---------------------------------------------------------------- FID


def test_fid_of_a_set_with_itself_is_zero(rng):
    feats = rng.standard_normal((300, 32)) @ rng.standard_normal((32, 32))
    assert abs(fid_from_features(feats, feats)) < 1e-8
    assert fid_from_features(feats, feats + 0.5) == pytest.approx(32 * 0.25, rel=1e-9)  # mean shift only


@pytest.mark.parametrize("method", ["sqrtm", "eigh"])
@pytest.mark.parametrize("rotate", [False, True])
def test_gaussian_closed_form(rng, rotate, method):
    dim = 64
    mu1, mu2 = rng.standard_normal(dim), rng.standard_normal(dim)
    s1, s2 = rng.uniform(0.1, 3.0, dim), rng.uniform(0.1, 3.0, dim)
    q = random_rotation(rng, dim) if rotate else np.eye(dim)
    sigma1, sigma2 = q @ np.diag(s1) @ q.T, q @ np.diag(s2) @ q.T
    got = frechet_distance(mu1, sigma1, mu2, sigma2, method=method)
    assert got == pytest.approx(closed_form(mu1, s1, mu2, s2), rel=1e-8, abs=1e-8)


def test_sampled_features_approach_the_population_value(rng):
    dim, n = 8, 20000
    s1, s2 = rng.uniform(0.5, 2.0, dim), rng.uniform(0.5, 2.0, dim)
    a = rng.standard_normal((n, dim)) * np.sqrt(s1)
    b = rng.standard_normal((n, dim)) * np.sqrt(s2) + 0.3
    assert fid_from_features(a, b) == pytest.approx(closed_form(np.zeros(dim), s1, np.full(dim, 0.3), s2), abs=0.05)


@pytest.mark.parametrize("method", ["sqrtm", "eigh"])
def test_rank_deficient_covariances_stay_finite(rng, method):
    """Fewer images than dimensions (the usual small-set case): finite, real, >= 0, and right."""
    a, b = rng.standard_normal((10, 64)), rng.standard_normal((12, 64)) + 0.1
    got = fid_from_features(a, b, method=method)
    (mu1, s1), (mu2, s2) = feature_statistics(a), feature_statistics(b)
    eig = np.linalg.eigvals(s1 @ s2).real  # tr sqrt(S1 S2) = sum sqrt(eig), eigenvalues >= 0
    want = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(eig, 0, None)).sum()
    assert np.isfinite(got) and got >= 0
    assert got == pytest.approx(want, rel=1e-6)
    zero = np.zeros((64, 64))  # identical images: zero covariance
    assert frechet_distance(np.zeros(64), zero, np.ones(64), zero, method=method) == pytest.approx(64.0)


def test_eigh_and_sqrtm_agree_on_full_rank_statistics(rng):
    a = rng.standard_normal((400, 96)) @ rng.standard_normal((96, 96))
    b = rng.standard_normal((300, 96)) @ rng.standard_normal((96, 96)) + 0.2
    assert fid_from_features(a, b, method="eigh") == pytest.approx(fid_from_features(a, b), rel=1e-9)


def test_product_without_square_root_takes_the_offset_path(monkeypatch):
    """A nilpotent product has no square root; the eps*I retry gives a finite real answer."""
    calls = []
    real = fidmod._checked_sqrtm
    monkeypatch.setattr(fidmod, "_checked_sqrtm", lambda m: calls.append(m) or real(m))
    nilpotent = np.array([[0.0, 1.0], [0.0, 0.0]])
    got = frechet_distance(np.zeros(2), nilpotent, np.zeros(2), np.eye(2))
    assert np.isfinite(got) and len(calls) == 2
    assert got == pytest.approx(2.0, abs=1e-2)  # tr(S1)=0, tr(S2)=2, tr sqrt(~0) ~ 0


def test_invalid_statistics_raise_one_line_errors(rng):
    with pytest.raises(FIDError, match="imaginary"):
        frechet_distance(np.zeros(3), -np.eye(3), np.zeros(3), np.eye(3))  # not PSD
    with pytest.raises(FIDError, match="negative eigenvalue"):
        frechet_distance(np.zeros(3), -np.eye(3), np.zeros(3), np.eye(3), method="eigh")
    with pytest.raises(FIDError, match="not symmetric"):
        frechet_distance(np.zeros(2), np.array([[1.0, 0.5], [0.0, 1.0]]), np.zeros(2), np.eye(2), method="eigh")
    with pytest.raises(FIDError, match="shapes differ"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(FIDError, match="NaN"):
        frechet_distance(np.full(2, np.nan), np.eye(2), np.zeros(2), np.eye(2))
    with pytest.raises(FIDError, match="N>=2"):
        feature_statistics(rng.standard_normal((1, 4)))


def test_statistics_cache_roundtrip_and_keys(tmp_path, rng):
    mu, sigma = feature_statistics(rng.standard_normal((20, 5)))
    path = str(tmp_path / "stats.npz")
    save_statistics(path, mu, sigma, 20, key="abc")
    stats = load_statistics(path)
    np.testing.assert_array_equal(stats["mu"], mu)
    np.testing.assert_array_equal(stats["sigma"], sigma)
    assert stats["num_images"] == 20 and stats["key"] == "abc"
    assert os.listdir(tmp_path) == ["stats.npz"]  # no temporary file left behind
    pytorch_fid = str(tmp_path / "pytorch_fid.npz")  # pytorch-fid's own files: mu and sigma only
    np.savez(pytorch_fid, mu=mu, sigma=sigma)
    assert load_statistics(pytorch_fid)["num_images"] == -1
    np.savez(str(tmp_path / "bad.npz"), mu=mu, sigma=sigma[:2])
    with pytest.raises(FIDError, match="do not match"):
        load_statistics(str(tmp_path / "bad.npz"))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(FIDError, match="junk.npz"):
        load_statistics(str(tmp_path / "junk.npz"))
    images = []
    for i in range(3):
        p = tmp_path / f"{i}.png"
        p.write_bytes(b"x" * (i + 1))
        images.append(str(p))
    key = statistics_key(images, "w1", "fid")
    assert key == statistics_key(list(reversed(images)), "w1", "fid")
    assert key != statistics_key(images, "w2", "fid")
    assert key != statistics_key(images[:2], "w1", "fid")
    (tmp_path / "0.png").write_bytes(b"changed")
    assert key != statistics_key(images, "w1", "fid")


def test_statistics_for_files_computes_once_then_reads_the_cache(tmp_path, rng):
    from modify_ms.eval.extract import statistics_for_files

    paths = []
    for i in range(5):
        paths.append(str(tmp_path / f"{i}.png"))
        save_image_atomic(paths[-1], rng.integers(0, 256, (20, 20, 3), dtype=np.uint8))
    seen = []

    def features(images):  # stand-in network: per-channel means and their squares
        seen.append(len(images))
        means = images.mean(axis=(2, 3))
        return np.concatenate([means, means ** 2], axis=1)

    cache = str(tmp_path / "cache")
    first = statistics_for_files(paths, features, cache, "w", "s", progress=False)
    assert not first["cached"] and sum(seen) == 5 and first["mu"].shape == (6,)
    again = statistics_for_files(paths, features, cache, "w", "s", progress=False)
    assert again["cached"] and sum(seen) == 5  # nothing recomputed
    np.testing.assert_array_equal(again["sigma"], first["sigma"])
    other = statistics_for_files(paths[:4], features, cache, "w", "s", progress=False)
    assert not other["cached"] and other["num_images"] == 4 and len(os.listdir(cache)) == 2


# ---------------------------------------------------------------- identity distance


@pytest.fixture(scope="module")
def tiny_embedder():
    """The project's ArcFace identity network, tiny and with random weights, at the 256 frame."""
    from modify_ms.losses.identity import IdentityLoss

    loss = IdentityLoss(256, 32, units=(1, 1, 1, 1), channels=(8, 8, 16, 16), embedding_dim=16)
    return BatchedFeatures(ArcFaceEmbedder(loss, size=256), batch_size=2)


def test_identity_distance_of_an_image_with_itself_is_zero(tiny_embedder, rng):
    x = rng.uniform(-1, 1, (3, 3, 64, 64)).astype(np.float32)
    assert np.abs(identity_distances(tiny_embedder, x, x)).max() < 1e-6
    y = rng.uniform(-1, 1, (3, 3, 64, 64)).astype(np.float32)
    assert identity_distance(tiny_embedder, x, y) > 1e-4


def test_identity_distance_is_one_minus_cosine():
    embed = lambda images: images.reshape(len(images), -1)  # noqa: E731
    a = np.array([[1.0, 0.0], [1.0, 0.0], [3.0, 4.0]]).reshape(3, 1, 1, 2)
    b = np.array([[0.0, 2.0], [-1.0, 0.0], [3.0, 4.0]]).reshape(3, 1, 1, 2)
    np.testing.assert_allclose(identity_distances(embed, a, b), [1.0, 2.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(cosine_similarity_rows([[0.0, 0.0]], [[1.0, 0.0]]), [0.0])  # no NaN
    with pytest.raises(ValueError, match="2 inputs but 3 outputs"):
        identity_distances(embed, a[:2], b)


def _write_png(path, image01):
    save_image_atomic(str(path), np.clip(image01 * 255 + 0.5, 0, 255).astype(np.uint8))


def test_identity_pairs_from_files(tiny_embedder, tmp_path, rng):
    faces = [rng.random((48, 48, 3)) for _ in range(2)]
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    for i, face in enumerate(faces):
        _write_png(tmp_path / "in" / f"face{i}.png", face)
    _write_png(tmp_path / "out" / "face0_k0.png", faces[0])  # its own image
    _write_png(tmp_path / "out" / "face0_k1.png", faces[1])  # somebody else
    _write_png(tmp_path / "out" / "stray.png", faces[1])
    pairs, missing_in, missing_out = pair_by_stem(list_images(str(tmp_path / "in")),
                                                  group_outputs(str(tmp_path / "out")))
    assert missing_in == ["face1"] and missing_out == ["stray"]
    d = identity_distances_for_pairs(tiny_embedder, pairs, read_image)
    assert d.shape == (2,) and abs(d[0]) < 1e-6 and d[1] > 1e-4


# ---------------------------------------------------------------- LPIPS diversity


@pytest.fixture(scope="module")
def lpips_alex():
    """The project's LPIPS (AlexNet, v0.1 layout) with random weights, per-pair output at 64 px."""
    from modify_ms.losses.lpips import LPIPS

    lpips = LPIPS("alex", reduction="none")
    for param in lpips.get_parameters():  # the real v0.1 linear layers are non-negative
        if param.name.startswith("lin"):
            param.set_data(ms.Tensor(np.abs(param.asnumpy())))
    cell = LPIPSDistance(lpips, size=64)
    return lambda x, y: cell(ms.Tensor(x), ms.Tensor(y)).asnumpy()


def test_diversity_of_identical_outputs_is_zero(lpips_alex, rng):
    image = rng.uniform(-1, 1, (3, 64, 64)).astype(np.float32)
    same = lambda img: np.stack([img] * 4)  # noqa: E731
    mean, per_input = lpips_diversity(same, [image, image * 0.5], lpips_alex)
    assert per_input.shape == (2,) and abs(mean) < 1e-6
    varied = lambda img: np.stack([img, -img, img * 0.2, np.roll(img, 7, axis=2)])  # noqa: E731
    assert lpips_diversity(varied, [image], lpips_alex)[0] > 1e-3


def test_diversity_averages_all_unordered_pairs():
    i, j = pair_indices(4)
    assert list(zip(i, j)) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    variants = np.arange(4, dtype=np.float32).reshape(4, 1, 1, 1) * np.ones((4, 3, 2, 2), np.float32)
    distance = lambda x, y: np.abs(x - y).mean(axis=(1, 2, 3))  # noqa: E731
    # pairwise |a - b| over 0..3: (1+2+3+1+2+1)/6
    assert mean_pairwise_lpips(variants, distance) == pytest.approx(10 / 6)
    with pytest.raises(ValueError, match="K>=2"):
        mean_pairwise_lpips(variants[:1], distance)


def test_diversity_from_output_folders(lpips_alex, tmp_path, rng):
    base = rng.random((64, 64, 3))
    folder = tmp_path / "out"
    (folder / "a").mkdir(parents=True)
    for k in range(3):  # layout 1: a folder per input, identical variants
        _write_png(folder / "a" / f"{k}.png", base)
    for k in range(3):  # layout 2: <stem>_k<i>.png, different variants
        _write_png(folder / f"b_k{k}.png", rng.random((64, 64, 3)))
    groups = group_outputs(str(folder))
    assert sorted(groups) == ["a", "b"] and [len(g) for g in groups.values()] == [3, 3]
    assert [os.path.basename(p) for p in groups["b"]] == ["b_k0.png", "b_k1.png", "b_k2.png"]
    mean, per_input = diversity_of_output_groups([groups["a"], groups["b"]], lpips_alex, read_image)
    assert abs(per_input[0]) < 1e-6 and per_input[1] > 1e-3


def test_stylize_variants_layout_groups_the_variants_only(tmp_path):
    """tools/stylize.py --variants 2 writes a.png, a_k0.png, a_k1.png and the grid a_variants.png:
    the group of a is its two variants (the grid is no output, the single output no variant)."""
    for name in ("a.png", "a_k0.png", "a_k1.png", "a_variants.png", "b.png"):
        (tmp_path / name).write_bytes(b"")
    groups = {stem: [os.path.basename(p) for p in paths] for stem, paths in group_outputs(str(tmp_path)).items()}
    assert groups == {"a": ["a_k0.png", "a_k1.png"], "b": ["b.png"]}


def test_missing_folders_are_one_line_errors(tmp_path):
    with pytest.raises(EvalInputError, match="no such folder"):
        list_images(str(tmp_path / "nope"))
    with pytest.raises(EvalInputError, match="holds no images"):
        group_outputs(str(tmp_path))
