"""The report warns, before any table, about refined models that failed the retention check (issue 28, item 2)."""

from __future__ import annotations

from pathlib import Path

from dcr.io import write_json
from dcr.report.build import build
from dcr.report.render import to_markdown
from dcr.report.retention import failed_retention, retention_warnings


def _refine(tmp_path: Path, name: str, ok: bool | None, status: str = "done", seed: int = 0) -> dict:
    d = tmp_path / "stages" / name
    d.mkdir(parents=True)
    retention = None if ok is None else {
        "nll_before": 1.906, "nll_after": 9.93 if not ok else 1.95, "nll_rise": 8.024 if not ok else 0.044,
        "max_rise": 0.5, "ok": ok, "n": 32, "action": "warn",
        "answers_before": {"compliance": 3, "degenerate": 5}, "answers_after": {"compliance": 8}}
    write_json(d / "metrics.json", {"retention": retention} if retention else {"separability": {}})
    return {"stage": "refine", "label": f"refine {name}", "dir": f"stages/{name}", "status": status,
            "config": {"model": "gemma3-270m"},
            "uses": [{"method": "dcr+stl", "seed": seed, "model": "gemma3-270m"},
                     {"method": "dcr", "seed": seed, "model": "gemma3-270m"}]}


def test_only_finished_refines_that_failed_retention_are_named(tmp_path: Path) -> None:
    plan = {"nodes": [_refine(tmp_path, "refine-bad", ok=False, seed=1),
                      _refine(tmp_path, "refine-good", ok=True),
                      _refine(tmp_path, "refine-old", ok=None),  # written before the check existed
                      _refine(tmp_path, "refine-running", ok=False, status="running"),
                      {"stage": "refine", "dir": "stages/refine-missing", "status": "done"},
                      {"stage": "evaluate", "dir": "stages/refine-bad", "status": "done"}]}
    failed = failed_retention(tmp_path, plan)
    assert [n["dir"] for n, _ in failed] == ["stages/refine-bad"]
    text = to_markdown(retention_warnings(tmp_path, plan), tmp_path)
    assert text.count("Warning") == 1
    assert "1.906 -> 9.930" in text and "+8.024 > retention_max_rise 0.5" in text
    assert "dcr (seed 1), dcr+stl (seed 1)" in text and "gemma3-270m" in text


def test_no_warning_when_every_refine_kept_its_language(tmp_path: Path) -> None:
    plan = {"nodes": [_refine(tmp_path, "refine-good", ok=True)]}
    assert retention_warnings(tmp_path, plan) == []


def test_the_built_report_puts_the_warning_before_table_1(tmp_path: Path) -> None:
    write_json(tmp_path / "plan.json", {"experiment": "x", "nodes": [_refine(tmp_path, "refine-bad", ok=False)]})
    (tmp_path / "results.jsonl").write_text("")
    text = to_markdown(build(tmp_path), tmp_path)
    assert "did not keep its language" in text
    assert text.index("did not keep its language") < text.index("Table 1 layout")


def _silenced(tmp_path: Path, name: str, after: dict[str, int], **extra: float) -> dict:
    node = _refine(tmp_path, name, ok=True)
    path = tmp_path / "stages" / name / "metrics.json"
    write_json(path, {"retention": {"nll_before": 1.357, "nll_after": 1.468, "nll_rise": 0.111, "max_rise": 0.5,
                                    "ok": True, "n": 32, "action": "fail",
                                    "answers_before": {"compliance": 7, "refusal": 1}, "answers_after": after,
                                    **extra}})
    return node


def test_a_refine_that_kept_its_nll_but_stopped_answering_is_named(tmp_path: Path) -> None:
    """Qwen 1.5B seed 0: NLL +0.111 (passes), greedy answers 7 -> 2 complying (3 empty, 3 refusals)."""
    plan = {"nodes": [_silenced(tmp_path, "refine-quiet", {"compliance": 2, "empty": 3, "refusal": 3}),
                      _silenced(tmp_path, "refine-fine", {"compliance": 6, "refusal": 2}),  # -1 of 8: 0.125
                      _silenced(tmp_path, "refine-strict", {"compliance": 6, "refusal": 2}, max_answer_drop=0.1)]}
    text = to_markdown(retention_warnings(tmp_path, plan), tmp_path)
    assert text.count("answers fewer ordinary instructions") == 2 and "did not keep its language" not in text
    assert "stages/refine-quiet" in text and "stages/refine-strict" in text and "refine-fine" not in text
    assert "7 complied before and 2 after" in text and "a drop of 0.62 > retention_max_answer_drop 0.25" in text

