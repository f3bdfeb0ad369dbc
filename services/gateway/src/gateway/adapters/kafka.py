"""The gateway's Kafka adapter: commands published through FastStream's KafkaBroker."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from contextlib import suppress
from typing import Any

from aiokafka import AIOKafkaClient
from faststream.kafka import KafkaBroker

from gateway.ports import DependencyUnavailableError
from shared.events import Command, encode
from shared.kafka_security import KafkaRefusedError
from shared.logging import get_logger
from shared.service import OutageTolerated

log = get_logger(__name__)


class KafkaCommandPublisher:
    """Publishes commands with FastStream's broker; returns only after acks=all.

    The broker may be down when the gateway starts: connecting is retried lazily, under
    a lock, by the next publish or readiness probe, each bounded by its timeout, so the
    gateway starts and answers 503 instead of hanging.
    """

    RECONNECT_COOLDOWN_SECONDS = 1.0

    def __init__(
        self,
        broker: KafkaBroker,
        *,
        topic: str,
        source: str,
        publish_timeout: float,
        connect_timeout: float,
        client_options: Mapping[str, Any],
        diagnose: Callable[[BaseException], Awaitable[str | None]],
        on_connect: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._broker = broker
        self._client_options = client_options
        self._diagnose = diagnose  # why the cluster refuses us, if it does (shared.kafka)
        self._refused: str | None = None
        self._on_connect = on_connect
        self._topic = topic
        self._source = source
        self._publish_timeout = publish_timeout
        self._connect_timeout = connect_timeout
        self._lock = asyncio.Lock()
        self._connected = False
        self._has_connected = False  # ever, since start: a later outage is a blip
        self._retry_at = 0.0  # loop time before which we do not retry a failed connect

    async def connect(self) -> bool:
        """Try once to connect (bounded by connect_timeout); True when connected."""
        async with self._lock:
            if self._connected:
                return True
            loop = asyncio.get_running_loop()
            if loop.time() < self._retry_at:
                # Fail fast while Kafka is known down: a burst of writes must not queue up
                # behind one connect attempt each.
                return False
            try:
                async with asyncio.timeout(self._connect_timeout):
                    await self._probe()
                    await self._broker.start()
            except Exception as exc:  # any failure here means "Kafka not reachable yet"
                with suppress(Exception):  # drop the half-built producer/admin clients
                    await self._broker.stop()
                self._retry_at = loop.time() + self.RECONNECT_COOLDOWN_SECONDS
                refused = await self._diagnose(exc)
                if refused is None:
                    log.warning("kafka connect failed", error=f"{type(exc).__name__}: {exc}")
                elif refused != self._refused:  # once per cause, not once per probe
                    log.error("kafka_refused", cause=refused)
                self._refused = refused
                return False
            self._connected, self._refused = True, None
        if self._on_connect is not None:
            try:
                await self._on_connect()
            except Exception as exc:
                # The cluster is not as the settings want it (the topics): publishing there
                # would be wrong. Stay disconnected, say why; every later connect checks again.
                await self._disconnect(refused=str(exc))
                raise
        self._has_connected = True
        return True

    async def _disconnect(self, *, refused: str) -> None:
        async with self._lock:
            if refused != self._refused:
                log.error("kafka_refused", cause=refused)
            self._connected, self._refused = False, refused
            self._retry_at = asyncio.get_running_loop().time() + self.RECONNECT_COOLDOWN_SECONDS
            with suppress(Exception):
                await self._broker.stop()

    async def _probe(self) -> None:
        # FastStream leaks its half-started producer when bootstrap fails (an "Unclosed
        # AIOKafkaProducer" warning per attempt), so check with a client we close ourselves.
        client = AIOKafkaClient(**self._client_options)
        try:
            await client.bootstrap()
        finally:
            await client.close()

    async def close(self) -> None:
        async with self._lock:
            self._connected = False
            await self._broker.stop()

    async def publish(self, command: Command) -> None:
        value, headers = encode(command, source=self._source)
        handed_over = False
        try:
            # connect() is bounded by the connect timeout; nothing is sent before it.
            if not self._connected and not await self.connect():
                raise DependencyUnavailableError("kafka", "broker not reachable")
            handed_over = True
            # A backstop only: the producer's own request timeout is shorter (GatewaySettings
            # checks it), so the send settles first, acked or failed, and is never abandoned.
            async with asyncio.timeout(self._publish_timeout):
                await self._broker.publish(
                    value,
                    self._topic,
                    key=str(command.partition_key).encode(),
                    headers=headers,
                    # FastStream's id for the message in every service's logs: the command's
                    # own (else it draws a fresh uuid4 per publish).
                    correlation_id=headers["ce_id"],
                )
        except DependencyUnavailableError:
            raise
        except Exception as exc:
            # Whatever the client raised (KafkaError, timeout, connection reset), the
            # command is not known to be durable: the caller must answer 503, never 500. Once
            # handed to the producer it may still land: the 503 must say so.
            log.warning(
                "command publish failed",
                ce_type=command.ce_type,
                command_id=str(command.command_id),
                error=f"{type(exc).__name__}: {exc}",
                outcome_unknown=handed_over,
            )
            raise DependencyUnavailableError(
                "kafka", type(exc).__name__, outcome_unknown=handed_over
            ) from None

    async def ready(self, within: float) -> bool:
        """For /readyz: :meth:`ping` within ``within`` seconds, but once the gateway has
        published, a Kafka outage leaves it ready (:class:`OutageTolerated`): its own 503s
        tell a client whether its write may have landed, which a load balancer's bare 503
        cannot. A gateway that never reached Kafka is not ready, so a rollout does not
        replace working pods with ones that cannot publish; a refusal is never tolerated."""
        try:
            async with asyncio.timeout(within):
                if await self.ping():
                    return True
        except TimeoutError:
            pass
        if self._has_connected:
            raise OutageTolerated
        return False

    async def ping(self) -> bool:
        """Connected and answering; :class:`KafkaRefusedError` naming why when refused."""
        if not self._connected:
            try:
                connected = await self.connect()
            except Exception as exc:  # connected, but the cluster is not as it should be
                raise KafkaRefusedError(str(exc)) from exc
            if not connected:
                if self._refused is not None:
                    raise KafkaRefusedError(self._refused)
                return False
        return await self._broker.ping(timeout=self._connect_timeout)
