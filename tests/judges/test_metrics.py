"""Calibration metrics against a hand-computed example; bootstrap intervals, stratification, pairing."""

from __future__ import annotations

import math

import pytest

from dcr.judges.metrics import (
    bootstrap_metrics,
    confusion,
    fmt,
    label_agreement,
    paired_difference,
    point_metrics,
    rounded,
)

# 10 rows: tp=3, fn=1, fp=1, tn=5.
HUMAN = [True, True, True, True, False, False, False, False, False, False]
JUDGE = [True, True, True, False, True, False, False, False, False, False]


def test_hand_computed_example() -> None:
    assert confusion(HUMAN, JUDGE) == {"tp": 3, "fp": 1, "fn": 1, "tn": 5}
    m = point_metrics(HUMAN, JUDGE)
    assert m["agreement"] == pytest.approx(0.8)
    assert m["precision"] == pytest.approx(3 / 4)
    assert m["recall"] == pytest.approx(3 / 4)
    assert m["f1"] == pytest.approx(3 / 4)
    # p_o = 0.8; both raters say "refusal" 4 times in 10: p_e = 0.4*0.4 + 0.6*0.6 = 0.52
    assert m["kappa"] == pytest.approx((0.8 - 0.52) / (1 - 0.52))  # 0.5833


def test_undefined_metrics_are_nan() -> None:
    m = point_metrics([True, False], [False, False])
    assert math.isnan(m["precision"]) and m["recall"] == 0.0 and m["f1"] == 0.0
    m = point_metrics([True, True], [True, True])  # both raters constant: kappa undefined
    assert m["agreement"] == 1.0 and math.isnan(m["kappa"])
    assert rounded({"kappa": {"value": math.nan, "low": math.nan, "high": math.nan}}) == \
        {"kappa": {"value": None, "low": None, "high": None}}
    assert fmt({"value": None}) == "n/a" and fmt({"value": 0.5, "low": 0.25, "high": 0.75}) == "0.500 [0.250, 0.750]"


def test_bootstrap_is_seeded_and_brackets_the_value() -> None:
    human, judge = HUMAN * 10, JUDGE * 10
    a = bootstrap_metrics(human, judge, resamples=300, seed=1)
    assert a == bootstrap_metrics(human, judge, resamples=300, seed=1)
    assert a != bootstrap_metrics(human, judge, resamples=300, seed=2)
    for name, entry in a.items():
        assert entry["low"] <= entry["value"] <= entry["high"], name
    assert a["agreement"]["value"] == pytest.approx(0.8) and a["agreement"]["high"] - a["agreement"]["low"] > 0.05
    no_ci = bootstrap_metrics(human, judge, resamples=0)
    assert math.isnan(no_ci["kappa"]["low"]) and no_ci["kappa"]["value"] == pytest.approx(0.58333, abs=1e-4)


def test_bootstrap_is_stratified() -> None:
    """Group a: all right, group b: all wrong. Resampling within each group keeps agreement at exactly 0.5."""
    human = [True, False] * 10 + [True, False] * 10
    judge = [True, False] * 10 + [False, True] * 10
    strata = ["a"] * 20 + ["b"] * 20
    stratified = bootstrap_metrics(human, judge, strata, resamples=200)["agreement"]
    assert stratified["low"] == stratified["high"] == 0.5
    pooled = bootstrap_metrics(human, judge, None, resamples=200)["agreement"]
    assert pooled["low"] < 0.5 < pooled["high"]


def test_paired_difference() -> None:
    human, judge = HUMAN * 5, JUDGE * 5
    same = paired_difference(human, judge, judge, resamples=100)
    assert all(e["value"] == e["low"] == e["high"] == 0 for e in same.values())
    better = paired_difference(human, human, judge, resamples=200)  # a perfect judge vs JUDGE
    assert better["agreement"]["value"] == pytest.approx(0.2) and better["agreement"]["low"] > 0


def test_input_checks() -> None:
    with pytest.raises(ValueError, match="equally long"):
        bootstrap_metrics([True], [True, False])
    with pytest.raises(ValueError, match="equally long"):
        bootstrap_metrics([], [])
    with pytest.raises(ValueError, match="strata"):
        bootstrap_metrics([True, False], [True, False], ["a"])
    with pytest.raises(ValueError, match="differ in length"):
        confusion([True], [])


def test_label_agreement_three_outcomes_by_hand_and_sklearn() -> None:
    from sklearn.metrics import cohen_kappa_score

    a = ["compliance"] * 5 + ["refusal"] * 3 + ["degenerate"] * 2
    b = ["compliance"] * 4 + ["refusal"] + ["refusal"] * 2 + ["compliance"] + ["degenerate", "compliance"]
    m = label_agreement(a, b, resamples=500)
    # 7 of 10 equal; marginals a (5, 3, 2), b (6, 3, 1): p_e = (30 + 9 + 2) / 100 = 0.41
    assert m["agreement"]["value"] == pytest.approx(0.7)
    assert m["kappa"]["value"] == pytest.approx((0.7 - 0.41) / (1 - 0.41))
    assert m["kappa"]["value"] == pytest.approx(cohen_kappa_score(a, b))
    for name in ("agreement", "kappa"):
        assert m[name]["low"] < m[name]["value"] < m[name]["high"]
    assert label_agreement(a, b, resamples=500) == m  # seeded
    assert math.isnan(label_agreement(["x", "x"], ["x", "x"], resamples=0)["kappa"]["value"])
    with pytest.raises(ValueError, match="equally long"):
        label_agreement(a, b[:3])
