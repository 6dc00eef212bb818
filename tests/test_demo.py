"""The committed demo model, its tokenizer, classifier and metrics, and the training script."""
import argparse

import numpy as np
import pytest
import torch

from common.zipar.config import DecodeConfig
from common.metrics import feature_stats, frechet_distance, paired_agreement
from common.zipar.sampling import image_seeds
from llamagen import train_demo
from llamagen.checkpoint import load_gpt_weights
from llamagen.demo_classifier import DigitScorer
from llamagen.demo_data import GRID, load_digits_split, render
from llamagen.demo_tokenizer import IntensityTokenizer
from llamagen.generate import generate
from llamagen.model import Transformer, gpt_config
from llamagen.presets import DEMO, DEMO_DIR


@pytest.fixture(scope="module")
def demo_gpt():
    gpt = Transformer(gpt_config("demo"), grid_size=GRID).eval()
    load_gpt_weights(gpt, DEMO.gpt_ckpt, "demo")
    return gpt


def test_committed_demo_samples_with_zipar(demo_gpt):
    labels, seeds = torch.arange(10), image_seeds(0, torch.arange(10))
    fixed = generate(demo_gpt, labels, seeds, DecodeConfig(window=8, cfg_scale=2.0))
    assert fixed.forward_passes == 2 * 24 + 22 * 8 and fixed.tokens.shape == (10, 24, 24)
    assert 0 <= fixed.tokens.min() and fixed.tokens.max() < 16
    tokenizer = IntensityTokenizer.load(DEMO.vq_ckpt)
    images = tokenizer.decode_code(fixed.tokens.flatten(1), (24, 24))
    assert images.shape == (10, 3, 96, 96) and images.min() >= -1 and images.max() <= 1


def test_paired_agreement_counts_equal_tokens_per_image(demo_gpt):
    labels, seeds = torch.arange(2), image_seeds(3, torch.arange(2))
    a = generate(demo_gpt, labels, seeds, DecodeConfig(window=1)).tokens
    b = a.clone()
    b[1, 0, :6] = (b[1, 0, :6] + 1) % demo_gpt.config.vocab_size  # 6 of image 1's 576 tokens differ
    assert torch.equal(paired_agreement(b, a), torch.tensor([1.0, 1 - 6 / 576]))
    # two windows, same seeds: the same model samples, yet not token for token (the context differs)
    assert paired_agreement(generate(demo_gpt, labels, seeds, DecodeConfig(window=2)).tokens, a).max() < 1
    with pytest.raises(ValueError, match="shapes differ"):
        paired_agreement(a[:1], a)


def test_frechet_distance_closed_forms():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 3))
    mu, sigma = feature_stats(a)
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-8
    # 1-D: (m1 - m2)^2 + (s1 - s2)^2
    assert frechet_distance([0.0], [[1.0]], [2.0], [[9.0]]) == pytest.approx(4 + (1 - 3) ** 2)
    # diagonal covariances: |mu1 - mu2|^2 + sum (sqrt a_i - sqrt b_i)^2
    va, vb = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 1.0])
    expected = 1 + 4 + 9 + ((np.sqrt(va) - np.sqrt(vb)) ** 2).sum()
    assert frechet_distance([0, 0, 0], np.diag(va), [1, 2, 3], np.diag(vb)) == pytest.approx(expected)
    with pytest.raises(ValueError, match="features"):
        feature_stats(np.zeros((1, 3)))


def test_classifier_on_held_out_real_digits():
    scorer = DigitScorer.load(DEMO_DIR / "digit_classifier.pt")
    tokenizer = IntensityTokenizer()
    images, labels = load_digits_split("classifier_test")
    grey = tokenizer.codes_to_grey(tokenizer.encode(render(images, torch.Generator().manual_seed(1234))), (GRID, GRID))
    real = scorer.score(grey, labels)
    # 10 classes (chance 0.1); training reported 0.949 on these 197 digits, a broken loader or
    # tokenizer round trip falls far below 0.9
    assert real["accuracy"] >= 0.9
    noise = torch.randint(0, 16, (len(labels), GRID * GRID))
    fake = scorer.score(tokenizer.codes_to_grey(noise, (GRID, GRID)), labels)
    assert real["digits_fid"] * 10 < fake["digits_fid"]


def test_tokenizer_round_trip_and_errors(tmp_path):
    tok = IntensityTokenizer(levels=16)
    grey = torch.rand(2, 1, 5, 5)
    back = tok.codes_to_grey(tok.encode(grey), (5, 5))
    assert (back - grey).abs().max() <= 0.5 / 15 + 1e-6
    tok.save(tmp_path / "t.json")
    assert IntensityTokenizer.load(tmp_path / "t.json").levels == 16
    with pytest.raises(ValueError, match="tokens"):
        tok.codes_to_grey(torch.full((1, 4), 16), (2, 2))


def test_tiny_training_run_end_to_end(tmp_path):
    args = argparse.Namespace(out_dir=str(tmp_path), steps=3, batch_size=2, save_every=2, lr=1e-3,
                              classifier_epochs=1, seed=0, threads=0, quiet=True)
    train_demo.main(args)
    for name in ("gpt_demo.pt", "tokenizer.json", "digit_classifier.pt", "train_log.jsonl"):
        assert (tmp_path / name).is_file()
    gpt = Transformer(gpt_config("demo"), grid_size=GRID)
    load_gpt_weights(gpt, tmp_path / "gpt_demo.pt", "demo")
    DigitScorer.load(tmp_path / "digit_classifier.pt")
