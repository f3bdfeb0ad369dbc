"""The projector killed -9 in the middle of a batch, under booking traffic.

The kill point fires after the batch's first bulk write (the resources' availability) and
before its bookings, notifications and processed marks: the views are half-updated and the
offsets not committed. After a restart the batch comes again; each write is idempotent and
guarded by version, so the views end up exactly where the ledger says.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
from pathlib import Path

import pytest

from bookify_platform.services import Platform
from tests.chaos.traffic import ChaosRun, Report, Target, log_records, set_faults

pytestmark = pytest.mark.chaos


def logged_kill_points(log: Path) -> list[str]:
    return [str(r.get("point")) for r in log_records(log) if r.get("event") == "fault_kill_point"]


async def test_a_projector_killed_mid_batch_heals_the_views(
    stack: Platform, stack_target: Target, report: Report, tmp_path: Path
) -> None:
    consumer = stack["consumer"]
    assert consumer.proc is not None
    async with ChaosRun(stack_target, name="consumer-mid-batch", capacity=150) as run:
        run.start(seconds=20)  # the restart happens under traffic too
        await run.flowing()
        await set_faults(consumer.url, kill_at="mid_batch")
        run.fault_began()
        # The fault landed where it claims: the next batch said so, then died of SIGKILL.
        assert await asyncio.to_thread(consumer.proc.wait, 30) == -signal.SIGKILL
        # start() truncates the log: keep the crash's evidence next to the test's files.
        shutil.copy(consumer.log_path, tmp_path / "consumer-killed.log")
        assert logged_kill_points(tmp_path / "consumer-killed.log") == ["mid_batch"]
        consumer.start()  # from this thread: attached services die with their spawner
        await asyncio.to_thread(consumer.wait_ready)
        run.fault_ended()
        await run.finish(report)
