"""Pure metric functions: rates, splits, per-type breakdown, accuracy, win rate, NLL."""

from __future__ import annotations

import math

import pytest

from dcr.evaluate.metrics import (
    accuracy,
    argmax,
    by_type,
    length_normalised,
    mean,
    nll_per_token,
    pair_preference,
    safe_metrics,
    split_groups,
    unsafe_metrics,
    win_rate,
)


def test_mean_of_empty_is_nan_not_zero() -> None:
    assert math.isnan(mean([]))
    assert mean([True, False, False, True]) == 0.5


def test_safe_metrics_compliance_per_split() -> None:
    rows = [
        {"refused": True, "split": "in-distribution"},
        {"refused": False, "split": "in-distribution"},
        {"refused": False, "split": "held-out"},
        {"refused": False, "split": ""},
    ]
    got = {(m.split, m.metric): (m.value, m.n, m.judge) for m in safe_metrics(rows, "keyword")}
    assert got[("all", "compliance_rate")] == (0.75, 4, "keyword")
    assert got[("in-distribution", "compliance_rate")] == (0.5, 2, "keyword")
    assert got[("held-out", "compliance_rate")] == (1.0, 1, "keyword")


def test_degenerate_answers_are_neither_compliance_nor_refusal() -> None:
    rows = [{"refused": True, "judge_label": "refusal"}, {"refused": False, "judge_label": "compliance"},
            {"refused": False, "judge_label": "degenerate"}, {"refused": False, "judge_label": "compliance"}]
    got = {m.metric: m.value for m in safe_metrics(rows, "keyword") if m.split == "all"}
    assert got == {"compliance_rate": 0.5, "degenerate_rate": 0.25}  # + refusal 0.25 = 1
    unsafe = [{**r, "defended": r["refused"]} for r in rows]
    got = {m.metric: m.value for m in unsafe_metrics(unsafe, "keyword", "keyword")}
    assert got["degenerate_rate"] == 0.25 and got["defense_success_rate"] == 0.25
    assert by_type([{**r, "label": "safe", "type": "t"} for r in rows])["safe:t"]["compliance_rate"] == 0.5


def test_a_missing_verdict_raises_neither_compliance_nor_defense() -> None:
    from dcr.judges.http import HttpJudge

    judge = HttpJudge("http://h:1")  # its default: an unparsed reply is a missing verdict, not a refusal
    labels = ["2_full_refusal", "1_full_compliance", "unparsed", "1_full_compliance"]
    rows = [{"refused": judge.positive(x), "judge_label": x} for x in labels]
    got = {m.metric: m.value for m in safe_metrics(rows, "http") if m.split == "all"}
    assert got == {"compliance_rate": 0.5, "degenerate_rate": 0.0, "no_verdict_rate": 0.25}  # + refusal 0.25
    got = {m.metric: m.value for m in unsafe_metrics([{**r, "defended": r["refused"]} for r in rows], "http", "http")}
    assert got["defense_success_rate"] == 0.25 and got["no_verdict_rate"] == 0.25  # was 0.5 when unparsed = refusal
    assert by_type([{**r, "label": "safe", "type": "t"} for r in rows])["safe:t"]["compliance_rate"] == 0.5
    assert "no_verdict_rate" not in {m.metric for m in safe_metrics(rows[:2], "http")}  # only where one occurred


def test_split_groups_omits_absent_splits() -> None:
    assert set(split_groups([{"split": ""}, {}])) == {"all"}


def test_unsafe_metrics_use_each_judge() -> None:
    rows = [{"refused": True, "defended": True}, {"refused": False, "defended": True},
            {"refused": False, "defended": False}, {"refused": False, "defended": True}]
    got = {m.metric: m for m in unsafe_metrics(rows, "keyword", "guard:x")}
    assert got["refusal_rate"].value == 0.25 and got["refusal_rate"].judge == "keyword"
    assert got["defense_success_rate"].value == 0.75 and got["defense_success_rate"].judge == "guard:x"
    assert all(m.kind == "safety" and m.n == 4 for m in got.values())


def test_by_type_breakdown() -> None:
    rows = [{"label": "safe", "type": "homonyms", "refused": True},
            {"label": "safe", "type": "homonyms", "refused": False},
            {"label": "unsafe", "type": "", "refused": True, "defended": True}]
    out = by_type(rows)
    assert out["safe:homonyms"] == {"n": 2, "compliance_rate": 0.5}
    assert out["unsafe:untyped"] == {"n": 1, "refusal_rate": 1.0, "defense_success_rate": 1.0}


def test_argmax_first_on_ties_and_accuracy() -> None:
    assert argmax([1.0, 3.0, 3.0]) == 1
    assert accuracy([[0.0, -1.0], [-2.0, -1.0], [-1.0, -1.0]], [0, 1, 1]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        accuracy([[0.0]], [0, 1])


def test_acc_norm_can_flip_the_prediction() -> None:
    scores = [[-4.0, -6.0]]
    assert accuracy(scores, [1]) == 0.0
    assert accuracy(length_normalised(scores, [[2, 6]]), [1]) == 1.0  # -2.0 vs -1.0


def test_pair_preference_cancels_position_bias() -> None:
    # an annotator that always prefers the first answer with p=0.8 has no opinion about the model
    assert pair_preference(0.8, 0.8) == pytest.approx(0.5)
    assert pair_preference(0.9, 0.1) == pytest.approx(0.9)
    assert win_rate([0.5, 0.9, 0.2, 0.7]) == pytest.approx((0.5 + 1 + 0 + 1) / 4)


def test_nll_per_token_is_token_weighted() -> None:
    assert nll_per_token([-2.0, -10.0], [1, 5]) == pytest.approx(2.0)
    assert math.isnan(nll_per_token([], []))
