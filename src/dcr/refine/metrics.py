"""Separability of two prompt classes from their features: cosine similarities, k-means and a linear probe."""

from __future__ import annotations

import numpy as np
import torch


def cosine_stats(features: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Mean cross-class and within-class cosine similarity of ``features [N, d]`` with binary ``labels [N]``.

    Within-class pairs exclude self-pairs ``(i, i)``.
    """
    f = torch.nn.functional.normalize(features.float(), dim=-1)
    sim = f @ f.T
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool)
    within = same & ~eye
    if not bool((~same).any()) or not bool(within.any()):
        raise ValueError("cosine_stats needs two classes with at least two prompts in one of them")
    return {"cross_class_cosine": float(sim[~same].mean()), "within_class_cosine": float(sim[within].mean())}


def cluster_accuracy(true: np.ndarray, pred: np.ndarray) -> float:
    """Accuracy of cluster ids ``pred [N]`` against ``true [N]`` under the best one-to-one matching (Hungarian)."""
    from scipy.optimize import linear_sum_assignment

    classes, clusters = np.unique(true), np.unique(pred)
    counts = np.array([[np.sum((true == c) & (pred == k)) for k in clusters] for c in classes])
    rows, cols = linear_sum_assignment(-counts)
    return float(counts[rows, cols].sum() / len(true))


def kmeans_accuracy(features: torch.Tensor, labels: torch.Tensor, seed: int = 0) -> float:
    """2-means on ``features [N, d]``; accuracy after Hungarian matching of clusters to ``labels [N]``."""
    from sklearn.cluster import KMeans

    x = features.float().numpy()
    pred = KMeans(n_clusters=2, n_init=10, random_state=seed).fit_predict(x)
    return cluster_accuracy(labels.numpy(), pred)


def probe_accuracy(features: torch.Tensor, labels: torch.Tensor, seed: int = 0, folds: int = 5) -> float:
    """Mean stratified cross-validated accuracy of a logistic-regression probe on ``features [N, d]``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    y = labels.numpy()
    k = min(folds, int(np.bincount(y).min()))
    if k < 2:
        raise ValueError("probe_accuracy needs at least two prompts per class")
    cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    scores = cross_val_score(LogisticRegression(max_iter=2000), features.float().numpy(), y, cv=cv)
    return float(scores.mean())


def separability(features: torch.Tensor, labels: torch.Tensor, seed: int = 0) -> dict[str, float]:
    """All separability numbers for one feature set: cosines, k-means accuracy, probe accuracy."""
    return {**cosine_stats(features, labels),
            "kmeans_accuracy": kmeans_accuracy(features, labels, seed),
            "probe_accuracy": probe_accuracy(features, labels, seed)}
