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


def _seed_run(run: Path, seed: int, started: float, extra: list[dict] | None = None) -> None:
    """A run of one seed: the base model's evaluation (no seed, so the same id in every seed) and an align stage
    feeding that seed's STL evaluation."""
    for sid in ("evaluate-base", f"align-s{seed}", f"evaluate-s{seed}"):
        (run / "stages" / sid).mkdir(parents=True)
        write_json(run / "stages" / sid / "manifest.json", {"status": "done", "key": "k", "started": started})
    write_json(run / "plan.json", {"experiment": "synthetic", "models": ["m"], "methods": ["base", "stl"],
                                   "seeds": [seed], "benchmarks": ["xstest"], "nodes": [
        {"id": "evaluate-base", "stage": "evaluate", "dir": "stages/evaluate-base", "deps": [], "config": {},
         "uses": [{"method": "base", "seed": seed, "model": "m"}]},
        {"id": f"align-s{seed}", "stage": "align", "dir": f"stages/align-s{seed}", "deps": [], "config": {},
         "uses": [{"method": "stl", "seed": seed, "model": "m"}]},
        {"id": f"evaluate-s{seed}", "stage": "evaluate", "dir": f"stages/evaluate-s{seed}",
         "deps": [f"align-s{seed}"], "config": {}, "uses": [{"method": "stl", "seed": seed, "model": "m"}]},
        *(extra or [])]})


def test_merge_keeps_each_computation_of_one_stage_id(tmp_path: Path) -> None:
    """Seeds run on two hosts: the base evaluation's id is the same (its config has no seed, `dtype: auto`), its
    computation is not, and each seed's paired comparisons must read the evaluation its own run made."""
    from dcr.report.paired import evaluations

    a, b = tmp_path / "s0", tmp_path / "s1"
    _seed_run(a, 0, started=100.0)
    _seed_run(b, 1, started=200.0)
    plan = read_json(merge_runs([a, b], tmp_path / "m") / "plan.json")
    stages = evaluations(plan)
    assert stages[("base", 0)]["dir"] == str((a / "stages" / "evaluate-base").resolve())
    assert stages[("base", 1)]["dir"] == str((b / "stages" / "evaluate-base").resolve())
    assert stages[("base", 1)]["id"] == f"evaluate-base@{b}" and stages[("base", 1)]["uses"] == [
        {"method": "base", "seed": 1, "model": "m"}]
    assert stages[("stl", 1)]["deps"] == ["align-s1"]  # ids that did not collide keep their names and deps


def test_merge_counts_a_shared_computation_once(tmp_path: Path) -> None:
    """A copy of one computation (an archive, an evaluation shared between seeds) keeps its manifest's
    `started`: one node, whose uses are both seeds'; and a renamed stage's dependants follow it."""
    from dcr.report.paired import evaluations

    a, b = tmp_path / "s0", tmp_path / "s1"
    _seed_run(a, 0, started=100.0)
    dep = {"id": "evaluate-after", "stage": "evaluate", "dir": "stages/evaluate-after", "deps": ["evaluate-base"],
           "config": {}, "uses": []}
    _seed_run(b, 1, started=100.0, extra=[dep])
    plan = read_json(merge_runs([a, b], tmp_path / "m") / "plan.json")
    stages = evaluations(plan)
    assert stages[("base", 0)] is stages[("base", 1)]
    assert [n["id"] for n in plan["nodes"]].count("evaluate-base") == 1
    write_json(b / "stages" / "evaluate-base" / "manifest.json", {"status": "done", "key": "k", "started": 300.0})
    plan = read_json(merge_runs([a, b], tmp_path / "m2") / "plan.json")
    after = next(n for n in plan["nodes"] if n["id"] == "evaluate-after")
    assert after["deps"] == [f"evaluate-base@{b}"]
