"""Separability metrics: cosine statistics, Hungarian-matched k-means accuracy, linear probe."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dcr.refine.metrics import cluster_accuracy, cosine_stats, kmeans_accuracy, separability


def test_cosine_stats_hand_case() -> None:
    x = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    stats = cosine_stats(x, torch.tensor([0, 0, 1]))
    assert stats["within_class_cosine"] == pytest.approx(0.6)
    assert stats["cross_class_cosine"] == pytest.approx((0.0 + 0.8) / 2)
    with pytest.raises(ValueError, match="two classes"):
        cosine_stats(x, torch.tensor([0, 0, 0]))


def test_cluster_accuracy_uses_best_matching() -> None:
    true = np.array([0, 0, 0, 1, 1, 1])
    assert cluster_accuracy(true, np.array([1, 1, 1, 0, 0, 0])) == 1.0
    assert cluster_accuracy(true, np.array([1, 1, 0, 0, 0, 0])) == pytest.approx(5 / 6)


def test_separable_blobs_score_high_and_mixed_ones_low() -> None:
    g = torch.Generator().manual_seed(0)
    y = torch.tensor([0] * 20 + [1] * 20)
    centres = torch.tensor([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0]])
    sep = centres[y] + 0.3 * torch.randn(40, 3, generator=g)
    got = separability(sep, y)
    assert got["kmeans_accuracy"] == 1.0 and got["probe_accuracy"] == 1.0
    assert got["cross_class_cosine"] < got["within_class_cosine"]
    mixed = torch.randn(40, 3, generator=g)
    assert kmeans_accuracy(mixed, y) < 0.8
