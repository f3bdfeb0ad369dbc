"""The offline checker: a history (:mod:`.workload`) and the stores, judged per invariant.

It reads what the clients were told and what the ledger and the views hold after the heal,
and says for each invariant whether it held and, where it did not, the first violation with
the operations of the history involved (their ``i``). It decides nothing from timing except
invariant 1, whose deadline the run sets.

1. ``terminal``: every booking a client got a 202 for is terminal in the views.
2. ``decided_once``: each of them has exactly one decision in the ledger.
3. ``keyed_told``: no decided booking of a keyed client that its client was not told about.
4. ``keyless_phantoms``: keyless bookings nobody was told about are at most the keyless
   requests told ``unknown`` (each may have landed once).
5. ``ledger``: per resource, seqs are 1..n and ``reserved`` follows entry by entry
   (confirmed adds, cancelled frees), never above capacity.
6. ``views``: the views equal the ledger (each booking's status, each resource's seats left).
7. ``cancels``: every accepted cancel of a booking the ledger confirmed ends cancelled.
8. ``no_5xx``: no answer in the 5xx range other than 503.
9. ``recovered``: a booking asked for after the faults ended (the run's ``faults_ended``
   mark) was accepted: the platform takes bookings again, which the others, all true of a
   platform that answers only 503 from then on, cannot tell.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from loadtests.chaos.workload import KEYED, KEYLESS

TERMINAL = frozenset({"confirmed", "rejected", "cancelled"})
DECISIONS = frozenset({"confirmed", "rejected"})
INVARIANTS = (
    "terminal",
    "decided_once",
    "keyed_told",
    "keyless_phantoms",
    "ledger",
    "views",
    "cancels",
    "no_5xx",
    "recovered",
)
BOOKING_REQUESTS = frozenset({"book", "retry", "rebook"})


@dataclass
class Result:
    invariant: str
    ok: bool = True
    checked: int = 0
    """How many things the invariant was checked on (bookings, entries, answers...)."""
    violations: int = 0
    first: str = ""
    """The first violation, with the history's operations (``i``) involved."""

    def violated(self, what: str) -> None:
        if self.ok:
            self.first = what
        self.ok = False
        self.violations += 1


@dataclass
class Stores:
    """What the stores hold after the heal, for the run's resources."""

    ledger: Sequence[Mapping[str, Any]]
    """Every entry of the run's resources."""
    booking_views: Mapping[str, str]
    """booking id -> status."""
    resource_views: Mapping[str, int]
    """resource id -> seats available."""


@dataclass
class Told:
    """What the history says the clients learnt."""

    accepted: dict[str, list[int]] = field(default_factory=dict)
    """booking id -> the operations told 202 with it."""
    kind_of: dict[str, str] = field(default_factory=dict)
    """principal -> keyed or keyless."""
    unknown_books: Counter[str] = field(default_factory=Counter)
    """keyed / keyless -> booking requests whose outcome was never learnt."""
    cancels: dict[str, list[int]] = field(default_factory=dict)
    """booking id -> operations whose cancel of it was accepted."""
    server_errors: list[tuple[int, int]] = field(default_factory=list)
    """(operation, status) of answers 500-599 other than 503."""


def told(events: Iterable[Mapping[str, Any]]) -> Told:
    out = Told()
    invoked: dict[int, Mapping[str, Any]] = {}
    for event in events:
        if event["type"] == "mark":
            continue
        if event["type"] == "invoke":
            invoked[event["i"]] = event
            out.kind_of[event["client"]] = event["kind"]
            continue
        op = invoked.get(event["i"], {})
        status = event.get("status")
        if isinstance(status, int) and status >= 500 and status != 503:
            out.server_errors.append((event["i"], status))
        f = event["f"]
        if f in BOOKING_REQUESTS:
            if event["type"] == "ok":
                out.accepted.setdefault(event["booking_id"], []).append(event["i"])
            elif event["type"] == "unknown":
                out.unknown_books[op.get("kind", KEYLESS)] += 1
        elif f == "cancel" and event["type"] == "ok":
            out.cancels.setdefault(event["booking_id"], []).append(event["i"])
    return out


def check(events: Sequence[Mapping[str, Any]], stores: Stores) -> list[Result]:
    """Every invariant of the module docstring, in its order."""
    learnt = told(events)
    entries = sorted(stores.ledger, key=lambda e: (str(e["resource_id"]), int(e["seq"])))
    decisions: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    cancelled: set[str] = set()
    for entry in entries:
        if entry["kind"] in DECISIONS:
            decisions[str(entry["booking_id"])].append(entry)
        elif entry["kind"] == "cancelled":
            cancelled.add(str(entry["booking_id"]))
    results = {name: Result(name) for name in INVARIANTS}

    terminal = results["terminal"]
    once = results["decided_once"]
    for booking, ops in learnt.accepted.items():
        terminal.checked += 1
        once.checked += 1
        status = stores.booking_views.get(booking, "pending")
        if status not in TERMINAL:
            terminal.violated(f"booking {booking} is {status} (told 202 by ops {ops})")
        decided = decisions.get(booking, [])
        if len(decided) != 1:
            once.violated(f"booking {booking} has {len(decided)} decisions (told 202 by ops {ops})")
    for booking, decided in decisions.items():
        if len(decided) > 1 and booking not in learnt.accepted:
            once.violated(f"booking {booking} has {len(decided)} decisions, no client told")

    keyed, keyless = results["keyed_told"], results["keyless_phantoms"]
    phantoms: Counter[str] = Counter()
    for booking, decided in decisions.items():
        principal = str(decided[0]["principal"])
        kind = learnt.kind_of.get(principal)
        if kind is None:
            continue  # not a client of this run (resources are the run's own, so: an admin)
        (keyed if kind == KEYED else keyless).checked += 1
        if booking in learnt.accepted:
            continue
        phantoms[kind] += 1
        if kind == KEYED:
            keyed.violated(
                f"booking {booking} of keyed {principal} decided {decided[0]['kind']}, "
                f"never told ({learnt.unknown_books[KEYED]} keyed requests ended unknown)"
            )
    if phantoms[KEYLESS] > learnt.unknown_books[KEYLESS]:
        keyless.violated(
            f"{phantoms[KEYLESS]} keyless bookings nobody was told about, but only "
            f"{learnt.unknown_books[KEYLESS]} keyless requests were told unknown"
        )

    _check_ledger(entries, results["ledger"])
    _check_views(entries, decisions, cancelled, stores, results["views"])

    cancels = results["cancels"]
    for booking, ops in learnt.cancels.items():
        decided = decisions.get(booking, [])
        if not decided or decided[0]["kind"] != "confirmed":
            continue
        cancels.checked += 1
        if booking not in cancelled:
            cancels.violated(
                f"booking {booking} confirmed, cancel accepted by ops {ops}, not cancelled"
            )

    errors = results["no_5xx"]
    errors.checked = sum(1 for e in events if e["type"] not in ("invoke", "mark"))
    for i, code in learnt.server_errors:
        errors.violated(f"op {i} answered {code}")

    _check_recovered(events, results["recovered"])
    return list(results.values())


def _check_recovered(events: Sequence[Mapping[str, Any]], result: Result) -> None:
    ended = max((n for n, e in enumerate(events) if e.get("mark") == "faults_ended"), default=None)
    if ended is None:
        result.violated("the history has no faults_ended mark: the run never got that far")
        return
    after = {e["i"] for e in events[ended:] if e["type"] == "invoke" and e["f"] in BOOKING_REQUESTS}
    answers: Counter[str] = Counter()
    for event in events[ended:]:
        if event["type"] not in ("invoke", "mark") and event["i"] in after:
            answers[str(event.get("status", event["type"]))] += 1
    result.checked = len(after)
    if answers["202"] == 0:
        result.violated(
            f"none of the {len(after)} booking requests sent after the faults ended was "
            f"accepted (answers: {dict(answers) or 'none'})"
        )


def _check_ledger(entries: Sequence[Mapping[str, Any]], result: Result) -> None:
    by_resource: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for entry in entries:
        by_resource[str(entry["resource_id"])].append(entry)
    for resource, chain in by_resource.items():
        seqs = [int(e["seq"]) for e in chain]
        if seqs != list(range(1, len(chain) + 1)):
            result.violated(f"resource {resource}: seqs are not 1..{len(chain)}: {seqs[:20]}")
        reserved = 0
        for entry in chain:
            result.checked += 1
            if entry["kind"] == "confirmed":
                reserved += int(entry["quantity"])
            elif entry["kind"] == "cancelled":
                reserved -= int(entry["quantity"])
            capacity = entry.get("capacity") or 0
            if int(entry["reserved"]) != reserved or not 0 <= reserved <= capacity:
                result.violated(
                    f"resource {resource} seq {entry['seq']} ({entry['kind']} "
                    f"{entry.get('booking_id')}) reserves {entry['reserved']}, the chain "
                    f"{reserved}, capacity {capacity}"
                )
                reserved = int(entry["reserved"])


def _check_views(
    entries: Sequence[Mapping[str, Any]],
    decisions: Mapping[str, Sequence[Mapping[str, Any]]],
    cancelled: set[str],
    stores: Stores,
    result: Result,
) -> None:
    for booking, decided in decisions.items():
        result.checked += 1
        expected = "cancelled" if booking in cancelled else str(decided[0]["kind"])
        seen = stores.booking_views.get(booking, "missing")
        if seen != expected:
            result.violated(f"booking {booking}: view {seen}, ledger {expected}")
    heads: dict[str, Mapping[str, Any]] = {}
    for entry in entries:
        heads[str(entry["resource_id"])] = entry  # sorted by seq: the last is the head
    for resource, head in heads.items():
        result.checked += 1
        left = int(head.get("capacity") or 0) - int(head["reserved"])
        shown = stores.resource_views.get(resource)
        if shown != left:
            result.violated(f"resource {resource}: view says {shown} seats left, ledger {left}")


def verdict(results: Sequence[Result]) -> bool:
    return all(r.ok for r in results)
