"""Locust users: the shop's customers (:class:`ShopperUser`), a ticket drop's crowd
(:class:`CrowdUser`, with ``--mix``) and a fuzzer (:class:`ErrorUser`).

A shopper repeats weighted flows against the gateway with think time between them:

- ``browse`` -- list resources (one page), then look at one (Zipf-skewed: hot resources);
- ``look`` -- look at one resource;
- ``book`` -- POST /v1/bookings with an Idempotency-Key, then wait for its decision
  (``--follow``: poll GET /v1/bookings/{id}, or read its push stream), recording the
  accepted -> known latency; cancel some of the confirmed ones.

Each flow is one trace (new ``traceparent`` trace id) carrying ``baggage:
bookify.run_id=<run id>``. Measurement stays off the request path: Locust's request event
feeds the recorder (see the locustfile), and e2e samples go to :data:`CONTEXT`'s ``sink``,
which only appends.

The error user sends the bad requests of :func:`loadtests.data.error_cases` with
``catch_response``: the expected 4xx is a success, anything else (a 5xx above all) a
failure. Process-wide state (pools, run id, sink) lives in :data:`CONTEXT`, filled by the
locustfile before any user starts.
"""

from __future__ import annotations

import contextlib
import itertools
import random
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.client import HTTPException
from typing import Any, Protocol

from loadtests._locust import FastHttpUser, task
from loadtests.data import (
    DECIDED,
    TERMINAL,
    BadTokens,
    ErrorCase,
    Pools,
    Principal,
    Trace,
    base_urls,
    booking_body,
    error_cases,
    idempotency_key,
    is_expected,
    quantity,
)
from loadtests.mix import (
    BOOK,
    EXPECTED,
    KEYED_SHARE,
    MIXES,
    READ_BOOKING,
    READ_SEATS,
    REBOOK,
    RECENT,
    RETRY,
    Booked,
)
from loadtests.sse import EventParser

# Request names, as recorded ("<METHOD> <name>") and exported.
LIST_RESOURCES = "/v1/resources"
ONE_RESOURCE = "/v1/resources/{id}"
BOOKINGS = "/v1/bookings"
ONE_BOOKING = "/v1/bookings/{id}"
CANCEL = "/v1/bookings/{id}/cancel"
BOOKING_EVENTS = "/v1/bookings/{id}/events"

# How a client learns its booking's decision (``--follow``).
POLL, PUSH = "poll", "push"
FOLLOW_MODES = (POLL, PUSH)

# Flow weights of a shopper: mostly looking, some booking.
FLOW_WEIGHTS = {"browse": 3, "look": 4, "book": 3}
CANCEL_SHARE = 0.2


class E2ESink(Protocol):
    def record_e2e(self, accepted_at: float, latency_s: float, name: str = "booking") -> None: ...


class _NoSink:
    def record_e2e(self, accepted_at: float, latency_s: float, name: str = "booking") -> None:
        return None


@dataclass
class Context:
    """What every user of this process shares; set up by the locustfile."""

    run_id: str = "local"
    pools: Pools | None = None
    bad_tokens: BadTokens | None = None
    sink: E2ESink = field(default_factory=_NoSink)
    think_s: tuple[float, float] = (0.5, 1.5)
    poll_timeout_s: float = 30.0
    follow: str = POLL
    cancel_share: float = CANCEL_SHARE
    mix: dict[str, float] | None = None
    """The crowd's operations (:mod:`loadtests.mix`), for :class:`CrowdUser`."""

    def require_pools(self) -> Pools:
        if self.pools is None:
            raise RuntimeError("the load-test data is not ready (no resources seeded)")
        return self.pools


CONTEXT = Context()


def poll_delays(first: float = 0.1, factor: float = 1.5, cap: float = 0.5) -> Iterator[float]:
    """Seconds to wait between polls: quick at first (most bookings decide fast), then
    backing off so a slow pipeline is not flooded with GETs."""
    delay = first
    while True:
        yield delay
        delay = min(cap, delay * factor)


def pick_flow(rng: random.Random, weights: dict[str, int] = FLOW_WEIGHTS) -> str:
    names = list(weights)
    return rng.choices(names, weights=[weights[n] for n in names])[0]


def pick_error_case(cases: list[ErrorCase], rng: random.Random) -> ErrorCase:
    return rng.choices(cases, weights=[c.weight for c in cases])[0]


def should_cancel(status: str, rng: random.Random, share: float = CANCEL_SHARE) -> bool:
    return status == "confirmed" and rng.random() < share


_spawned = itertools.count()  # users started by this process, for the gateway each one takes


class _BookifyUser(FastHttpUser):
    """What every simulated client shares: timeouts, its own RNG, think time."""

    abstract = True
    weight = 1
    network_timeout = 30.0
    connection_timeout = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Several gateways (--host a,b): each user keeps to one, in turn, as a load balancer
        # spreads connections. Set before FastHttpUser builds its client from self.host.
        if self.host and "," in self.host:
            urls = base_urls(self.host)
            self.host = urls[next(_spawned) % len(urls)]
        super().__init__(*args, **kwargs)
        self.rng = random.Random()

    def wait_time(self) -> float:
        low, high = CONTEXT.think_s
        return self.rng.uniform(low, high)

    # --------------------------------------------------------------- helpers
    def _get(self, path: str, name: str, who: Principal, trace: Trace) -> Any:
        headers = {**who.auth, **trace.headers()}
        with self.client.get(path, headers=headers, name=name, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"expected 200, got {response.status_code}")
                return None
            return response.json()

    def _wait_decision(
        self, booking_id: str, who: Principal, trace: Trace, accepted_at: float
    ) -> str | None:
        """The booking's final status, by ``--follow``; None on timeout or error."""
        wait = self._push if CONTEXT.follow == PUSH else self._poll
        return wait(booking_id, who, trace, accepted_at)

    def _poll(
        self, booking_id: str, who: Principal, trace: Trace, accepted_at: float
    ) -> str | None:
        """Poll until terminal; record accepted -> terminal latency. None on timeout/error."""
        deadline = accepted_at + CONTEXT.poll_timeout_s
        for delay in poll_delays():
            body = self._get(f"/v1/bookings/{booking_id}", ONE_BOOKING, who, trace)
            if body is None:
                return None
            status = str(body.get("status"))
            if status in TERMINAL:
                return self._known(status, accepted_at)
            if time.time() + delay > deadline:
                # An accepted booking that never decides is what the e2e SLO exists for.
                CONTEXT.sink.record_e2e(accepted_at, CONTEXT.poll_timeout_s, "timeout")
                return None
            self._sleep(delay)
        return None  # pragma: no cover - poll_delays is endless

    def _push(
        self, booking_id: str, who: Principal, trace: Trace, accepted_at: float
    ) -> str | None:
        """Read the booking's event stream until a final status; record accepted -> known
        latency. None on timeout or error (the stream's opening is the recorded request)."""
        headers = {**who.auth, **trace.headers(), "Accept": "text/event-stream"}
        deadline = accepted_at + CONTEXT.poll_timeout_s
        with self.client.request(
            "GET", f"/v1/bookings/{booking_id}/events", headers=headers, name=BOOKING_EVENTS,
            stream=True, catch_response=True,
        ) as response:  # fmt: skip
            if response.status_code != 200:
                response.failure(f"expected 200, got {response.status_code}")
                return None
            parser = EventParser()
            try:
                # A stream cut or timed out leaves the decision unknown: a timeout, below.
                with contextlib.suppress(OSError, HTTPException):
                    # One byte at a time: a bigger read waits for that many bytes, and the
                    # event that decides may be the last the stream sends for a while.
                    # Heartbeats (15 s) bound a read's wait, so how late the deadline is seen.
                    for byte in response.iter_content(chunk_size=1, decode_content=False):
                        for event in parser.feed(byte):
                            if event.id in TERMINAL:
                                return self._known(event.id, accepted_at)
                        if time.time() > deadline:
                            break
            finally:
                response.release()  # an unfinished stream's connection is closed, not reused
        CONTEXT.sink.record_e2e(accepted_at, CONTEXT.poll_timeout_s, "timeout")
        return None

    def _known(self, status: str, accepted_at: float) -> str:
        if status in DECIDED:
            CONTEXT.sink.record_e2e(accepted_at, time.time() - accepted_at, status)
        return status

    def _sleep(self, seconds: float) -> None:
        # Locust monkey-patches time.sleep into gevent's: other users run meanwhile.
        time.sleep(seconds)


class ShopperUser(_BookifyUser):
    """A customer: browses, looks at hot resources, books and waits for the outcome."""

    # --------------------------------------------------------------- flows
    @task(FLOW_WEIGHTS["browse"])
    def browse(self) -> None:
        pools = CONTEXT.require_pools()
        who = pools.principal(self.rng)
        trace = Trace(CONTEXT.run_id, self.rng)
        self._get(f"{LIST_RESOURCES}?limit=20", LIST_RESOURCES, who, trace)
        self._get(f"/v1/resources/{pools.resource(self.rng)}", ONE_RESOURCE, who, trace)

    @task(FLOW_WEIGHTS["look"])
    def look(self) -> None:
        pools = CONTEXT.require_pools()
        trace = Trace(CONTEXT.run_id, self.rng)
        resource = pools.resource(self.rng)
        self._get(f"/v1/resources/{resource}", ONE_RESOURCE, pools.principal(self.rng), trace)

    @task(FLOW_WEIGHTS["book"])
    def book(self) -> None:
        pools = CONTEXT.require_pools()
        who = pools.principal(self.rng)
        trace = Trace(CONTEXT.run_id, self.rng)
        body = booking_body(pools.resource(self.rng), quantity(self.rng))
        headers = {**who.auth, **trace.headers(), "Idempotency-Key": idempotency_key()}
        with self.client.post(
            BOOKINGS, json=body, headers=headers, name=BOOKINGS, catch_response=True
        ) as response:
            if response.status_code != 202:
                response.failure(f"expected 202, got {response.status_code}")
                return
            accepted_at = time.time()
            booking_id = str(response.json()["id"])
        status = self._wait_decision(booking_id, who, trace, accepted_at)
        if status is not None and should_cancel(status, self.rng, CONTEXT.cancel_share):
            self._cancel(booking_id, who, trace)

    def _cancel(self, booking_id: str, who: Principal, trace: Trace) -> None:
        headers = {**who.auth, **trace.headers()}
        with self.client.post(
            f"/v1/bookings/{booking_id}/cancel", headers=headers, name=CANCEL, catch_response=True
        ) as response:
            if response.status_code != 202:
                response.failure(f"expected 202, got {response.status_code}")


class CrowdUser(_BookifyUser):
    """One of a ticket drop's crowd: a principal of its own, one operation of the mix per task
    (:mod:`loadtests.mix`: book, retry with the same key, cancel, read its booking or the seats
    left, book again), each answered as :data:`loadtests.mix.EXPECTED` says or a failure."""

    def on_start(self) -> None:
        self.who = CONTEXT.require_pools().principal(self.rng)
        self.mine: deque[Booked] = deque(maxlen=RECENT)
        weights = CONTEXT.mix or MIXES["default"]
        self.names = [name for name, weight in weights.items() if weight > 0]
        self.weights = [weights[name] for name in self.names]

    @task
    def operate(self) -> None:
        pools = CONTEXT.require_pools()
        name = self.rng.choices(self.names, weights=self.weights)[0]
        if name not in (BOOK, READ_SEATS) and not self.mine:
            name = BOOK  # nothing of its own to retry, read or cancel yet
        headers = {**self.who.auth, **Trace(CONTEXT.run_id, self.rng).headers()}
        if name == READ_SEATS:
            path = f"/v1/resources/{pools.resource(self.rng)}"
            self._send("GET", path, ONE_RESOURCE, name, headers)
        elif name in (BOOK, REBOOK):
            resource = self.mine[-1].body["resource_id"] if name == REBOOK and self.mine else None
            body = booking_body(resource or pools.resource(self.rng), quantity(self.rng))
            keyed = self.rng.random() < KEYED_SHARE
            self._book(body, idempotency_key() if keyed else None, name, headers)
        else:
            booked = self.rng.choice(self.mine)
            if name == RETRY:
                self._book(booked.body, booked.key, name, headers)
            elif name == READ_BOOKING:
                path = f"/v1/bookings/{booked.booking_id}"
                self._send("GET", path, ONE_BOOKING, name, headers)
            else:
                path = f"/v1/bookings/{booked.booking_id}/cancel"
                self._send("POST", path, CANCEL, name, headers)

    def _book(self, body: dict[str, Any], key: str | None, name: str, headers: Any) -> None:
        """Book (or retry), and wait for a new booking's decision as a client does (the e2e
        latency the SLO judges)."""
        if key is not None:
            headers = {**headers, "Idempotency-Key": key}
        accepted_at = time.time()
        answer = self._send("POST", BOOKINGS, BOOKINGS, name, headers, body)
        if answer is None:
            return
        booking_id = str(answer["id"])
        if any(b.booking_id == booking_id for b in self.mine):
            return  # a retry answered with the booking it asked for again
        self.mine.append(Booked(booking_id, self.who, body, key))
        self._wait_decision(booking_id, self.who, Trace(CONTEXT.run_id, self.rng), accepted_at)

    def _send(
        self,
        method: str,
        path: str,
        request_name: str,
        operation: str,
        headers: dict[str, str],
        body: dict[str, Any] | None = None,
    ) -> Any:
        """The JSON of a 2xx answer, or None; an answer the mix does not expect is a failure."""
        with self.client.request(
            method, path, json=body, headers=headers, name=request_name, catch_response=True
        ) as response:
            if response.status_code not in EXPECTED[operation]:
                response.failure(f"{operation}: got {response.status_code}")
                return None
            response.success()
            return response.json() if response.status_code in (200, 202) else None


class ErrorUser(_BookifyUser):
    """Sends bad requests; the expected 4xx counts as success, a 5xx as failure."""

    @task
    def bad_request(self) -> None:
        pools = CONTEXT.require_pools()
        tokens = CONTEXT.bad_tokens
        if tokens is None:
            raise RuntimeError("bad tokens not minted")
        case = pick_error_case(error_cases(pools.resource(self.rng), self.rng), self.rng)
        headers = {**tokens.headers(case, pools.principal(self.rng))}
        headers.update(Trace(CONTEXT.run_id, self.rng).headers())
        with self.client.request(
            case.method,
            case.path,
            # Bytes are sent as they are (the docstring says so; the annotation is narrower).
            data=case.body,  # type: ignore[arg-type]
            headers=headers,
            name=case.request_name,
            catch_response=True,
        ) as response:
            if is_expected(response.status_code, case.expected):
                response.success()
            else:
                expected = "/".join(str(s) for s in sorted(case.expected))
                response.failure(f"{case.name}: expected {expected}, got {response.status_code}")
