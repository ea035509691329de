"""`dcr report A B --out M`: one report over several run directories (seeds run apart)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dcr.cli import app
from dcr.errors import DcrError
from dcr.io import read_json, write_json, write_jsonl
from dcr.report.merge import merge_runs

from .test_report import rec, write_run


def test_merge_two_runs_into_one_report(tmp_path: Path) -> None:
    a, b = tmp_path / "seed0", tmp_path / "seed1"
    write_run(a)
    b.mkdir()
    write_jsonl(b / "results.jsonl", [rec("stl", 3, "xstest", "compliance_rate", 0.9)])
    d = b / "stages" / "evaluate-y"
    d.mkdir(parents=True)
    write_json(d / "manifest.json", {"status": "done", "key": "k", "wall_time_s": 3.0, "peak_rss_mb": 100.0,
                                     "peak_cuda_mb": 0.0})
    write_json(b / "plan.json", {"experiment": "synthetic", "models": ["m"], "methods": ["stl"], "seeds": [3],
                                 "benchmarks": ["xstest"], "nodes": [
                                     {"id": "evaluate-y", "stage": "evaluate", "label": "evaluate stl seed 3",
                                      "dir": "stages/evaluate-y", "deps": [], "config": {},
                                      "uses": [{"method": "stl", "seed": 3, "model": "m"}]}]})
    out = tmp_path / "merged"
    result = CliRunner().invoke(app, ["report", str(a), str(b), "--out", str(out)])
    assert result.exit_code == 0, result.output
    plan = read_json(out / "plan.json")
    assert plan["seeds"] == [0, 1, 2, 3] and {n["id"] for n in plan["nodes"]} >= {"evaluate-x", "evaluate-y"}
    assert all(Path(n["dir"]).is_absolute() for n in plan["nodes"])
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert any(r["seed"] == 3 for r in rows) and any(r["seed"] == 0 for r in rows)
    md = (out / "report.md").read_text()
    assert "| evaluate stl seed 3 | stl | done | 3.0 |" in md  # the cost table reads the original stage dir
    assert not (a / "report.md").exists()  # the run directories are left as they were


def test_merge_needs_plans(tmp_path: Path) -> None:  # the missing --out case is in tests/test_bad_inputs.py
    with pytest.raises(DcrError, match="no plan.json"):
        merge_runs([tmp_path / "nothing"], tmp_path / "m")
