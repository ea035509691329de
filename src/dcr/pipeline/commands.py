"""``dcr run EXP.yaml --out RUN_DIR``: one command for a whole experiment, with one progress display."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from dcr.pipeline import Node, load_experiment, plan, run_experiment, write_plan
from dcr.stage import read_manifest

STYLES = {"running": "cyan", "done": "green", "skipped": "dim", "failed": "red", "interrupted": "yellow",
          "incomplete": "yellow"}


class ConsoleProgress:
    """Prints ``stage 3/9: align stl (smollm2-135m, seed 0) ... done in 41.2s`` lines.

    Plain lines, not a live display: the stages show their own rich progress bars, and rich allows only one
    live display at a time.
    """

    def __init__(self, console: Console) -> None:
        self.console = console

    def __call__(self, i: int, n: int, node: Node, status: str, seconds: float) -> None:
        style = STYLES.get(status, "")
        head = f"stage {i}/{n}: {node.label}"
        if status == "running":
            self.console.print(f"[bold]{head}[/bold] ... [{style}]running[/{style}]  [dim]stages/{node.dir.name}[/dim]")
        elif status == "skipped":
            key = (read_manifest(node.dir) or {}).get("key")
            self.console.print(f"{head} ... [{style}]skipped (finished, key {key})[/{style}]")
        else:
            self.console.print(f"{head} ... [{style}]{status}[/{style}] in {seconds:.1f}s")


def run_cmd(
    experiment: Path = typer.Argument(..., help="Experiment YAML (docs/pipeline.md), e.g. configs/quickstart.yaml."),
    out: Path = typer.Option(..., "--out", help="Run directory: stages/, results.jsonl, plan.json, run.log, report."),
    force: bool = typer.Option(False, "--force", help="Re-run every stage even if it finished with the same config."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Write plan.json and print the stages without running."),
    no_report: bool = typer.Option(False, "--no-report", help="Do not write report.md / report.html at the end."),
    sets: Optional[list[str]] = typer.Option(  # noqa: UP045 (typer needs Optional)
        None, "--set", help="Override the experiment file: KEY=VALUE with KEY a top-level key or SECTION.FIELD "
                            "(seeds=[0], refine.layer=8, stages_dir=runs/other/stages to share another run's "
                            "stages); repeatable."),
) -> None:
    """Run every stage of an experiment (shared stages once, finished ones skipped), then write the report."""
    console = Console(soft_wrap=True)
    exp = load_experiment(experiment, sets)
    if dry_run:
        nodes = plan(exp, out.resolve())
        out.mkdir(parents=True, exist_ok=True)
        write_plan(exp, nodes, out.resolve())
        for i, node in enumerate(nodes, start=1):
            uses = ", ".join(f"{u['method']}/s{u['seed']}" for u in node.uses)
            console.print(f"stage {i}/{len(nodes)}: {node.label}  [dim]{node.id} <- {node.deps or '-'}; "
                          f"used by {uses}[/dim]")
        return
    try:
        nodes = run_experiment(exp, out, force=force, progress=ConsoleProgress(console), report=not no_report)
    except KeyboardInterrupt:
        again = "".join(f" --set {x}" for x in sets or [])
        console.print(f"[yellow]interrupted[/yellow]: finished stages are kept; rerun `dcr run {experiment} "
                      f"--out {out}{again}` to resume")
        raise typer.Exit(130) from None
    ran = sum(n.status == "done" for n in nodes)
    console.print(f"[green]finished[/green]: {len(nodes)} stages ({ran} run, {len(nodes) - ran} skipped); "
                  f"results in {out / 'results.jsonl'}")
    if not no_report:
        console.print(f"report: {out / 'report.md'}  {out / 'report.html'}")


def register(app: typer.Typer) -> None:
    app.command("run")(run_cmd)
