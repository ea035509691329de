"""``dcr refine``: the CLI verb over :func:`dcr.refine.refine`."""

from __future__ import annotations

import typer

from dcr.refine.config import RefineConfig
from dcr.refine.stage import refine
from dcr.verbs import stage_command


def register(app: typer.Typer) -> None:
    app.command("refine")(stage_command(
        RefineConfig, refine, section="refine", names={"lora": ("--lora/--full",)},
        out_help="Output directory (model/, metrics.json, loss.csv, split.json, ...)."))
