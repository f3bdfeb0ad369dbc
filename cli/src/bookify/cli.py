"""The `bookify` command: one Typer app, one sub-app or command per area."""

from __future__ import annotations

import typer

from bookify.commands import (
    bench,
    chaos,
    dlq,
    infra,
    load,
    platform,
    reset,
    schemas,
    status,
    tokens,
)

app = typer.Typer(
    name="bookify",
    help="Run, inspect and exercise the Bookify platform on this machine.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(infra.app, name="infra")
app.add_typer(schemas.app, name="schemas")
app.add_typer(bench.app, name="bench")
app.add_typer(dlq.app, name="dlq")
app.command(epilog=platform.UP_EPILOG)(platform.up)
app.command(epilog=status.EPILOG)(status.status)
app.command()(platform.seed)
app.command(epilog=reset.EPILOG)(reset.reset)
app.command()(tokens.token)
app.command(epilog=load.EPILOG)(load.load)
app.command(epilog=chaos.EPILOG)(chaos.chaos)


def main() -> None:
    app()
