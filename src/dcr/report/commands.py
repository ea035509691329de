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
    ablation: bool = typer.Option(False, "--ablation", help="Each run directory is one refine variant (the first "
                                                            "is the reference): an ablation report, not a merge."),
    rejudge: bool = typer.Option(False, "--rejudge", help="First judge each run's stored completions again under "
                                                          "today's judge rules (an archive made by `dcr archive`, "
                                                          "whose verdicts an older judge made), rewriting its "
                                                          "verdicts, metrics and results.jsonl (dcr.report.rejudge)."),
) -> None:
    """Write report.md and report.html (tables, figures, costs) from a finished or partial run, or from several
    runs merged (e.g. seeds run in separate directories), or an ablation report over refine variants."""
    if rejudge:
        from dcr.report.rejudge import rejudge_run

        for run in run_dirs:
            for stage, benches in rejudge_run(run.resolve()).items():
                typer.echo(f"re-judged {run / stage}: {', '.join(benches) or 'nothing to judge'}")
    if len(run_dirs) > 1 or out is not None or ablation:
        from dcr.errors import DcrError
        from dcr.report.merge import merge_runs

        if out is None or out.resolve() in {d.resolve() for d in run_dirs}:
            raise DcrError("a merged or ablation report needs its own directory. Fix: add --out DIR (not one of "
                           "the run directories)")
        if ablation:
            from dcr.report.ablation import ablation_report

            for path in ablation_report(run_dirs, out.resolve()):
                typer.echo(str(path))
            return
        target = merge_runs([d.resolve() for d in run_dirs], out.resolve())
    else:
        target = run_dirs[0]
    for path in report(target):
        typer.echo(str(path))


def archive_cmd(
    run_dir: Path = typer.Argument(..., help="A run directory (`dcr run`) or a merged report (`dcr report --out`)."),
    dest: Path = typer.Argument(..., help="Archive directory, e.g. results/<experiment>/ (no weights go there)."),
    force: bool = typer.Option(False, "--force", help="Replace DEST if it exists and is not empty."),
) -> None:
    """Copy what a report needs (plan, results, report, figures, and each stage's manifest, metrics, tracking
    and per-prompt judgements) and the completions behind them, gzipped, so the run can be reported, merged and
    re-judged later; no weights."""
    from dcr.report.archive import archive_run

    counts = archive_run(run_dir, dest, force)
    typer.echo(f"{dest}: {counts['files']} files from {counts['stages']} stage directories")


def register(app: typer.Typer) -> None:
    app.command("report")(report_cmd)
    app.command("archive")(archive_cmd)
