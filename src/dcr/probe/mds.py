"""2-D MDS maps of last-token activations at chosen layers (paper A.9, Fig. 8)."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np


def default_layers(n_layers: int, count: int = 6) -> list[int]:
    """``count`` evenly spaced 0-based block indices from the first to the last layer."""
    return sorted({int(round(v)) for v in np.linspace(0, n_layers - 1, min(count, n_layers))})


def classical_mds(x: np.ndarray, dims: int = 2) -> np.ndarray:
    """Torgerson's classical MDS of the Euclidean distances between rows: ``[N, d] -> [N, dims]``.

    With Euclidean distances this equals PCA of the centred points (up to sign).
    """
    d2 = np.square(x[:, None, :] - x[None, :, :]).sum(-1) if len(x) < 2048 else _sq_dists(x)
    n = len(x)
    centre = np.eye(n) - np.full((n, n), 1.0 / n)
    gram = -0.5 * centre @ d2 @ centre
    vals, vecs = np.linalg.eigh(gram)
    top = np.argsort(vals)[::-1][:dims]
    return vecs[:, top] * np.sqrt(np.clip(vals[top], 0.0, None))


def _sq_dists(x: np.ndarray) -> np.ndarray:
    sq = (x * x).sum(1)
    return np.clip(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0.0, None)


def embed(x: np.ndarray, method: str = "smacof", seed: int = 0) -> np.ndarray:
    """2-D coordinates of ``x [N, d]`` by sklearn's SMACOF MDS or classical MDS: ``[N, 2]``."""
    x = x.astype(np.float64)
    if method == "classical":
        return classical_mds(x)
    from sklearn.manifold import MDS

    params = inspect.signature(MDS).parameters
    kwargs: dict[str, object] = {"n_components": 2, "random_state": seed, "n_init": 1}
    if "metric_mds" in params:  # sklearn >= 1.8: metric names the distance, init must be explicit
        kwargs.update(metric="euclidean", init="random")
    else:
        kwargs.update(dissimilarity="euclidean")
    mds = MDS(**kwargs)  # type: ignore[arg-type]
    return np.asarray(mds.fit_transform(x))


def plot_grid(coords: dict[int, np.ndarray], labels: np.ndarray, names: tuple[str, str], title: str,
              path: Path) -> None:
    """A grid of MDS scatter plots, one per layer; label 0 orange (seemingly toxic), label 1 blue (toxic)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dcr.probe.groups import save_figure

    cols = min(3, len(coords))
    rows = (len(coords) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.4 * rows), squeeze=False)
    for ax in axes.ravel()[len(coords):]:
        ax.axis("off")
    for ax, (layer, xy) in zip(axes.ravel(), sorted(coords.items())):
        for lab, colour in ((0, "tab:orange"), (1, "tab:blue")):
            pts = xy[labels == lab]
            ax.scatter(pts[:, 0], pts[:, 1], s=8, alpha=0.7, c=colour, label=names[lab])
        ax.set_title(f"layer {layer}")
        ax.set_xticks([])
        ax.set_yticks([])
    axes.ravel()[0].legend(fontsize=7, loc="best")
    fig.suptitle(title)
    save_figure(fig, path)
