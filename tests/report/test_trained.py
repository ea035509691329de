"""What refinement trained on, read back for the report: families move columns out of the never-trained pool."""

from __future__ import annotations

from pathlib import Path

from dcr.io import write_json
from dcr.report.paired import is_never_trained
from dcr.report.tables import table1
from dcr.report.trained import note, trained


def _run(tmp_path: Path, splits: list[dict]) -> dict:
    nodes = []
    for i, split in enumerate(splits):
        d = tmp_path / "stages" / f"refine-{i}"
        d.mkdir(parents=True)
        write_json(d / "split.json", split)
        nodes.append({"stage": "refine", "dir": f"stages/refine-{i}", "status": "done"})
    nodes.append({"stage": "refine", "dir": "stages/refine-missing", "status": "failed"})
    return {"nodes": nodes}


def test_the_papers_sources_style_xstest_unsafe_and_overlap_is_noted(tmp_path: Path) -> None:
    plan = _run(tmp_path, [{"toxic_ids": []}, {"families": ["hh-rlhf", "xstest"],
                                               "evaluation_overlap": {"hh-1": ["harmfulq"], "hh-2": ["harmfulq"]}}])
    t = trained(tmp_path, plan)
    assert t.families == {"hh-rlhf", "xstest"} and t.benchmarks == frozenset({"xstest-unsafe", "hh-rlhf"})
    assert t.overlap == {"harmfulq": 2}
    text = note(t)
    assert text is not None and "harmfulq 2" in text and "the paper's sources" in text
    assert "columns of xstest-unsafe hold" in text
    assert note(trained(tmp_path, {"nodes": []})) is None


def test_a_coconot_source_moves_coconot_out_of_the_never_trained_pool(tmp_path: Path) -> None:
    plan = _run(tmp_path, [{"families": ["coconot", "xstest"],
                            "sources": {"coconot-pref": {}, "coconot-original": {}, "xstest-safe": {}}}])
    t = trained(tmp_path, plan)
    assert t.benchmarks == frozenset({"coconot", "xstest-unsafe"})
    assert "the sources coconot-original, coconot-pref, xstest-safe" in (note(t) or "")
    assert is_never_trained("coconot safe") and not is_never_trained("coconot safe", t.benchmarks)
    assert is_never_trained("oktest safe", t.benchmarks)
    rows = [{"model": "m", "method": "stl", "seed": 0, "benchmark": "coconot", "kind": "over-refusal",
             "split": "all", "metric": "compliance_rate", "value": 0.5, "n": 10, "judge": "keyword"}]
    header = table1(rows, True, t.benchmarks, note(t))[0].header
    assert [h for h in header if "in-dist. style" in h] == [h for h in header if "CoCoNot" in h] != []
    plain = table1(rows, True)[0].header
    assert not any("in-dist. style" in h for h in plain)
