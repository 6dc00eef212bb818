"""Quality metrics that need no network: the Frechet distance between feature Gaussians (the FID
formula, Heusel et al. 2017), feature statistics, paired token agreement, and what makes an image set's
FID meaningless (repeated images, a set scored against itself)."""
import hashlib
import warnings
from collections import Counter

import numpy as np
import torch
from scipy import linalg


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d,) and covariance (d, d) of (n, d) features, in float64."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need (n >= 2, d) features, got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)), the matrix root via scipy.linalg.sqrtm."""
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    covmean = _sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():  # singular product: regularise as the reference FID code does
        eps = 1e-6 * np.eye(sigma1.shape[0])
        covmean = _sqrtm((sigma1 + eps) @ (sigma2 + eps))
    covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def _sqrtm(m: np.ndarray) -> np.ndarray:
    """scipy's matrix square root; quiet about near-singular input (small feature sets)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        root = linalg.sqrtm(m)
    return root[0] if isinstance(root, tuple) else root  # older scipy returned (root, error)


def paired_agreement(tokens: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per image, the fraction of tokens equal to the reference sample with the same seed."""
    if tokens.shape != reference.shape:
        raise ValueError(f"shapes differ: {tuple(tokens.shape)} vs {tuple(reference.shape)}")
    return (tokens == reference).flatten(1).float().mean(dim=1)


def image_digests(images: np.ndarray) -> Counter:
    """How often each distinct image of (N, H, W, 3) occurs, keyed by a digest of its bytes."""
    return Counter(hashlib.blake2b(np.ascontiguousarray(im).tobytes(), digest_size=16).digest() for im in images)


def repeated_images_warning(images: np.ndarray, name: str) -> str | None:
    """Why a FID of `images` would not measure N samples: images repeated byte for byte (all of them: a
    zero covariance, the distance of one image); None if every image is distinct."""
    digests, n = image_digests(images), len(images)
    if len(digests) == 1:
        return (f"all {n} images of {name} are identical: their covariance is zero, so the FID is that of one "
                "image, not of a model's samples")
    if len(digests) < n:
        return (f"{n - len(digests)} of the {n} images of {name} repeat another one byte for byte (the same seed "
                f"twice?): the FID is not that of {n} samples")
    return None


def same_images(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two image sets hold the same images, each as often, in any order (a FID of about 0)."""
    return len(a) == len(b) and image_digests(a) == image_digests(b)
