"""``dcr data list`` and ``dcr data verify``: what data dcr reads, from where, and whether it is intact."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import typer

from dcr.data.catalog import list_sets, verify

SOURCES = {"vendored": "the copy vendored with dcr", "--data-dir": "--data-dir", "DCR_DATA_DIR": "$DCR_DATA_DIR"}
DATA_DIR_HELP = "Data directory (else $DCR_DATA_DIR, else the copy vendored with dcr)."

data_app = typer.Typer(name="data", help="The data dcr reads: list the sets, verify the files.",
                       no_args_is_help=True, add_completion=False)


def _rows(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


@data_app.command("list")
def list_cmd(
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),  # noqa: UP045
    as_json: bool = typer.Option(False, "--json", help="One JSON object per set instead of a table."),
) -> None:
    """Each set: its rows, kind, licence and the files it was read from (hub-only sets: their hub id)."""
    root, source, infos, unread = list_sets(data_dir)
    if as_json:
        for info in infos:
            typer.echo(json.dumps({**asdict(info), "data_dir": str(root), "chosen_by": source}))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"data directory: {root} ({SOURCES[source]})", title_justify="left")
    for col, justify in (("set", "left"), ("kind", "left"), ("rows", "right"), ("licence", "left"),
                         ("read from", "left")):
        table.add_column(col, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for i in infos:
        table.add_row(i.name, i.kind, _rows(i.rows), i.licence, i.source + (f" ({i.note})" if i.note else ""))
    console = Console(width=max(150, Console().width))
    console.print(table)
    if unread:
        console.print(f"files no set reads ({len(unread)}): {', '.join(unread)}")
    console.print("CC-BY-NC-4.0 sets (Safety-Tuned LLaMAs, Alpaca, AlpacaEval) are for non-commercial use; "
                  "OKTest states no licence. Details: README.md and each PROVENANCE.md in the data directory.")


@data_app.command("verify")
def verify_cmd(
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),  # noqa: UP045
) -> None:
    """Check every file against the committed sha256 manifest (exit 1 when one is missing or differs)."""
    result = verify(data_dir)
    for rel, why in result.bad:
        typer.echo(f"FAILED {rel}: {why}")
    if result.unlisted:
        typer.echo(f"not in the manifest (not checked): {', '.join(result.unlisted)}")
    verdict = "OK" if result.passed else "FAILED"
    typer.echo(f"{verdict}: {len(result.ok)} of {len(result.ok) + len(result.bad)} files match the manifest "
               f"in {result.root}")
    if not result.passed:
        sys.exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(data_app)
