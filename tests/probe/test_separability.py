"""Layer separability scores, the layer suggestion rule, last-token features and MDS."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dcr.probe.inputs import encode, expand_checkpoints
from dcr.probe.mds import classical_mds, default_layers, embed
from dcr.probe.separability import (
    hungarian_accuracy,
    kmeans_accuracy,
    last_token_states,
    probe_accuracy,
    suggest_layer,
)


def test_hungarian_accuracy_matches_clusters_to_labels() -> None:
    labels = np.array([0, 0, 1, 1, 1])
    assert hungarian_accuracy(labels, np.array([1, 1, 0, 0, 0])) == 1.0
    assert hungarian_accuracy(labels, np.array([1, 0, 0, 0, 1])) == pytest.approx(0.6)


def _blobs(gap: float, n: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2 * n, 8))
    x[n:, 0] += gap
    return x, np.array([0] * n + [1] * n)


def test_kmeans_and_probe_separate_far_blobs_but_not_identical_ones() -> None:
    x, y = _blobs(gap=20.0)
    assert kmeans_accuracy(x, y) == 1.0 and probe_accuracy(x, y) == 1.0
    x, y = _blobs(gap=0.0)
    assert probe_accuracy(x, y) < 0.8


def test_probe_beats_kmeans_when_the_split_is_along_a_low_variance_direction() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(80, 4)) * np.array([0.1, 10.0, 10.0, 10.0])
    y = np.array([0, 1] * 40)
    x[y == 1, 0] += 1.0
    assert probe_accuracy(x, y) > 0.95
    assert kmeans_accuracy(x, y) < 0.8


def test_suggest_layer_picks_shallowest_saturated_layer_in_band() -> None:
    probe = [0.6, 0.7, 0.8, 0.9, 0.95, 0.96, 0.97, 0.97, 0.99, 0.99]
    scores = [{"layer": i, "kmeans_acc": 0.55, "probe_acc": p} for i, p in enumerate(probe)]
    pick = suggest_layer(scores, n_layers=10, band=(0.25, 0.75), tol=0.015)
    assert pick["layer"] == 5  # band is layers 3..6; best 0.97; 0.96 is within 0.015, 0.95 is not
    assert "0.550" in pick["reason"]


def test_last_token_states_ignore_left_padding(tiny: tuple) -> None:
    model, tok = tiny
    prompts = ["hi", "a much longer prompt than the first"]
    states = last_token_states(model, tok, prompts, batch_size=2)
    assert states.shape == (model.config.num_hidden_layers, 2, model.config.hidden_size)
    with torch.no_grad():
        alone = model(**encode(tok, prompts[:1]), output_hidden_states=True).hidden_states
    assert np.allclose(states[:, 0], torch.stack([h[0, -1] for h in alone[1:]]).numpy(), atol=1e-4)


def test_classical_mds_recovers_planar_distances() -> None:
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(12, 2))
    xy = classical_mds(np.hstack([pts, np.zeros((12, 3))]))
    d = lambda a: np.linalg.norm(a[:, None] - a[None], axis=-1)  # noqa: E731
    assert np.allclose(d(xy), d(pts), atol=1e-8)
    assert embed(pts, "smacof").shape == (12, 2)


def test_default_layers_spread_from_first_to_last() -> None:
    assert default_layers(30) == [0, 6, 12, 17, 23, 29]
    assert default_layers(3) == [0, 1, 2]


def test_expand_checkpoints_sorts_subdirs_by_step(tmp_path: pytest.TempPathFactory) -> None:
    for name in ("checkpoint-100", "checkpoint-20", "final"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text("{}")
    (tmp_path / "notes").mkdir()
    assert [p.name for p in expand_checkpoints([str(tmp_path)])] == ["final", "checkpoint-20", "checkpoint-100"]
