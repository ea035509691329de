"""`dcr report REF VARIANT ... --out DIR --ablation`: varied refine fields, separability, paired differences."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from dcr.cli import app
from dcr.data import load_benchmark
from dcr.errors import DcrError
from dcr.io import read_json, write_json
from dcr.report.ablation import ablation_report, axis, variants, varied_fields

from .test_paired import _stage

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _variant(run: Path, data_dir: Path, dcr_refused: int, probe_after: float, **refine: object) -> None:
    """One ablation run: a refine stage with metrics, and STL (3 of 6 refused) / DCR + STL evaluations."""
    ids = [r.id for r in load_benchmark("harmfulq", data_dir, 6, 0)]
    nodes = [_stage(run, "stl0", "stl", 0, data_dir, {i: k < 3 for k, i in enumerate(ids)}),
             _stage(run, "dcr0", "dcr+stl", 0, data_dir, {i: k < dcr_refused for k, i in enumerate(ids)})]
    cfg = {"model": "m", "seed": 0, "layer": None, "epochs": 3, "toxic_ratio": 2.0, "lora": False, **refine}
    write_json(run / "stages" / "refine-0" / "metrics.json", {"layer": cfg["layer"] or 15, "eval": {"hh": {
        "before": {"probe_accuracy": 0.76, "kmeans_accuracy": 0.63, "cross_class_cosine": 0.95},
        "after": {"probe_accuracy": probe_after, "kmeans_accuracy": 0.8, "cross_class_cosine": 0.4}}}})
    nodes.append({"id": "refine-0", "stage": "refine", "dir": "stages/refine-0", "config": cfg,
                  "uses": [{"method": "dcr+stl", "seed": 0, "model": "m"}]})
    write_json(run / "plan.json", {"experiment": "abl", "nodes": nodes})


def test_ablation_report_per_field(tmp_path: Path, data_dir: Path) -> None:
    ref, deep, short = tmp_path / "ref", tmp_path / "layer8", tmp_path / "epochs1"
    _variant(ref, data_dir, 2, 0.87)
    _variant(deep, data_dir, 4, 0.70, layer=8)
    _variant(short, data_dir, 3, 0.80, epochs=1)
    entries = variants([ref, deep, short])
    fields = varied_fields(entries)
    assert fields == ["epochs", "layer"]
    assert [e["run"] for e in axis(entries, fields, "layer")] == ["layer8", "ref"]  # epochs1 differs in epochs
    assert entries[0]["config"]["layer"] == 15  # None in the config: the middle block, as refine resolved it
    safety = [e["differences"]["safety defense success"] for e in entries]
    assert [round(d["mean"], 3) for d in safety] == [-0.167, 0.167, 0.0] and all(d["n"] == 6 for d in safety)
    assert entries[0]["separability"]["after"]["probe_accuracy"] == 0.87
    versus = [e["versus_reference"]["safety defense success"] for e in entries[1:]]  # DCR + STL against the ref's
    assert [round(d["mean"], 3) for d in versus] == [0.333, 0.167] and "versus_reference" not in entries[0]
    out = tmp_path / "ablations"
    result = CliRunner().invoke(app, ["report", str(ref), str(deep), str(short), "--out", str(out), "--ablation"])
    assert result.exit_code == 0, result.output
    md = (out / "report.md").read_text()
    assert "| ref (reference) | 3 | 15 | 0 | probe 0.76→0.87; kmeans 0.63→0.80; cross 0.95→0.40 |" in md
    assert "-0.167 [" in md and "(n 6)" in md
    assert "XSTest in-distribution compliance: DCR + STL minus the reference's" in md  # no XSTest here: —
    for name in ("ablation-layer.png", "ablation-epochs.png"):
        assert (out / "figures" / name).read_bytes().startswith(PNG_MAGIC) and f"](figures/{name})" in md
    assert read_json(out / "ablation.json")["fields"] == ["epochs", "layer"]


def test_ablation_needs_runs_with_refine(tmp_path: Path, data_dir: Path) -> None:
    ref = tmp_path / "ref"
    _variant(ref, data_dir, 2, 0.87)
    with pytest.raises(DcrError, match="at least two run directories"):
        ablation_report([ref], tmp_path / "out")
    plain = tmp_path / "plain"
    write_json(plain / "plan.json", {"nodes": []})
    with pytest.raises(DcrError, match="no refine stage"):
        ablation_report([ref, plain], tmp_path / "out")
    result = CliRunner().invoke(app, ["report", str(ref), "--ablation"])
    assert result.exit_code != 0 and "needs its own directory" in str(result.exception)


def test_ablation_refuses_a_variant_evaluated_otherwise(tmp_path: Path, data_dir: Path) -> None:
    """DCR + STL against the reference's pairs prompts only between evaluations with the same prompts and judge."""
    ref, other = tmp_path / "ref", tmp_path / "layer8"
    _variant(ref, data_dir, 2, 0.87)
    _variant(other, data_dir, 4, 0.70, layer=8)
    plan = read_json(other / "plan.json")
    for node in plan["nodes"]:
        if node["stage"] == "evaluate":
            node["config"]["max_new_tokens"] = 16  # the reference's evaluations leave it unset
    write_json(other / "plan.json", plan)
    with pytest.raises(DcrError, match=r"layer8 against .*ref, seed 0: evaluations differ in max_new_tokens .*Fix: "):
        variants([ref, other])
    result = CliRunner().invoke(app, ["report", str(ref), str(other), "--out", str(tmp_path / "o"), "--ablation"])
    assert isinstance(result.exception, DcrError) and not (tmp_path / "o").exists()  # `dcr` exits 2 on DcrError
