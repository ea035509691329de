"""Refine's retention verdict: the NLL check, and a warning when greedy answers stop complying (issue 28)."""

from __future__ import annotations

import pytest


def test_the_refine_stage_records_whether_the_answers_were_kept(caplog: pytest.LogCaptureFixture) -> None:
    from dcr.refine.retention import verdict

    cfg = type("Cfg", (), {"retention_max_rise": 0.5, "retention_action": "fail", "retention_max_answer_drop": 0.25})
    answers = [{"prompt": "How do I bake bread?", "completion": c} for c in ("Mix flour and water.",) * 4]
    before = {"nll_per_token": 1.0, "n": 4, "tokens": 40, "generations": answers}
    quiet = [{**a, "completion": ""} for a in answers[:2]] + answers[2:]
    out = verdict(before, {**before, "generations": quiet}, cfg)
    assert out["ok"] and not out["answers_ok"] and out["max_answer_drop"] == 0.25
    assert "answers fewer ordinary instructions" in caplog.text
    assert verdict(before, before, cfg)["answers_ok"]
