"""`bookify reset` chooses what to drop: the local harness by default, another store only
when named with --yes, never under running services."""

from __future__ import annotations

import pytest

from bookify_platform.reset import LocalHarness, ResetRefusedError, choose_target
from bookify_platform.services import SERVICES, PlatformConfig, store_databases

LOCAL = LocalHarness("mongodb://127.0.0.1:27017", "127.0.0.1:9092", services_running=False)
NOTHING = LocalHarness("", "", services_running=False)


def test_the_local_harness_is_reset_by_default() -> None:
    target = choose_target(LOCAL)
    assert target.local
    assert (target.mongo_uri, target.kafka_bootstrap) == (LOCAL.mongo_uri, LOCAL.kafka_bootstrap)
    assert target.databases == ("bookify_booking", "bookify_gateway", "bookify_views")
    assert target.topics == ("bookify.commands", "bookify.events", "bookify.dlq")


def test_prefixes_name_the_databases_and_topics_the_services_use() -> None:
    target = choose_target(LOCAL, topic_prefix="t1.", db_prefix="t1_")
    assert target.topics == ("t1.bookify.commands", "t1.bookify.events", "t1.bookify.dlq")
    config = PlatformConfig("k:1", "mongodb://m", db_prefix="t1_")
    used = {
        value
        for name in SERVICES
        for key, value in config.env_for(name).items()
        if key.endswith(("_DB_NAME", "_VIEWS_DB"))
    }
    assert set(target.databases) == used == set(store_databases("t1_"))


def test_a_store_other_than_the_local_one_needs_yes() -> None:
    with pytest.raises(ResetRefusedError, match=r"--mongo mongodb://prod:27017 .*add --yes"):
        choose_target(LOCAL, mongo="mongodb://prod:27017")
    with pytest.raises(ResetRefusedError, match=r"--kafka prod:9092 is not the local"):
        choose_target(NOTHING, kafka="prod:9092")
    target = choose_target(NOTHING, mongo="mongodb://prod:27017", kafka="prod:9092", yes=True)
    assert not target.local
    assert target.mongo_uri == "mongodb://prod:27017"


def test_a_password_in_a_refused_url_is_not_printed() -> None:
    with pytest.raises(ResetRefusedError) as refused:
        choose_target(LOCAL, mongo="mongodb://admin:hunter2@prod:27017")
    assert "hunter2" not in str(refused.value)


def test_naming_one_store_leaves_the_other_alone() -> None:
    target = choose_target(NOTHING, mongo="mongodb://other:27017", yes=True)
    assert (target.mongo_uri, target.kafka_bootstrap) == ("mongodb://other:27017", "")


def test_naming_the_local_store_is_still_local() -> None:
    assert choose_target(LOCAL, mongo=LOCAL.mongo_uri).local


def test_nothing_running_locally_is_refused_with_the_fix() -> None:
    with pytest.raises(ResetRefusedError, match="bookify infra up"):
        choose_target(NOTHING)


def test_running_services_are_never_reset_under() -> None:
    running = LocalHarness(LOCAL.mongo_uri, LOCAL.kafka_bootstrap, services_running=True)
    with pytest.raises(ResetRefusedError, match=r"stop it \(Ctrl-C"):
        choose_target(running)
    with pytest.raises(ResetRefusedError, match="stop it"):
        choose_target(running, mongo=LOCAL.mongo_uri, yes=True)
