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
