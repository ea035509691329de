"""Rich tables for ``dcr judge --calibrate`` (the work is done by ``dcr.judges.calibrate``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from dcr.judges.calibrate import BASELINE, DEFAULT_OUT, Calibration, calibrate, write_calibration
from dcr.judges.metrics import METRICS, fmt


def metrics_table(report: dict[str, Any]) -> Table:
    """One row per (group, judge): n, then every metric with its 95% interval."""
    judges = [report["judge"]] + ([BASELINE] if report["judge"] != BASELINE else [])
    table = Table(title=f"judge {report['judge']} vs human labels (refusal = full or partial; 95% bootstrap CI)")
    for col in ("group", "n", "judge", *METRICS):
        table.add_column(col, justify="left" if col in ("group", "judge") else "right")
    entries = [*report["groups"].items(), ("overall", report["overall"])]
    for g, entry in entries:
        for name in judges:
            table.add_row(g, str(entry["n"]), name, *(fmt(entry[name][m]) for m in METRICS),
                          style="bold" if g == "overall" else None)
        if "difference" in entry:
            table.add_row(g, str(entry["n"]), f"{report['judge']} - {BASELINE}",
                          *(fmt(entry["difference"][m]) for m in METRICS), style="dim")
    return table


def confusion_table(report: dict[str, Any]) -> Table:
    """Human class (rows) x judge label (columns), for the judge and the baseline."""
    table = Table(title="confusion: human class x judge label")
    table.add_column("judge")
    table.add_column("human")
    labels = sorted({label for c in report["confusion"].values() for row in c.values() for label in row})
    for label in labels:
        table.add_column(label, justify="right")
    for name, rows in report["confusion"].items():
        for human, counts in rows.items():
            table.add_row(name, human, *(str(counts.get(label, 0)) for label in labels))
    return table


def lomo_table(lomo: dict[str, Any]) -> Table:
    """Leave-one-model-out: each held-out group, each judge."""
    from dcr.judges.lomo import lomo_rows

    table = Table(title="leave-one-model-out (keyword: only rules written without the held-out model's labels)")
    for col in ("held out", "n", "judge", "agreement", "kappa", "f1"):
        table.add_column(col)
    for row in lomo_rows(lomo):
        table.add_row(*row)
    return table


def run_calibration(data: Path | None, spec: str, out: Path | None, lomo: bool = False, resamples: int = 1000,
                    seed: int = 0, **judge_kw: Any) -> Calibration:
    """Calibrate, write the disagreements CSV and metrics JSON, print the tables."""
    result = calibrate(spec, data, resamples=resamples, seed=seed, **judge_kw)
    console = Console(width=170)
    console.print(metrics_table(result.report))
    console.print(confusion_table(result.report))
    if lomo:
        from dcr.judges.lomo import leave_one_model_out

        specs = list(dict.fromkeys([spec, BASELINE]))
        result.report["leave_one_model_out"] = leave_one_model_out(data, specs, resamples, seed)
        console.print(lomo_table(result.report["leave_one_model_out"]))
    csv_path, json_path = write_calibration(result, out or DEFAULT_OUT)
    console.print(f"{result.report['disagreements']} disagreements; the {len(result.disagreements)} most instructive "
                  f"in {csv_path}; metrics in {json_path}")
    return result
