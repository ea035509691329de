"""``dcr steer surgical|scans``: the CLI verb over :func:`dcr.steer.steer`."""

from __future__ import annotations

from typing import Any

import typer

from dcr.steer.config import SteerConfig
from dcr.steer.stage import steer
from dcr.verbs import stage_command


def _layer_flag(overrides: dict[str, Any], _extra: dict[str, Any]) -> dict[str, Any]:
    """``--layer`` is one block for Surgical and a comma-separated list of steered blocks for SCANS."""
    if overrides.get("method") == "scans" and overrides.get("layer") is not None:
        overrides["layers"] = overrides.pop("layer")
    return overrides


def register(app: typer.Typer) -> None:
    app.command("steer")(stage_command(
        SteerConfig, steer, section="steer", argument="method", names={"n_directions": ("--n-directions", "--n")},
        cli_types={"layer": str}, adapt=_layer_flag,
        out_help="Output directory (steer.json, directions.safetensors, model/ with export)."))
