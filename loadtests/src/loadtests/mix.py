"""A crowd at a ticket drop: what it sends besides bookings, in configurable shares.

A real crowd books, and then retries with the same Idempotency-Key when its answer is slow,
reads its booking and the seats left, cancels (often before its booking is decided) and
books the same resource twice. Each of those is one *operation* here, drawn by weight for
every arrival (:func:`parse_mix`, :class:`Crowd`); ``bookify bench pipeline --mix`` runs it
on the open model and the Locust ``CrowdUser`` in a closed one.

The cancel of a booking still ``pending`` is what found the cancel cliff (issue 19): while
booking is behind, the gateway accepts such cancels, and many of those bookings then end
rejected.
"""

from __future__ import annotations

import random
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

from loadtests.data import Principal, booking_body, idempotency_key
from loadtests.openmodel import HttpClient, HttpError, new_histogram

BOOK, RETRY, CANCEL, READ_BOOKING, READ_SEATS, REBOOK = (
    "book",
    "retry",
    "cancel",
    "read_booking",
    "read_seats",
    "rebook",
)
OPERATIONS = (BOOK, RETRY, CANCEL, READ_BOOKING, READ_SEATS, REBOOK)
WRITES = frozenset({BOOK, RETRY, REBOOK})
"""The operations that ask for a booking (a retry gets the same one back)."""

MIXES: dict[str, dict[str, float]] = {
    # About the crowd of issue 19: mostly bookings, ~8 % cancels of one's own recent ones.
    "default": {BOOK: 60, RETRY: 6, CANCEL: 8, READ_BOOKING: 14, READ_SEATS: 10, REBOOK: 2},
    "bookings": {BOOK: 1},
}
REQUESTS = {
    BOOK: "POST /v1/bookings",
    RETRY: "POST /v1/bookings",
    REBOOK: "POST /v1/bookings",
    CANCEL: "POST /v1/bookings/{id}/cancel",
    READ_BOOKING: "GET /v1/bookings/{id}",
    READ_SEATS: "GET /v1/resources/{id}",
}
"""The request each operation sends, named as the recorder and the report name requests."""
EXPECTED = {
    BOOK: frozenset({202}),
    RETRY: frozenset({202}),
    REBOOK: frozenset({202}),
    CANCEL: frozenset({202, 409}),  # 409: the booking ended rejected or cancelled meanwhile
    READ_BOOKING: frozenset({200}),
    READ_SEATS: frozenset({200}),
}
"""What a working platform answers each operation; anything else is an error."""
KEYED_SHARE = 0.9
"""Bookings sent with an Idempotency-Key (most clients; the rest cannot retry safely)."""
RECENT = 64
"""Bookings each principal remembers, for its retries, reads and cancels."""


class MixError(ValueError):
    """A ``--mix`` the generator cannot use; the message names the fix."""


def parse_mix(spec: str) -> dict[str, float]:
    """``default``, ``bookings``, or weights such as ``book=60,cancel=8,read_seats=10``.

    Operations left out weigh nothing; weights are relative (they need not add to 100).
    """
    spec = spec.strip()
    if spec in MIXES:
        return dict(MIXES[spec])
    weights: dict[str, float] = {}
    for part in spec.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep or name not in OPERATIONS:
            raise MixError(
                f"--mix {spec!r}: give one of {', '.join(MIXES)}, or weights like "
                f"book=60,cancel=8 over {', '.join(OPERATIONS)}"
            )
        try:
            weights[name] = float(value)
        except ValueError:
            raise MixError(f"--mix {spec!r}: the weight of {name} is not a number") from None
        if weights[name] < 0:
            raise MixError(f"--mix {spec!r}: the weight of {name} is negative")
    if not any(weights.values()):
        raise MixError(f"--mix {spec!r}: every weight is zero; give at least one a weight")
    return weights


def describe(weights: Mapping[str, float]) -> str:
    total = sum(weights.values())
    return ", ".join(f"{name} {w / total:.0%}" for name, w in weights.items() if w)


@dataclass(frozen=True)
class Booked:
    """A booking a principal was told about (a 202), and how to ask for it again."""

    booking_id: str
    principal: Principal
    body: dict[str, Any]
    key: str | None


@dataclass
class OperationStats:
    statuses: Counter[int] = field(default_factory=Counter)
    latency_us: HdrHistogram = field(default_factory=new_histogram)
    failed: int = 0
    """Requests that got no HTTP answer."""

    def as_dict(self) -> dict[str, Any]:
        total = self.latency_us.get_total_count()
        return {
            "sent": sum(self.statuses.values()) + self.failed,
            "statuses": {str(s): n for s, n in sorted(self.statuses.items())},
            "no_answer": self.failed,
            "latency_p99_ms": self.latency_us.get_value_at_percentile(99) / 1000 if total else None,
        }


class Crowd:
    """The operations of a crowd over the open model's HTTP client, one per arrival.

    ``send(i)`` draws an operation (seeded: the same seed sends the same sequence of
    operations), sends it and returns its status (0 for no answer). A retry, read or cancel
    names one of the principal's own recent bookings; with none yet, it books instead.
    ``accepted`` and ``cancels`` give, by booking id, when the 202 of its booking and of its
    cancel arrived, for matching with the decisions booking publishes. ``observe`` hears of
    every answer: (request name, wall time it was sent, whether it was expected, status);
    ``on_booked`` of every new booking (a client waiting for its decision, say).
    ``pick_resource`` draws a resource (default: uniformly).
    """

    def __init__(
        self,
        http: HttpClient,
        principals: Sequence[Principal],
        resources: Sequence[str],
        weights: Mapping[str, float],
        *,
        seed: int = 0,
        observe: Callable[[str, float, bool, int], None] | None = None,
        pick_resource: Callable[[random.Random], str] | None = None,
        on_booked: Callable[[str, Principal], None] | None = None,
    ) -> None:
        self.http = http
        self.principals = list(principals)
        self.resources = list(resources)
        self.rng = random.Random(seed)
        self.observe = observe
        self.pick_resource = pick_resource or (lambda rng: rng.choice(self.resources))
        self.on_booked = on_booked
        self._names = [name for name in OPERATIONS if weights.get(name, 0) > 0]
        self._weights = [weights[name] for name in self._names]
        self.stats = {name: OperationStats() for name in self._names}
        self.recent: dict[str, deque[Booked]] = {}
        self.accepted: dict[str, tuple[float, str]] = {}
        """booking id -> (202 seen, the gateway's accepted_at), for bookings and retries."""
        self.cancels: dict[str, float] = {}
        """booking id -> when the first 202 to its cancel arrived."""

    def draw(self) -> tuple[str, Principal]:
        name = self.rng.choices(self._names, weights=self._weights)[0]
        return name, self.rng.choice(self.principals)

    async def send(self, _: int) -> int:
        name, who = self.draw()
        mine = self.recent.get(who.sub)
        if name not in (BOOK, READ_SEATS) and not mine:
            name = BOOK  # nothing of its own to retry, read or cancel yet
        stats = self.stats.setdefault(name, OperationStats())
        sent, started = time.time(), time.perf_counter()
        try:
            status = await self._operation(name, who, mine)
        except HttpError:
            stats.failed += 1
            status = 0
        else:
            stats.statuses[status] += 1
            stats.latency_us.record_value(max(1, int((time.perf_counter() - started) * 1e6)))
        if self.observe is not None:
            self.observe(REQUESTS[name], sent, status in EXPECTED[name], status)
        return status

    async def _operation(self, name: str, who: Principal, mine: deque[Booked] | None) -> int:
        if name == READ_SEATS:
            reply = await self.http.get(
                f"/v1/resources/{self.pick_resource(self.rng)}", headers=who.auth
            )
            return reply.status
        if name in (BOOK, REBOOK) or not mine:
            resource = (
                mine[-1].body["resource_id"]
                if name == REBOOK and mine
                else self.pick_resource(self.rng)
            )
            key = idempotency_key() if self.rng.random() < KEYED_SHARE else None
            return await self._book(who, booking_body(resource, 1), key)
        booked = self.rng.choice(mine)
        if name == RETRY:
            return await self._book(who, booked.body, booked.key)
        if name == READ_BOOKING:
            reply = await self.http.get(f"/v1/bookings/{booked.booking_id}", headers=who.auth)
            return reply.status
        reply = await self.http.post(f"/v1/bookings/{booked.booking_id}/cancel", headers=who.auth)
        if reply.status == 202:
            self.cancels.setdefault(booked.booking_id, time.time())
        return reply.status

    async def _book(self, who: Principal, body: dict[str, Any], key: str | None) -> int:
        headers = dict(who.auth) if key is None else {**who.auth, "Idempotency-Key": key}
        reply = await self.http.post("/v1/bookings", json=body, headers=headers)
        if reply.status == 202:
            answer = reply.json()
            booking_id = str(answer["id"])
            self.accepted.setdefault(booking_id, (time.time(), str(answer["accepted_at"])))
            mine = self.recent.setdefault(who.sub, deque(maxlen=RECENT))
            if not any(b.booking_id == booking_id for b in mine):
                mine.append(Booked(booking_id, who, body, key))
                if self.on_booked is not None:
                    self.on_booked(booking_id, who)
        return reply.status

    def as_dict(self) -> dict[str, Any]:
        return {name: stats.as_dict() for name, stats in self.stats.items()}
