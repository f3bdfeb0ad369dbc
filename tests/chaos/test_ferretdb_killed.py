"""FerretDB killed -9 under booking traffic and restarted on the same data dir.

The ledger, the views, the idempotency keys and the accepted records all live there.
Meanwhile keyed requests are refused (503, nothing accepted) and unkeyed ones may still be
accepted (Kafka has them); the booking worker and the projector wait. Afterwards every
accepted booking is decided once, and the ledger and the views agree on the seats.
"""

from __future__ import annotations

import asyncio
import signal

import pytest

from tests.chaos.traffic import ChaosRun, OwnStack, Report

pytestmark = pytest.mark.chaos

DOWN_SECONDS = 8.0


async def test_a_ferretdb_crash_loses_and_doubles_nothing(
    own_stack: OwnStack, report: Report
) -> None:
    infra = own_stack.infra
    ferretdb = infra.process("mongo")
    async with ChaosRun(own_stack.target, name="ferretdb-killed", capacity=250) as run:
        run.start(seconds=20)
        await run.flowing()
        ferretdb.kill()
        run.fault_began()
        # The fault landed: the server died of the SIGKILL, with no chance to shut down...
        assert await asyncio.to_thread(ferretdb.wait, 10) == -signal.SIGKILL
        # It restarts in a blink: stay down long enough for every service to run into it...
        await asyncio.sleep(DOWN_SECONDS)
        # ...and the stack felt it before it came back (a key cannot be reserved: 503).
        await run.wait_for_answer("POST 503", since=run.fault_start or 0.0)
        infra.restart("mongo")  # from this thread: attached servers die with their spawner
        await asyncio.to_thread(infra.wait_ready, "mongo")
        run.fault_ended()
        await run.finish(report)
