"""The gateway app over ASGITransport with fakes injected through create_app(overrides=...)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from gateway.app import create_app
from gateway.config import GatewaySettings
from gateway.fast_lane import FastLane
from shared.auth import AuthSettings
from tests.support import auth

from .fakes import Fakes

SECRET = "unit-test-secret-0123456789abcdef0123456789"  # HS256 wants >= 32 bytes
AUTH = AuthSettings(jwt_secret=SECRET)

ALL_SCOPES = "bookings:read bookings:write resources:admin"


def bearer(sub: str = "alice", scope: str = ALL_SCOPES) -> dict[str, str]:
    return auth.bearer(sub, scope, settings=AUTH)


def settings(**overrides: Any) -> GatewaySettings:
    # One app, no Redis: the shared limiter has tests of its own (test_ratelimit.py).
    base: dict[str, Any] = {"environment": "test", "auth": AUTH, "rate_limit_storage": "memory://"}
    return GatewaySettings(**(base | overrides))


def without_lane(app: FastAPI) -> FastAPI:
    """``app`` with every request routed by FastAPI: no fast lane (gateway.fast_lane). Its
    middleware stack is built on the first request, so this holds for all of them."""
    app.user_middleware = [m for m in app.user_middleware if m.cls is not FastLane]
    return app


@pytest.fixture
def fakes() -> Fakes:
    return Fakes()


AppFactory = Callable[..., FastAPI]


@pytest.fixture
async def client(fakes: Fakes) -> AsyncIterator[AsyncClient]:
    app = create_app(settings(), overrides=fakes.deps())
    async with (
        LifespanManager(app) as manager,
        AsyncClient(transport=ASGITransport(manager.app), base_url="http://gateway") as http,
    ):
        yield http
