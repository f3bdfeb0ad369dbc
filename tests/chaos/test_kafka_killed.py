"""Kafka killed -9 under booking traffic and restarted on the same data dir.

Everything a 202 promised was acked by the broker, so it survives the crash (the kill is of
the process, not the machine: the page cache keeps what was not fsynced). The services ride
out the outage; afterwards every accepted booking is decided, once, and seats are conserved.
"""

from __future__ import annotations

import pytest

from tests.chaos.traffic import ChaosRun, OwnStack, Report, crash_and_restart

pytestmark = pytest.mark.chaos


async def test_a_kafka_crash_loses_and_doubles_nothing(own_stack: OwnStack, report: Report) -> None:
    async with ChaosRun(own_stack.target, name="kafka-killed", capacity=300) as run:
        run.start(seconds=20)
        await run.flowing()
        # The clients notice before it comes back (a gateway cannot publish: 503).
        await crash_and_restart(run, own_stack.infra, "kafka")
        await run.finish(report)
