"""Layer-wise separability of two prompt sets (paper A.9, Fig. 7) and a suggested DCR layer.

Layer indexing follows ``dcr refine``: layer ``l`` is the output of decoder block ``l`` (0-based), i.e.
``hidden_states[l + 1]``. Features are the last-token hidden states of the formatted prompts.

Suggested layer rule (documented in docs/probe.md): inside the middle band of depths (default 25%-75%),
take the shallowest layer whose linear-probe accuracy is within ``saturation_tol`` of the band's best. There
the two sets are already linearly distinguishable (so a contrastive loss has a signal to amplify), while the
fewest layers are trained (A.2: shallow layers change too little, deep ones train too many parameters).
The k-means accuracy at that layer is reported: a low value means the sets still overlap geometrically,
which is what DCR is meant to fix.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from dcr.probe.inputs import encode


def last_token_states(model: Any, tok: Any, prompts: list[str], template: str = "auto", max_length: int = 256,
                      batch_size: int = 16) -> np.ndarray:
    """fp32 last-token hidden states after every decoder block: ``[L, N, d]`` (layer l = block l output)."""
    device = next(model.parameters()).device
    chunks = []
    for i in range(0, len(prompts), batch_size):
        batch = encode(tok, prompts[i : i + batch_size], template, max_length, device)
        with torch.no_grad():
            out = model(**batch, output_hidden_states=True, use_cache=False, logits_to_keep=1)
        chunks.append(torch.stack([h[:, -1].float().cpu() for h in out.hidden_states[1:]]))
    return torch.cat(chunks, dim=1).numpy()


def hungarian_accuracy(labels: np.ndarray, clusters: np.ndarray) -> float:
    """Accuracy of cluster ids after the best one-to-one matching to labels (Hungarian): ``[N], [N] -> float``."""
    classes, cluster_ids = np.unique(labels), np.unique(clusters)
    counts = np.zeros((len(cluster_ids), len(classes)))
    for i, c in enumerate(cluster_ids):
        for j, y in enumerate(classes):
            counts[i, j] = np.sum((clusters == c) & (labels == y))
    rows, cols = linear_sum_assignment(-counts)
    return float(counts[rows, cols].sum() / len(labels))


def kmeans_accuracy(x: np.ndarray, labels: np.ndarray, seed: int = 0, n_init: int = 10) -> float:
    """2-means on ``x [N, d]``, scored against ``labels [N]`` by Hungarian matching."""
    from sklearn.cluster import KMeans

    clusters = KMeans(n_clusters=2, n_init=n_init, random_state=seed).fit_predict(x.astype(np.float64))
    return hungarian_accuracy(labels, clusters)


def probe_accuracy(x: np.ndarray, labels: np.ndarray, folds: int = 5, seed: int = 0) -> float:
    """Mean stratified-CV accuracy of a standardised logistic-regression probe on ``x [N, d]``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    folds = min(folds, int(np.bincount(labels).min()))
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return float(cross_val_score(clf, x.astype(np.float64), labels, cv=cv).mean())


def layer_scores(states: np.ndarray, labels: np.ndarray, layers: list[int], seed: int = 0, folds: int = 5,
                 n_init: int = 10) -> list[dict[str, float]]:
    """Per layer: ``{"layer", "kmeans_acc", "probe_acc"}`` from ``states [L, N, d]`` and ``labels [N]``."""
    return [{"layer": layer, "kmeans_acc": kmeans_accuracy(states[layer], labels, seed, n_init),
             "probe_acc": probe_accuracy(states[layer], labels, folds, seed)} for layer in layers]


def suggest_layer(scores: list[dict[str, float]], n_layers: int, band: tuple[float, float] = (0.25, 0.75),
                  tol: float = 0.02) -> dict[str, Any]:
    """The shallowest middle-band layer whose probe accuracy is within ``tol`` of the band's best, with reason."""
    lo, hi = band[0] * (n_layers - 1), band[1] * (n_layers - 1)
    inside = [s for s in scores if lo <= s["layer"] <= hi] or list(scores)
    best = max(s["probe_acc"] for s in inside)
    pick = min((s for s in inside if s["probe_acc"] >= best - tol), key=lambda s: s["layer"])
    layer = int(pick["layer"])
    reason = (f"shallowest layer in the middle band [{int(np.ceil(lo))}, {int(np.floor(hi))}] whose linear-probe "
              f"accuracy ({pick['probe_acc']:.3f}) is within {tol} of the band's best ({best:.3f}): the sets are "
              f"linearly distinguishable there while k-means reaches only {pick['kmeans_acc']:.3f}, i.e. they "
              "still overlap geometrically; training layers <= l keeps the refined part of the model small")
    return {"layer": layer, "probe_acc": pick["probe_acc"], "kmeans_acc": pick["kmeans_acc"], "reason": reason}


def plot_scores(scores: list[dict[str, float]], suggested: int | None, title: str, path: Any) -> None:
    """Fig. 7-style: k-means and linear-probe accuracy against the layer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dcr.probe.groups import save_figure

    layers = [s["layer"] for s in scores]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(layers, [s["kmeans_acc"] for s in scores], marker="o", label="k-means (Hungarian)")
    ax.plot(layers, [s["probe_acc"] for s in scores], marker="s", label="linear probe (CV)")
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    if suggested is not None:
        ax.axvline(suggested, color="red", ls="--", lw=1, label=f"suggested layer {suggested}")
    ax.set_xlabel("layer (decoder block, 0-based)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0.4, 1.02)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    save_figure(fig, path)
