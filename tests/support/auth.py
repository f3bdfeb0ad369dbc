"""Bearer tokens for the tests, minted as ``bookify token`` mints them."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

import jwt

from shared.auth import AuthSettings, mint_token

DEFAULT_SCOPES = "bookings:read bookings:write"


def token(
    sub: str | None = "alice",
    scopes: str | Iterable[str] = DEFAULT_SCOPES,
    *,
    settings: AuthSettings | None = None,
    ttl: timedelta = timedelta(hours=12),
    **claims: object,
) -> str:
    """A JWT for ``sub`` with ``scopes`` (a space-separated string or a list of scopes).

    Signed with the development ``AuthSettings()`` unless ``settings`` says otherwise.
    ``claims`` add or override claims, for tokens the gateway must refuse: a claim given as
    None is left out (``aud=None``: no audience; ``scope=None``: no scope), as is the
    subject when ``sub`` is None.
    """
    settings = settings or AuthSettings()
    scope_list = scopes.split() if isinstance(scopes, str) else list(scopes)
    minted = mint_token(settings, sub or "", scope_list, ttl)
    if sub is not None and not claims:
        return minted
    payload = jwt.decode(minted, options={"verify_signature": False}) | {"sub": sub} | claims
    payload = {name: value for name, value in payload.items() if value is not None}
    return jwt.encode(payload, settings.jwt_secret.get_secret_value(), algorithm="HS256")


def bearer(
    sub: str | None = "alice",
    scopes: str | Iterable[str] = DEFAULT_SCOPES,
    *,
    settings: AuthSettings | None = None,
    ttl: timedelta = timedelta(hours=12),
    **claims: object,
) -> dict[str, str]:
    """The ``Authorization`` header for ``token(...)``, same arguments."""
    bearer_token = token(sub, scopes, settings=settings, ttl=ttl, **claims)
    return {"Authorization": f"Bearer {bearer_token}"}
