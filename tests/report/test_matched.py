"""Compliance at matched defense success, read along the tracked trajectories."""

from __future__ import annotations

import pytest

from dcr.report.figures import mean_curve
from dcr.report.matched import compliance_at, matched, matched_interval, trajectory


def test_trajectory_and_interpolation() -> None:
    curve = {0: {"toxic": {"refusal_rate": 0.0, "refusal_prob": 0.0},
                 "seemingly_toxic": {"refusal_rate": 0.0, "refusal_prob": 0.0}},
             8: {"toxic": {"refusal_rate": 0.5, "refusal_prob": 0.1},
                 "seemingly_toxic": {"refusal_rate": 0.2, "refusal_prob": 0.1}},
             16: {"toxic": {"refusal_rate": 0.9, "refusal_prob": 0.2},
                  "seemingly_toxic": {"refusal_rate": 0.6, "refusal_prob": 0.2}}}
    pts = trajectory(curve)
    assert pts == [(0.0, 1.0), (0.5, 0.8), (0.9, pytest.approx(0.4))]
    assert compliance_at(pts, 0.7) == pytest.approx(0.6)  # halfway from (0.5, 0.8) to (0.9, 0.4)
    assert compliance_at(pts, 0.0) == 1.0 and compliance_at(pts, 0.95) is None


def test_first_crossing_counts_not_a_later_dip() -> None:
    pts = [(0.2, 0.9), (0.8, 0.7), (0.5, 0.8), (0.9, 0.3)]
    assert compliance_at(pts, 0.8) == pytest.approx(0.7)


def _curve(points: list[tuple[float, float]], n: int | None) -> dict:
    """A tracked curve from (defense success, compliance) per step; n probes per group (None: no n column)."""
    extra = {} if n is None else {"n": float(n)}
    return {8 * k: {"toxic": {"refusal_rate": d, "refusal_prob": 0.0, **extra},
                    "seemingly_toxic": {"refusal_rate": 1.0 - c, "refusal_prob": 0.0, **extra}}
            for k, (d, c) in enumerate(points)}


def test_matched_interval_shrinks_with_n_and_needs_n() -> None:
    a = [_curve([(0.1, 0.98), (0.6, 0.7), (0.9, 0.4)], 50), _curve([(0.1, 0.96), (0.5, 0.8), (0.9, 0.5)], 50)]
    b = [_curve([(0.1, 0.98), (0.5, 0.9), (0.9, 0.6)], 50), _curve([(0.1, 0.98), (0.6, 0.8), (0.9, 0.5)], 50)]
    level, ca, cb = matched(mean_curve(a), mean_curve(b))
    assert level == pytest.approx(0.9) and cb - ca == pytest.approx(0.1)
    lo, hi = matched_interval(a, b)
    assert lo < 0.1 < hi and 0.1 < hi - lo < 0.5  # 50 probes per group: wide
    big = [{s: {g: {**v, "n": 1e6} for g, v in gr.items()} for s, gr in c.items()} for c in a + b]
    lo2, hi2 = matched_interval(big[:2], big[2:])
    assert lo2 < 0.1 < hi2 and hi2 - lo2 < 0.01  # a million probes: tight around the point value
    assert matched_interval([_curve([(0.1, 0.9), (0.9, 0.5)], None)], b[:1]) is None  # no n, no interval


def test_the_step_each_method_first_reaches_the_level_is_shown_and_a_start_model_marked(tmp_path) -> None:
    """When both tracked runs saturate and one is there at step 0 (DCR + STL's refined model), the matched row
    compares a model before any STL step: the table must say so."""
    from dcr.report.matched import _reached, first_step

    stl = _curve([(0.4, 0.9), (0.9, 0.7), (1.0, 0.5)], 50)
    dcr = _curve([(1.0, 0.3), (1.0, 0.6), (1.0, 0.7)], 50)
    assert first_step(stl, 1.0) == 16 and first_step(dcr, 1.0) == 0 and first_step(stl, 1.01) is None
    assert _reached(stl, dcr, 1.0) == "16 / 0 (at step 0: compared before any STL step)"
    assert _reached(stl, _curve([(0.5, 0.9), (1.0, 0.6)], 50), 1.0) == "16 / 8"
