"""How `bookify up` and the test stacks configure each service process."""

from __future__ import annotations

from bookify.platform import PlatformConfig

KAFKA, MONGO = "127.0.0.1:9092", "mongodb://127.0.0.1:27017/"


def test_a_plain_platform_leaves_topics_databases_and_groups_at_their_defaults():
    env = PlatformConfig(KAFKA, MONGO).env_for("booking")
    assert env["BOOKIFY_BOOKING_TOPIC_PREFIX"] == ""
    assert not any(key.endswith(("GROUP_ID", "DB_NAME", "VIEWS_DB")) for key in env)


def test_a_prefixed_stack_has_topics_databases_and_consumer_groups_of_its_own():
    config = PlatformConfig(KAFKA, MONGO, topic_prefix="e2e-1.", db_prefix="e2e_1_")
    booking, consumer, gateway = (config.env_for(n) for n in ("booking", "consumer", "gateway"))
    assert booking["BOOKIFY_BOOKING_GROUP_ID"] == "e2e-1.bookify-booking"
    assert consumer["BOOKIFY_CONSUMER_GROUP_ID"] == "e2e-1.bookify-consumer"
    assert booking["BOOKIFY_BOOKING_DB_NAME"] == "e2e_1_bookify_booking"
    assert consumer["BOOKIFY_CONSUMER_VIEWS_DB"] == gateway["BOOKIFY_GATEWAY_VIEWS_DB"]
    assert not any(key.endswith("GROUP_ID") for key in gateway)  # it consumes nothing


def test_extra_environment_overrides_what_the_config_derives():
    config = PlatformConfig(
        KAFKA,
        MONGO,
        topic_prefix="e2e-1.",
        extra_env={"BOOKIFY_BOOKING_GROUP_ID": "zombie"},
    )
    assert config.env_for("booking")["BOOKIFY_BOOKING_GROUP_ID"] == "zombie"
