"""The report warns when ``dtype: auto`` stages of one run resolved to different dtypes (machines with and without
bf16 matmul), and stays quiet otherwise."""

from __future__ import annotations

from pathlib import Path

from dcr.io import write_json
from dcr.report.build import build
from dcr.report.hosts import UNRECORDED, auto_dtypes, dtype_summary, dtype_table, dtype_warnings
from dcr.report.render import to_markdown


def _stage(tmp_path: Path, name: str, auto: str | None, dtype: str = "auto", status: str = "done") -> dict:
    d = tmp_path / "stages" / name
    d.mkdir(parents=True)
    host = {"machine": "x86_64", "cpus": 2} | ({"auto_dtype": auto} if auto else {})
    write_json(d / "manifest.json", {"stage": name.split("-")[0], "status": status, "host": host})
    return {"stage": name.split("-")[0], "label": name, "dir": f"stages/{name}", "status": status,
            "config": {"dtype": dtype}}


def test_a_mix_of_resolved_dtypes_is_named(tmp_path: Path) -> None:
    plan = {"nodes": [_stage(tmp_path, "refine-a", "bfloat16"), _stage(tmp_path, "align-b", "float32"),
                      _stage(tmp_path, "evaluate-c", None),  # predates the record
                      _stage(tmp_path, "evaluate-d", "float32", dtype="fp32"),  # explicit dtype: not auto's business
                      _stage(tmp_path, "evaluate-e", "bfloat16", status="running")]}
    assert auto_dtypes(tmp_path, plan) == {"bfloat16": ["stages/refine-a"], "float32": ["stages/align-b"],
                                           UNRECORDED: ["stages/evaluate-c"]}
    text = to_markdown(dtype_warnings(tmp_path, plan), tmp_path)
    assert text.count("Warning") == 1 and "bfloat16: 1 (stages/refine-a)" in text and "float32: 1" in text


def test_one_dtype_gives_nothing_and_unrecorded_stages_beside_it_a_note(tmp_path: Path) -> None:
    same = {"nodes": [_stage(tmp_path, "refine-a", "bfloat16"), _stage(tmp_path, "align-b", "bfloat16")]}
    assert dtype_warnings(tmp_path, same) == []
    old = {"nodes": [_stage(tmp_path, "evaluate-c", None), _stage(tmp_path, "evaluate-d", None)]}
    assert dtype_warnings(tmp_path, old) == []  # archives from before the record: nothing to compare
    mixed = {"nodes": [*same["nodes"], *old["nodes"]]}
    text = to_markdown(dtype_warnings(tmp_path, mixed), tmp_path)
    assert "Warning" not in text and text.startswith("Note: some") and "bfloat16: 2" in text


def test_the_built_report_puts_the_warning_before_table_1(tmp_path: Path) -> None:
    write_json(tmp_path / "plan.json", {"experiment": "x", "nodes": [_stage(tmp_path, "refine-a", "bfloat16"),
                                                                     _stage(tmp_path, "align-b", "float32")]})
    (tmp_path / "results.jsonl").write_text("")
    text = to_markdown(build(tmp_path), tmp_path)
    assert "resolved to different dtypes" in text
    assert text.index("resolved to different dtypes") < text.index("Table 1 layout")


def test_dtype_summary_counts_each_resolution(tmp_path: Path) -> None:
    """The line the results readers print per archive (which seed ran in which precision)."""
    plan = {"nodes": [_stage(tmp_path, "refine-a", "bfloat16"), _stage(tmp_path, "align-b", "bfloat16"),
                      _stage(tmp_path, "evaluate-c", None), _stage(tmp_path, "evaluate-d", "float32", dtype="fp32")]}
    assert dtype_summary(tmp_path, plan) == f"bfloat16 (2); {UNRECORDED} (1)"
    assert dtype_summary(tmp_path, {"nodes": [plan["nodes"][3]]}) == "no dtype: auto stage"
    write_json(tmp_path / "plan.json", {"seeds": [1], **plan})
    assert dtype_table([tmp_path]).splitlines()[2] == f"| {tmp_path.name} | 1 | bfloat16 (2); {UNRECORDED} (1) |"
