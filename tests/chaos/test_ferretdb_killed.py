"""FerretDB killed -9 under booking traffic and restarted on the same data dir.

The ledger, the views, the idempotency keys and the accepted records all live there.
Meanwhile keyed requests are refused (503, nothing accepted) and unkeyed ones may still be
accepted (Kafka has them); the booking worker and the projector wait. Afterwards every
accepted booking is decided once, and the ledger and the views agree on the seats.
"""

from __future__ import annotations

import pytest

from tests.chaos.traffic import ChaosRun, OwnStack, Report, crash_and_restart

pytestmark = pytest.mark.chaos

DOWN_SECONDS = 8.0


async def test_a_ferretdb_crash_loses_and_doubles_nothing(
    own_stack: OwnStack, report: Report
) -> None:
    async with ChaosRun(own_stack.target, name="ferretdb-killed", capacity=250) as run:
        run.start(seconds=20)
        await run.flowing()
        # FerretDB restarts in a blink: stay down long enough for every service to run into
        # it, and until the stack felt it (a key cannot be reserved: 503).
        await crash_and_restart(run, own_stack.infra, "mongo", down_at_least=DOWN_SECONDS)
        await run.finish(report)
