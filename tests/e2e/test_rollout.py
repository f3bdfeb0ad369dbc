"""A rollout under steady traffic drops nothing: SIGTERM one of two gateways and one of two
booking workers while keyed clients book, and let the supervisor start new ones.

The clients reach the gateways through :class:`Balancer`, a load balancer as Kubernetes'
Service is one: it sends only to gateways whose /readyz answers 200, probing them all the
time, and so stops sending to a draining gateway once its /readyz turns 503. What the test
shows: the gateway that drained answered every request it was sent (no reset, no refused
connection, no 5xx); every 202 reaches a decision, and none is decided twice; the booking
worker, slowed so that the SIGTERM lands mid-batch, stopped as it should (it finished its
batch and left its group: its log says so, and it exited 0); and it prints how long each
process took to stop.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from bookify_platform.services import Platform, ServiceName, ServiceProcess
from bookify_platform.supervisor import RestartPolicy, Supervisor
from shared.mongo import Document
from tests.chaos.traffic import set_faults
from tests.stack import (
    TERMINAL,
    Api,
    check_ledger,
    group_members,
    metric,
    resources_on_every_partition,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

REPLICAS: dict[ServiceName, int] = {"gateway": 2, "booking": 2, "consumer": 1}
# Long enough for the balancer's probe (every PROBE_EVERY_S) to see the 503 many times over
# on a busy machine; the chart's default is 10 s.
DRAIN_SECONDS = 4
STACK_ENV = {"BOOKIFY_GATEWAY_DRAIN_SECONDS": str(DRAIN_SECONDS)}
PROBE_EVERY_S = 0.1
SLOW_PROBES = 3
RATE = 30.0  # bookings a second, over both gateways
# A balancer closes idle connections before its backends do (uvicorn: after 5 s): a connection
# reused just as the server closes it fails with a ReadError that no server caused.
IDLE_TIMEOUT_S = 2.0
CAPACITY = 100_000  # the resources never sell out: every booking is confirmed
BATCH_RECORD_MS = 50  # booking-1's injected cost per record before its SIGTERM
WITHIN_S = 90  # a bound on each wait, so a broken rollout fails instead of hanging
FAST = RestartPolicy(first_delay=0.2, max_delay=1.0)
RESTART_MARK = "bookify up: restart"  # the line the supervisor writes into the log


@dataclass
class Backend:
    """One gateway's address; its ``epoch`` counts the processes the balancer has seen ready
    there (a restart on the same port is a new epoch with a fresh connection pool)."""

    url: str
    ready: bool = False
    gone: bool = True  # nothing listened at the last probe
    slow: int = 0  # probes in a row that timed out
    epoch: int = 0
    http: httpx.AsyncClient | None = None
    answers: Counter[tuple[int, str]] = field(default_factory=Counter)  # (epoch, outcome)
    retired: list[httpx.AsyncClient] = field(default_factory=list)

    def served(self, epoch: int, outcome: str | None = None) -> int:
        return sum(n for (e, o), n in self.answers.items() if e == epoch and outcome in (None, o))

    def outcomes(self, epoch: int | None = None) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for (e, outcome), n in self.answers.items():
            if epoch in (None, e):
                counts[outcome] += n
        return dict(counts)


class NoGatewayReadyError(httpx.TransportError):
    """The balancer had no gateway to send to (every one out)."""


class Balancer:
    """Round robin over the gateways that answer /readyz 200, checked every PROBE_EVERY_S."""

    def __init__(self, urls: list[str]) -> None:
        self.backends = [Backend(url) for url in urls]
        self._turn = itertools.count()
        self.probing: asyncio.Task[None] | None = None
        self._probe = httpx.AsyncClient(timeout=2, limits=httpx.Limits(max_keepalive_connections=0))

    def check_probing(self) -> None:
        """Raise what stopped the probes, if they stopped: a balancer blind to readiness."""
        if self.probing is not None and self.probing.done():
            self.probing.result()
            raise AssertionError("the balancer stopped probing")

    async def probe_forever(self) -> None:
        while True:
            await asyncio.gather(*(self._check(b) for b in self.backends))
            await asyncio.sleep(PROBE_EVERY_S)

    async def _check(self, backend: Backend) -> None:
        try:
            ready = (await self._probe.get(f"{backend.url}/readyz")).status_code == 200
        except httpx.ConnectError:
            backend.ready, backend.gone = False, True
            return
        except httpx.TimeoutException:
            # A busy process, not a gone one: out after SLOW_PROBES in a row (Kubernetes'
            # failureThreshold), where a 503 takes it out at once.
            backend.slow += 1
            backend.ready = backend.ready and backend.slow < SLOW_PROBES
            return
        except httpx.TransportError:  # reset: the process is closing its connections
            backend.ready = False
            return
        backend.slow = 0
        if ready and backend.gone:
            if backend.http is not None:
                backend.retired.append(backend.http)
            backend.epoch += 1
            backend.http = httpx.AsyncClient(
                base_url=backend.url,
                timeout=30,
                limits=httpx.Limits(keepalive_expiry=IDLE_TIMEOUT_S),
            )
            backend.gone = False
        backend.ready = ready

    async def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request to the next ready gateway, counted there; transport errors raise."""
        ready = [b for b in self.backends if b.ready]
        if not ready:
            raise NoGatewayReadyError("no gateway is ready")
        backend = ready[next(self._turn) % len(ready)]
        epoch, http = backend.epoch, backend.http
        assert http is not None
        try:
            response = await http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            backend.answers[epoch, type(exc).__name__] += 1
            raise
        backend.answers[epoch, str(response.status_code)] += 1
        return response

    async def aclose(self) -> None:
        await self._probe.aclose()
        for backend in self.backends:
            for http in [*backend.retired, *([backend.http] if backend.http else [])]:
                await http.aclose()


@dataclass
class Traffic:
    """Keyed bookings at RATE a second; each is sent again with its key until a 202."""

    balancer: Balancer
    resources: list[str]
    accepted: dict[str, str] = field(default_factory=dict)  # booking id -> principal
    failures: Counter[str] = field(default_factory=Counter)
    running: bool = True

    async def run(self) -> None:
        sent: list[asyncio.Task[None]] = []
        t0 = time.monotonic()
        for n in itertools.count():
            if not self.running:
                break
            await asyncio.sleep(max(0.0, t0 + n / RATE - time.monotonic()))
            sent.append(asyncio.create_task(self._book(n)))
        await asyncio.gather(*sent)

    async def _book(self, n: int) -> None:
        who = f"roll-{n % 100}"
        headers = {**Api.auth(who), "Idempotency-Key": str(uuid.uuid4())}
        body = {"resource_id": self.resources[n % len(self.resources)], "quantity": 1}
        for _ in range(20):
            try:
                response = await self.balancer.send(
                    "POST", "/v1/bookings", json=body, headers=headers
                )
            except httpx.TransportError as exc:
                self.failures[type(exc).__name__] += 1
                await asyncio.sleep(PROBE_EVERY_S)
                continue  # the key makes the retry safe
            if response.status_code == 202:
                self.accepted[response.json()["id"]] = who
                return
            self.failures[str(response.status_code)] += 1
            await asyncio.sleep(float(response.headers.get("retry-after", "1")))
        self.failures["gave up"] += 1


@dataclass
class Stopping:
    """A process sent SIGTERM, and when it exited."""

    name: str
    process: Any  # the old Popen: the supervisor replaces the service's own
    signalled_at: float
    exited_at: float | None = None

    @property
    def seconds(self) -> float:
        assert self.exited_at is not None
        return self.exited_at - self.signalled_at


def terminate(service: ServiceProcess) -> Stopping:
    assert service.proc is not None
    os.kill(service.proc.pid, signal.SIGTERM)
    return Stopping(service.name, service.proc, time.monotonic())


@pytest.fixture
async def balancer(replica_stack: Platform) -> AsyncIterator[Balancer]:
    balancer = Balancer(replica_stack.urls("gateway"))
    balancer.probing = probing = asyncio.create_task(balancer.probe_forever())
    try:
        yield balancer
    finally:
        probing.cancel()
        await balancer.aclose()


async def until(condition: Callable[[], bool], what: str, *, poll: Callable[[], None]) -> None:
    """Wait for ``condition``, calling ``poll`` (the supervisor's round) meanwhile."""
    deadline = time.monotonic() + WITHIN_S
    while not condition():
        assert time.monotonic() < deadline, f"not within {WITHIN_S} s: {what}"
        poll()
        await asyncio.sleep(0.02)


async def test_a_rollout_of_a_gateway_and_a_booking_worker_under_traffic_drops_nothing(
    replica_stack: Platform, balancer: Balancer, mongo: Any
) -> None:
    platform = replica_stack
    gateway, worker = platform["gateway-1"], platform["booking-1"]
    drained = balancer.backends[1]
    assert drained.url == gateway.url
    # Polled from this (main) thread, as `bookify up` does: services die with the thread
    # that spawned them.
    supervisor = Supervisor(platform.services.values(), FAST)
    stopping: list[Stopping] = []

    def poll() -> None:
        balancer.check_probing()
        for stop in stopping:
            if stop.exited_at is None and stop.process.poll() is not None:
                stop.exited_at = time.monotonic()
        supervisor.poll()

    await until(lambda: all(b.ready for b in balancer.backends), "both gateways in", poll=poll)
    api = Api(httpx.AsyncClient(base_url=platform["gateway"].url, timeout=30))
    resources = await resources_on_every_partition(api, CAPACITY)
    await api.http.aclose()
    assert await group_members(platform.config, 2) == 2
    traffic = Traffic(balancer, resources)
    sending = asyncio.create_task(traffic.run())
    try:
        await until(lambda: drained.served(1, "202") >= 30, "traffic on gateway-1", poll=poll)
        # The worker to stop decides bookings: it holds partitions with traffic.
        while await metric(worker.url, "bookify_bookings_total") == 0:
            poll()
            await asyncio.sleep(0.1)
        # Each record it handles now takes a while, so the SIGTERM lands mid-batch: it must
        # finish that batch, commit and leave (its stop time says how long that took).
        await set_faults(worker.url, latency_ms=BATCH_RECORD_MS)
        accepted_before = len(traffic.accepted)

        stopping += [terminate(gateway), terminate(worker)]
        await until(lambda: all(s.exited_at for s in stopping), "both stopped", poll=poll)
        # The supervisor starts new ones; the balancer takes the new gateway in.
        await until(
            lambda: drained.epoch == 2 and worker.is_ready(timeout=0.5),
            "new gateway-1 and booking-1 ready",
            poll=poll,
        )
        assert await group_members(platform.config, 2) == 2
        await until(lambda: drained.served(2, "202") >= 30, "traffic on new gateway-1", poll=poll)
        await until(
            lambda: len(traffic.accepted) >= accepted_before + 200, "traffic after", poll=poll
        )
    finally:
        traffic.running = False
        await sending

    # Every 202 terminal for its client, then decided once in the ledger.
    statuses = await asyncio.gather(
        *(terminal(balancer, b, who) for b, who in traffic.accepted.items())
    )
    client: AsyncMongoClient[Document] = AsyncMongoClient(mongo.uri, tz_aware=True)
    try:
        ledger = client[f"{platform.config.db_prefix}bookify_booking"]["ledger"]
        problems: list[str] = []
        decided: set[str] = set()
        for resource in resources:
            entries = await ledger.find({"resource_id": resource}).sort("seq", 1).to_list()
            problems += [f"{resource}: {p}" for p in check_ledger(entries, CAPACITY)]
            decided |= {e["booking_id"] for e in entries if e["kind"] in ("confirmed", "rejected")}
    finally:
        await client.close()

    old_worker_log = worker.log_path.read_text().split(RESTART_MARK)[0]
    figures = {
        "stop_seconds": {s.name: round(s.seconds, 2) for s in stopping},
        "exit_codes": {s.name: s.process.returncode for s in stopping},
        "accepted": len(traffic.accepted),
        "drained_gateway_answers": drained.outcomes(1),
        "new_gateway_answers": drained.outcomes(2),
        "other_gateway_answers": balancer.backends[0].outcomes(),
        "client_failures": dict(traffic.failures),
        "statuses": dict(Counter(statuses)),
    }
    print(f"rollout under traffic: {figures}")
    # The gateway that drained answered everything it was sent, and never with a 5xx.
    assert set(figures["drained_gateway_answers"]) <= {"200", "202"}, figures
    assert traffic.failures == Counter(), figures
    assert figures["exit_codes"] == {"gateway-1": 0, "booking-1": 0}, figures
    # Nothing lost, nothing made up, nothing decided twice, every 202 terminal.
    assert problems == []
    assert decided == set(traffic.accepted)
    assert set(statuses) <= TERMINAL
    # The worker finished its batch, committed and left its group before it stopped.
    assert "Traceback" not in old_worker_log
    assert "CancelledError" not in old_worker_log
    left = old_worker_log.index("LeaveGroup request succeeded")
    assert left < old_worker_log.index('"event": "service_stopped"')


async def terminal(balancer: Balancer, booking_id: str, who: str) -> str:
    """The booking's status once terminal (its client polling through the balancer)."""
    deadline = time.monotonic() + WITHIN_S
    while True:
        response = await balancer.send("GET", f"/v1/bookings/{booking_id}", headers=Api.auth(who))
        assert response.status_code == 200, response.text
        status: str = response.json()["status"]
        if status in TERMINAL:
            return status
        assert time.monotonic() < deadline, f"booking {booking_id} still {status}"
        await asyncio.sleep(0.2)
