"""GatewaySettings (env, fail-fast on dev secrets) and the per-principal token bucket."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from gateway.config import GatewaySettings
from gateway.ratelimit import TokenBucketLimiter
from shared.auth import AuthSettings
from shared.kafka import make_broker
from shared.kafka_security import KafkaSecurity
from tests.support.clock import FakeClock


def test_defaults_match_the_contract() -> None:
    s = GatewaySettings(environment="test")

    assert (s.host, s.port) == ("127.0.0.1", 8000)
    assert (s.db_name, s.views_db) == ("bookify_gateway", "bookify_views")
    assert s.max_body_bytes == 64 * 1024
    assert s.topics.commands == "bookify.commands"


def test_settings_come_from_the_gateway_env_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOOKIFY_GATEWAY_PORT", "9123")
    monkeypatch.setenv("BOOKIFY_GATEWAY_TOPIC_PREFIX", "t1.")
    monkeypatch.setenv("BOOKIFY_GATEWAY_RATE_LIMIT_BURST", "7")
    monkeypatch.setenv("BOOKIFY_AUTH_JWT_SECRET", "from-env-0123456789abcdef0123456789ab")

    s = GatewaySettings()

    assert s.port == 9123
    assert s.topics.commands == "t1.bookify.commands"
    assert s.rate_limit_burst == 7
    assert s.auth.jwt_secret.get_secret_value().startswith("from-env")


def test_prod_refuses_the_development_jwt_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BOOKIFY_AUTH_JWT_SECRET", raising=False)

    with pytest.raises(ValidationError, match="BOOKIFY_AUTH_JWT_SECRET"):
        GatewaySettings(environment="prod")


def test_prod_accepts_a_real_secret() -> None:
    auth = AuthSettings(jwt_secret="a-real-secret-0123456789abcdef012345")

    trusted = KafkaSecurity(allow_plaintext=True)
    assert GatewaySettings(environment="prod", auth=auth, kafka=trusted).environment == "prod"


def test_the_producer_settles_a_send_before_the_request_stops_waiting() -> None:
    defaults = GatewaySettings()
    assert defaults.publish_timeout_seconds > defaults.kafka_request_timeout_seconds
    with pytest.raises(ValidationError, match="BOOKIFY_GATEWAY_PUBLISH_TIMEOUT_SECONDS"):
        GatewaySettings(publish_timeout_seconds=4.0, kafka_request_timeout_seconds=4.0)


def test_the_broker_gives_the_producer_the_request_timeout_of_the_settings() -> None:
    settings = GatewaySettings(kafka_request_timeout_seconds=2.5)
    broker = make_broker(settings, registry=CollectorRegistry())
    assert broker._connection_kwargs["request_timeout_ms"] == 2500


def test_bucket_allows_the_burst_then_says_how_long_to_wait() -> None:
    clock = FakeClock()
    limiter = TokenBucketLimiter(rate_per_second=2, burst=3, clock=clock.monotonic)

    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a") == pytest.approx(0.5)


def test_bucket_refills_at_the_rate() -> None:
    clock = FakeClock()
    limiter = TokenBucketLimiter(rate_per_second=2, burst=3, clock=clock.monotonic)
    for _ in range(3):
        limiter.take("a")

    clock.advance(0.5)

    assert limiter.take("a") == 0.0
    assert limiter.take("a") > 0


def test_principals_have_separate_buckets() -> None:
    limiter = TokenBucketLimiter(rate_per_second=1, burst=1, clock=FakeClock().monotonic)

    assert limiter.take("a") == 0.0
    assert limiter.take("a") > 0
    assert limiter.take("b") == 0.0


def test_memory_stays_bounded_by_forgetting_idle_principals() -> None:
    clock = FakeClock()
    limiter = TokenBucketLimiter(
        rate_per_second=1, burst=1, clock=clock.monotonic, max_principals=10
    )
    for i in range(100):
        clock.advance(0.01)
        limiter.take(f"p{i}")

    assert len(limiter._buckets) <= 10
