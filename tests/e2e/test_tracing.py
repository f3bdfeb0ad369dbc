"""One trace per booking across gateway → Kafka → booking → Kafka → consumer (DESIGN §5).

The services export to an OTLP receiver inside this test process (tests/otlp.py); the client
starts each trace with its own ``traceparent`` so every booking's trace is known by id.
"""

from __future__ import annotations

import asyncio
import secrets
import time

import pytest

from bookify_platform.services import PlatformConfig
from tests.otlp import OtlpReceiver, Span
from tests.stack import Api

pytestmark = pytest.mark.e2e


def one(spans: list[Span], **match: str) -> Span:
    found = [s for s in spans if all(getattr(s, k) == v for k, v in match.items())]
    assert len(found) == 1, f"expected one span {match}, got {[s.name for s in found]}"
    return found[0]


def child_of(span: Span, parent: Span) -> bool:
    return span.parent_span_id == parent.span_id


def descends_from(span: Span, ancestor: Span, by_id: dict[str, Span]) -> bool:
    while span.parent_span_id in by_id:
        span = by_id[span.parent_span_id]
        if span.span_id == ancestor.span_id:
            return True
    return False


async def book_in_a_trace(api: Api, resource: str, who: str) -> tuple[str, str, str]:
    trace_id, client_span = secrets.token_hex(16), secrets.token_hex(8)
    response = await api.http.post(
        "/v1/bookings",
        json={"resource_id": resource, "quantity": 1},
        headers={**api.auth(who), "traceparent": f"00-{trace_id}-{client_span}-01"},
    )
    assert response.status_code == 202
    return trace_id, client_span, response.json()["id"]


async def complete_trace(otlp: OtlpReceiver, trace_id: str, events_topic: str) -> list[Span]:
    """The trace once the consumer's span (the last hop) has arrived, plus a moment more."""
    deadline = time.monotonic() + 15
    while not any(s.name == f"{events_topic} process" for s in otlp.trace(trace_id)):
        assert time.monotonic() < deadline, f"trace {trace_id} never reached the consumer"
        await asyncio.sleep(0.2)
    await asyncio.sleep(0.5)
    return otlp.trace(trace_id)


async def test_each_booking_is_one_trace_across_all_three_services(
    api: Api, otlp: OtlpReceiver, stack_config: PlatformConfig
) -> None:
    prefix = stack_config.topic_prefix
    commands, events = f"{prefix}bookify.commands", f"{prefix}bookify.events"
    resource = await api.create_resource(capacity=5)
    bookings = [await book_in_a_trace(api, resource, f"tracy-{i}") for i in range(3)]

    for trace_id, client_span, booking_id in bookings:
        spans = await complete_trace(otlp, trace_id, events)
        by_id = {s.span_id: s for s in spans}
        assert {s.service for s in spans} == {
            "bookify-gateway",
            "bookify-booking",
            "bookify-consumer",
        }

        http = one(spans, service="bookify-gateway", kind="SERVER")
        assert http.name == "POST /v1/bookings"
        assert http.parent_span_id == client_span
        sent = one(spans, service="bookify-gateway", kind="PRODUCER", name=f"{commands} publish")
        assert descends_from(sent, http, by_id)

        decided = one(spans, service="bookify-booking", kind="CONSUMER")
        assert decided.name == f"{commands} process"
        hop = by_id[decided.parent_span_id]  # the gateway's producer span, across Kafka
        assert (hop.service, hop.kind) == ("bookify-gateway", "PRODUCER")
        assert decided.attributes["bookify.booking_id"] == booking_id
        ledger_writes = [s for s in spans if s.service == "bookify-booking" and s.kind == "CLIENT"]
        assert all(child_of(s, decided) for s in ledger_writes)
        if not ledger_writes:
            # Decided in a batch with others: the batch's one ledger write is in the span of
            # its first command, which this command's span links to.
            [writer] = decided.links
            ledger_writes = [s for s in otlp.children_of(writer) if s.kind == "CLIENT"]
        assert any(s.attributes.get("db.statement") == "insert" for s in ledger_writes)
        announced = one(spans, service="bookify-booking", kind="PRODUCER", name=f"{events} publish")
        assert descends_from(announced, decided, by_id)

        projected = one(spans, service="bookify-consumer", kind="CONSUMER")
        assert projected.name == f"{events} process"
        hop = by_id[projected.parent_span_id]  # the booking service's producer span
        assert (hop.service, hop.kind) == ("bookify-booking", "PRODUCER")
        assert descends_from(hop, decided, by_id)
        assert projected.attributes["bookify.booking_id"] == booking_id

        orphans = [s.name for s in spans if s.parent_span_id not in by_id and s is not http]
        assert orphans == []
