"""Fixtures for the consumer unit tests (the fakes themselves are in fakes.py)."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from consumer.metrics import ConsumerMetrics
from tests.unit.consumer.fakes import Clock, Events, FakeViewRepository


@pytest.fixture
def views() -> FakeViewRepository:
    return FakeViewRepository()


@pytest.fixture
def metrics() -> ConsumerMetrics:
    return ConsumerMetrics(CollectorRegistry())


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def events() -> Events:
    return Events()
