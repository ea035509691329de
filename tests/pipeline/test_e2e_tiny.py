"""End to end with the real stages on a tiny random model: dcr run, then a rerun that skips every stage."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from dcr.cli import app
from dcr.io import read_json, read_jsonl

pytestmark = pytest.mark.integration

EXPERIMENT = """
name: tiny-e2e
models: [{model}]
methods: [base, dcr+stl, surgical]
benchmarks: [xstest-safe, harmfulq]
dtype: fp32
device: cpu
sizes: {{refine_limit: 8, refine_epochs: 1, align_general: 8, align_safety: 8, align_epochs: 1,
         teacher_max_new_tokens: 4, steer_prompts: 4, eval_limit: 6, max_new_tokens: 4}}
refine: {{batch_size: 8, eval_batch_size: 8, max_length: 64}}
align: {{micro_batch: 4, grad_accum: 2, max_length: 64, track_every: 0}}
steer: {{max_length: 64}}
"""


def test_run_report_and_rerun(tmp_path: Path, tiny_dir: Path, data_dir: Path) -> None:
    exp = tmp_path / "exp.yaml"
    exp.write_text(EXPERIMENT.format(model=tiny_dir))
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", str(exp), "--out", str(run)])
    assert result.exit_code == 0, result.output
    plan = read_json(run / "plan.json")
    assert [n["stage"] for n in plan["nodes"]] == ["refine", "align", "align", "steer", *["evaluate"] * 3]
    assert all(n["status"] == "done" for n in plan["nodes"])
    for node in plan["nodes"]:
        manifest = read_json(run / node["dir"] / "manifest.json")
        assert manifest["status"] == "done"
        # every data file the stage read was read (and checked row by row) before its weights loaded
        assert manifest["data_files_unchecked"] == [] and manifest["data_files_checked"] > 0, node["dir"]
        assert (run / node["dir"] / "stage.log").exists()
    rows = read_jsonl(run / "results.jsonl")
    methods = {r["method"] for r in rows if r["metric"] == "compliance_rate" and r["split"] == "held-out"}
    assert methods == {"base", "dcr+stl", "surgical"}
    md = (run / "report.md").read_text()
    assert "DCR + STL (ours)" in md and "Surgical" in md and "XSTest held-out" in md
    assert "No align stage wrote a tracking.csv" in md  # tracking is off here (slow); figures: tests/report
    assert "stage 4/7: steer surgical (" in (run / "run.log").read_text()

    start = time.time()
    again = CliRunner().invoke(app, ["run", str(exp), "--out", str(run)])
    assert again.exit_code == 0, again.output
    assert again.output.count("skipped (finished, key") == 7
    assert time.time() - start < 60
    assert read_jsonl(run / "results.jsonl") == rows


def test_a_childs_error_is_raised_in_the_parent(tmp_path: Path, tiny_dir: Path, data_dir: Path) -> None:
    from dcr.errors import DcrError
    from dcr.pipeline.child import config_json, run_in_child
    from dcr.refine import RefineConfig

    cfg = RefineConfig(model=str(tiny_dir), data_dir=str(data_dir), layer=999, limit=4)
    assert RefineConfig(**config_json(cfg)) == cfg
    with pytest.raises(DcrError, match="layer 999 out of range"):
        run_in_child("refine", cfg, tmp_path / "out", force=False)


def test_stage_and_evaluate_processes_give_the_in_process_ids_and_records(
        tmp_path: Path, tiny_dir: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch,
        one_torch_thread: None) -> None:
    """``stage_processes: true`` runs every stage in ``python -m dcr.pipeline.child``, and ``evaluate_processes: 2``
    each evaluate stage as 2 gloo processes under torchrun. At one thread per process (fp32; greedy text is exact
    only at the same threads per process) the stage ids and result records equal the in-process run's, and each
    manifest records how many processes ran the stage."""
    small = EXPERIMENT.format(model=tiny_dir).replace("methods: [base, dcr+stl, surgical]", "methods: [base, stl]")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # what the one-process children inherit
    plans, records = {}, {}
    for name, extra in (("inproc", ""), ("child", "stage_processes: true\nevaluate_processes: 2\n")):
        exp = tmp_path / f"{name}.yaml"
        exp.write_text(small + extra)
        result = CliRunner().invoke(app, ["run", str(exp), "--out", str(tmp_path / name), "--no-report"])
        assert result.exit_code == 0, result.output
        plans[name] = read_json(tmp_path / name / "plan.json")["nodes"]
        records[name] = [{k: v for k, v in r.items() if k not in ("time", "model_path")}
                         for r in read_jsonl(tmp_path / name / "results.jsonl")]
    assert [n["id"] for n in plans["child"]] == [n["id"] for n in plans["inproc"]]
    assert records["child"] == records["inproc"] and records["child"]
    for name, evaluate_procs in (("inproc", 1), ("child", 2)):
        for node in plans[name]:
            host = read_json(tmp_path / name / node["dir"] / "manifest.json")["host"]
            want = evaluate_procs if node["stage"] == "evaluate" else 1
            assert (host["processes"], host["torch_threads"]) == (want, 1), (name, node["dir"])


def test_a_ranks_error_is_raised_in_the_parent(tmp_path: Path, tiny_dir: Path, data_dir: Path) -> None:
    from dcr.errors import DcrError
    from dcr.evaluate import EvaluateConfig
    from dcr.pipeline.child import run_in_child

    cfg = EvaluateConfig(model=str(tmp_path / "no-model"), data_dir=str(data_dir), benchmarks=["harmfulq"], limit=2)
    with pytest.raises(DcrError, match="no-model"):
        run_in_child("evaluate", cfg, tmp_path / "out", force=False, processes=2)


def test_child_command_shares_the_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dcr.pipeline.child import child_command

    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    cmd, env = child_command(tmp_path / "job.json", 2)
    assert cmd[1:7] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m"]
    assert cmd[0] == sys.executable and env["OMP_NUM_THREADS"] == "2"
    assert child_command(tmp_path / "job.json", 8)[1]["OMP_NUM_THREADS"] == "1"
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    one, env1 = child_command(tmp_path / "job.json", 1)
    assert one == [sys.executable, "-m", "dcr.pipeline.child", str(tmp_path / "job.json")]
    assert env1["OMP_NUM_THREADS"] == "4"
