"""How `bookify up` and the test stacks configure each service process."""

from __future__ import annotations

import pytest

from bookify.commands.platform import tracing_env, tracing_summary
from bookify_platform.services import PlatformConfig
from booking.config import BookingSettings

KAFKA, MONGO = "127.0.0.1:9092", "mongodb://127.0.0.1:27017/"


def test_a_plain_platform_leaves_topics_and_databases_at_their_defaults():
    env = PlatformConfig(KAFKA, MONGO).env_for("booking")
    assert env["BOOKIFY_BOOKING_TOPIC_PREFIX"] == ""
    assert not any(key.endswith(("DB_NAME", "VIEWS_DB")) for key in env)


def test_a_prefixed_stack_has_topics_databases_and_consumer_groups_of_its_own(
    monkeypatch: pytest.MonkeyPatch,
):
    config = PlatformConfig(KAFKA, MONGO, topic_prefix="e2e-1.", db_prefix="e2e_1_")
    booking, consumer, gateway = (config.env_for(n) for n in ("booking", "consumer", "gateway"))
    assert booking["BOOKIFY_BOOKING_DB_NAME"] == "e2e_1_bookify_booking"
    assert consumer["BOOKIFY_CONSUMER_VIEWS_DB"] == gateway["BOOKIFY_GATEWAY_VIEWS_DB"]

    for var, value in booking.items():
        monkeypatch.setenv(var, value)
    settings = BookingSettings()
    assert settings.topics.commands == "e2e-1.bookify.commands"
    assert settings.topics.group(settings.group_id) == "e2e-1.bookify-booking"


def test_extra_environment_overrides_what_the_config_derives():
    config = PlatformConfig(
        KAFKA, MONGO, db_prefix="e2e_1_", extra_env={"BOOKIFY_BOOKING_DB_NAME": "elsewhere"}
    )
    assert config.env_for("booking")["BOOKIFY_BOOKING_DB_NAME"] == "elsewhere"


def test_bookify_up_turns_tracing_off_when_no_endpoint_would_receive_the_spans() -> None:
    assert tracing_env({}) == {"OTEL_SDK_DISABLED": "true"}
    assert "no OTEL_EXPORTER_OTLP_ENDPOINT" in tracing_summary({})
    to_collector = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
    assert tracing_env(to_collector) == {}
    assert tracing_summary(to_collector) == "OTLP to http://127.0.0.1:4318"
    # Only traces, or the user's own choice: left as they are.
    assert tracing_env({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}) == {}
    assert tracing_env({"OTEL_SDK_DISABLED": "false"}) == {}
