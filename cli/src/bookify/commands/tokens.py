"""`bookify token`: development JWTs signed with the running stack's secret."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer

from shared.auth import AuthSettings, Scope, mint_token

ALL_SCOPES = " ".join(s.value for s in Scope)


def token(
    sub: Annotated[str, typer.Option(help="The principal (JWT `sub`).")],
    scope: Annotated[
        str, typer.Option(help=f"Space-separated scopes, from: {ALL_SCOPES}.")
    ] = "bookings:read bookings:write",
    ttl_minutes: Annotated[int, typer.Option(min=1, help="Lifetime in minutes.")] = 720,
) -> None:
    """Print a development token (HS256, secret from BOOKIFY_AUTH_JWT_SECRET or the dev default)."""
    scopes = scope.split()
    unknown = sorted(set(scopes) - {s.value for s in Scope})
    if unknown:
        raise typer.BadParameter(
            f"unknown scope(s) {', '.join(unknown)}; choose from: {ALL_SCOPES}",
            param_hint="--scope",
        )
    typer.echo(mint_token(AuthSettings(), sub, scopes, ttl=timedelta(minutes=ttl_minutes)))
