"""Steady booking traffic, and the invariants every chaos test checks once it has healed.

A :class:`ChaosRun` creates a resource with fewer seats than its traffic asks for, then
sends ``rate`` POST /v1/bookings a second from a few principals: even requests carry an
Idempotency-Key and retry on a 503 or a transport error with the same key until a 202 (or
``KEYED_DEADLINE``); odd ones carry none and never retry, as a careless client would. The
test injects its fault meanwhile, between :meth:`ChaosRun.fault_began` and
:meth:`ChaosRun.fault_ended`, then :meth:`ChaosRun.finish` waits for the stack to heal,
reports the figures and asserts:

- every 202 reaches a terminal status, both in the views and through the API;
- seats are conserved: the ledger's newest entry holds ``capacity`` and ``reserved`` ==
  confirmed - cancelled quantities, never above capacity, and the views agree (the
  resource's ``available`` and the confirmed bookings' quantities);
- no phantom booking: every confirmed ledger entry is a booking some 202 returned, except
  for unkeyed requests told "outcome unknown" (counted; at most one phantom each);
- no 5xx other than a 503, and no other unexpected answer.

Every check is collected before anything is asserted, so a failing run still reports its
figures and names every broken invariant at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from bookify_platform.infra import LocalInfra, Service
from bookify_platform.services import Platform, PlatformConfig
from tests.stack import TERMINAL, Api
from tests.support.auth import bearer

RATE = 25.0  # POST /v1/bookings per second, half of them keyed
PRINCIPALS = 6  # per kind of client
QUANTITIES = (1, 2)
KEYED_DEADLINE = 60.0  # how long a keyed client keeps retrying one request
HEAL_WITHIN = 60.0  # after the traffic ends, every 202 must be terminal within this
VIEWS_AGREE_WITHIN = 30.0
WATCH_EVERY = 0.25  # how often the views are read for the bookings' statuses
HTTP_TIMEOUT = 20.0  # above the gateway's own waits (Kafka 5 s, MongoDB 5 s per call)
CONFIRM_CONCURRENCY = 16
# Failures before anything reached the gateway: the request cannot have landed.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

Report = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Target:
    """Where a run sends its traffic and where it reads the truth (the ledger, the views);
    ``logs`` are the services' logs, quoted when a run fails."""

    gateway_url: str
    mongo_uri: str
    db_prefix: str
    logs: tuple[Path, ...] = ()


@dataclass(frozen=True)
class OwnStack:
    """Servers and services of one test module alone (the ``own_stack`` fixture)."""

    infra: LocalInfra
    platform: Platform
    config: PlatformConfig
    target: Target


@dataclass
class Request:
    """One client's booking request: every attempt it made, and its 202 if one came."""

    n: int
    principal: str
    keyed: bool
    quantity: int
    attempts: list[str] = field(default_factory=list)  # "202", "503 unknown", "ReadTimeout"
    unknown: int = 0  # answers after which the booking may have landed all the same
    booking_id: str | None = None
    accepted_at: float | None = None  # time.monotonic() of the 202
    gave_up: bool = False


class ChaosRun:
    """Traffic on one fresh resource of ``capacity`` seats, and the checks that follow it."""

    def __init__(
        self,
        target: Target,
        *,
        name: str,
        capacity: int,
        rate: float = RATE,
        principals: int = PRINCIPALS,
        seed: int = 0,
    ) -> None:
        self.target = target
        self.name = name
        self.capacity = capacity
        self.rate = rate
        self.principals = principals
        self.tag = f"chaos-{uuid.uuid4().hex[:6]}"  # principals of this run only
        self.resource = ""
        self.requests: list[Request] = []
        self.answers: Counter[str] = Counter()  # "POST 202", "POST 503 unknown", "GET 200"...
        self.transport_errors: Counter[str] = Counter()  # "POST ReadTimeout"...
        self._timeline: list[tuple[float, str]] = []
        self.unexpected: list[str] = []
        self.cancels: dict[str, str] = {}  # booking id -> "202 pending", "409"...
        self._cancelling: set[str] = set()  # cancel sent and not refused: must end cancelled
        self._done_at: dict[str, float] = {}  # booking id -> when first seen in a final status
        self._view_status: dict[str, str] = {}
        self._rng = random.Random(seed)
        self._headers: dict[str, dict[str, str]] = {}
        self._started = time.monotonic()
        self.fault_start: float | None = None
        self.fault_end: float | None = None
        self.traffic_end: float | None = None
        self._traffic: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._http: httpx.AsyncClient | None = None
        self._mongo: AsyncMongoClient[dict[str, Any]] | None = None

    # ------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> Self:
        limits = httpx.Limits(max_connections=256, keepalive_expiry=2)
        self._http = httpx.AsyncClient(
            base_url=self.target.gateway_url, timeout=HTTP_TIMEOUT, limits=limits
        )
        # Short server selection: the watcher must notice a MongoDB outage, not hang in it.
        self._mongo = AsyncMongoClient(self.target.mongo_uri, serverSelectionTimeoutMS=2000)
        try:
            self.resource = await self.api.create_resource(self.capacity, name=f"chaos {self.name}")
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        self._watcher = asyncio.create_task(self._watch())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for task in (self._traffic, self._watcher):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._http is not None:
            await self._http.aclose()
        if self._mongo is not None:
            await self._mongo.close()

    @property
    def http(self) -> httpx.AsyncClient:
        assert self._http is not None, "use ChaosRun as an async context manager"
        return self._http

    @property
    def api(self) -> Api:
        return Api(self.http)

    def _db(self, name: str) -> Any:
        assert self._mongo is not None, "use ChaosRun as an async context manager"
        return self._mongo[f"{self.target.db_prefix}{name}"]

    # ------------------------------------------------------------ the test's marks
    def start(self, seconds: float) -> None:
        """Send ``rate`` bookings a second for ``seconds``, in the background."""
        self._traffic = asyncio.create_task(self._generate(seconds))

    async def flowing(self, decided: int = 10, within: float = 30.0) -> None:
        """Wait until bookings are accepted and decided: the stack works before the fault."""
        deadline = time.monotonic() + within
        while len(self._done_at) < decided:
            assert time.monotonic() < deadline, (
                f"traffic not flowing before the fault: {self.answers}, "
                f"{len(self._done_at)} decided"
            )
            await asyncio.sleep(0.1)

    async def sold_out(self, within: float = 30.0) -> None:
        """Wait until the views show no seat left."""
        deadline = time.monotonic() + within
        while await self.api.available(self.resource) > 0:
            assert time.monotonic() < deadline, f"{self.resource} not sold out in {within} s"
            await asyncio.sleep(0.2)

    def fault_began(self) -> None:
        self.fault_start = time.monotonic()

    def fault_ended(self) -> None:
        self.fault_end = time.monotonic()

    def answers_since(self, since: float, status: str) -> int:
        """How many answers starting with ``status`` (e.g. "POST 503") came after ``since``."""
        return sum(1 for at, answer in self._timeline if at >= since and answer.startswith(status))

    async def wait_for_answer(self, status: str, since: float, within: float = 20.0) -> None:
        """Wait until the traffic got a ``status`` answer after ``since``: the fault is felt."""
        deadline = time.monotonic() + within
        while self.answers_since(since, status) == 0:
            assert time.monotonic() < deadline, f"no {status} within {within:.0f} s of the fault"
            await asyncio.sleep(0.1)

    # ------------------------------------------------------------ traffic
    def _principal(self, kind: str, n: int) -> str:
        return f"{self.tag}-{kind}{n % self.principals}"

    def _auth(self, principal: str) -> dict[str, str]:
        if principal not in self._headers:
            self._headers[principal] = Api.auth(principal)
        return self._headers[principal]

    def _answer(self, answer: str) -> None:
        self.answers[answer] += 1
        self._timeline.append((time.monotonic(), answer))

    async def _generate(self, seconds: float) -> None:
        total = round(seconds * self.rate)
        t0 = time.monotonic()
        sent: list[asyncio.Task[None]] = []
        for n in range(total):
            # On a fixed schedule, whatever the answers: an outage must not slow the clients.
            await asyncio.sleep(max(0.0, t0 + n / self.rate - time.monotonic()))
            keyed = n % 2 == 0
            request = Request(
                n,
                self._principal("k" if keyed else "u", n // 2),
                keyed,
                self._rng.choice(QUANTITIES),
            )
            self.requests.append(request)
            sent.append(asyncio.create_task(self._send(request)))
        await asyncio.gather(*sent)
        self.traffic_end = time.monotonic()

    async def _send(self, request: Request) -> None:
        key = str(uuid.uuid4()) if request.keyed else None
        deadline = time.monotonic() + KEYED_DEADLINE
        while True:
            pause = await self._post(request, key)
            if pause is None or key is None:
                return
            if time.monotonic() + pause > deadline:
                request.gave_up = True
                return
            await asyncio.sleep(pause)

    async def _post(self, request: Request, key: str | None) -> float | None:
        """One attempt; None when it was final, else how long to wait before the next."""
        headers = self._auth(request.principal)
        if key is not None:
            headers = {**headers, "Idempotency-Key": key}
        body = {"resource_id": self.resource, "quantity": request.quantity}
        try:
            response = await self.http.post("/v1/bookings", json=body, headers=headers)
        except httpx.TransportError as exc:
            error = type(exc).__name__
            request.attempts.append(error)
            self._answer(f"POST {error}")
            self.transport_errors[f"POST {error}"] += 1
            if not isinstance(exc, NOT_SENT):
                request.unknown += 1
            return 0.5
        status = response.status_code
        if status == 202:
            request.attempts.append("202")
            self._answer("POST 202")
            request.booking_id = str(response.json()["id"])
            request.accepted_at = time.monotonic()
            return None
        if status == 503:
            outcome = str(response.json().get("outcome"))
            request.attempts.append(f"503 {outcome}")
            self._answer(f"POST 503 {outcome}")
            if outcome == "unknown":
                request.unknown += 1
            elif outcome != "not_accepted":
                self.unexpected.append(f"POST /v1/bookings 503 without an outcome: {response.text}")
            return float(response.headers.get("retry-after", "1"))
        request.attempts.append(str(status))
        self._answer(f"POST {status}")
        self.unexpected.append(f"POST /v1/bookings -> {status}: {response.text[:300]}")
        if status >= 500:
            request.unknown += 1  # a 500 says nothing about whether it landed
            return 1.0
        return None

    # ------------------------------------------------------------ cancel racing confirm
    async def race_cancels(self, pairs: int) -> None:
        """``pairs`` keyed clients at once, each cancelling its booking the moment the 202
        arrives, while the request itself is still being decided."""
        racers = []
        for i in range(pairs):
            request = Request(
                len(self.requests), self._principal("c", i), True, self._rng.choice(QUANTITIES)
            )
            self.requests.append(request)
            racers.append(self._book_then_cancel(request))
        await asyncio.gather(*racers)

    async def _book_then_cancel(self, request: Request) -> None:
        await self._send(request)
        if request.booking_id is None:
            return
        booking_id = request.booking_id
        self._cancelling.add(booking_id)  # from now on only cancelled/rejected is final
        self._done_at.pop(booking_id, None)  # a confirmed seen before is not final any more
        deadline = time.monotonic() + KEYED_DEADLINE
        while time.monotonic() < deadline:
            try:
                response = await self.http.post(
                    f"/v1/bookings/{booking_id}/cancel", headers=self._auth(request.principal)
                )
            except httpx.TransportError as exc:
                self._answer(f"CANCEL {type(exc).__name__}")
                self.transport_errors[f"CANCEL {type(exc).__name__}"] += 1
                await asyncio.sleep(0.5)  # cancelling twice is harmless
                continue
            self._answer(f"CANCEL {response.status_code}")
            if response.status_code == 503:
                await asyncio.sleep(float(response.headers.get("retry-after", "1")))
                continue
            # A 202 shows the booking as the gateway saw it: "pending" means a real race.
            seen = response.json().get("status") if response.status_code == 202 else ""
            self.cancels[booking_id] = f"{response.status_code} {seen}".strip()
            if response.status_code != 202:
                self._cancelling.discard(booking_id)  # 409: rejected or cancelled already
            if response.status_code not in (202, 409):
                self.unexpected.append(f"cancel {booking_id} -> {response.status_code}")
            return
        self.cancels[booking_id] = "gave up"

    # ------------------------------------------------------------ watching the views
    def _accepted(self) -> dict[str, Request]:
        return {r.booking_id: r for r in self.requests if r.booking_id is not None}

    def _final(self, booking_id: str, status: str | None) -> bool:
        if booking_id in self._cancelling:
            return status in ("cancelled", "rejected")
        return status in TERMINAL

    async def _watch(self) -> None:
        """Note when each accepted booking is first seen final in the views (one cheap query
        a round, not a GET per booking: polling must not slow the recovery it measures)."""
        bookings = self._db("bookify_views")["bookings"]
        while True:
            await asyncio.sleep(WATCH_EVERY)
            if self._all_final():
                continue
            accepted = self._accepted()
            try:
                docs = await bookings.find({"resource_id": self.resource}, {"status": 1}).to_list()
            except PyMongoError:
                continue  # MongoDB is down: nothing is seen final meanwhile
            now = time.monotonic()
            self._view_status = {str(d["_id"]): str(d["status"]) for d in docs}
            for booking_id in accepted:
                if self._final(booking_id, self._view_status.get(booking_id)):
                    self._done_at.setdefault(booking_id, now)
                else:
                    self._done_at.pop(booking_id, None)

    def _all_final(self) -> bool:
        in_flight = self._cancelling - set(self.cancels)
        return not in_flight and all(b in self._done_at for b in self._accepted())

    # ------------------------------------------------------------ the verdict
    async def finish(self, report: Report) -> dict[str, Any]:
        """Wait for the traffic and the healing, report the figures, assert the invariants."""
        assert self._traffic is not None, "start() first"
        await self._traffic
        problems: list[str] = []
        deadline = time.monotonic() + HEAL_WITHIN
        while time.monotonic() < deadline:
            if self._all_final():
                break
            await asyncio.sleep(0.1)
        accepted = self._accepted()
        stuck = sorted(b for b in accepted if b not in self._done_at)
        if stuck:
            problems.append(
                f"{len(stuck)} of {len(accepted)} accepted bookings not final within "
                f"{HEAL_WITHIN:.0f} s after the traffic: "
                + ", ".join(f"{b} ({self._view_status.get(b, 'pending')})" for b in stuck[:10])
            )

        api_status = await self._statuses_through_api(accepted, problems)
        entries = await self._ledger()
        reserved = self._check_ledger(entries, accepted, api_status, problems)
        phantoms = self._phantoms(entries, accepted, problems)
        available = await self._check_views(reserved, problems)
        problems += self.unexpected
        for request in self.requests:
            if request.keyed and request.booking_id is None:
                problems.append(
                    f"keyed request {request.n} ({request.principal}) never got a 202 "
                    f"in {KEYED_DEADLINE:.0f} s: {request.attempts}"
                )

        figures = self._figures(accepted, api_status, phantoms, available, reserved, problems)
        report(figures)
        if problems:
            problems += [said for log in self.target.logs if (said := warnings_in(log))]
        assert not problems, "\n".join(problems)
        return figures

    async def _statuses_through_api(
        self, accepted: dict[str, Request], problems: list[str]
    ) -> dict[str, str]:
        """Every accepted booking as its client sees it: GET /v1/bookings/{id}."""
        gate = asyncio.Semaphore(CONFIRM_CONCURRENCY)
        seen: dict[str, str] = {}

        async def one(booking_id: str, request: Request) -> None:
            async with gate:
                response = await self.api.booking(booking_id, request.principal)
            self._answer(f"GET {response.status_code}")
            if response.status_code != 200:
                problems.append(f"GET booking {booking_id} -> {response.status_code}")
                return
            seen[booking_id] = str(response.json()["status"])

        await asyncio.gather(*(one(b, r) for b, r in accepted.items()))
        problems += grouped(
            "{n} accepted bookings are {0} through the API: {examples}",
            [((status,), b) for b, status in seen.items() if not self._final(b, status)],
        )
        return seen

    async def _ledger(self) -> list[dict[str, Any]]:
        ledger = self._db("bookify_booking")["ledger"]
        found: list[dict[str, Any]] = (
            await ledger.find({"resource_id": self.resource}).sort("seq", 1).to_list()
        )
        return found

    def _check_ledger(
        self,
        entries: list[dict[str, Any]],
        accepted: dict[str, Request],
        api_status: dict[str, str],
        problems: list[str],
    ) -> int:
        """Seats in the ledger; every accepted booking decided once, as the API shows it."""
        if not entries:
            problems.append(f"no ledger entries for resource {self.resource}")
            return -1
        seqs = [e["seq"] for e in entries]
        if seqs != list(range(1, len(entries) + 1)):
            problems.append(f"ledger seqs are not 1..{len(entries)}: {seqs[:20]}...")
        decisions = Counter(
            e["booking_id"] for e in entries if e["kind"] in ("confirmed", "rejected")
        )
        twice = [b for b, count in decisions.items() if count > 1]
        if twice:
            problems.append(f"bookings decided more than once: {twice[:10]}")
        net = 0
        forks: list[str] = []
        for entry in entries:
            before = net
            if entry["kind"] == "confirmed":
                net += entry["quantity"]
            elif entry["kind"] == "cancelled":
                net -= entry["quantity"]
            if not 0 <= entry["reserved"] <= (entry["capacity"] or 0):
                problems.append(f"ledger entry seq {entry['seq']} reserves {entry['reserved']}")
            if entry["reserved"] != net:
                # Decided on another state than the entry before it: name it, as evidence.
                forks.append(
                    f"seq {entry['seq']} ({entry['kind']} {entry['booking_id']} x"
                    f"{entry['quantity']}, recorded_at {entry['recorded_at']}) takes reserved "
                    f"from {before} to {entry['reserved']}"
                )
                net = entry["reserved"]
        if forks:
            problems.append(f"ledger chain broken at {len(forks)} entries: " + "; ".join(forks[:5]))
        net = sum(
            {"confirmed": e["quantity"], "cancelled": -e["quantity"]}.get(e["kind"], 0)
            for e in entries
        )
        head = entries[-1]
        if head["capacity"] != self.capacity or head["reserved"] != net:
            problems.append(
                f"ledger head holds capacity {head['capacity']}, reserved {head['reserved']}; "
                f"expected {self.capacity} and {net} (confirmed - cancelled quantities)"
            )
        kind_of = {
            e["booking_id"]: e["kind"] for e in entries if e["kind"] in ("confirmed", "rejected")
        }
        cancelled = {e["booking_id"] for e in entries if e["kind"] == "cancelled"}
        undecided = [((), b) for b in accepted if b not in kind_of]
        problems += grouped(
            "{n} bookings got a 202 but have no ledger decision: {examples}", undecided
        )
        disagree = []
        for booking_id in accepted:
            if (decided := kind_of.get(booking_id)) is None:
                continue
            expected = "cancelled" if booking_id in cancelled else decided
            if booking_id in api_status and api_status[booking_id] != expected:
                disagree.append(((api_status[booking_id], expected), booking_id))
        problems += grouped(
            "{n} bookings are {0} through the API, {1} in the ledger: {examples}", disagree
        )
        return int(head["reserved"])

    def _phantoms(
        self, entries: list[dict[str, Any]], accepted: dict[str, Request], problems: list[str]
    ) -> Counter[str]:
        """Confirmed bookings no 202 returned, by kind of client ("k"eyed, "u"nkeyed...)."""
        phantoms: Counter[str] = Counter()
        unkeyed = f"{self.tag}-u"  # see _generate: every other principal is keyed
        for entry in entries:
            if entry["kind"] != "confirmed" or entry["booking_id"] in accepted:
                continue
            if str(entry["principal"]).startswith(unkeyed):
                phantoms["unkeyed"] += 1
            else:
                phantoms["keyed"] += 1
                problems.append(f"phantom booking {entry['booking_id']} of {entry['principal']}")
        unknown = sum(
            1 for r in self.requests if not r.keyed and r.booking_id is None and r.unknown
        )
        if phantoms["unkeyed"] > unknown:
            problems.append(
                f"{phantoms['unkeyed']} unkeyed phantoms, but only {unknown} unkeyed requests "
                "were told their outcome is unknown"
            )
        return phantoms

    async def _check_views(self, reserved: int, problems: list[str]) -> int | None:
        """The views agree with the ledger (eventually: wait for them, then compare)."""
        bookings = self._db("bookify_views")["bookings"]
        deadline = time.monotonic() + VIEWS_AGREE_WITHIN
        while True:
            available = await self.api.available(self.resource)
            docs = await bookings.find(
                {"resource_id": self.resource, "status": "confirmed"}, {"quantity": 1}
            ).to_list()
            confirmed = sum(int(d["quantity"]) for d in docs)
            if available == self.capacity - reserved and confirmed == reserved:
                return available
            if time.monotonic() > deadline:
                problems.append(
                    f"views disagree with the ledger (reserved {reserved} of {self.capacity}): "
                    f"available {available}, confirmed bookings hold {confirmed} seats"
                )
                return available
            await asyncio.sleep(0.2)

    def _figures(
        self,
        accepted: dict[str, Request],
        api_status: dict[str, str],
        phantoms: Counter[str],
        available: int | None,
        reserved: int,
        problems: list[str],
    ) -> dict[str, Any]:
        def count(requests: Iterable[Request], test: Callable[[Request], bool]) -> int:
            return sum(1 for r in requests if test(r))

        keyed = [r for r in self.requests if r.keyed]
        unkeyed = [r for r in self.requests if not r.keyed]
        statuses = Counter(api_status.values())
        last = max((self._done_at[b] for b in accepted if b in self._done_at), default=None)
        heal = backlog = None
        if self.fault_end is not None and last is not None:
            heal = round(max(0.0, last - self.fault_end), 2)
            # The same for what was accepted before the fault ended alone (the backlog).
            backlog_done = [
                self._done_at[b]
                for b, r in accepted.items()
                if b in self._done_at and (r.accepted_at or 0.0) <= self.fault_end
            ]
            backlog = round(max(0.0, max(backlog_done, default=0.0) - self.fault_end), 2)
        fault = None
        if self.fault_start is not None and self.fault_end is not None:
            fault = round(self.fault_end - self.fault_start, 2)
        return {
            "test": self.name,
            "capacity": self.capacity,
            "requests": len(self.requests),
            "requests_keyed": len(keyed),
            "requests_unkeyed": len(unkeyed),
            "accepted": len(accepted),
            "accepted_keyed": count(keyed, lambda r: r.booking_id is not None),
            "accepted_unkeyed": count(unkeyed, lambda r: r.booking_id is not None),
            "http_503_unknown": self.answers["POST 503 unknown"],
            "http_503_not_accepted": self.answers["POST 503 not_accepted"],
            "transport_errors": sum(self.transport_errors.values()),
            "keyed_retried_to_202": count(
                keyed, lambda r: r.booking_id is not None and len(r.attempts) > 1
            ),
            "keyed_202_after_unknown": count(
                keyed, lambda r: r.booking_id is not None and r.unknown > 0
            ),
            "unkeyed_outcome_unknown": count(
                unkeyed, lambda r: r.booking_id is None and r.unknown > 0
            ),
            "terminal": count(
                accepted.values(), lambda r: api_status.get(r.booking_id or "") in TERMINAL
            ),
            "confirmed": statuses["confirmed"],
            "rejected": statuses["rejected"],
            "cancelled": statuses["cancelled"],
            "cancel_202": sum(1 for s in self.cancels.values() if s.startswith("202")),
            "cancel_202_while_pending": sum(1 for s in self.cancels.values() if s == "202 pending"),
            "cancel_409": sum(1 for s in self.cancels.values() if s == "409"),
            "phantom_keyed": phantoms["keyed"],
            "phantom_unkeyed": phantoms["unkeyed"],
            "reserved": reserved,
            "available": available,
            "other_5xx": sum(n for a, n in self.answers.items() if _other_5xx(a)),
            "fault_s": fault,
            "heal_s": heal,
            "heal_backlog_s": backlog,
            "traffic_s": round((self.traffic_end or time.monotonic()) - self._started, 2),
            "problems": len(problems),
        }


# ------------------------------------------------------------ helpers for the fault itself


async def set_faults(service_url: str, **settings: object) -> None:
    """PUT a service's fault switch (``kill_at``, ``latency_ms``...; none: all off)."""
    async with httpx.AsyncClient(base_url=service_url, timeout=10) as http:
        response = await http.put(
            "/admin/faults", json=settings, headers=bearer("chaos", "resources:admin")
        )
    assert response.status_code == 200, response.text


async def crash_and_restart(
    run: ChaosRun, infra: LocalInfra, service: Service, *, down_at_least: float = 0.0
) -> None:
    """SIGKILL one of ``infra``'s servers under ``run``'s traffic, prove where it landed, and
    bring it back on the same data once the stack has felt it (a POST answered 503)."""
    process = infra.process(service)
    process.kill()
    run.fault_began()
    # The fault landed: the server died of the SIGKILL, with no chance to shut down.
    assert await asyncio.to_thread(process.wait, 10) == -signal.SIGKILL
    await asyncio.sleep(down_at_least)
    await run.wait_for_answer("POST 503", since=run.fault_start or 0.0)
    infra.restart(service)  # from this thread: attached servers die with their spawner
    await asyncio.to_thread(infra.wait_ready, service)
    run.fault_ended()


def write_report(
    figures: dict[str, Any], path: Path, record: Callable[[str, object], None]
) -> None:
    """Print the figures (pytest -s), attach them to the test, append them to ``path``."""
    for name, value in figures.items():
        record(name, value)
    with path.open("a", encoding="utf-8") as out:
        out.write(json.dumps(figures) + "\n")
    print(f"\n[chaos] {json.dumps(figures)}\n[chaos] figures appended to {path}")


def _other_5xx(answer: str) -> bool:
    code = answer.split()[1]
    return code.isdigit() and 500 <= int(code) < 600 and code != "503"


def grouped(
    template: str, items: Iterable[tuple[tuple[str, ...], str]], shown: int = 5
) -> list[str]:
    """One problem line per kind (``template`` formatted with the kind's fields, ``n`` and
    a few ``examples``), not one per booking: a stalled stack leaves hundreds alike."""
    kinds: dict[tuple[str, ...], list[str]] = {}
    for kind, booking_id in items:
        kinds.setdefault(kind, []).append(booking_id)
    return [
        template.format(*kind, n=len(ids), examples=", ".join(sorted(ids)[:shown]))
        for kind, ids in kinds.items()
    ]


def service_logs(platform: Platform) -> tuple[Path, ...]:
    return tuple(service.log_path for service in platform.services.values())


WARNING_AND_ABOVE = frozenset({"warning", "error", "critical"})


def log_records(log: Path) -> Iterator[dict[str, Any]]:
    """A service log's JSON records; uvicorn's and aiokafka's own plain-text lines are
    skipped, and a missing log has none."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            yield record


def warnings_in(log: Path, shown: int = 12) -> str:
    """What a service logged at WARNING or above: its last ``shown`` distinct events, each
    with how often it came and when last. A failed run quotes these, so that a stall names
    its cause even where only the test's output survives (CI)."""
    seen: dict[str, tuple[int, str]] = {}
    for entry in log_records(log):
        if entry.get("level") not in WARNING_AND_ABOVE:
            continue
        event = f"{entry.get('logger', '?')}: {str(entry.get('event', ''))[:200]}"
        count, _ = seen.pop(event, (0, ""))
        seen[event] = (count + 1, str(entry.get("timestamp", "")))
    if not seen:
        return ""
    last = list(seen.items())[-shown:]
    return f"{log.name} at WARNING and above (last {len(last)} distinct events):\n" + "\n".join(
        f"  {count}x, last at {at}: {event}" for event, (count, at) in last
    )
