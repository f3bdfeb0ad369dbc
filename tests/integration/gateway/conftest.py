"""The real gateway (create_app with its own lifespan) against the test Kafka and Mongo."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from pymongo import AsyncMongoClient

from gateway.app import create_app
from gateway.config import GatewaySettings
from shared.auth import AuthSettings
from tests.support.auth import bearer

SECRET = "integration-test-secret-0123456789abcdef"
AUTH = AuthSettings(jwt_secret=SECRET)


ADMIN = bearer("admin", "resources:admin bookings:read", settings=AUTH)


@pytest.fixture
async def gateway_settings(
    kafka: Any, mongo: Any, unique_id: str, mongo_client: AsyncMongoClient[dict[str, Any]]
) -> AsyncIterator[GatewaySettings]:
    """Settings isolated to this test: own topic prefix and databases, dropped afterwards."""
    db = unique_id.replace("-", "_")
    settings = GatewaySettings(
        environment="test",
        kafka_bootstrap_servers=kafka.bootstrap_servers,
        mongo_uri=mongo.uri,
        topic_prefix=f"{unique_id}.",
        topic_partitions=3,
        db_name=f"{db}_gateway",
        views_db=f"{db}_views",
        auth=AUTH,
        log_json=False,
        # One gateway per test here; the shared limiter is tested on Redis in
        # test_ratelimit_redis.py.
        rate_limit_storage="memory://",
    )
    yield settings
    for name in (settings.db_name, settings.views_db):
        await mongo_client.drop_database(name)


@asynccontextmanager
async def running_gateway(
    settings: GatewaySettings, **kwargs: Any
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, **kwargs)
    async with (
        LifespanManager(app, startup_timeout=60, shutdown_timeout=30) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(manager.app), base_url="http://gateway", timeout=30
        ) as http,
    ):
        yield http


@pytest.fixture
def gateway_factory() -> Callable[..., Any]:
    """``async with gateway_factory(settings, **create_app_kwargs) as http: ...``"""
    return running_gateway


@pytest.fixture
def tokens() -> Callable[..., dict[str, str]]:
    """``tokens("alice")`` / ``tokens("admin", "resources:admin")``: Authorization headers."""
    return functools.partial(bearer, settings=AUTH)


@pytest.fixture
async def gateway(gateway_settings: GatewaySettings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_gateway(gateway_settings) as http:
        yield http
