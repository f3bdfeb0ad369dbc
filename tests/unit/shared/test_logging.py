"""configure_logging: which libraries' lines reach the one JSON stream."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog

from shared.logging import configure_logging

NAMES = ("", "aiokafka", "aiokafka.consumer.group_coordinator")


@pytest.fixture(autouse=True)
def restored_logging() -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in NAMES]
    saved = [(logger, logger.level, list(logger.handlers)) for logger in loggers]
    structlog_config = structlog.get_config()
    yield
    for logger, level, handlers in saved:
        logger.setLevel(level)
        logger.handlers[:] = handlers
    structlog.configure(**structlog_config)
    structlog.contextvars.clear_contextvars()


def test_aiokafka_says_only_warnings_except_about_group_membership() -> None:
    configure_logging("test", "INFO", json=True)

    assert logging.getLogger("aiokafka.consumer.fetcher").getEffectiveLevel() == logging.WARNING
    coordinator = logging.getLogger("aiokafka.consumer.group_coordinator")
    assert coordinator.getEffectiveLevel() == logging.INFO


def test_a_quieter_service_level_quiets_group_membership_too() -> None:
    configure_logging("test", "ERROR", json=True)

    coordinator = logging.getLogger("aiokafka.consumer.group_coordinator")
    assert coordinator.getEffectiveLevel() == logging.ERROR
