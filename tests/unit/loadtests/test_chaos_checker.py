"""The nemesis' schedule and its offline checker, on synthetic histories and stores."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from loadtests.chaos.checker import INVARIANTS, Result, Stores, check
from loadtests.chaos.schedule import INFRA_RESTART, MAX_KILLS, FaultKind, parse_faults, schedule

TARGETS = ["kafka", "mongo", "redis", "gateway", "booking", "consumer"]


def test_a_seed_replays_the_same_schedule_and_another_seed_differs() -> None:
    first = schedule(7, TARGETS, seconds=120)
    assert first == schedule(7, TARGETS, seconds=120)
    assert first != schedule(8, TARGETS, seconds=120)
    assert len(first) == 12  # one per 10 s by default


def test_a_schedule_stays_in_its_phase_and_kills_each_process_a_bounded_number_of_times() -> None:
    for seed in range(50):
        faults = schedule(seed, TARGETS, seconds=60, faults=30)
        kills = Counter(f.target for f in faults if f.kind is FaultKind.KILL)
        assert max(kills.values(), default=0) <= MAX_KILLS
        assert all(0 <= f.at <= 57 for f in faults)
        assert all(f.at + f.seconds <= 60 for f in faults if f.kind is FaultKind.PAUSE)
        assert all(f.target in [*TARGETS, INFRA_RESTART] for f in faults)
    kinds = {f.kind for seed in range(50) for f in schedule(seed, TARGETS, seconds=60)}
    assert kinds == set(FaultKind)


def test_explicit_faults_parse_and_a_bad_one_names_the_form() -> None:
    faults = parse_faults("kill:booking@5, pause:kafka@12:3.5, restart_infra@30", TARGETS)
    assert [(f.kind, f.target, f.at, f.seconds) for f in faults] == [
        (FaultKind.KILL, "booking", 5.0, 0.0),
        (FaultKind.PAUSE, "kafka", 12.0, 3.5),
        (FaultKind.RESTART_INFRA, INFRA_RESTART, 30.0, 0.0),
    ]
    with pytest.raises(ValueError, match="kill:booking@5"):
        parse_faults("explode:booking@5", TARGETS)
    with pytest.raises(ValueError, match="no process"):
        parse_faults("kill:nginx@5", TARGETS)


# ------------------------------------------------------------------ the checker

RID = "r-1"


class Run:
    """A history and stores built step by step, consistent until a test breaks them."""

    def __init__(self, capacity: int = 2) -> None:
        self.events: list[dict[str, Any]] = []
        self.ledger: list[dict[str, Any]] = []
        self.bookings: dict[str, str] = {}
        self.capacity = capacity
        self._i = 0
        self.ledger.append(self._entry("created", None, 0))

    def _entry(
        self, kind: str, booking: str | None, quantity: int, principal: str = "k0"
    ) -> dict[str, Any]:
        reserved = self.ledger[-1]["reserved"] if self.ledger else 0
        reserved += {"confirmed": quantity, "cancelled": -quantity}.get(kind, 0)
        return {
            "resource_id": RID,
            "seq": len(self.ledger) + 1,
            "kind": kind,
            "booking_id": booking,
            "principal": principal,
            "quantity": quantity,
            "capacity": self.capacity,
            "reserved": reserved,
        }

    def op(self, f: str, outcome: str, client: str = "k0", **value: Any) -> int:
        self._i += 1
        kind = "keyed" if client.startswith("k") else "keyless"
        self.events.append({"i": self._i, "type": "invoke", "f": f, "client": client, "kind": kind})
        self.events.append({"i": self._i, "type": outcome, "f": f} | value)
        return self._i

    def mark(self, name: str) -> None:
        self.events.append({"type": "mark", "mark": name})

    def book(self, booking: str, decision: str = "confirmed", client: str = "k0") -> None:
        self.op("book", "ok", client, status=202, booking_id=booking)
        self.decide(booking, decision, client)

    def decide(self, booking: str, decision: str, client: str = "k0") -> None:
        self.ledger.append(self._entry(decision, booking, 1, principal=client))
        self.bookings[booking] = decision

    def cancel(self, booking: str, *, applied: bool = True) -> None:
        self.op("cancel", "ok", status=202, booking_id=booking)
        if applied and self.bookings.get(booking) == "confirmed":
            self.ledger.append(self._entry("cancelled", booking, 1))
            self.bookings[booking] = "cancelled"

    def stores(self) -> Stores:
        return Stores(
            self.ledger, dict(self.bookings), {RID: self.capacity - self.ledger[-1]["reserved"]}
        )

    def verdict(self) -> dict[str, Result]:
        return {r.invariant: r for r in check(self.events, self.stores())}


def broken(results: dict[str, Result]) -> set[str]:
    return {name for name, r in results.items() if not r.ok}


def healthy() -> Run:
    run = Run(capacity=2)
    run.book("b1")
    run.mark("faults_ended")
    run.book("b2")
    run.book("b3", "rejected")
    run.cancel("b3")  # a cancel of a booking that ended rejected: nothing to do
    run.cancel("b1")
    run.op("read_booking", "ok", status=200)
    run.op("book", "fail", status=503, problem_outcome="not_accepted")
    return run


def test_a_consistent_history_and_stores_hold_every_invariant() -> None:
    results = healthy().verdict()
    assert list(results) == list(INVARIANTS)
    assert broken(results) == set()
    assert results["cancels"].checked == 1  # b1 only: b3 was rejected
    assert results["recovered"].checked == 3  # b2, b3 and the 503 after the mark


def test_a_booking_still_pending_breaks_terminal() -> None:
    run = healthy()
    run.op("book", "ok", status=202, booking_id="b4")  # told 202, never decided
    results = run.verdict()
    assert broken(results) == {"terminal", "decided_once"}
    assert results["terminal"].first == "booking b4 is pending (told 202 by ops [8])"


def test_a_booking_decided_twice_breaks_decided_once() -> None:
    run = healthy()
    run.decide("b2", "rejected")
    run.bookings["b2"] = "confirmed"  # the views kept the first decision
    results = run.verdict()
    assert broken(results) == {"decided_once"}
    assert results["decided_once"].first.startswith("booking b2 has 2 decisions")


def test_a_keyed_booking_nobody_was_told_about_is_a_violation_a_keyless_one_needs_an_unknown() -> (
    None
):
    keyed = healthy()
    keyed.op("book", "unknown", status=503, problem_outcome="unknown")
    keyed.decide("b9", "rejected", client="k0")
    assert broken(keyed.verdict()) == {"keyed_told"}

    keyless = healthy()
    keyless.decide("b9", "rejected", client="u0")
    keyless.op("read_booking", "ok", "u0", status=200)  # u0 is a keyless client of the run
    assert broken(keyless.verdict()) == {"keyless_phantoms"}
    keyless.op("book", "unknown", "u0", error="ReadTimeout")
    assert broken(keyless.verdict()) == set()


def test_a_chain_that_reserves_more_than_capacity_breaks_the_ledger() -> None:
    run = Run(capacity=1)
    run.book("b1")
    run.book("b2")  # confirmed past capacity
    results = run.verdict()
    assert "ledger" in broken(results)
    assert "capacity 1" in results["ledger"].first


def test_views_behind_the_ledger_break_views() -> None:
    run = healthy()
    stores = run.stores()
    stale = Stores(stores.ledger, {**stores.booking_views, "b1": "confirmed"}, {RID: 0})
    results = {r.invariant: r for r in check(run.events, stale)}
    assert broken(results) == {"views"}
    assert results["views"].violations == 2  # b1's status and the seats left


def test_an_accepted_cancel_of_a_confirmed_booking_that_never_applies_is_a_violation() -> None:
    run = healthy()
    run.cancel("b2", applied=False)
    assert broken(run.verdict()) == {"cancels"}


def test_a_500_is_a_violation_a_503_is_not() -> None:
    run = healthy()
    run.op("read_seats", "unknown", status=500)
    results = run.verdict()
    assert broken(results) == {"no_5xx"}
    assert results["no_5xx"].first == "op 8 answered 500"


def test_a_platform_that_accepts_no_booking_after_the_faults_breaks_recovered() -> None:
    run = Run(capacity=2)
    run.book("b1")
    run.mark("faults_ended")
    run.op("book", "fail", status=503, problem_outcome="not_accepted")
    run.op("retry", "unknown", error="ReadTimeout")
    results = run.verdict()
    assert broken(results) == {"recovered"}
    assert results["recovered"].first == (
        "none of the 2 booking requests sent after the faults ended was accepted "
        "(answers: {'503': 1, 'unknown': 1})"
    )
    run.op("retry", "ok", status=202, booking_id="b1")  # the same key, answered at last
    assert broken(run.verdict()) == set()


def test_a_history_that_never_reached_the_end_of_its_faults_breaks_recovered() -> None:
    run = Run(capacity=2)
    run.book("b1")
    assert broken(run.verdict()) == {"recovered"}
