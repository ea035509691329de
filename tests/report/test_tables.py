"""Report tables read from stage manifests: the cost table."""

from __future__ import annotations

from pathlib import Path

import pytest

from dcr.io import write_json
from dcr.report.tables import cost_table


def test_cost_table_sums_the_attempts_of_a_resumed_stage(tmp_path: Path) -> None:
    nodes = []
    for name, manifest in {
        "once": {"status": "done", "wall_time_s": 12.0, "peak_rss_mb": 100.0, "peak_cuda_mb": 0.0},
        "resumed": {"status": "done", "wall_time_s": 578.3, "wall_time_total_s": 2407.6, "peak_rss_mb": 6073.0,
                    "peak_cuda_mb": 0.0, "attempts": [{"status": "running", "wall_time_s": 1829.3}]},
        "old": {"status": "done", "wall_time_s": 5.0},  # written before attempts were counted
        "sharded": {"status": "done", "wall_time_s": 9.0, "peak_rss_mb": 4412.0, "host": {"processes": 2}},
    }.items():
        (tmp_path / name).mkdir()
        write_json(tmp_path / name / "manifest.json", manifest)
        nodes.append({"label": name, "dir": name, "uses": [{"method": "stl"}]})
    nodes.append({"label": "never", "dir": "missing", "uses": []})
    rows = {r[0]: r for r in cost_table(tmp_path, {"nodes": nodes}).rows}
    assert rows["once"][3] == "12.0"
    assert rows["resumed"][3] == "2407.6 (2 attempts)" and rows["resumed"][4] == "6073"
    assert rows["old"][3] == "5.0"
    assert rows["sharded"][4] == "4412 (rank 0 of 2)" and rows["once"][4] == "100"  # one process: no note
    assert rows["never"][2:4] == ["not run", "—"]


def test_degenerate_table_shows_each_method_and_only_measured_columns() -> None:
    from dcr.report.tables import degenerate_table

    def rec(method: str, seed: int, bench: str, value: float, metric: str = "degenerate_rate") -> dict:
        return {"model": "m", "method": method, "seed": seed, "benchmark": bench, "split": "all", "metric": metric,
                "value": value, "n": 100}

    assert degenerate_table([rec("stl", 0, "oktest", 0.6, "compliance_rate")]) == []
    rows = [rec("stl", 0, "oktest", 0.0), rec("dcr", 0, "oktest", 0.4), rec("dcr", 1, "oktest", 0.2),
            rec("dcr", 0, "harmfulq", 0.5)]
    [table] = degenerate_table(rows)
    assert table.header == ["method", "seeds", "OKTest", "HarmfulQ"]
    body = {r[0]: r[1:] for r in table.rows}
    assert body["STL"] == ["1", "0.00", "—"]
    assert body["DCR alone (refined, before STL)"] == ["2", "0.30 ± 0.14", "0.50"]


def test_a_stand_in_model_gets_the_papers_rows_beside_its_own() -> None:
    from dcr.report.paper import paper_values, stand_in
    from dcr.report.tables import table1

    assert stand_in("qwen2.5-coder-1.5b")["paper_model"] == "Qwen2.5-1.5B"
    assert stand_in("/some/path/qwen2.5-coder-1.5b/") is not None and stand_in("smollm2-135m") is None
    dcr = paper_values("Qwen2.5-1.5B", "dcr+stl")  # Table 1: 0.98 0.98 0.83 0.86 0.86, safety 0.81, win 51.8
    assert dcr["over-refusal:XSTest in-distribution"] == 0.98 and dcr["safety:Safety avg"] == 0.81
    assert dcr["over-refusal:Over-refusal avg"] == pytest.approx((0.98 + 0.98 + 0.83 + 0.86 + 0.86) / 5)
    assert dcr["quality:AlpacaEval win rate"] == pytest.approx(0.518)

    def rec(model: str, method: str, bench: str, value: float) -> dict:
        return {"model": model, "method": method, "seed": 0, "benchmark": bench, "split": "all",
                "metric": "compliance_rate", "value": value, "n": 100, "judge": "keyword"}

    rows = [rec("qwen2.5-coder-1.5b", "stl", "oktest", 0.5), rec("qwen2.5-coder-1.5b", "dcr+stl", "oktest", 0.6),
            rec("smollm2-135m", "stl", "oktest", 0.7)]
    tables = {t.title: t for t in table1(rows)}
    qwen, smol = tables["Table 1 layout: qwen2.5-coder-1.5b"], tables["Table 1 layout: smollm2-135m"]
    ok = qwen.header.index("C: OKTest")
    paper = {r[0]: r for r in qwen.rows if r[0].startswith("paper:")}
    assert list(paper) == ["paper: STL (Qwen2.5-1.5B, Table 1)", "paper: DCR + STL (ours) (Qwen2.5-1.5B, Table 1)"]
    assert paper["paper: STL (Qwen2.5-1.5B, Table 1)"][ok] == "0.75"
    assert any("Qwen2.5-Coder-1.5B-Instruct" in n for n in qwen.notes)
    assert not any(r[0].startswith("paper:") for r in smol.rows)


def test_one_base_evaluation_used_by_every_seed_counts_once() -> None:
    """The base model is evaluated once and that stage is tagged with every seed; Table 1 must show one
    measurement (seeds 1, no ± 0.00), while STL's three evaluations stay three."""
    from dcr.report.tables import table1

    def rec(method: str, seed: int, value: float, stage: str) -> dict:
        return {"model": "m", "method": method, "seed": seed, "benchmark": "oktest", "split": "all",
                "kind": "over-refusal", "metric": "compliance_rate", "value": value, "n": 300, "stage": stage}

    rows = [rec("base", s, 0.8, "evaluate-base") for s in (0, 1, 2)]
    rows += [rec("stl", s, v, f"evaluate-stl{s}") for s, v in ((0, 0.5), (1, 0.6), (2, 0.7))]
    [table] = table1(rows)
    body = {r[0]: r for r in table.rows}
    base = next(r for name, r in body.items() if name.lower().startswith("base"))
    stl = next(r for name, r in body.items() if name.lower().startswith("stl"))
    assert base[1] == "1" and "0.80" in base and not any("±" in c for c in base)
    assert stl[1] == "3" and "0.60 ± 0.10" in stl
