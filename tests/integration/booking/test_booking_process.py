"""``python -m booking`` as a real process: it becomes ready, serves its probes, and a
SIGTERM stops it cleanly (exit code 0, no traceback)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from bookify_platform.infra import free_ports

pytestmark = pytest.mark.integration


def read(log: Path) -> str:
    return log.read_text(errors="replace")


async def wait_ready(
    proc: asyncio.subprocess.Process, url: str, log: Path, within: float = 60
) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(timeout=2) as http:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise AssertionError(f"booking exited with {proc.returncode}:\n{read(log)}")
            try:
                if (await http.get(f"{url}/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError(f"booking not ready after {within} s:\n{read(log)}")


async def test_the_booking_process_is_ready_then_stops_cleanly_on_sigterm(
    kafka: Any, mongo: Any, mongo_db: Any, topic_factory: Any, unique_id: str, tmp_path: Path
) -> None:
    for name in ("bookify.commands", "bookify.events", "bookify.dlq"):
        await topic_factory(name)
    [port] = free_ports(1)
    env = {
        **os.environ,
        "BOOKIFY_BOOKING_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "BOOKIFY_BOOKING_MONGO_URI": mongo.uri,
        "BOOKIFY_BOOKING_TOPIC_PREFIX": f"{unique_id}-",
        "BOOKIFY_BOOKING_TOPIC_PARTITIONS": "1",  # as topic_factory made them
        "BOOKIFY_BOOKING_DB_NAME": mongo_db.name,
        "BOOKIFY_BOOKING_ENVIRONMENT": "test",
        "BOOKIFY_BOOKING_HOST": "127.0.0.1",
        "BOOKIFY_BOOKING_PORT": str(port),
        "OTEL_SDK_DISABLED": "true",
    }
    log = tmp_path / "booking.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "booking", env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        url = f"http://127.0.0.1:{port}"
        await wait_ready(proc, url, log)
        async with httpx.AsyncClient(timeout=5) as http:
            assert (await http.get(f"{url}/healthz")).status_code == 200
            metrics = await http.get(f"{url}/metrics")
        assert 'bookify_bookings_total{outcome="confirmed"} 0.0' in metrics.text
        indexes = await mongo_db["ledger"].index_information()
        assert {"resource_seq", "op_key"} <= set(indexes)

        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), timeout=30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    text = read(log)
    assert code == 0, text
    assert "Traceback" not in text
    assert '"event": "service_stopped"' in text  # the lifespan's shutdown ran to its end
