"""What the gateway's fast lane saves: the app's CPU per accepted booking (POST /v1/bookings,
202), with the lane and without it (every request through FastAPI's routing), interleaved in
one process so both meet the same machine. A measurement behind gateway.fast_lane, not a test.

    uv run python -m tests.support.lane_cost                  # 8 rounds of 2,000 POSTs each
    uv run python -m tests.support.lane_cost --rounds 4 --requests 5000

Every port is a fake (tests/unit/gateway/fakes.py) and each request goes straight into the
ASGI app, so the figures are the app's own work (middlewares, routing, validation, the
token, the rate limit, the use case) without a server, a socket or a client. Tracing is
off, as ``bookify up`` runs the gateway without a collector.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from typing import Any
from uuid import UUID, uuid4

from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider

from gateway.app import create_app
from tests.unit.gateway.conftest import bearer, settings, without_lane
from tests.unit.gateway.fakes import Fakes


def build(resource: UUID, *, lane: bool) -> tuple[FastAPI, Fakes]:
    fakes = Fakes()
    fakes.views.add_resource(resource)
    unlimited = settings(rate_limit_burst=10**9, rate_limit_per_second=10**9)
    app = create_app(unlimited, overrides=fakes.deps(), tracer_provider=TracerProvider())
    return (app if lane else without_lane(app)), fakes


async def post(app: Any, headers: list[tuple[bytes, bytes]], body: bytes) -> int:
    """One POST /v1/bookings straight into ``app``: its status."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/bookings",
        "raw_path": b"/v1/bookings",
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def cpu_per_post(app: Any, fakes: Fakes, requests: int, body: bytes) -> float:
    """Microseconds of this process's CPU per 202."""
    headers = [
        (b"host", b"gateway"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *((k.lower().encode(), v.encode()) for k, v in bearer().items()),
    ]
    start = time.process_time()
    for _ in range(requests):
        if (status := await post(app, headers, body)) != 202:
            raise SystemExit(f"expected 202, got {status}")
    spent = time.process_time() - start
    fakes.publisher.published.clear()
    fakes.accepted.records.clear()
    return spent / requests * 1e6


async def main(args: argparse.Namespace) -> None:
    os.environ["OTEL_SDK_DISABLED"] = "true"  # read by each TracerProvider: no spans
    resource = uuid4()
    body = json.dumps({"resource_id": str(resource), "quantity": 1}).encode()
    (lane, lane_fakes), (plain, plain_fakes) = (
        build(resource, lane=True),
        build(resource, lane=False),
    )
    runs: dict[str, list[float]] = {"lane": [], "no lane": []}
    async with LifespanManager(lane) as one, LifespanManager(plain) as two:
        apps = {"lane": (one.app, lane_fakes), "no lane": (two.app, plain_fakes)}
        for app, fakes in apps.values():  # warm: the stack built, the token verified once
            await cpu_per_post(app, fakes, 200, body)
        for _ in range(args.rounds):
            for name, (app, fakes) in apps.items():
                runs[name].append(await cpu_per_post(app, fakes, args.requests, body))
    for name, values in runs.items():
        print(
            f"{name:8} median {statistics.median(values):6.1f} us/POST  "
            f"runs {' '.join(f'{v:.0f}' for v in values)}"
        )
    ratio = statistics.median(runs["lane"]) / statistics.median(runs["no lane"])
    print(f"lane / no lane: {ratio:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--requests", type=int, default=2000)
    asyncio.run(main(parser.parse_args()))
