"""Every service's /metrics passes `promtool check metrics` and carries the contract's names."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time

import pytest

from bookify_platform.services import Platform
from tests.stack import Api

pytestmark = pytest.mark.e2e

CONTRACT = {
    "gateway": [
        "bookify_http_requests_total",
        "bookify_http_request_duration_seconds_bucket",
        "bookify_push_streams_open",
    ],
    "booking": [
        "bookify_bookings_total",
        "bookify_dlq_messages_total",
        "faststream_received_messages_total",
        "faststream_published_messages_total",
    ],
    "consumer": [
        "bookify_booking_e2e_seconds_bucket",
        "bookify_consumer_lag",
        "bookify_dlq_messages_total",
        "faststream_received_processed_messages_duration_seconds_bucket",
    ],
}


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool not found: run `make tools`"
    return path


@pytest.fixture
async def traffic(api: Api) -> None:
    """One booking through the pipeline, so every histogram and counter has samples."""
    resource = await api.create_resource(capacity=2)
    booking = await api.book(resource, "metrics-user")
    await api.wait_terminal(booking.json()["id"], "metrics-user")


@pytest.mark.parametrize("service", ["gateway", "booking", "consumer"])
async def test_metrics_pass_promtool_and_name_the_contract(
    api: Api, stack: Platform, traffic: None, service: str
) -> None:
    # Gauges such as the consumer lag are sampled every few seconds: wait for the first one.
    deadline = time.monotonic() + 20
    while True:
        text = (await api.http.get(f"{stack[service].url}/metrics")).text  # type: ignore[index]
        names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] != "#"}
        if set(CONTRACT[service]) <= names or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert set(CONTRACT[service]) <= names
    check = await asyncio.to_thread(
        subprocess.run,
        [promtool(), "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (check.returncode, check.stdout + check.stderr) == (0, "")


async def test_e2e_latency_exemplars_carry_trace_ids(
    api: Api, stack: Platform, traffic: None
) -> None:
    response = await api.http.get(
        f"{stack['consumer'].url}/metrics",
        headers={"Accept": "application/openmetrics-text; version=1.0.0"},
    )
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    exemplars = [
        line
        for line in response.text.splitlines()
        if line.startswith("bookify_booking_e2e_seconds_bucket") and ' # {trace_id="' in line
    ]
    assert exemplars, "no exemplar with a trace_id on bookify_booking_e2e_seconds"
