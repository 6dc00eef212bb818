"""evaluate.py warns (after the figures, and in the JSON's "warnings") when its FID cannot mean what it says:
images repeated byte for byte in the sample file (all identical: a zero covariance), or a reference
holding the very same images; distinct images give no warning."""
import json

import numpy as np
import pytest
import torch

import evaluate
from common.metrics import repeated_images_warning, same_images


def digits(n: int, seed: int = 0) -> np.ndarray:
    """n distinct demo-format images: grey 96x96, 4x4 blocks of 24x24 random levels."""
    levels = np.random.default_rng(seed).integers(0, 16, (n, 24, 24)).astype(np.uint8) * 17
    return np.repeat(np.repeat(levels, 4, axis=1), 4, axis=2)[..., None].repeat(3, axis=3)


@pytest.mark.parametrize("make,needle", [
    (lambda: digits(1).repeat(2, axis=0), "all 2 images of {} are identical: their covariance is zero"),
    (lambda: digits(3)[[0, 1, 0]], "1 of the 3 images of {} repeat another one byte for byte"),
    (lambda: digits(4), None),
])
def test_digits_fid_of_repeated_images_warns(make, needle, tmp_path, capsys):
    path = tmp_path / "s.npz"
    np.savez(path, arr_0=make())
    assert evaluate.cli([str(path), "--digits", "--device", "cpu"]) == 0
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert "digits_fid" in result
    if needle is None:
        assert result["warnings"] == [] and "warning" not in err
    else:
        (warning,) = result["warnings"]
        assert warning.startswith(needle.format(path))
        assert err.strip().splitlines()[-1] == f"warning: {warning}"  # after the figures


def test_a_reference_holding_the_same_images_warns(tmp_path):
    proj = torch.randn(3 * 8 * 8, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def extractor(x):  # a fixed projection standing in for Inception: (B, 3, 8, 8) -> (B, 6) twice
        f = x.double().flatten(1) / 255 @ proj
        return f, f
    images = np.random.default_rng(0).integers(0, 256, (20, 8, 8, 3), dtype=np.uint8)
    ref = tmp_path / "ref.npz"
    np.savez(ref, arr_0=images[::-1])
    result = evaluate.inception_metrics(images, ref, extractor, 8, torch.device("cpu"))
    assert abs(result["fid"]) < 1e-6
    assert result["warnings"] == [f"the samples and the reference {ref} hold the same images: the FID of a set "
                                  "against itself is about 0 and says nothing about a model"]
    np.savez(ref, arr_0=images[:-1])
    assert evaluate.inception_metrics(images, ref, extractor, 8, torch.device("cpu"))["warnings"] == []


def test_the_rules():
    a = digits(3)
    assert repeated_images_warning(a, "x") is None
    assert same_images(a, a[[2, 0, 1]]) and not same_images(a, a[[0, 0, 1]]) and not same_images(a, a[:2])
    b = a.copy()
    b[1, 5, 5, 0] ^= 1  # one bit of one pixel
    assert not same_images(a, b) and repeated_images_warning(np.stack([a[0], a[0]]), "x") is not None
