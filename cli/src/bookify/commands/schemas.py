"""`bookify schemas export`: the JSON Schema of every Kafka message type."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shared.events.schemas import export_schemas

app = typer.Typer(help="The published message contract.", no_args_is_help=True)


@app.command("export")
def export(
    out: Annotated[
        Path, typer.Option(help="Directory to write <ce_type>.schema.json files into.")
    ] = Path("shared/schemas"),
) -> None:
    """Write one JSON Schema per message type (re-export only for compatible changes)."""
    for path in export_schemas(out):
        typer.echo(path)
