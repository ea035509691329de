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
