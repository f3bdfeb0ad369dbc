"""The crowd's mix: its weights, and what each operation sends."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest

from loadtests.data import Principal
from loadtests.mix import (
    BOOK,
    CANCEL,
    MIXES,
    READ_BOOKING,
    RETRY,
    Crowd,
    MixError,
    parse_mix,
)
from loadtests.openmodel import Headers, Reply


def test_a_named_mix_or_weights_parse_and_anything_else_names_the_fix() -> None:
    assert parse_mix("default") == MIXES["default"]
    assert parse_mix(" book=3, cancel=1 ") == {"book": 3.0, "cancel": 1.0}
    with pytest.raises(MixError, match="read_seats"):  # the message lists the operations
        parse_mix("bok=1")
    with pytest.raises(MixError, match="not a number"):
        parse_mix("book=many")
    with pytest.raises(MixError, match="negative"):
        parse_mix("book=-1")
    with pytest.raises(MixError, match="zero"):
        parse_mix("book=0,cancel=0")


@dataclass
class FakeGateway:
    """Answers as the gateway does: a 202 with a booking id, the same one for a key it saw,
    and a 422 for a key it saw with another body."""

    keys: dict[tuple[str, str], tuple[str, Any]] = field(default_factory=dict)
    owners: dict[str, str] = field(default_factory=dict)
    requests: list[tuple[str, str, str]] = field(default_factory=list)

    async def get(self, path: str, *, headers: dict[str, str]) -> Reply:
        self.requests.append(("GET", path, headers["Authorization"]))
        if path.startswith("/v1/bookings/"):
            owner = self.owners.get(path.rsplit("/", 1)[-1])
            return _reply(200 if owner == headers["Authorization"] else 404)
        return _reply(200)

    async def post(
        self, path: str, *, json: Any = None, headers: dict[str, str]
    ) -> Reply:  # the client's signature
        who = headers["Authorization"]
        self.requests.append(("POST", path, who))
        if path.endswith("/cancel"):
            return _reply(202 if self.owners.get(path.split("/")[3]) == who else 404)
        key = headers.get("Idempotency-Key")
        seen = self.keys.get((who, key)) if key else None
        if seen is not None and seen[1] != json:
            return _reply(422)
        booking = seen[0] if seen is not None else str(uuid.uuid4())
        if seen is None:
            self.owners[booking] = who
            if key:
                self.keys[who, key] = (booking, json)
        return _reply(202, {"id": booking, "accepted_at": "2026-12-06T12:00:00+00:00"})


def _reply(status: int, body: Any = None) -> Reply:
    return Reply(status, Headers({}), json.dumps(body or {}).encode())


def crowd(gateway: FakeGateway, weights: dict[str, float], seed: int = 7) -> Crowd:
    people = [Principal(f"p{i}", f"token-{i}") for i in range(3)]
    return Crowd(gateway, people, ["hall-a"], weights, seed=seed)  # type: ignore[arg-type]


async def test_the_same_seed_sends_the_same_operations_in_the_same_order() -> None:
    first, second = FakeGateway(), FakeGateway()
    one, two = crowd(first, MIXES["default"]), crowd(second, MIXES["default"])
    for i in range(300):
        await one.send(i)
        await two.send(i)

    def sent(gateway: FakeGateway) -> list[tuple[str, str, str]]:
        """Method, path without the (random) booking id, and who sent it."""
        return [
            (m, path.split("/")[2] + path.count("/") * "/", who)
            for m, path, who in gateway.requests
        ]

    assert sent(first) == sent(second)
    assert {name: s.statuses for name, s in one.stats.items()} == {
        name: s.statuses for name, s in two.stats.items()
    }


async def test_a_seed_sent_again_to_the_same_store_reuses_no_key() -> None:
    """Issue 19: the same seed run twice against one gateway drew the same keys, and the
    second run's bookings of a new resource were key reuses with another body (422s)."""
    gateway = FakeGateway()
    for hall in ("hall-a", "hall-b"):
        people = [Principal(f"p{i}", f"token-{i}") for i in range(3)]
        run = Crowd(gateway, people, [hall], MIXES["default"], seed=7)  # type: ignore[arg-type]
        for i in range(200):
            await run.send(i)
        statuses = Counter(s for stats in run.stats.values() for s in stats.statuses.elements())
        assert statuses[202] > 100
        assert 422 not in statuses


async def test_retries_reads_and_cancels_name_the_callers_own_bookings() -> None:
    gateway = FakeGateway()
    people = crowd(gateway, {BOOK: 1, RETRY: 1, READ_BOOKING: 1, CANCEL: 1})
    for i in range(400):
        await people.send(i)

    # Every answer was the owner's: a 404 would mean one principal named another's booking.
    answered = Counter(s for stats in people.stats.values() for s in stats.statuses.elements())
    assert set(answered) == {200, 202}
    assert all(people.stats[name].statuses for name in (BOOK, RETRY, READ_BOOKING, CANCEL))
    # A keyed retry gets its booking back: fewer bookings than booking requests.
    posts = sum(people.stats[name].statuses[202] for name in (BOOK, RETRY))
    assert len(gateway.owners) < posts
    assert people.cancels.keys() <= people.accepted.keys()


async def test_every_answer_is_observed_and_every_new_booking_announced() -> None:
    gateway, observed, booked = FakeGateway(), [], []
    people = crowd(gateway, {BOOK: 1, RETRY: 1, CANCEL: 1})
    people.observe = lambda name, sent, ok, status: observed.append((name, ok, status))
    people.on_booked = lambda booking, who: booked.append(booking)
    for i in range(60):
        await people.send(i)

    assert len(observed) == 60
    assert all(ok for _, ok, _ in observed)
    assert {name for name, _, _ in observed} == {
        "POST /v1/bookings",
        "POST /v1/bookings/{id}/cancel",
    }
    assert sorted(booked) == sorted(gateway.owners)  # each booking once, retries not again


async def test_with_no_booking_yet_a_cancel_books_first() -> None:
    gateway = FakeGateway()
    people = crowd(gateway, {CANCEL: 1})

    await people.send(0)

    assert gateway.requests[0][:2] == ("POST", "/v1/bookings")
    assert people.stats[BOOK].statuses == Counter({202: 1})
