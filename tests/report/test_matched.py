"""Compliance at matched defense success, read along the tracked trajectories."""

from __future__ import annotations

import pytest

from dcr.report.matched import compliance_at, trajectory


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
