"""The `bookify` command: one Typer app, one sub-app or command per area.

`main` registers only the command it is asked to run (all of them for help or a typo), so a
command imports only its own area: `bookify up` supervises for hours and keeps every module it
loaded, none of the load tests', benchmarks' or clients' (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import typer

HELP = "Run, inspect and exercise the Bookify platform on this machine."

# Each command: its module in bookify.commands, then its sub-app or function, and the
# function's epilog (a name in the same module) if it has one; in the order help lists them.
COMMANDS: dict[str, tuple[str, str, str | None]] = {
    "up": ("platform", "up", "UP_EPILOG"),
    "status": ("status", "status", "EPILOG"),
    "seed": ("platform", "seed", None),
    "reset": ("reset", "reset", "EPILOG"),
    "token": ("tokens", "token", None),
    "load": ("load", "load", "EPILOG"),
    "chaos": ("chaos", "chaos", "EPILOG"),
    "infra": ("infra", "app", None),
    "schemas": ("schemas", "app", None),
    "bench": ("bench", "app", None),
    "dlq": ("dlq", "app", None),
}


def build(names: list[str]) -> typer.Typer:
    """The app with the commands ``names`` (each one's module imported now)."""
    app = typer.Typer(name="bookify", help=HELP, no_args_is_help=True, add_completion=False)
    # A group even with one command, so `bookify up` reads `up` as the command's name.
    app.callback()(lambda: None)
    for name in names:
        module_name, attribute, epilog = COMMANDS[name]
        module = importlib.import_module(f"bookify.commands.{module_name}")
        target = getattr(module, attribute)
        if isinstance(target, typer.Typer):
            app.add_typer(target, name=name)
        else:
            app.command(name, epilog=getattr(module, epilog) if epilog else None)(target)
    return app


def __getattr__(name: str) -> Any:
    # `bookify.cli.app`, every command: what the tests drive with typer's CliRunner.
    if name == "app":
        return build(list(COMMANDS))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    asked = sys.argv[1] if len(sys.argv) > 1 else ""
    build([asked] if asked in COMMANDS else list(COMMANDS))()
