"""Report tables read from stage manifests: the cost table."""

from __future__ import annotations

from pathlib import Path

from dcr.io import write_json
from dcr.report.tables import cost_table


def test_cost_table_sums_the_attempts_of_a_resumed_stage(tmp_path: Path) -> None:
    nodes = []
    for name, manifest in {
        "once": {"status": "done", "wall_time_s": 12.0, "peak_rss_mb": 100.0, "peak_cuda_mb": 0.0},
        "resumed": {"status": "done", "wall_time_s": 578.3, "wall_time_total_s": 2407.6, "peak_rss_mb": 6073.0,
                    "peak_cuda_mb": 0.0, "attempts": [{"status": "running", "wall_time_s": 1829.3}]},
        "old": {"status": "done", "wall_time_s": 5.0},  # written before attempts were counted
    }.items():
        (tmp_path / name).mkdir()
        write_json(tmp_path / name / "manifest.json", manifest)
        nodes.append({"label": name, "dir": name, "uses": [{"method": "stl"}]})
    nodes.append({"label": "never", "dir": "missing", "uses": []})
    rows = {r[0]: r for r in cost_table(tmp_path, {"nodes": nodes}).rows}
    assert rows["once"][3] == "12.0"
    assert rows["resumed"][3] == "2407.6 (2 attempts)" and rows["resumed"][4] == "6073"
    assert rows["old"][3] == "5.0"
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
