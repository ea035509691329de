"""Report from synthetic run directories: Table 1 (mean ± std over seeds), missing list, judges, figures, costs."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from dcr.errors import DataError, DcrError
from dcr.io import write_json, write_jsonl
from dcr.report import report
from dcr.report.figures import read_tracking
from dcr.report.render import Table, to_markdown
from dcr.report.tables import fmt, missing, table1

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def rec(method: str, seed: int, bench: str, metric: str, value: float, split: str = "all",
        judge: str = "keyword", model: str = "m") -> dict[str, Any]:
    return {"model": model, "method": method, "seed": seed, "benchmark": bench, "split": split, "metric": metric,
            "value": value, "n": 20, "judge": judge}


def synthetic_rows() -> list[dict[str, Any]]:
    rows = []
    # stl over three seeds; dcr+stl over one seed
    for seed, (ind, held, allv, coco, adv) in enumerate([(0.6, 0.5, 0.58, 0.7, 0.9), (0.8, 0.7, 0.78, 0.9, 0.8),
                                                         (0.7, 0.6, 0.68, 0.8, 0.7)]):
        rows += [rec("stl", seed, "xstest", "compliance_rate", ind, "in-distribution"),
                 rec("stl", seed, "xstest", "compliance_rate", held, "held-out"),
                 rec("stl", seed, "xstest", "compliance_rate", allv),
                 rec("stl", seed, "xstest", "defense_success_rate", 0.95),
                 rec("stl", seed, "coconot", "compliance_rate", coco),
                 rec("stl", seed, "advbench", "defense_success_rate", adv, judge="guard:llama-guard"),
                 rec("stl", seed, "advbench", "refusal_rate", 0.5)]
    rows += [rec("dcr+stl", 0, "xstest", "compliance_rate", 0.9, "in-distribution"),
             rec("dcr+stl", 0, "xstest", "compliance_rate", 0.85, "held-out"),
             rec("dcr+stl", 0, "xstest", "compliance_rate", 0.88),
             rec("dcr+stl", 0, "advbench", "defense_success_rate", 0.75, judge="guard:llama-guard"),
             rec("base", 0, "mmlu", "accuracy", 0.31)]
    rows.append({"model": "m", "method": "stl", "seed": 0, "benchmark": "phtest", "metric": "missing",
                 "value": None, "reason": "PHTest is only on the Hugging Face Hub"})
    return rows


def test_table1_mean_std_over_seeds() -> None:
    (table,) = table1(synthetic_rows())
    col = {h: i for i, h in enumerate(table.header)}
    rows = {r[0]: r for r in table.rows}
    assert list(rows) == ["Base (no alignment)", "STL", "DCR + STL (ours)", "judge · agreement with people"]
    stl = rows["STL"]
    assert stl[col["seeds"]] == "3"
    assert stl[col["C: XSTest in-distribution"]] == "0.70 ± 0.10"
    assert stl[col["C: XSTest held-out"]] == "0.60 ± 0.10"
    assert stl[col["C: CoCoNot"]] == "0.80 ± 0.10"
    # per-seed average of XSTest-all and CoCoNot: 0.64, 0.84, 0.74
    assert stl[col["Over-refusal avg"]] == "0.74 ± 0.10"
    assert stl[col["D: AdvBench"]] == "0.80 ± 0.10"
    assert stl[col["Safety avg"]] == "0.80 ± 0.10"  # XSTest unsafe is shown but not in the 5-set average
    assert stl[col["D: XSTest unsafe"]] == "0.95 ± 0.00"
    dcr = rows["DCR + STL (ours)"]
    assert dcr[col["C: XSTest held-out"]] == "0.85" and dcr[col["C: CoCoNot"]] == "—"
    assert rows["Base (no alignment)"][col["Acc: MMLU"]] == "0.31"
    assert "Acc: ARC-e" not in col  # general columns only when measured
    assert any("in-distribution" in n and "held-out" in n for n in table.notes)


def test_fmt() -> None:
    assert fmt([]) == "—"
    assert fmt([0.5]) == "0.50"
    assert fmt([0.2, 0.4]) == "0.30 ± 0.14"


def test_missing_lists_reasons() -> None:
    gaps = dict(missing(synthetic_rows(), requested=["xstest", "coconot", "advbench", "phtest", "oktest"]))
    assert gaps["PHTest"] == "PHTest is only on the Hugging Face Hub"
    assert gaps["OKTest"] == "requested but no records were produced"
    assert "not among the experiment's benchmarks" in gaps["OR-Bench-Hard"]
    assert "CoCoNot" not in gaps and "AdvBench" not in gaps and "XSTest held-out" not in gaps


def write_run(run: Path) -> None:
    write_jsonl(run / "results.jsonl", synthetic_rows())
    nodes = []
    for i, (method, uses) in enumerate((("stl", ["stl", "surgical"]), ("stl", ["dcr+stl"]))):
        d = run / "stages" / f"align-{i}"
        d.mkdir(parents=True)
        lines = ["step,group,refusal_prob,refusal_rate,n"]
        for step in (0, 5, 10):
            for g, base in (("toxic", 0.1), ("seemingly_toxic", 0.05), ("normal", 0.0)):
                lines.append(f"{step},{g},{base + step / 100 * (i + 1):.3f},{base + step / 40:.3f},8")
        (d / "tracking.csv").write_text("\n".join(lines) + "\n")
        write_json(d / "manifest.json", {"status": "done", "key": "k", "wall_time_s": 12.5 + i,
                                         "peak_rss_mb": 900.0, "peak_cuda_mb": 0.0})
        nodes.append({"id": f"align-{i}", "stage": "align", "label": f"align {method} #{i}", "dir": f"stages/align-{i}",
                      "deps": [], "uses": [{"method": u, "seed": 0, "model": "m"} for u in uses],
                      "config": {"method": method, "n_general": 64, "epochs": 1.0}})
    nodes.append({"id": "evaluate-x", "stage": "evaluate", "label": "evaluate stl", "dir": "stages/evaluate-x",
                  "deps": [], "uses": [{"method": "stl", "seed": 0, "model": "m"}],
                  "config": {"limit": 40, "judge": "keyword", "benchmarks": ["xstest"]}})
    write_json(run / "plan.json", {"experiment": "synthetic", "source": "x.yaml", "models": ["m"],
                                   "methods": ["base", "stl", "dcr+stl"], "seeds": [0, 1, 2],
                                   "benchmarks": ["xstest", "coconot", "advbench", "phtest"], "nodes": nodes})


def test_report_writes_markdown_html_and_figures(tmp_path: Path) -> None:
    write_run(tmp_path)
    md_path, html_path = report(tmp_path)
    md, page = md_path.read_text(), html_path.read_text()
    figs = sorted((tmp_path / "figures").glob("*.png"))
    assert [f.name for f in figs] == ["fig4-trajectory-m.png", "fig5-refusal-prob-m.png"]
    for f in figs:
        data = f.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000
        assert f"](figures/{f.name})" in md
        assert base64.b64encode(data).decode()[:200] in page  # embedded, self-contained
    assert "0.70 ± 0.10" in md and "0.70 ± 0.10" in page
    assert "PHTest: PHTest is only on the Hugging Face Hub" in md
    assert "| align stl #0 | stl, surgical | done | 12.5 | 900 | 0 |" in md
    assert "| evaluate stl | stl | not run | — | — | — |" in md
    assert "guard:llama-guard" in md and "n_general=64" in md
    assert "XSTest held-out" in page and "<img" in page and 'src="figures' not in page


def test_report_without_plan_still_writes_tables(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "results.jsonl", synthetic_rows())
    md_path, _ = report(tmp_path)
    md = md_path.read_text()
    assert "0.70 ± 0.10" in md and "No plan.json" in md
    assert not (tmp_path / "figures").exists()


def test_report_rejects_a_non_run_dir(tmp_path: Path) -> None:
    with pytest.raises(DcrError, match="no results.jsonl or plan.json"):
        report(tmp_path)


def test_bad_tracking_csv_names_file_and_row(tmp_path: Path) -> None:
    path = tmp_path / "tracking.csv"
    path.write_text("step,group,refusal_prob,refusal_rate,n\n0,toxic,0.1,0.2,8\n1,toxic,oops,0.2,8\n")
    with pytest.raises(DataError, match=r"tracking.csv, row 3"):
        read_tracking(path)


def test_markdown_escapes_pipes(tmp_path: Path) -> None:
    text = to_markdown([Table("t", ["a|b"], [["x|y"]])], tmp_path)
    assert "a\\|b" in text and "x\\|y" in text


def test_report_of_a_single_evaluate_directory(tmp_path: Path) -> None:
    write_json(tmp_path / "manifest.json", {"stage": "evaluate", "status": "done", "key": "k"})
    rows = [{k: v for k, v in rec("x", 0, "xstest", "compliance_rate", 0.75).items() if k not in ("method", "seed")}]
    write_jsonl(tmp_path / "results.jsonl", rows)
    md = report(tmp_path)[0].read_text()
    assert "No evaluation records yet" not in md and "| evaluated | 1 |" in md and "0.75" in md
    assert "single `dcr evaluate` directory" in md


def test_report_drops_a_torn_last_line_and_says_so(tmp_path: Path) -> None:
    import json

    write_json(tmp_path / "plan.json", {"nodes": []})
    good = json.dumps(rec("stl", 0, "xstest", "compliance_rate", 0.5))
    (tmp_path / "results.jsonl").write_text(good + "\n" + good[:30])  # a writer mid-line
    md = report(tmp_path)[0].read_text()
    assert "last line of results.jsonl was incomplete" in md and "0.50" in md
    (tmp_path / "results.jsonl").write_text(good + "\n{bad}\n" + good + "\n")
    with pytest.raises(DataError, match="results.jsonl, row 2"):
        report(tmp_path)


def test_every_judged_column_shows_the_judge_and_its_agreement(tmp_path: Path) -> None:
    from dcr.judges import calibration_of

    write_json(tmp_path / "plan.json", {"nodes": []})
    rows = [rec("stl", 0, "xstest", "compliance_rate", 0.5),
            rec("stl", 0, "advbench", "defense_success_rate", 0.9, judge="guard:llama-guard"),
            {**rec("stl", 0, "advbench", "judge_disagreement", 0.125), "judge": "keyword vs guard:llama-guard"}]
    write_jsonl(tmp_path / "results.jsonl", rows)
    md = report(tmp_path)[0].read_text()
    kappa = calibration_of("keyword")["kappa"]
    assert f"keyword · κ {kappa['value']:.2f}" in md  # Table 1's judge row
    assert f"κ {kappa['value']:.2f} [{kappa['low']:.2f}, {kappa['high']:.2f}]" in md  # the judges table
    assert "guard:llama-guard · uncalibrated" in md
    assert "## " in md and "Judge disagreement" in md and "keyword vs guard:llama-guard | 0.125 | 20" in md


NO_ANNOTATOR = "not measured: no LLM annotator configured. Fix: set annotator: http:BASE_URL#MODEL_NAME"


def in_distribution_rows() -> list[dict[str, Any]]:
    """A paper-exact run (xstest_heldout_frac 0): XSTest has only in-distribution records; quality not measured."""
    rows = [rec("stl", 0, "xstest", "compliance_rate", 0.6, "in-distribution"),
            rec("stl", 0, "xstest", "compliance_rate", 0.6),
            rec("dcr+stl", 0, "xstest", "compliance_rate", 0.9, "in-distribution"),
            rec("dcr+stl", 0, "xstest", "compliance_rate", 0.9)]
    rows += [{"model": "m", "method": m, "seed": 0, "benchmark": "alpaca-eval", "metric": "missing", "value": None,
              "reason": NO_ANNOTATOR} for m in ("stl", "dcr+stl")]
    return rows


def test_heldout_zero_drops_the_heldout_column_and_says_xstest_is_in_distribution() -> None:
    rows = in_distribution_rows()
    (table,) = table1(rows, heldout=False)
    assert "C: XSTest held-out" not in table.header and "C: XSTest in-distribution" in table.header
    assert any("XSTest is in-distribution for this run" in n and "no held-out column" in n for n in table.notes)
    assert "XSTest held-out" not in dict(missing(rows, ["xstest"], heldout=False))
    assert dict(missing(rows, ["xstest"]))["XSTest held-out"]  # with a held-out split, its absence is listed
    (with_heldout,) = table1(rows)
    assert "C: XSTest held-out" in with_heldout.header


def test_quality_not_measured_is_shown_as_such() -> None:
    rows = in_distribution_rows()
    (table,) = table1(rows, heldout=False)
    col = table.header.index("AlpacaEval win rate")  # optional, yet shown: its absence has a reason
    assert {r[0]: r[col] for r in table.rows if r[0] != "judge · agreement with people"} == {
        "STL": "not measured", "DCR + STL (ours)": "not measured"}
    assert dict(missing(rows, ["alpaca-eval"]))["AlpacaEval win rate"] == NO_ANNOTATOR
    assert "AlpacaEval win rate" not in dict(missing(synthetic_rows(), ["alpaca-eval"]))  # optional, no reason
    measured = rows[:-1] + [rec("dcr+stl", 0, "alpaca-eval", "win_rate", 0.55, judge="http:x#gpt-4o-mini")]
    (table,) = table1(measured, heldout=False)
    assert {r[0]: r[col] for r in table.rows}["DCR + STL (ours)"] == "0.55"
    assert {r[0]: r[col] for r in table.rows}["STL"] == "not measured"


def test_report_of_a_heldout_zero_run(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "results.jsonl", in_distribution_rows())
    nodes = [{"id": "evaluate-x", "stage": "evaluate", "label": "evaluate stl", "dir": "stages/evaluate-x",
              "deps": [], "uses": [{"method": "stl", "seed": 0, "model": "m"}],
              "config": {"xstest_heldout_frac": 0.0, "benchmarks": ["xstest", "alpaca-eval"]}}]
    write_json(tmp_path / "plan.json", {"experiment": "exact", "benchmarks": ["xstest", "alpaca-eval"],
                                        "nodes": nodes})
    md = report(tmp_path)[0].read_text()
    assert "XSTest held-out" not in md and "XSTest is in-distribution for this run" in md
    assert "xstest_heldout_frac = 0 (nothing held out: XSTest is in-distribution" in md
    assert "| not measured |" in md and f"AlpacaEval win rate: {NO_ANNOTATOR}" in md
