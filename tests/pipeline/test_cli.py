"""`dcr run` from the command line with fake stages: progress lines, interruption, resume, report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import dcr.pipeline
from dcr.cli import app

EXP = """
name: cli
models: [m0]
methods: [base, stl, dcr+stl]
seeds: [0, 1]
benchmarks: [xstest, advbench, phtest]
"""


def test_run_interrupt_resume_and_report(fakes: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dcr.pipeline.run, "default_registry", fakes.registry)
    monkeypatch.setattr(dcr.pipeline.planner, "default_registry", fakes.registry)
    exp = tmp_path / "exp.yaml"
    exp.write_text(EXP)
    run = tmp_path / "run"
    fakes.fail_once.add("align:stl")
    first = CliRunner().invoke(app, ["run", str(exp), "--out", str(run)])
    assert first.exit_code == 130
    assert "interrupted" in first.output and "to resume" in first.output
    assert "stage 3/11: align stl (m0, seed 0) ... running" in first.output

    second = CliRunner().invoke(app, ["run", str(exp), "--out", str(run)])
    assert second.exit_code == 0, second.output
    assert "stage 1/11: refine (m0, seed 0) ... skipped (finished, key" in second.output
    assert "stage 3/11: align stl (m0, seed 0) ... done" in second.output
    assert "finished: 11 stages (9 run, 2 skipped)" in second.output
    md = (run / "report.md").read_text()
    assert "DCR + STL (ours)" in md and "PHTest: PHTest is only on the hub" in md
    assert "| STL | 2 |" in md  # two seeds per aligned method
    assert (run / "report.html").exists() and len(list((run / "figures").glob("*.png"))) == 2


def test_bad_experiment_exits_2(tmp_path: Path) -> None:
    exp = tmp_path / "exp.yaml"
    exp.write_text("models: [m0]\nmethods: [sft]\n")
    from dcr.cli import main

    with pytest.raises(SystemExit) as info:
        import sys

        sys.argv = ["dcr", "run", str(exp), "--out", str(tmp_path / "r"), "--dry-run"]
        main()
    assert info.value.code == 2
