"""Fault injection for load and chaos tests: off by default, refused outside dev and test.

Each service's runtime holds one :class:`FaultSwitch`. Operators (the load-test harness)
read and set its :class:`FaultSettings` over HTTP, ``GET``/``PUT /admin/faults`` (the
gateway under ``/v1/admin/faults``; see :mod:`shared.ops`), with a bearer token that has the
``resources:admin`` scope. Where the faults apply:

- gateway: added latency and a fraction of requests answered 503/500 (ASGI middleware);
- booking and consumer (:func:`shared.kafka.subscribe`): added latency before the handler,
  a fraction of attempts failing with :class:`InjectedFaultError` (retried with backoff by
  :mod:`shared.messaging`) and a fraction of messages that are *poison*
  (:class:`InjectedPoisonError` on every attempt, decided by the message id, so they exhaust
  their retries and land in the DLQ).

A switch built for ``environment=prod`` can never be turned on: :meth:`FaultSwitch.update`
raises :class:`FaultsRefusedError`, and the admin endpoints answer 404.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import random
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.logging import get_logger
from shared.settings import Environment

log = get_logger(__name__)

# Where every service serves its switch (the gateway under /v1); see shared.ops.
ADMIN_PATH = "/admin/faults"
ALLOWED_ENVIRONMENTS = frozenset({Environment.DEV, Environment.TEST})


class KillPoint(StrEnum):
    """Where a process can be made to die on purpose, each named where its code reaches it."""

    AFTER_APPEND = "after_append"
    """booking: the batch's ledger entries are stored, none of its events is sent yet."""

    MID_BATCH = "mid_batch"
    """consumer: a batch's first bulk write (the resources) is stored, the rest is not."""


class FaultSettings(BaseModel):
    """What to inject. All zero (the default) means nothing is injected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    latency_ms: float = Field(default=0.0, ge=0, le=30_000, description="Added to each request.")
    error_rate: float = Field(
        default=0.0, ge=0, le=1, description="Fraction of requests/attempts that fail."
    )
    error_status: Literal[500, 503] = Field(
        default=503, description="HTTP status of an injected error (gateway)."
    )
    poison_rate: float = Field(
        default=0.0, ge=0, le=1, description="Fraction of messages that fail every attempt."
    )
    kill_at: KillPoint | None = Field(
        default=None,
        description="SIGKILL this process the next time it reaches this point (chaos tests).",
    )
    duration_seconds: float = Field(
        default=300.0,
        gt=0,
        le=3600,
        description="The faults switch themselves off after this long, like any chaos "
        "experiment: a forgotten or hostile setting cannot keep the service degraded.",
    )

    @property
    def active(self) -> bool:
        return (
            self.latency_ms > 0
            or self.error_rate > 0
            or self.poison_rate > 0
            or self.kill_at is not None
        )


OFF = FaultSettings()


class FaultsRefusedError(Exception):
    """Fault injection was asked for in an environment that does not allow it."""


class InjectedFaultError(RuntimeError):
    """A transient failure injected on purpose (a retry may succeed)."""


class InjectedPoisonError(InjectedFaultError):
    """A message chosen as poison: every attempt fails, so it ends in the DLQ."""


def _unit_hash(key: str) -> float:
    """A stable number in [0, 1) for ``key``: the same message is poison on every attempt."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class FaultSwitch:
    """The current :class:`FaultSettings` of one process, and the dice that apply them."""

    def __init__(
        self,
        environment: Environment | str,
        *,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.environment = Environment(environment)
        self._settings = OFF
        self._expires_at = 0.0
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._clock = clock
        self.injected: Counter[str] = Counter()

    @property
    def allowed(self) -> bool:
        return self.environment in ALLOWED_ENVIRONMENTS

    @property
    def settings(self) -> FaultSettings:
        """What is injected now: OFF once the settings' duration has run out."""
        if self._settings is not OFF and self._clock() >= self._expires_at:
            self._settings = OFF
        return self._settings

    def update(self, settings: FaultSettings) -> FaultSettings:
        if not self.allowed and settings.active:
            raise FaultsRefusedError(
                f"fault injection is disabled in environment={self.environment.value}; "
                "it is only available in dev and test"
            )
        self._settings = settings if settings.active else OFF
        self._expires_at = self._clock() + settings.duration_seconds
        return settings

    # ------------------------------------------------------------ the dice
    def latency_s(self) -> float:
        return self.settings.latency_ms / 1000.0

    def roll_error(self) -> bool:
        rate = self.settings.error_rate
        hit = rate > 0 and self._rng.random() < rate
        if hit:
            self.injected["error"] += 1
        return hit

    def is_poison(self, key: str) -> bool:
        rate = self.settings.poison_rate
        hit = rate > 0 and _unit_hash(key) < rate
        if hit:
            self.injected["poison"] += 1
        return hit

    async def delay(self) -> None:
        if (seconds := self.latency_s()) > 0:
            self.injected["latency"] += 1
            await self._sleep(seconds)

    async def before_handling(self, key: str) -> None:
        """For message handlers: added latency, then maybe a poison or transient error."""
        if not self.settings.active:
            return
        await self.delay()
        if self.is_poison(key):
            raise InjectedPoisonError(f"injected poison message {key}")
        if self.roll_error():
            raise InjectedFaultError("injected transient handler error")

    def checkpoint(self, point: KillPoint) -> None:
        """Die here by SIGKILL if ``kill_at`` names this point: a crash at an exact place.

        The line logged first is how a chaos test proves the kill landed where it claims.
        """
        if self.settings.kill_at is point:
            log.error("fault_kill_point", point=point.value, pid=os.getpid())
            logging.shutdown()  # flush the line above: nothing runs after SIGKILL
            os.kill(os.getpid(), signal.SIGKILL)

    def state(self) -> dict[str, Any]:
        """The JSON body of ``GET /admin/faults``."""
        return {
            "allowed": self.allowed,
            "environment": self.environment.value,
            "settings": self.settings.model_dump(),
            "expires_in_seconds": max(0.0, self._expires_at - self._clock())
            if self.settings.active
            else 0.0,
            "injected": dict(self.injected),
        }
