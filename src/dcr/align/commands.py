"""``dcr align``: the CLI verb over :func:`dcr.align.align`."""

from __future__ import annotations

import typer

from dcr.align.config import AlignConfig
from dcr.align.stage import align
from dcr.verbs import stage_command


def register(app: typer.Typer) -> None:
    app.command("align")(stage_command(
        AlignConfig, align, section="align",
        out_help="Output directory (adapter/, model/, train_log.csv, tracking.csv, checkpoints/, ...)."))
