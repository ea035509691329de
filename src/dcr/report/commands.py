"""``dcr report RUN_DIR``: write report.md and report.html from a run directory."""

from __future__ import annotations

from pathlib import Path

import typer

from dcr.report.build import report


def report_cmd(
    run_dir: Path = typer.Argument(..., help="A run directory written by `dcr run` (results.jsonl, plan.json)."),
) -> None:
    """Write RUN_DIR/report.md and RUN_DIR/report.html (tables, figures, costs) from a finished or partial run."""
    for path in report(run_dir):
        typer.echo(str(path))


def register(app: typer.Typer) -> None:
    app.command("report")(report_cmd)
