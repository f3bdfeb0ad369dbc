"""``python -m gateway`` stopping as a rollout stops it: SIGTERM first drains (its /readyz
answers 503 while the API still serves), then the process stops cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from bookify_platform.infra import free_ports
from tests.integration.booking.test_booking_process import read, wait_ready
from tests.support.auth import bearer

pytestmark = pytest.mark.integration

DRAIN_SECONDS = 5


async def test_sigterm_turns_readyz_503_while_the_api_still_serves_then_stops_cleanly(
    kafka: Any, mongo: Any, unique_id: str, tmp_path: Path
) -> None:
    [port] = free_ports(1)
    p = "BOOKIFY_GATEWAY_"
    env = {
        **os.environ,
        f"{p}KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        f"{p}MONGO_URI": mongo.uri,
        f"{p}TOPIC_PREFIX": f"{unique_id}-",
        f"{p}DB_NAME": unique_id.replace("-", "_"),
        f"{p}ENVIRONMENT": "test",
        f"{p}HOST": "127.0.0.1",
        f"{p}PORT": str(port),
        f"{p}RATE_LIMIT_STORAGE": "memory://",
        f"{p}DRAIN_SECONDS": str(DRAIN_SECONDS),
        "OTEL_SDK_DISABLED": "true",
    }
    log = tmp_path / "gateway.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", env=env, stdout=out, stderr=out
        )
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(proc, url, log)
        proc.send_signal(signal.SIGTERM)
        async with httpx.AsyncClient(base_url=url, timeout=5) as http:
            ready = await http.get("/readyz")
            for _ in range(200):  # the signal lands within a moment
                if ready.status_code != 200:
                    break
                await asyncio.sleep(0.05)
                ready = await http.get("/readyz")
            # Draining: not ready, yet an API request is still answered (a closed listener
            # would refuse the connection).
            unknown = await http.get(f"/v1/bookings/{uuid.uuid4()}", headers=bearer("alice"))
        code = await asyncio.wait_for(proc.wait(), timeout=DRAIN_SECONDS + 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    assert ready.status_code == 503
    assert ready.json()["detail"] == "not ready: shutting down"
    assert unknown.status_code == 404, unknown.text
    text = read(log)
    assert code == 0, text
    assert "Traceback" not in text
    assert text.index('"event": "draining"') < text.index('"event": "service_stopped"')
