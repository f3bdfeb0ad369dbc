"""The one shape of a Bookify service process: a runtime built by ``bootstrap``, run by a lifespan.

Every service (gateway, booking, consumer) is wired the same way:

- ``bootstrap(settings, *, overrides=None, tracer_provider=None)`` in its ``bootstrap.py``
  builds a :class:`ServiceRuntime`: the Prometheus registry, the FastStream broker (with the
  service's subscribers registered on it), the fault switch, and the service's ``connect``
  function. Nothing connects yet.
- ``create_app(...)`` in its ``app.py`` wraps the runtime in a FastAPI app
  (:func:`shared.ops.service_app`) whose lifespan enters :meth:`ServiceRuntime.running`:
  the Mongo client is created, ``connect`` builds the service's adapters (its *deps*), the
  broker starts consuming, and all of it is undone in reverse order on the way out.
- ``overrides`` are hand-written fakes of the deps (unit tests): the lifespan then creates no
  client at all, exactly as svcs swaps a registry's factories in tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import (
    AbstractAsyncContextManager,
    AsyncExitStack,
    asynccontextmanager,
    contextmanager,
)
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, Protocol, TypeVar

from faststream.kafka.subscriber.usecase import BatchSubscriber
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry, ProcessCollector
from pymongo import AsyncMongoClient

from shared.events import Message
from shared.faults import FaultSwitch
from shared.kafka import kafka_refusal, make_broker, subscribe
from shared.kafka_security import KafkaRefusedError, refusal
from shared.logging import get_logger
from shared.messaging import UNAVAILABLE, BatchHandler, Delivery, PolicyMetrics
from shared.mongo import Document, make_mongo_client
from shared.settings import ServiceSettings, SubscriberSettings

log = get_logger(__name__)

ReadinessCheck = Callable[[], Awaitable[bool]]


class ServiceDeps(Protocol):
    """What a service's adapters give the runtime besides themselves: how to tell they answer."""

    @property
    def readiness(self) -> Mapping[str, ReadinessCheck]: ...


DepsT = TypeVar("DepsT", bound=ServiceDeps)
SettingsT = TypeVar("SettingsT", bound=ServiceSettings)
SubscriberSettingsT = TypeVar("SubscriberSettingsT", bound=SubscriberSettings)
MetricsT = TypeVar("MetricsT")

Connect = Callable[
    ["ServiceRuntime[SettingsT, DepsT, MetricsT]", AsyncMongoClient[Document]],
    AbstractAsyncContextManager[DepsT],
]
"""A service's adapters, built on the runtime's broker and Mongo client, for as long as the
process runs (it may create topics and indexes on the way in)."""


# What "not up yet" looks like when connecting: the policy's outages, and a refused socket.
NOT_YET_THERE = (*UNAVAILABLE, OSError)


class StartupError(RuntimeError):
    """The dependencies did not come up within ``startup_timeout_seconds``, or Kafka refused
    this service (its credentials, the CA it trusts, or its ACLs)."""


class OutageTolerated(Exception):  # noqa: N818 (not an error: the process stays ready)
    """Raised by a readiness check whose dependency is down while the process still answers
    well without it (the gateway's own 503s say whether a write may have landed, which a
    load balancer's bare 503 cannot): the check reads false, and the process stays ready."""


@dataclass(frozen=True)
class ReadinessReport:
    """Whether each dependency answers, why one refuses the service, and which are down
    without making the service unready (:class:`OutageTolerated`)."""

    checks: dict[str, bool]
    causes: dict[str, str]
    tolerated: frozenset[str] = frozenset()

    @property
    def down(self) -> list[str]:
        """The dependencies that make the service unready."""
        return [n for n, ok in self.checks.items() if not ok and n not in self.tolerated]


class NotStartedError(RuntimeError):
    """The deps were asked for before the lifespan connected them (a wiring bug)."""


class ServiceRuntime(Generic[SettingsT, DepsT, MetricsT]):
    """One process's settings, registry, metrics, broker, fault switch and (while it runs) deps."""

    def __init__(
        self,
        settings: SettingsT,
        *,
        metrics: Callable[[CollectorRegistry], MetricsT],
        connect: Connect[SettingsT, DepsT, MetricsT],
        overrides: DepsT | None = None,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        self.settings = settings
        self.registry = CollectorRegistry()
        # process_cpu_seconds_total and friends: what a load test reads of a service's CPU.
        ProcessCollector(registry=self.registry)
        self.metrics = metrics(self.registry)
        self.broker = make_broker(settings, registry=self.registry, tracer_provider=tracer_provider)
        # Off by default; PUT /admin/faults switches it on in dev and test only.
        self.faults = FaultSwitch(settings.environment)
        self._connect = connect
        self._overrides = overrides
        self._deps: DepsT | None = None
        self.draining = False  # set on SIGTERM (shared.runner): /readyz answers 503
        # Each subscriber's handler, built from the deps when they are connected.
        self._handler_factories: list[Callable[[DepsT], BatchHandler]] = []
        self._handlers: list[BatchHandler] = []

    def subscribe(
        self: ServiceRuntime[SubscriberSettingsT, DepsT, MetricsT],
        topic: str,
        handler_for: Callable[[DepsT], BatchHandler],
        *,
        known_types: Mapping[str, type[Message]],
        metrics: PolicyMetrics,
        title: str,
        description: str,
    ) -> BatchSubscriber:
        """Subscribe to ``topic`` (:func:`shared.kafka.subscribe`); ``handler_for(deps)`` builds
        the handler once the deps exist, so a handler never sees a store that is not open."""
        index = len(self._handler_factories)
        self._handler_factories.append(handler_for)
        return subscribe(
            self.broker,
            self.settings,
            topic,
            _Started(lambda: self._handler(index)),
            known_types=known_types,
            metrics=metrics,
            faults=self.faults,
            title=title,
            description=description,
        )

    def _handler(self, index: int) -> BatchHandler:
        if index >= len(self._handlers):
            raise NotStartedError(f"{self.settings.service_name} got a message before it started")
        return self._handlers[index]

    def drain(self) -> None:
        """Stop looking ready, keep serving: the process stops after ``drain_seconds``."""
        self.draining = True
        log.info("draining", service=self.settings.service_name, for_s=self.settings.drain_seconds)

    @property
    def deps(self) -> DepsT:
        if self._deps is None:
            raise NotStartedError(f"{self.settings.service_name} has not started")
        return self._deps

    async def kafka_ping(self) -> bool:
        """The broker answers; :class:`KafkaRefusedError` naming why when it refuses us."""
        if await self.broker.ping(timeout=self.settings.readiness_timeout_seconds):
            return True
        settings = self.settings
        refused = await refusal(
            settings.kafka_bootstrap_servers,
            settings.kafka,
            within=settings.readiness_timeout_seconds,
        )
        if refused is not None:
            raise KafkaRefusedError(refused)
        return False

    @asynccontextmanager
    async def running(self) -> AsyncIterator[DepsT]:
        """The deps, connected; subscribers consume only while they exist."""
        if self._overrides is not None:
            with self._using(self._overrides):
                yield self._overrides
            return
        mongo: AsyncMongoClient[Document] = make_mongo_client(self.settings.mongo_uri)
        try:
            async with self._connected(mongo) as deps:
                log.info("service_started", service=self.settings.service_name)
                yield deps
        finally:
            await mongo.close()
        # Only reached after a clean shutdown: the broker stopped and the stores closed.
        log.info("service_stopped", service=self.settings.service_name)

    @asynccontextmanager
    async def _connected(self, mongo: AsyncMongoClient[Document]) -> AsyncIterator[DepsT]:
        """The deps connected and the subscribers consuming, waiting for Kafka and MongoDB.

        A service started before its dependencies (a fresh machine, a restart of everything)
        waits for them, with backoff, up to ``startup_timeout_seconds``, instead of exiting.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.startup_timeout_seconds
        consumes = bool(self._handler_factories)
        attempt = 0
        while True:
            stack = AsyncExitStack()
            try:
                deps = await stack.enter_async_context(self._connect(self, mongo))
                # The handlers exist before the first message can arrive.
                stack.enter_context(self._using(deps))
                if consumes:
                    # Stop consuming first on the way out, so in-flight handlers finish with
                    # their stores open (their offsets are committed by the ack policy).
                    stack.push_async_callback(self.broker.stop)
                    await self.broker.start()
            except Exception as exc:
                await stack.aclose()
                refused = await kafka_refusal(self.settings, exc)
                if refused is not None:
                    # Waiting will not fix a password, a CA or an ACL: one line, then stop.
                    log.error("kafka_refused", service=self.settings.service_name, cause=refused)
                    raise StartupError(
                        f"{self.settings.service_name}: Kafka refused this client: {refused}"
                    ) from exc
                if not isinstance(exc, NOT_YET_THERE):
                    raise
                attempt += 1
                if loop.time() >= deadline:
                    raise StartupError(
                        f"{self.settings.service_name}: Kafka or MongoDB still unreachable after "
                        f"{self.settings.startup_timeout_seconds:g} s ({exc!r}); check "
                        "kafka_bootstrap_servers and mongo_uri, or start them (bookify infra up)"
                    ) from exc
                log.warning("waiting_for_dependencies", error=repr(exc), attempt=attempt)
                await asyncio.sleep(min(5.0, 0.25 * 2**attempt))
                continue
            async with stack:
                yield deps
            return

    @contextmanager
    def _using(self, deps: DepsT) -> Iterator[None]:
        self._deps = deps
        self._handlers = [handler_for(deps) for handler_for in self._handler_factories]
        try:
            yield
        finally:
            self._deps, self._handlers = None, []

    async def readiness(self) -> dict[str, bool]:
        """Whether each dependency answers within ``readiness_timeout_seconds``."""
        return (await self.readiness_report()).checks

    async def readiness_report(self) -> ReadinessReport:
        """:meth:`readiness`, why each dependency that refuses this service does, and which
        outages leave it ready."""
        checks = self.deps.readiness
        names = list(checks)
        results = dict(
            zip(names, await asyncio.gather(*(self._check(checks[n]) for n in names)), strict=True)
        )
        return ReadinessReport(
            checks={name: ok for name, (ok, _) in results.items()},
            causes={name: cause for name, (_, cause) in results.items() if isinstance(cause, str)},
            tolerated=frozenset(n for n, (_, cause) in results.items() if cause is OutageTolerated),
        )

    async def _check(
        self, check: ReadinessCheck
    ) -> tuple[bool, str | type[OutageTolerated] | None]:
        try:
            async with asyncio.timeout(self.settings.readiness_timeout_seconds):
                return await check(), None
        except KafkaRefusedError as exc:
            return False, str(exc)
        except OutageTolerated:
            return False, OutageTolerated
        except Exception:  # a probe answers "not ready", it never fails the request
            return False, None


class _Started:
    """The handler the runtime built from its deps, looked up on every call."""

    def __init__(self, current: Callable[[], BatchHandler]) -> None:
        self._current = current

    async def __call__(self, message: Message) -> None:
        await self._current()(message)

    async def many(self, deliveries: Sequence[Delivery]) -> None:
        await self._current().many(deliveries)

    async def settle(self, message: Message, error: BaseException) -> None:
        await self._current().settle(message, error)


async def mongo_ping(client: AsyncMongoClient[Document]) -> bool:
    await client.admin.command("ping")
    return True


def standard_readiness(
    runtime: ServiceRuntime[Any, Any, Any], mongo: AsyncMongoClient[Document]
) -> dict[str, ReadinessCheck]:
    """Kafka through the runtime's broker and MongoDB through its client."""
    return {"kafka": runtime.kafka_ping, "mongodb": partial(mongo_ping, mongo)}
