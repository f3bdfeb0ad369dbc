"""Kafka killed -9 under booking traffic and restarted on the same data dir.

Everything a 202 promised was acked by the broker, so it survives the crash (the kill is of
the process, not the machine: the page cache keeps what was not fsynced). The services ride
out the outage; afterwards every accepted booking is decided, once, and seats are conserved.
"""

from __future__ import annotations

import asyncio
import signal

import pytest

from tests.chaos.traffic import ChaosRun, OwnStack, Report

pytestmark = pytest.mark.chaos


async def test_a_kafka_crash_loses_and_doubles_nothing(own_stack: OwnStack, report: Report) -> None:
    infra = own_stack.infra
    kafka = infra.process("kafka")
    async with ChaosRun(own_stack.target, name="kafka-killed", capacity=300) as run:
        run.start(seconds=20)
        await run.flowing()
        kafka.kill()
        run.fault_began()
        # The fault landed: the broker died of the SIGKILL, with no chance to shut down.
        assert await asyncio.to_thread(kafka.wait, 10) == -signal.SIGKILL
        # The clients notice before it comes back (a gateway cannot publish: 503).
        await run.wait_for_answer("POST 503", since=run.fault_start or 0.0)
        infra.restart("kafka")  # from this thread: attached servers die with their spawner
        await asyncio.to_thread(infra.wait_ready, "kafka")
        run.fault_ended()
        await run.finish(report)
