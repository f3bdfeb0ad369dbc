"""Fixtures for the consumer unit tests (the fakes themselves are in fakes.py)."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from consumer.metrics import ConsumerMetrics
from tests.support.clock import FakeClock
from tests.unit.consumer.fakes import T0, Events, FakeViewRepository


@pytest.fixture
def views() -> FakeViewRepository:
    return FakeViewRepository()


@pytest.fixture
def metrics() -> ConsumerMetrics:
    return ConsumerMetrics(CollectorRegistry())


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def events() -> Events:
    return Events()
