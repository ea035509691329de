"""``dcr report RUN_DIR``: write report.md and report.html from a run directory."""

from __future__ import annotations

from pathlib import Path

import typer

from dcr.report.build import report


def report_cmd(
    run_dirs: list[Path] = typer.Argument(..., help="Run directories written by `dcr run` (results.jsonl, "
                                                    "plan.json); several are merged into one report (--out)."),
    out: Path | None = typer.Option(None, "--out", help="Where the merged report goes (needed with several "
                                                       "run directories)."),
) -> None:
    """Write report.md and report.html (tables, figures, costs) from a finished or partial run, or from several
    runs merged (e.g. seeds run in separate directories)."""
    if len(run_dirs) > 1 or out is not None:
        from dcr.errors import DcrError
        from dcr.report.merge import merge_runs

        if out is None or out.resolve() in {d.resolve() for d in run_dirs}:
            raise DcrError("a merged report needs its own directory. Fix: add --out DIR (not one of the run "
                           "directories)")

        target = merge_runs([d.resolve() for d in run_dirs], out.resolve())
    else:
        target = run_dirs[0]
    for path in report(target):
        typer.echo(str(path))


def register(app: typer.Typer) -> None:
    app.command("report")(report_cmd)
