"""The crowd of :mod:`loadtests.mix` as clients that keep a history of every operation.

Each operation is two lines of the history (JSON lines, as Jepsen keeps one): ``invoke`` when
it is sent, then ``ok`` (the answer it wanted), ``fail`` (an answer that says nothing was done:
a 4xx, a 503 ``not_accepted``, a refused connection) or ``unknown`` (it may or may not have
happened: a 503 ``unknown``, a timeout, a reset, any other 5xx). Half the principals send every
booking with an Idempotency-Key and, like a careful client, send it again with the same key
after an ``unknown`` until they are told (each attempt its own operation); the other half send
none and never retry, like a careless one.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from loadtests.data import Principal, idempotency_key
from loadtests.mix import BOOK, CANCEL, READ_BOOKING, READ_SEATS, REBOOK, RETRY
from loadtests.openmodel import HttpClient, HttpError, Reply

KEYED, KEYLESS = "keyed", "keyless"
RETRY_EVERY = 1.0
"""Seconds a keyed client waits before it sends a booking again after an ``unknown``."""


@dataclass(frozen=True)
class Client:
    principal: Principal
    keyed: bool


@dataclass
class Mine:
    """A booking a client was told about, and how it asked for it."""

    booking_id: str
    key: str | None
    body: dict[str, Any]


class History:
    """Every operation's invoke and completion, in memory and as JSON lines in ``path``."""

    def __init__(self, path: Path | None = None) -> None:
        self.events: list[dict[str, Any]] = []
        self._next = 0
        self._out: IO[str] | None = None if path is None else path.open("w", encoding="utf-8")
        self.t0 = time.time()

    def invoke(self, f: str, client: Client, **value: Any) -> int:
        self._next += 1
        self._write(
            {"i": self._next, "type": "invoke", "f": f, "client": client.principal.sub}
            | {"kind": KEYED if client.keyed else KEYLESS}
            | value
        )
        return self._next

    def complete(self, i: int, f: str, outcome: str, **value: Any) -> None:
        self._write({"i": i, "type": outcome, "f": f} | value)

    def mark(self, name: str, **value: Any) -> None:
        """A moment of the run itself (faults began, healed...), for whoever reads it."""
        self._write({"type": "mark", "mark": name} | value)

    def _write(self, event: dict[str, Any]) -> None:
        event["time"] = round(time.time() - self.t0, 4)
        self.events.append(event)
        if self._out is not None:
            self._out.write(json.dumps(event) + "\n")

    def close(self) -> None:
        if self._out is not None:
            self._out.close()


def read_history(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


@dataclass
class Crowd:
    """The clients, their bookings so far, and the keyed retries still under way."""

    http: HttpClient
    history: History
    clients: Sequence[Client]
    resources: Sequence[str]
    weights: dict[str, float]
    seed: int = 0
    retry_until: float = float("inf")
    """Monotonic time after which a keyed client stops sending again (the run is over)."""
    mine: dict[str, deque[Mine]] = field(default_factory=dict)
    retries: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self._names = [name for name, weight in self.weights.items() if weight > 0]
        self._weights = [self.weights[name] for name in self._names]

    async def arrival(self, _: int) -> int:
        client = self.rng.choice(list(self.clients))
        f = self.rng.choices(self._names, weights=self._weights)[0]
        booked = self.mine.get(client.principal.sub)
        if f in (RETRY, CANCEL, READ_BOOKING, REBOOK) and not booked:
            f = BOOK
        if f == RETRY and not client.keyed:
            f = BOOK  # a keyless client has no way to ask for the same booking again
        if f == READ_SEATS:
            return await self._read(client, f"/v1/resources/{self.rng.choice(self.resources)}", f)
        if f in (BOOK, REBOOK):
            assert f == BOOK or booked
            resource = booked[-1].body["resource_id"] if f == REBOOK and booked else None
            body = {"resource_id": resource or self.rng.choice(self.resources), "quantity": 1}
            key = idempotency_key() if client.keyed else None
            return await self._book(client, body, key, f)
        assert booked
        mine = self.rng.choice(list(booked))
        if f == RETRY:
            return await self._book(client, mine.body, mine.key, f)
        if f == READ_BOOKING:
            return await self._read(client, f"/v1/bookings/{mine.booking_id}", f)
        return await self._cancel(client, mine)

    async def _book(self, client: Client, body: dict[str, Any], key: str | None, f: str) -> int:
        i = self.history.invoke(f, client, key=key, resource=body["resource_id"])
        headers = dict(client.principal.auth)
        if key is not None:
            headers["Idempotency-Key"] = key
        reply = await self._send(i, f, "POST", "/v1/bookings", headers, body)
        if reply is None or reply.status in (500, 502, 504) or _unknown(reply):
            if key is not None and time.monotonic() < self.retry_until:
                task = asyncio.create_task(self._again(client, body, key))
                self.retries.add(task)
                task.add_done_callback(self.retries.discard)
            return 0 if reply is None else reply.status
        if reply.status == 202:
            booking_id = str(reply.json()["id"])
            self.history.complete(i, f, "ok", status=202, booking_id=booking_id)
            mine = self.mine.setdefault(client.principal.sub, deque(maxlen=32))
            if all(m.booking_id != booking_id for m in mine):
                mine.append(Mine(booking_id, key, body))
        return reply.status

    async def _again(self, client: Client, body: dict[str, Any], key: str) -> None:
        await asyncio.sleep(RETRY_EVERY)
        await self._book(client, body, key, RETRY)

    async def _cancel(self, client: Client, mine: Mine) -> int:
        i = self.history.invoke(CANCEL, client, booking_id=mine.booking_id)
        path = f"/v1/bookings/{mine.booking_id}/cancel"
        reply = await self._send(i, CANCEL, "POST", path, client.principal.auth)
        if reply is not None and reply.status == 202:
            seen = str(reply.json().get("status", ""))
            self.history.complete(
                i, CANCEL, "ok", status=202, booking_id=mine.booking_id, seen=seen
            )
        return 0 if reply is None else reply.status

    async def _read(self, client: Client, path: str, f: str) -> int:
        i = self.history.invoke(f, client, path=path)
        reply = await self._send(i, f, "GET", path, client.principal.auth)
        if reply is not None and reply.status == 200:
            self.history.complete(i, f, "ok", status=200, path=path)
        return 0 if reply is None else reply.status

    async def _send(
        self,
        i: int,
        f: str,
        method: str,
        path: str,
        headers: dict[str, str],
        body: dict[str, Any] | None = None,
    ) -> Reply | None:
        """The answer, with anything but the operation's success already completed in the
        history; None when no answer came (completed as fail or unknown)."""
        try:
            reply = await self.http.request(method, path, headers=headers, json=body)
        except HttpError as exc:
            refused = isinstance(exc.__cause__, ConnectionRefusedError)
            outcome = "fail" if refused else "unknown"
            self.history.complete(i, f, outcome, error=str(exc)[:200])
            return None
        if reply.status in (200, 202):
            return reply  # the caller completes it, with what it learnt
        if reply.status == 503:
            outcome = str(_problem(reply).get("outcome", ""))
            verdict = "fail" if outcome == "not_accepted" else "unknown"
            self.history.complete(i, f, verdict, status=503, problem_outcome=outcome)
        elif reply.status >= 500:
            self.history.complete(i, f, "unknown", status=reply.status, body=_text(reply))
        else:
            self.history.complete(i, f, "fail", status=reply.status, body=_text(reply))
        return reply

    async def until_accepted(self, within: float) -> bool:
        """Ask for one booking (a keyed client's, one key) until it is accepted or ``within``
        seconds pass: whether the platform takes bookings again. Each attempt is an operation
        of the history; nothing is sent again in the background."""
        self.retry_until = time.monotonic()
        client = next(c for c in self.clients if c.keyed)
        body = {"resource_id": self.resources[0], "quantity": 1}
        key, f = idempotency_key(), BOOK
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if await self._book(client, body, key, f) == 202:
                return True
            f = RETRY
            await asyncio.sleep(RETRY_EVERY)
        return False

    async def settle(self, within: float) -> None:
        """Wait (at most ``within`` seconds) for the keyed retries still under way."""
        deadline = time.monotonic() + within
        while self.retries and time.monotonic() < deadline:
            await asyncio.wait(set(self.retries), timeout=max(0.0, deadline - time.monotonic()))
        for task in self.retries:
            task.cancel()


def _unknown(reply: Reply) -> bool:
    return reply.status == 503 and _problem(reply).get("outcome") != "not_accepted"


def _problem(reply: Reply) -> dict[str, Any]:
    try:
        body = reply.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _text(reply: Reply) -> str:
    return reply.body[:200].decode(errors="replace")
