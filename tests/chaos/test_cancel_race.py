"""Cancels racing confirms: each of many clients cancels its booking the moment its 202
arrives, while the request is still being decided, all at once and under booking traffic.

Commands of one resource share a partition, so the cancel is decided after the request
(often in the same batch): a confirmed booking ends cancelled (its seats back), a rejected
one stays rejected, and no seat is released twice or leaks. One wave races while seats are
left, one once they are sold out.
"""

from __future__ import annotations

import pytest

from bookify_platform.services import Platform
from tests.chaos.traffic import ChaosRun, Report, Target, set_faults

pytestmark = pytest.mark.chaos

RACERS = 45  # per wave
# Left alone, booking often decides a request before its client's cancel even reaches the
# gateway, and there is no race. A little latency per command keeps every request pending
# for a moment, so each cancel is accepted while its request is still undecided.
DECIDE_LATENCY_MS = 20


async def test_cancels_racing_confirms_release_each_seat_once(
    stack: Platform, stack_target: Target, report: Report
) -> None:
    async with ChaosRun(stack_target, name="cancel-race", capacity=200) as run:
        run.start(seconds=14)
        await run.flowing()
        await set_faults(stack["booking"].url, latency_ms=DECIDE_LATENCY_MS, duration_seconds=60)
        try:
            run.fault_began()
            await run.race_cancels(RACERS)
            await run.sold_out()
            await run.race_cancels(RACERS)
        finally:
            await set_faults(stack["booking"].url)  # all off
        run.fault_ended()
        figures = await run.finish(report)
    # The race really ran: cancels accepted while their booking was still pending, confirmed
    # bookings cancelled, rejected ones left alone.
    assert figures["cancel_202_while_pending"] > 0
    assert figures["cancelled"] > 0
    assert figures["rejected"] > 0
    assert figures["cancel_202"] + figures["cancel_409"] == 2 * RACERS
