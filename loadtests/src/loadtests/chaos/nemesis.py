"""One nemesis run: the crowd's traffic throughout, a seeded schedule of faults, a heal phase,
then the checker on the history and the stores.

The platform's processes are reached through :class:`Processes` (``bookify chaos`` gives the
processes of a running ``bookify up``; the chaos tests those of their own stack). Every fault
proves it landed before the run goes on: a frozen process shows state ``T`` in /proc, a killed
one is gone; each fault's start and end are marks in the history.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from loadtests.chaos.checker import TERMINAL, Result, Stores, check, told
from loadtests.chaos.schedule import INFRA, Fault, FaultKind
from loadtests.chaos.workload import Client, Crowd, History
from loadtests.data import Principal
from loadtests.mix import MIXES
from loadtests.openmodel import HttpClient, run_open_model
from shared.auth import AuthSettings, Scope, mint_token
from shared.readmodel import BOOKINGS, DEFAULT_VIEWS_DB, RESOURCES

LEDGER_DB, LEDGER = "bookify_booking", "ledger"
STATE_EVERY = 0.02
"""How often /proc is read while waiting for a fault to land."""


class Processes(Protocol):
    """The processes of a running platform, by name (kafka, mongo, redis, gateway, ...)."""

    def targets(self) -> list[str]:
        """What a schedule may fault."""
        ...

    def pid(self, name: str) -> int | None:
        """The process's pid now (it changes when it is started again)."""
        ...

    async def start_again(self, name: str) -> None:
        """Bring ``name`` back after it was killed, and wait until it is ready."""
        ...

    async def restart_infra(self) -> None:
        """Kill kafka, mongo and redis together, start them again, wait until ready."""
        ...


@dataclass(frozen=True)
class Target:
    gateway_url: str
    mongo_uri: str
    db_prefix: str = ""


@dataclass
class Plan:
    seed: int
    faults: Sequence[Fault]
    fault_seconds: float
    rate: float = 40.0
    calm_before: float = 5.0
    calm_after: float = 10.0
    heal_within: float = 120.0
    resources: int = 3
    capacity: int = 40
    principals: int = 11
    """Per kind of client (keyed, keyless)."""
    weights: dict[str, float] = field(default_factory=lambda: dict(MIXES["default"]))


@dataclass
class Outcome:
    seed: int
    results: list[Result]
    heal_seconds: float | None
    """From the end of the last fault to every 202 terminal in the views (None: not healed)."""
    recovery_rate: float | None
    """Decisions booking recorded per second from the end of the faults until healed."""
    operations: int
    accepted: int
    faults: list[dict[str, Any]]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def as_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "verdict": "pass" if self.ok else "fail",
            "heal_seconds": self.heal_seconds,
            "recovery_decisions_per_s": self.recovery_rate,
            "operations": self.operations,
            "accepted": self.accepted,
            "faults": self.faults,
            "invariants": [r.__dict__ for r in self.results],
        }


def process_state(pid: int) -> str:
    """The state letter of ``pid`` in /proc ("T" when stopped, "Z" a zombie; "" if gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[-1].split()[0]  # the name before it may hold spaces


def dead(pid: int) -> bool:
    """True once no thread of ``pid`` runs. Not the leader's state alone: a JVM's leader
    thread is a zombie while its other threads still run (and hold Kafka's ports)."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return True
    return all(_task_state(pid, task) in ("", "Z", "X") for task in tasks)


def _task_state(pid: int, task: str) -> str:
    try:
        stat = Path(f"/proc/{pid}/task/{task}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[-1].split()[0]


async def died(pid: int, within: float = 30.0) -> None:
    """Wait until every thread of ``pid`` is gone: the kill landed."""
    deadline = time.monotonic() + within
    while not dead(pid):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the fault did not land: process {pid} still runs")
        await asyncio.sleep(STATE_EVERY)


async def landed(pid: int, wanted: Callable[[str], bool], what: str, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not wanted(process_state(pid)):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the fault did not land: process {pid} never {what}")
        await asyncio.sleep(STATE_EVERY)


class Faulting:
    """Faults on one process wait for each other (a kill while it restarts from another kill
    would take the wrong pid); faults on different processes overlap freely."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}

    @contextlib.asynccontextmanager
    async def hold(self, fault: Fault) -> AsyncIterator[None]:
        names = INFRA if fault.kind is FaultKind.RESTART_INFRA else (fault.target,)
        async with contextlib.AsyncExitStack() as held:
            for name in sorted(names):  # one order for all: no two faults wait on each other
                await held.enter_async_context(self._locks.setdefault(name, asyncio.Lock()))
            yield


async def apply(fault: Fault, processes: Processes, history: History) -> None:
    """One fault, from its start to the end of its recovery; marks both in the history."""
    if fault.kind is FaultKind.RESTART_INFRA:
        history.mark("fault", **fault.as_dict())
        await processes.restart_infra()
        history.mark("fault_ended", **fault.as_dict())
        return
    pid = processes.pid(fault.target)
    if pid is None:
        history.mark("fault_skipped", reason="not running", **fault.as_dict())
        return
    if fault.kind is FaultKind.PAUSE:
        os.kill(pid, signal.SIGSTOP)
        await landed(pid, lambda s: s in ("T", "t", ""), "stopped")
        history.mark("fault", pid=pid, **fault.as_dict())
        await asyncio.sleep(fault.seconds)
        with contextlib.suppress(ProcessLookupError):  # killed meanwhile by another fault
            os.kill(pid, signal.SIGCONT)
        history.mark("fault_ended", pid=pid, **fault.as_dict())
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    await died(pid)
    history.mark("fault", pid=pid, **fault.as_dict())
    await processes.start_again(fault.target)
    history.mark("fault_ended", pid=pid, **fault.as_dict())


async def run_nemesis(
    plan: Plan,
    processes: Processes,
    target: Target,
    *,
    history_path: Path | None = None,
    say: Callable[[str], None] = print,
) -> Outcome:
    history = History(history_path)
    admin = mint_token(AuthSettings(), "chaos-admin", [Scope.RESOURCES_ADMIN, Scope.BOOKINGS_READ])
    tag = f"chaos{plan.seed}-{os.urandom(3).hex()}"
    scopes: list[str] = [Scope.BOOKINGS_READ, Scope.BOOKINGS_WRITE]
    clients = [
        Client(Principal(sub, mint_token(AuthSettings(), sub, scopes)), keyed)
        for keyed in (True, False)
        for n in range(plan.principals)
        for sub in [f"{tag}-{'k' if keyed else 'u'}{n}"]
    ]
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        target.mongo_uri, serverSelectionTimeoutMS=2000, tz_aware=True
    )
    try:
        async with HttpClient(target.gateway_url, max_connections=256, timeout=20.0) as http:
            resources = [
                await _create(http, admin, f"{tag} hall {n}", plan.capacity)
                for n in range(plan.resources)
            ]
            await _visible(http, admin, resources)
            crowd = Crowd(http, history, clients, resources, plan.weights, seed=plan.seed)
            traffic_seconds = plan.calm_before + plan.fault_seconds + plan.calm_after
            crowd.retry_until = time.monotonic() + traffic_seconds + plan.heal_within / 2
            say(f"seed {plan.seed}: {len(plan.faults)} faults in {plan.fault_seconds:g} s, "
                f"{plan.rate:g} operations/s for {traffic_seconds:g} s")  # fmt: skip
            traffic = asyncio.create_task(
                run_open_model(crowd.arrival, rate=plan.rate, duration=traffic_seconds)
            )
            await asyncio.sleep(plan.calm_before)
            history.mark("faults_began")
            started = time.monotonic()

            faulting = Faulting()

            async def at(fault: Fault) -> None:
                await asyncio.sleep(max(0.0, started + fault.at - time.monotonic()))
                async with faulting.hold(fault):
                    say(f"  {fault.describe()}")
                    await apply(fault, processes, history)

            await asyncio.gather(*(at(fault) for fault in plan.faults))
            faults_ended, faults_ended_wall = time.monotonic(), time.time()
            history.mark("faults_ended")
            say(f"  faults over after {faults_ended - started:.1f} s; healing")
            # Time to heal: until what was accepted by then is terminal (traffic goes on).
            backlog = set(told(history.events).accepted)
            healing = asyncio.create_task(
                _terminal(mongo, target, lambda: backlog, faults_ended + plan.heal_within)
            )
            await traffic
            await crowd.settle(within=plan.heal_within / 2)
            await crowd.until_accepted(within=plan.heal_within)  # judged by `recovered`
            everything = await _terminal(
                mongo,
                target,
                lambda: set(told(history.events).accepted),
                time.monotonic() + plan.heal_within,
            )
            healed_at = await healing
            history.mark("healed" if healed_at is not None else "not_healed")
            history.mark("all_terminal" if everything is not None else "not_all_terminal")
            stores = await _stores(mongo, target, resources)
    finally:
        await mongo.close()
        history.close()
    results = check(history.events, stores)
    learnt = told(history.events)
    heal = None if healed_at is None else healed_at - faults_ended
    return Outcome(
        seed=plan.seed,
        results=results,
        heal_seconds=None if heal is None else round(heal, 2),
        recovery_rate=_decided_per_second(stores, faults_ended_wall, heal),
        operations=sum(1 for e in history.events if e["type"] == "invoke"),
        accepted=len(learnt.accepted),
        faults=[fault.as_dict() for fault in plan.faults],
    )


async def _create(http: HttpClient, admin: str, name: str, capacity: int) -> str:
    headers = {"Authorization": f"Bearer {admin}"}
    for _ in range(30):
        reply = await http.post("/v1/resources", json={"name": name, "capacity": capacity},
                                headers=headers)  # fmt: skip
        if reply.status == 202:
            return str(reply.headers["location"].rsplit("/", 1)[-1])
        await asyncio.sleep(1.0)
    raise RuntimeError(
        f"the gateway did not accept a resource: {reply.status} {reply.body[:200]!r}"
    )


async def _visible(
    http: HttpClient, admin: str, resources: Sequence[str], within: float = 60
) -> None:
    headers = {"Authorization": f"Bearer {admin}"}
    deadline = time.monotonic() + within
    for resource in resources:
        while (await http.get(f"/v1/resources/{resource}", headers=headers)).status != 200:
            if time.monotonic() > deadline:
                raise RuntimeError(f"resource {resource} not visible within {within:g} s")
            await asyncio.sleep(0.2)


async def _terminal(
    mongo: AsyncMongoClient[dict[str, Any]],
    target: Target,
    bookings: Callable[[], set[str]],
    deadline: float,
) -> float | None:
    """When every booking of ``bookings()`` is terminal in the views (monotonic time), or None
    once ``deadline`` passed (invariant 1 then names the ones that are not). Reads by ``_id``
    only the ones not seen terminal yet (terminal stays terminal): a filter on anything else
    would scan the views on FerretDB, under the run it measures."""
    views = mongo[f"{target.db_prefix}{DEFAULT_VIEWS_DB}"][BOOKINGS]
    final: set[str] = set()

    async def seen_final(booking: str) -> None:
        doc = await views.find_one({"_id": booking}, {"status": 1})
        if doc is not None and doc.get("status") in TERMINAL:
            final.add(booking)

    while time.monotonic() < deadline:
        waiting = bookings() - final
        if not waiting:
            return time.monotonic()
        with contextlib.suppress(PyMongoError):  # the store is down: nothing is seen meanwhile
            for chunk in _chunks(sorted(waiting), 32):
                await asyncio.gather(*(seen_final(booking) for booking in chunk))
        if not bookings() - final:
            return time.monotonic()
        await asyncio.sleep(0.5)
    return None


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def _stores(
    mongo: AsyncMongoClient[dict[str, Any]], target: Target, resources: Sequence[str]
) -> Stores:
    """The run's resources in the ledger and the views (offline: a scan is fine here)."""
    ledger = mongo[f"{target.db_prefix}{LEDGER_DB}"][LEDGER]
    views = mongo[f"{target.db_prefix}{DEFAULT_VIEWS_DB}"]
    for attempt in range(30):  # the store may still be coming back from the last fault
        try:
            entries = await ledger.find({"resource_id": {"$in": list(resources)}}).to_list()
            bookings = (
                await views[BOOKINGS]
                .find({"resource_id": {"$in": list(resources)}}, {"status": 1})
                .to_list()
            )
            seats = (
                await views[RESOURCES]
                .find({"_id": {"$in": list(resources)}}, {"available": 1})
                .to_list()
            )
            break
        except PyMongoError:
            if attempt == 29:
                raise
            await asyncio.sleep(1.0)
    return Stores(
        ledger=entries,
        booking_views={str(d["_id"]): str(d["status"]) for d in bookings},
        resource_views={str(d["_id"]): int(d["available"]) for d in seats if "available" in d},
    )


def _decided_per_second(stores: Stores, since: float, seconds: float | None) -> float | None:
    """Decisions recorded in the ``seconds`` after wall time ``since`` (the heal), per second."""
    if not seconds:
        return None
    decided = sum(
        1
        for entry in stores.ledger
        if entry["kind"] in ("confirmed", "rejected")
        and since <= entry["recorded_at"].timestamp() <= since + seconds
    )
    return round(decided / seconds, 1)


def table(outcome: Outcome) -> str:
    lines = [f"{'invariant':18}{'checked':>9}{'violations':>12}  first violation"]
    for r in outcome.results:
        lines.append(f"{r.invariant:18}{r.checked:>9}{r.violations:>12}  {r.first or '-'}")
    heal = "not healed" if outcome.heal_seconds is None else f"{outcome.heal_seconds:.1f} s"
    if outcome.recovery_rate is not None:
        heal += f" at {outcome.recovery_rate:g} decisions/s"
    lines.append(
        f"seed {outcome.seed}: {outcome.operations} operations, {outcome.accepted} bookings "
        f"accepted, time to heal {heal}: {'PASS' if outcome.ok else 'FAIL'}"
    )
    return "\n".join(lines)
