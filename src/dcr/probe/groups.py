"""Group matrices of the normalised eNTK similarity (paper Fig. 3 and Fig. 6) and their figures."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dcr.models import num_layers
from dcr.probe.gram import gram_blocks
from dcr.probe.inputs import GROUP_LABELS, encode
from dcr.probe.ntk import kernel_blocks, normalised_norms, param_subset, subset_size


def group_means(norms: np.ndarray, groups: list[str], order: list[str]) -> np.ndarray:
    """Mean of ``norms[a, b]`` over ``a`` in row group, ``b`` in column group, ``a != b``: ``[N, N] -> [G, G]``.

    Row = the group of x' (whose prediction changes), column = the group of x (trained on).
    """
    labels = np.asarray(groups)
    out = np.full((len(order), len(order)), np.nan)
    off_diag = ~np.eye(len(groups), dtype=bool)
    for r, gr in enumerate(order):
        for c, gc in enumerate(order):
            mask = (labels[:, None] == gr) & (labels[None, :] == gc) & off_diag
            if mask.any():
                out[r, c] = float(norms[mask].mean())
    return out


def pair_means(matrix: np.ndarray, order: list[str]) -> dict[str, float]:
    """Unordered group pairs ``"a/b"`` -> mean of ``matrix[a, b]`` and ``matrix[b, a]`` (Fig. 3 lines)."""
    out = {}
    for i, a in enumerate(order):
        for j in range(i, len(order)):
            out[f"{a}/{order[j]}"] = float((matrix[i, j] + matrix[j, i]) / 2)
    return out


def confound_ratio(matrix: np.ndarray, order: list[str]) -> float:
    """K(seemingly toxic, toxic) / K(toxic, toxic): the mean of the two cross blocks over the toxic block
    (issue 29). Near 1, an update on toxic prompts moves seemingly toxic ones as much as toxic ones."""
    s, t = order.index("s-toxic"), order.index("toxic")
    return float((matrix[s, t] + matrix[t, s]) / 2 / matrix[t, t])


def model_group_matrix(model: Any, tok: Any, records: dict[str, list[Any]], cfg: Any,
                       log: Callable[[str], None] = print) -> dict[str, Any]:
    """Compute the ``[G, G]`` group matrix of one model; returns matrix, per-prompt norms and the subset size."""
    order = list(records)
    prompts = [r.prompt for g in order for r in records[g]]
    groups = [g for g in order for _ in records[g]]
    device = next(model.parameters()).device
    batch = encode(tok, prompts, cfg.template, cfg.max_length, device)
    params = param_subset(model, min(cfg.ntk_layers, num_layers(model)), cfg.include_head)
    log(f"eNTK: {len(prompts)} prompts, top_k {cfg.top_k}, {len(params)} tensors / "
        f"{subset_size(params):,} parameters, method {cfg.method}")
    progress = lambda i, n: log(f"  x {i}/{n} done")  # noqa: E731
    storage = "fp32"
    if cfg.method == "gram":
        blocks, storage = gram_blocks(model, batch, params, cfg.top_k, cfg.batch_size, cfg.gram_budget_gb,
                                      progress=progress)
    else:
        blocks = kernel_blocks(model, batch, params, cfg.top_k, cfg.method, cfg.fd_eps, cfg.fd_unit_step,
                               cfg.batch_size, progress=progress)
    norms = normalised_norms(blocks).numpy()
    return {
        "order": order,
        "matrix": group_means(norms, groups, order).tolist(),
        "norms": norms.tolist(),
        "raw_norms": torch.linalg.matrix_norm(blocks, ord="fro").numpy().tolist(),
        "groups": groups,
        "ids": [r.id for g in order for r in records[g]],
        "subset_parameters": subset_size(params),
        "gradient_storage": storage,
    }


def plot_matrices(mats: list[np.ndarray], titles: list[str], order: list[str], path: Path) -> None:
    """Fig. 6-style heatmaps side by side (one shared colour scale), written to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vals = np.concatenate([m[np.isfinite(m)].ravel() for m in mats])
    vmin, vmax = (float(vals.min()), float(vals.max())) if vals.size else (0.0, 1.0)
    fig, axes = plt.subplots(1, len(mats), figsize=(4.2 * len(mats) + 0.8, 3.8), squeeze=False)
    labels = [GROUP_LABELS.get(g, g) for g in order]
    im = None
    for ax, mat, title in zip(axes[0], mats, titles):
        im = ax.imshow(mat, cmap="viridis", vmin=vmin, vmax=vmax)
        for (r, c), v in np.ndenumerate(mat):
            ax.text(c, r, f"{v:.2f}", ha="center", va="center", color="w" if v < (vmin + vmax) / 2 else "k")
        ax.set_xticks(range(len(order)), labels)
        ax.set_yticks(range(len(order)), labels)
        ax.set_xlabel("x (trained on)")
        ax.set_ylabel("x' (affected)")
        ax.set_title(title)
    fig.colorbar(im, ax=axes[0].tolist(), label="mean normalised ||K_t(x', x)||_F")
    save_figure(fig, path)


def plot_tracking(steps: list[str], pairs: list[dict[str, float]], path: Path) -> None:
    """Fig. 3-style lines: each group pair's mean normalised ||K_t|| against the checkpoint."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for key in pairs[0]:
        a, b = key.split("/")
        label = f"{GROUP_LABELS.get(a, a)} - {GROUP_LABELS.get(b, b)}"
        ax.plot(range(len(steps)), [p[key] for p in pairs], marker="o", label=label)
    ax.set_xticks(range(len(steps)), steps, rotation=30, ha="right")
    ax.set_xlabel("checkpoint")
    ax.set_ylabel("mean normalised ||K_t(x', x)||_F")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    save_figure(fig, path)


def save_figure(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    from dcr.io import atomic_open

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=130, bbox_inches="tight")
    plt.close(fig)
