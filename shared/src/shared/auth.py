"""Bearer-token authentication shared by the gateway (verifies) and the CLI (mints dev tokens)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import jwt
from cachetools import TLRUCache
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.events.base import MAX_PRINCIPAL_LENGTH

# Marks a development default; shared.settings.refuse_dev_secret refuses it outside dev.
DEV_ONLY_PREFIX = "dev-only-"


class Scope(StrEnum):
    BOOKINGS_READ = "bookings:read"
    BOOKINGS_WRITE = "bookings:write"
    RESOURCES_ADMIN = "resources:admin"


class AuthSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BOOKIFY_AUTH_", extra="ignore", frozen=True)

    # Development default, refused outside dev (see shared.settings.refuse_dev_secret).
    jwt_secret: SecretStr = SecretStr(f"{DEV_ONLY_PREFIX}insecure-jwt-secret-change-me")
    jwt_public_key: str | None = Field(
        default=None, description="PEM public key; when set, tokens are RS256 and verified with it."
    )
    audience: str = "bookify"
    leeway_seconds: int = 5

    @property
    def algorithm(self) -> str:
        return "RS256" if self.jwt_public_key else "HS256"


@dataclass(frozen=True)
class Principal:
    sub: str
    scopes: frozenset[str]


class InvalidTokenError(Exception):
    """The token is missing, malformed, expired, or not for this audience."""


def mint_token(
    settings: AuthSettings,
    sub: str,
    scopes: list[str],
    ttl: timedelta = timedelta(hours=12),
) -> str:
    """An HS256 development token (the CLI's ``bookify token``)."""
    now = datetime.now(UTC)
    claims = {
        "sub": sub,
        "aud": settings.audience,
        "scope": " ".join(scopes),
        "iat": now,
        "exp": now + ttl,
    }
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm="HS256")


# A token that verified once stays valid until exp + leeway, the instant PyJWT would start
# refusing it. Checking its signature again on every request is a measurable share of the
# gateway's CPU (see docs/PERFORMANCE.md#verified-tokens-kept), and a client polls its booking
# with the token it booked with. So valid tokens are kept until that instant, keyed by the
# token *and* everything it was checked against; invalid ones are never kept, so only the key
# holder can fill the cache.
VERIFIED_TOKENS = 65_536


@dataclass(frozen=True)
class _Verified:
    principal: Principal
    valid_until: float  # epoch seconds


def verified_tokens(
    timer: Callable[[], float] = time.time,
) -> TLRUCache[tuple[str, ...], _Verified]:
    """The cache of valid tokens: each entry leaves at its own ``valid_until``."""
    return TLRUCache(
        maxsize=VERIFIED_TOKENS, ttu=lambda _key, value, _now: value.valid_until, timer=timer
    )


_verified = verified_tokens()


def verify_token(settings: AuthSettings, token: str) -> Principal:
    key = settings.jwt_public_key or settings.jwt_secret.get_secret_value()
    cache_key = (token, key, settings.algorithm, settings.audience, str(settings.leeway_seconds))
    if (hit := _verified.get(cache_key)) is not None:
        return hit.principal
    principal, exp = _decode(settings, key, token)
    _verified[cache_key] = _Verified(principal, exp + settings.leeway_seconds)
    return principal


def _decode(settings: AuthSettings, key: str, token: str) -> tuple[Principal, float]:
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[settings.algorithm],
            audience=settings.audience,
            leeway=settings.leeway_seconds,
            options={"require": ["sub", "exp", "aud", "scope"]},
        )
    except jwt.PyJWTError as exc:
        raise InvalidTokenError(str(exc)) from None
    sub = claims["sub"]
    if not isinstance(sub, str) or not sub or not isinstance(claims["scope"], str):
        raise InvalidTokenError("sub and scope must be non-empty strings")
    if len(sub) > MAX_PRINCIPAL_LENGTH:
        # Every command carries the principal, and its contract allows this many characters.
        raise InvalidTokenError(f"sub is longer than {MAX_PRINCIPAL_LENGTH} characters")
    return Principal(sub=sub, scopes=frozenset(claims["scope"].split())), float(claims["exp"])
