"""A small CNN that scores the demo model's samples: class accuracy, and 64-d features for the
digits-FID (common.metrics). Trained by llamagen.train_demo on digits the generator never saw."""
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from common.weights.checkpoint import CheckpointError, load_exact, read_checkpoint, unwrap_state_dict
from common.metrics import feature_stats, frechet_distance


class DigitClassifier(nn.Module):
    """(B, 1, 24, 24) grey levels in [0, 1] -> 10 logits; `features` is the 64-d penultimate layer."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc = nn.Linear(32 * 6 * 6, 64)
        self.head = nn.Linear(64, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)  # (B, 16, 12, 12)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)  # (B, 32, 6, 6)
        return F.relu(self.fc(x.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@dataclass
class DigitScorer:
    """The classifier plus the feature statistics of real digits, as saved by train_demo."""

    classifier: DigitClassifier
    real_mu: np.ndarray
    real_sigma: np.ndarray
    heldout_accuracy: float

    @classmethod
    def load(cls, path: str | Path) -> "DigitScorer":
        what = "digit classifier"
        ckpt = read_checkpoint(path, what)
        model = DigitClassifier()
        load_exact(model, unwrap_state_dict(ckpt, ("model",), what, path), what, path)
        missing = [k for k in ("real_mu", "real_sigma", "heldout_accuracy") if k not in ckpt]
        if missing:
            raise CheckpointError(f"{what}: {path} lacks {missing}: not a classifier saved by llamagen.train_demo")
        return cls(model.eval(), ckpt["real_mu"].double().numpy(), ckpt["real_sigma"].double().numpy(),
                   float(ckpt["heldout_accuracy"]))

    @property
    def classes(self) -> int:
        """The labels it tells apart: 0 .. classes - 1."""
        return self.classifier.head.out_features

    @torch.no_grad()
    def score(self, grey: torch.Tensor, labels: torch.Tensor) -> dict:
        """grey (B, 1, 24, 24) in [0, 1], labels (B,) -> accuracy and digits-FID against real digits."""
        feats = self.classifier.features(grey.float())
        accuracy = (self.classifier.head(feats).argmax(-1) == labels).float().mean().item()
        mu, sigma = feature_stats(feats.numpy())
        return {"accuracy": accuracy, "digits_fid": frechet_distance(mu, sigma, self.real_mu, self.real_sigma)}
