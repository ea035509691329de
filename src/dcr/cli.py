"""The ``dcr`` command line: one verb per stage, each a thin wrapper over a plain Python function.

Each stage package exposes ``commands.register(app)``, which adds its verb(s) to ``app``.
"""

from __future__ import annotations

import importlib
import sys

import typer

from dcr.errors import DcrError

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


# (module, verb) in the order they appear in --help.
STAGE_MODULES = (
    "dcr.models_cli",
    "dcr.refine.commands",
    "dcr.align.commands",
    "dcr.steer.commands",
    "dcr.evaluate.commands",
    "dcr.judges.commands",
    "dcr.probe.commands",
    "dcr.pipeline_cli",
    "dcr.report.commands",
)

for _mod in STAGE_MODULES:
    try:
        importlib.import_module(_mod).register(app)
    except ModuleNotFoundError as exc:  # a stage still being written must not break the other verbs
        if exc.name != _mod:
            raise


def main() -> None:
    try:
        app()
    except DcrError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
