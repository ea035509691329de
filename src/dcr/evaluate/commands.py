"""``dcr evaluate``: the evaluation suite from the command line, with a rich summary table."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from dcr.evaluate.config import EvaluateConfig
from dcr.evaluate.stage import evaluate
from dcr.evaluate.suite import METRICS_FILE
from dcr.io import read_json
from dcr.verbs import stage_command


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def metrics_table(summary: dict[str, Any]) -> Table:
    """One row per (benchmark, kind, split, metric), then one row per missing benchmark with its reason."""
    title = f"dcr evaluate: {summary.get('model')} (limit {summary.get('limit')}, seed {summary.get('seed')})"
    table = Table(title=title)
    for col in ("benchmark", "kind", "split", "metric", "value", "n", "judge"):
        table.add_column(col, justify="right" if col in ("value", "n") else "left")
    for name, entry in summary.get("benchmarks", {}).items():
        for m in entry.get("metrics", []):
            table.add_row(name, m["kind"], m["split"], m["metric"], _fmt(m["value"]), str(m["n"]), m.get("judge") or "")
        for note in entry.get("notes", []):
            table.add_row(name, entry.get("kind", ""), "", "note", "", "", note)
    for name, reason in summary.get("missing", {}).items():
        table.add_row(name, "MISSING", "", "", "", "", reason, style="yellow")
    return table


def print_metrics(out: Path) -> None:
    """The rich summary table of a finished ``dcr evaluate`` directory."""
    Console(width=160).print(metrics_table(read_json(out / METRICS_FILE)))


def register(app: typer.Typer) -> None:
    app.command("evaluate")(stage_command(
        EvaluateConfig, evaluate, section="evaluate", after=print_metrics,
        names={"benchmarks": ("--benchmarks", "--benchmark"), "tags": ("--tag",)},
        out_help="Output directory (generations/, judgements/, metrics.json, results.jsonl)."))
