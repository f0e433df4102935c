"""Fréchet Inception Distance (Heusel et al. 2017) as pytorch-fid computes it.

FID = ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)), on the
2048-d pool features of Inception-v3 (see ``inception.py``). Statistics are
float64 (``np.cov`` with rowvar=False, unbiased), and can be cached to ``.npz``
files with the keys pytorch-fid uses (``mu``, ``sigma``), so a style set is
processed once and pytorch-fid's own ``.npz`` files can be read too.
"""
import hashlib
import os
import warnings

import numpy as np
import scipy.linalg

from .files import atomic_write_bytes


class FIDError(ValueError):
    """Statistics that cannot give a Fréchet distance (shape mismatch, NaN, unusable sqrtm)."""


# A product whose computed square root misses by more than this (relative,
# Frobenius) is treated as numerically singular and retried with an offset.
SQRTM_RESIDUAL_TOL = 1e-4
# Imaginary parts of diag(sqrtm) smaller than this are round-off (pytorch-fid uses 1e-3 too).
IMAG_ATOL = 1e-3


def feature_statistics(features):
    """(mu, sigma) in float64 of an [N, D] feature array; N >= 2."""
    feats = np.asarray(features, dtype=np.float64)
    if feats.ndim != 2 or feats.shape[0] < 2:
        raise FIDError(f"feature_statistics: need an [N>=2, D] array, got shape {feats.shape}")
    if not np.isfinite(feats).all():
        raise FIDError("feature_statistics: features contain NaN or Inf")
    return feats.mean(axis=0), np.cov(feats, rowvar=False)


def _checked_sqrtm(matrix):
    """sqrtm of ``matrix`` or None when the result is non-finite or does not square back to it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on singular input; the residual decides
        root = scipy.linalg.sqrtm(matrix)
    if isinstance(root, tuple):  # older scipy with disp=False style returns
        root = root[0]
    if not np.all(np.isfinite(root)):
        return None
    scale = max(np.linalg.norm(matrix), np.finfo(np.float64).tiny)
    if np.linalg.norm(root @ root - matrix) / scale > SQRTM_RESIDUAL_TOL:
        return None
    return root


def trace_sqrt_product(sigma1, sigma2, eps=1e-6):
    """tr((S1 S2)^(1/2)) robustly: retry with S + eps*I when the product is near-singular."""
    root = _checked_sqrtm(sigma1 @ sigma2)
    if root is None:
        offset = np.eye(sigma1.shape[0]) * eps
        root = _checked_sqrtm((sigma1 + offset) @ (sigma2 + offset))
        if root is None:
            raise FIDError(f"frechet_distance: sqrtm of the covariance product failed even with a {eps:g}*I offset "
                           "(covariances far from positive semi-definite?)")
    if np.iscomplexobj(root):
        diag = np.diagonal(root)
        imag = np.abs(diag.imag).max()
        tol = max(IMAG_ATOL, 1e-6 * abs(diag.real.sum()))
        if imag > tol:
            raise FIDError(f"frechet_distance: sqrtm has a non-negligible imaginary component ({imag:.3g} > {tol:.3g}); "
                           "the covariances are not valid (not symmetric positive semi-definite)")
        root = root.real
    return float(np.trace(root))


def trace_sqrt_product_eigh(sigma1, sigma2):
    """tr((S1 S2)^(1/2)) for symmetric PSD S1, S2 through symmetric eigenproblems (~10x faster than sqrtm at 2048).

    S1 S2 is similar to R S2 R with R = S1^(1/2) (symmetric), whose eigenvalues are real and
    >= 0; the trace of the square root is the sum of their square roots. Round-off
    negatives (relative to the largest eigenvalue) are clipped; larger ones mean the
    inputs are not covariances and raise.
    """
    for name, sigma in (("sigma1", sigma1), ("sigma2", sigma2)):
        if not np.allclose(sigma, sigma.T, rtol=1e-6, atol=1e-12 * max(1.0, np.abs(sigma).max())):
            raise FIDError(f"frechet_distance: {name} is not symmetric")
    w1, v1 = np.linalg.eigh(sigma1)
    _check_psd(w1, "sigma1")
    root1 = (v1 * np.sqrt(np.clip(w1, 0.0, None))) @ v1.T
    w = np.linalg.eigvalsh(root1 @ sigma2 @ root1)
    _check_psd(w, "sigma1^(1/2) sigma2 sigma1^(1/2)")
    return float(np.sqrt(np.clip(w, 0.0, None)).sum())


def _check_psd(eigenvalues, name, rtol=1e-6):
    scale = max(np.abs(eigenvalues).max(initial=0.0), np.finfo(np.float64).tiny)
    if eigenvalues.min(initial=0.0) < -rtol * scale:
        raise FIDError(f"frechet_distance: {name} has a negative eigenvalue ({eigenvalues.min():.3g}); "
                       "not a covariance (symmetric positive semi-definite)")


TRACE_METHODS = ("sqrtm", "eigh")


def frechet_distance(mu1, sigma1, mu2, sigma2, eps=1e-6, method="sqrtm"):
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2); always a finite float or FIDError.

    ``method="sqrtm"`` (default) is pytorch-fid's computation (scipy.linalg.sqrtm of S1 S2);
    ``"eigh"`` gives the same value (to ~1e-12 relative) from symmetric eigenproblems, about
    10x faster for 2048-d statistics.
    """
    if method not in TRACE_METHODS:
        raise ValueError(f"frechet_distance: method must be one of {TRACE_METHODS}, got {method!r}")
    mu1 = np.atleast_1d(np.asarray(mu1, dtype=np.float64))
    mu2 = np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    dim = mu1.shape[0]
    if mu2.shape != (dim,) or sigma1.shape != (dim, dim) or sigma2.shape != (dim, dim):
        raise FIDError(f"frechet_distance: shapes differ: mu {mu1.shape} vs {mu2.shape}, "
                       f"sigma {sigma1.shape} vs {sigma2.shape}")
    for name, value in (("mu1", mu1), ("mu2", mu2), ("sigma1", sigma1), ("sigma2", sigma2)):
        if not np.isfinite(value).all():
            raise FIDError(f"frechet_distance: {name} contains NaN or Inf")
    diff = mu1 - mu2
    if method == "sqrtm":
        tr_covmean = trace_sqrt_product(sigma1, sigma2, eps)
    else:
        tr_covmean = trace_sqrt_product_eigh(sigma1, sigma2)
    fid = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)
    if not np.isfinite(fid):
        raise FIDError("frechet_distance: result is not finite")
    return fid


def fid_from_features(features1, features2, eps=1e-6, method="sqrtm"):
    """FID between two [N, D] feature sets."""
    mu1, s1 = feature_statistics(features1)
    mu2, s2 = feature_statistics(features2)
    return frechet_distance(mu1, s1, mu2, s2, eps, method)


# ---- cached statistics -------------------------------------------------------------------

def file_digest(path, chunk=1 << 20):
    """sha256 of a file's bytes (identifies the weights the statistics were computed with)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def statistics_key(image_paths, weights_digest, settings=""):
    """Cache key: the sorted file list (name, size, mtime) + the weights' digest + extractor settings."""
    digest = hashlib.sha256()
    digest.update(f"weights={weights_digest};settings={settings};".encode())
    for path in sorted(os.path.abspath(p) for p in image_paths):
        st = os.stat(path)
        digest.update(f"{path}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:32]


def save_statistics(path, mu, sigma, num_images, key=""):
    """Write mu/sigma (pytorch-fid's key names) plus count and cache key, atomically."""
    import io

    buffer = io.BytesIO()
    np.savez(buffer, mu=np.asarray(mu, np.float64), sigma=np.asarray(sigma, np.float64),
             num_images=np.int64(num_images), key=np.str_(key))
    atomic_write_bytes(path, buffer.getvalue())


def load_statistics(path):
    """dict(mu, sigma, num_images (-1 if unknown, as in pytorch-fid files), key) from an .npz file."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if "mu" not in data or "sigma" not in data:
                raise FIDError(f"{path}: not a statistics file (needs arrays 'mu' and 'sigma')")
            stats = {"mu": data["mu"].astype(np.float64), "sigma": data["sigma"].astype(np.float64),
                     "num_images": int(data["num_images"]) if "num_images" in data else -1,
                     "key": str(data["key"]) if "key" in data else ""}
    except (OSError, ValueError) as err:
        if isinstance(err, FIDError):
            raise
        raise FIDError(f"{path}: cannot read statistics ({err})") from None
    dim = stats["mu"].shape
    if len(dim) != 1 or stats["sigma"].shape != (dim[0], dim[0]):
        raise FIDError(f"{path}: mu {stats['mu'].shape} and sigma {stats['sigma'].shape} do not match")
    return stats
