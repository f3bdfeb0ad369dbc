"""Fixtures of the chaos tests that run traffic through tests/chaos/traffic.py.

``own_stack``: Kafka, FerretDB and the three services of one test module alone, for the
tests that take a server away (the session's ``kafka``/``mongo`` serve the other tests
meanwhile, and must not be frozen or killed under them). Always local processes, whatever
BOOKIFY_TEST_INFRA says: a test must be able to SIGSTOP and kill -9 them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from bookify_platform.infra import LocalInfra, free_ports
from bookify_platform.services import Platform, PlatformConfig
from tests.chaos.traffic import OwnStack, Report, Target, service_logs, write_report
from tests.conftest import KafkaServer, MongoServer
from tests.otlp import OtlpReceiver
from tests.stack import new_stack_config


@contextmanager
def started_own_stack(
    run_dir: Path, otlp: OtlpReceiver, extra_env: Mapping[str, str] | None = None
) -> Iterator[OwnStack]:
    """Kafka and FerretDB on free ports, then the three services on them."""
    kafka_port, controller_port, mongo_port = free_ports(3)
    infra = LocalInfra(
        run_dir / "infra",
        kafka_port=kafka_port,
        controller_port=controller_port,
        mongo_port=mongo_port,
        services=("kafka", "mongo"),  # what the services need; nothing else to take away
        attached=True,  # nothing outlives pytest
    )
    with infra:
        endpoints = infra.start()
        config = new_stack_config(
            KafkaServer(endpoints.kafka_bootstrap),
            MongoServer(endpoints.mongo_uri),
            otlp,
            extra_env=extra_env,
        )
        with Platform(config, run_dir / "services") as platform:
            yield OwnStack(
                infra,
                platform,
                config,
                Target(
                    platform["gateway"].url,
                    endpoints.mongo_uri,
                    config.db_prefix,
                    logs=service_logs(platform),
                ),
            )


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory: pytest.TempPathFactory, otlp: OtlpReceiver) -> Iterator[OwnStack]:
    with started_own_stack(tmp_path_factory.mktemp("chaos-own-stack"), otlp) as stack:
        yield stack


@pytest.fixture
def stack_target(stack: Platform, stack_config: PlatformConfig, mongo: Any) -> Target:
    """The session's stack, for chaos that only kills or races the services themselves."""
    return Target(stack["gateway"].url, mongo.uri, stack_config.db_prefix, logs=service_logs(stack))


@pytest.fixture(scope="session")
def figures_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One JSON line of figures per chaos run, for the closing note."""
    return tmp_path_factory.getbasetemp() / "chaos-figures.jsonl"


@pytest.fixture
def report(record_property: Callable[[str, object], None], figures_path: Path) -> Report:
    return lambda figures: write_report(figures, figures_path, record_property)
