"""Kafka frozen (SIGSTOP) for 10 s under booking traffic, then thawed (SIGCONT).

A frozen broker is worse than a dead one: connections stay open and nothing answers, so
every client waits for its own timeout. Gateways answer 503 meanwhile; once Kafka thaws,
every accepted booking is decided, seats are conserved and nothing is booked twice.
"""

from __future__ import annotations

import asyncio
import signal

import pytest

from loadtests.chaos.nemesis import landed, process_state
from tests.chaos.traffic import ChaosRun, OwnStack, Report

pytestmark = pytest.mark.chaos

FROZEN_SECONDS = 10.0


async def test_a_frozen_kafka_loses_and_doubles_nothing(
    own_stack: OwnStack, report: Report
) -> None:
    kafka = own_stack.infra.process("kafka")
    async with ChaosRun(own_stack.target, name="kafka-frozen", capacity=300) as run:
        run.start(seconds=18)
        await run.flowing()
        kafka.send_signal(signal.SIGSTOP)
        try:
            run.fault_began()
            # The fault landed: the kernel says the JVM is stopped, not merely slow.
            await landed(kafka.pid, lambda s: s == "T", "stopped")
            await asyncio.sleep(FROZEN_SECONDS)  # the outage itself, proven above and below
            assert process_state(kafka.pid) == "T", "Kafka thawed before SIGCONT"
        finally:
            kafka.send_signal(signal.SIGCONT)
        await landed(kafka.pid, lambda s: s not in ("T", ""), "running again")
        run.fault_ended()
        await run.finish(report)
