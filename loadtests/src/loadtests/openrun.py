"""The open model: the shop's flows as arrivals at a fixed rate per shape segment.

Arrivals start on schedule (:func:`loadtests.openmodel.run_open_model`) whether or not earlier
ones have answered, so a slow server shows up as latency -- measured from each arrival's
*intended* start -- and as dropped arrivals, never as a quietly lower load. A booking
arrival ends at its 202; the wait for its decision that follows (polling, or its push stream
with ``--follow push``) runs beside the schedule (bounded) and records the accepted -> known
latency. Segments of a shape start on time even while the previous segment's tail is still
answering. ``stress`` runs its steps one after another and stops at the first step that
breaks the step SLO.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from loadtests.data import (
    DECIDED,
    TERMINAL,
    BadTokens,
    ErrorCase,
    Pools,
    Trace,
    base_urls,
    booking_body,
    check_gateway,
    error_cases,
    idempotency_key,
    is_expected,
    mint_principals,
    quantity,
    seed_resources,
)
from loadtests.gates import ExitCode, SloConfig
from loadtests.mix import Crowd, parse_mix
from loadtests.openmodel import HttpClient, HttpError, OpenModelResult, Reply, run, run_open_model
from loadtests.options import LoadOptions, Say
from loadtests.recorder import SAMPLES_FILE, Recorder, RunSummary
from loadtests.session import OPEN_MODEL, FaultPlan, GatewayCpu, RunSession
from loadtests.shapes import (
    BookifyShape,
    ErrorShape,
    Segment,
    StepSlo,
    StressShape,
    build_shape,
)
from loadtests.sse import EventStream, StreamRefusedError
from loadtests.users import (
    BOOKING_EVENTS,
    BOOKINGS,
    CANCEL,
    FLOW_WEIGHTS,
    LIST_RESOURCES,
    ONE_BOOKING,
    ONE_RESOURCE,
    POLL,
    pick_error_case,
    pick_flow,
    poll_delays,
    should_cancel,
)


@dataclass
class Live:
    """Counters for the progress line, reset at each print."""

    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    in_flight: int = 0

    def take(self) -> tuple[int, float, int]:
        lat, self.latencies_ms = sorted(self.latencies_ms), []
        errors, self.errors = self.errors, 0
        p95 = lat[min(len(lat) - 1, math.ceil(0.95 * len(lat)) - 1)] if lat else math.nan
        return len(lat), p95, errors


RECONNECT_S = 0.5  # before opening a stream again that ended undecided (EventSource waits too)


class OpenClient:
    """The shop's flows as single arrivals for the open model (asyncio)."""

    def __init__(
        self,
        http: HttpClient,
        pools: Pools,
        recorder: Recorder,
        *,
        errors: bool,
        live: Live,
        max_pollers: int,
        poll_timeout_s: float = 30.0,
        mix: dict[str, float] | None = None,
        follow: str = POLL,
        hosts: Sequence[str] = (),
    ) -> None:
        self.http = http
        self.pools = pools
        self.recorder = recorder
        self.errors = errors
        self.live = live
        self.rng = random.Random()
        self.bad = BadTokens.mint(pools.run_id)
        self.pollers: set[asyncio.Task[None]] = set()
        self.max_pollers = max_pollers
        self.poll_timeout_s = poll_timeout_s
        self.skipped_polls = 0
        self.wait = self._poll if follow == POLL else self._push
        self.stream_hosts = itertools.cycle(hosts)  # push: each stream to the next gateway
        self.crowd: Crowd | None = None
        if mix is not None:
            self.crowd = Crowd(
                http,
                pools.principals,
                pools.resources,
                mix,
                observe=self._record,
                pick_resource=pools.resource,
                on_booked=lambda booking, who: self._follow(booking, who.auth, time.time()),
            )

    def _record(self, name: str, start: float, ok: bool, status: int) -> None:
        latency = time.time() - start
        self.recorder.record(name, start, latency, ok, status)
        self.live.latencies_ms.append(latency * 1000)
        if not ok:
            self.live.errors += 1

    async def _call(
        self,
        method: str,
        path: str,
        name: str,
        start: float,
        *,
        ok: Callable[[int], bool],
        **kwargs: Any,
    ) -> Reply | None:
        try:
            reply = await self.http.request(method, path, **kwargs)
        except HttpError:
            self._record(f"{method} {name}", start, False, 0)
            return None
        self._record(f"{method} {name}", start, ok(reply.status), reply.status)
        return reply

    async def arrival(self, intended: float) -> int:
        """One arrival at wall time ``intended``; latency counts from then."""
        rng, pools = self.rng, self.pools
        trace = Trace(pools.run_id, rng)
        who = pools.principal(rng)
        headers = {**who.auth, **trace.headers()}
        if self.errors and rng.random() < 0.5:
            return await self._error(intended, rng)
        if self.crowd is not None:
            return await self.crowd.send(0)
        flow = pick_flow(rng, FLOW_WEIGHTS)
        if flow == "browse":
            r = await self._call(
                "GET", f"{LIST_RESOURCES}?limit=20", LIST_RESOURCES, intended,
                ok=lambda s: s == 200, headers=headers,
            )  # fmt: skip
        elif flow == "look":
            r = await self._call(
                "GET", f"/v1/resources/{pools.resource(rng)}", ONE_RESOURCE, intended,
                ok=lambda s: s == 200, headers=headers,
            )  # fmt: skip
        else:
            body = booking_body(pools.resource(rng), quantity(rng))
            r = await self._call(
                "POST", BOOKINGS, BOOKINGS, intended, ok=lambda s: s == 202, json=body,
                headers={**headers, "Idempotency-Key": idempotency_key()},
            )  # fmt: skip
            if r is not None and r.status == 202:
                self._follow(str(r.json()["id"]), headers, time.time())
        return r.status if r is not None else 0

    async def _error(self, intended: float, rng: random.Random) -> int:
        case: ErrorCase = pick_error_case(error_cases(self.pools.resource(rng), rng), rng)
        headers = {**self.bad.headers(case, self.pools.principal(rng))}
        headers.update(Trace(self.pools.run_id, rng).headers())
        r = await self._call(
            case.method, case.path, case.request_name, intended,
            ok=lambda s: is_expected(s, case.expected), content=case.body, headers=headers,
        )  # fmt: skip
        return r.status if r is not None else 0

    def _follow(self, booking_id: str, headers: dict[str, str], accepted_at: float) -> None:
        if len(self.pollers) >= self.max_pollers:
            self.skipped_polls += 1
            return
        task = asyncio.create_task(self.wait(booking_id, headers, accepted_at))
        self.pollers.add(task)
        task.add_done_callback(self.pollers.discard)

    async def _poll(self, booking_id: str, headers: dict[str, str], accepted_at: float) -> None:
        deadline = accepted_at + self.poll_timeout_s
        for delay in poll_delays():
            r = await self._call(
                "GET", f"/v1/bookings/{booking_id}", ONE_BOOKING, time.time(),
                ok=lambda s: s == 200, headers=headers,
            )  # fmt: skip
            if r is None or r.status != 200:
                return
            status = str(r.json().get("status"))
            if status in TERMINAL:
                await self._decided(booking_id, status, headers, accepted_at)
                return
            if time.time() + delay > deadline:
                self.recorder.record_e2e(accepted_at, self.poll_timeout_s, "timeout")
                return
            await asyncio.sleep(delay)

    async def _push(self, booking_id: str, headers: dict[str, str], accepted_at: float) -> None:
        """Wait for the decision on the booking's stream, as a browser's EventSource does:
        each opening is recorded as a request, a stream that ends early is opened again with
        Last-Event-ID, and the first final status is the decision."""
        path, name = f"/v1/bookings/{booking_id}/events", f"GET {BOOKING_EVENTS}"
        known: str | None = None
        last_id: str | None = None
        try:
            async with asyncio.timeout(max(0.0, accepted_at + self.poll_timeout_s - time.time())):
                while True:
                    start = time.time()
                    resume = {"Last-Event-ID": last_id} if last_id else {}
                    try:
                        stream = await EventStream.open(
                            next(self.stream_hosts), path, {**headers, **resume}
                        )
                    except (OSError, StreamRefusedError) as exc:
                        self._record(name, start, False, getattr(exc, "status", 0))
                        return
                    self._record(name, start, True, 200)
                    async with stream:
                        known, last_id = await _final_status(stream, last_id)
                    if known is not None:
                        break
                    await asyncio.sleep(RECONNECT_S)
        except TimeoutError:
            self.recorder.record_e2e(accepted_at, self.poll_timeout_s, "timeout")
            return
        await self._decided(booking_id, known, headers, accepted_at)

    async def _decided(
        self, booking_id: str, status: str, headers: dict[str, str], accepted_at: float
    ) -> None:
        """A final status known, by poll or push: its latency, and some confirmed cancelled."""
        if status in DECIDED:
            self.recorder.record_e2e(accepted_at, time.time() - accepted_at, status)
        if should_cancel(status, self.rng):
            await self._call(
                "POST", f"/v1/bookings/{booking_id}/cancel", CANCEL, time.time(),
                ok=lambda s: s == 202, headers=headers,
            )  # fmt: skip

    async def drain(self, within: float) -> None:
        if self.pollers:
            _, pending = await asyncio.wait(set(self.pollers), timeout=within)
            for task in pending:
                task.cancel()


async def _final_status(stream: EventStream, last_id: str | None) -> tuple[str | None, str | None]:
    """Read a booking's stream until a final status or the stream's end (the server's maximum
    age, a shutdown, a cut connection): (that status or None, the last event id seen)."""
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        async for event in stream.events():
            last_id = event.id or last_id
            if event.id in TERMINAL:
                return event.id, last_id
    return None, last_id


def run_open_model_test(options: LoadOptions, say: Say = print) -> int:
    """The open-model run; returns the exit code of its verdict (``RunSession.finish``)."""
    return int(run(_run_open(options, say)))


async def _run_open(options: LoadOptions, say: Say) -> ExitCode:
    assert options.rate is not None
    check_gateway(options.host)
    run_dir = options.resolved_run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    slo = SloConfig.from_toml(options.slo_path())
    say(f"seeding {options.seed_resources} resources through {options.host} ...")
    seeded = await asyncio.to_thread(
        seed_resources, options.host, options.run_id, max(1, options.seed_resources), progress=say
    )
    resources = seeded.ids
    pools = Pools(options.run_id, resources, mint_principals(options.run_id, options.principals))
    step_slo = StepSlo(
        p95_ms=slo.defaults.p95_ms or 300.0,
        max_error_ratio=slo.max_error_ratio or slo.defaults.max_error_ratio or 0.01,
    )
    shape = build_shape(
        options.shape,
        level=options.rate,
        duration=options.duration,
        step=options.step,
        step_s=options.step_seconds,
        slo=step_slo,
    )
    shape.wall_start = time.time()
    recorder = Recorder(
        window_s=options.window, t0=shape.wall_start, raw_path=run_dir / SAMPLES_FILE
    )
    live = Live()
    run = RunSession(
        model=OPEN_MODEL,
        run_id=options.run_id,
        host=options.host,
        shape=shape,
        recorder=recorder,
        run_dir=run_dir,
        faults=FaultPlan.for_shape(
            shape, options, host=options.host, run_id=options.run_id, say=say
        ),
        say=say,
        resources=len(resources),
        principals=options.principals,
        data_state=seeded.state.to_dict(),
        follow=options.follow,
        gateway_cpu=GatewayCpu.start(options.host),
    )
    say(
        f"open model: {shape.name} at {options.rate:g}/s base for {options.duration:g} s, "
        f"run {options.run_id}, folder {run_dir}"
    )
    async with HttpClient(options.host, max_connections=options.max_in_flight) as http:
        await http.warm_up("/healthz")
        client = OpenClient(
            http,
            pools,
            recorder,
            errors=isinstance(shape, ErrorShape),
            live=live,
            max_pollers=options.max_in_flight,
            mix=parse_mix(options.mix) if options.mix else None,
            follow=options.follow,
            hosts=base_urls(options.host),
        )
        ticker = asyncio.create_task(_open_ticker(shape, recorder, live, options, say))
        try:
            results = await _drive(run, client, options)
            await client.drain(within=10.0)
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            run.faults.switch_off()  # now, not at finish: a failed run never gets there
    intended = sum(r.intended for r in results)
    dropped = sum(r.dropped for r in results)
    elapsed = max(1e-9, sum(r.duration for r in results))
    intended_rate = intended / elapsed
    achieved_rate = sum(r.completed for r in results) / elapsed

    def done_line(summary: RunSummary) -> str:
        total = summary.total
        return (
            f"done: {intended} arrivals intended ({intended_rate:.1f}/s), achieved "
            f"{achieved_rate:.1f}/s, {dropped} dropped; p95 {total.p95:.1f} ms, "
            f"errors {total.error_ratio:.2%}"
        )

    outcome = run.finish(
        slo=slo,
        baseline=options.baseline,
        model_meta={
            "arrivals": {
                "intended": intended,
                "dropped": dropped,
                "skipped_polls": client.skipped_polls,
            }
        },
        done_line=done_line,
        capacity_line=_capacity_line(shape) if isinstance(shape, StressShape) else None,
        intended_rate=intended_rate,
        achieved_rate=achieved_rate,
    )
    return outcome.exit_code


def _capacity_line(shape: StressShape) -> str:
    capacity = shape.capacity
    if capacity is None:
        return "capacity: not found, even step 1 broke the step SLO"
    return f"capacity: {capacity.level:g} arrivals/s (step {capacity.step})"


async def _drive(
    run: RunSession, client: OpenClient, options: LoadOptions
) -> list[OpenModelResult]:
    """Each segment's arrivals start on schedule even while the last segment's tail runs."""
    shape = run.shape
    assert shape.wall_start is not None
    start = shape.wall_start

    async def segment(seg: Segment) -> OpenModelResult:
        await asyncio.sleep(max(0.0, start + seg.start_s - time.time()))
        shape.phase = seg.phase
        if seg.phase == ErrorShape.FAULT_PHASE:
            run.faults.switch_on()
        seg_start = time.time()
        rate = seg.level

        async def send(i: int) -> int:
            return await client.arrival(seg_start + i / rate)

        result = await run_open_model(
            send, rate=rate, duration=seg.end_s - seg.start_s, max_in_flight=options.max_in_flight
        )
        if seg.phase == ErrorShape.FAULT_PHASE:
            run.faults.switch_off()
        return result

    if not isinstance(shape, StressShape):
        results = list(await asyncio.gather(*(segment(s) for s in shape.segments())))
        shape.phase = None  # what follows is the tail of polls, not the shape
        return results
    results = []
    for step in range(1, shape.max_steps + 1):
        seg = Segment(
            shape.phase_of(step),
            (step - 1) * shape.step_s,
            step * shape.step_s,
            shape.level_of(step),
        )
        results.append(await segment(seg))
        health = run.step_health(shape.window_of(step))
        result = shape.judge_step(step, health)
        run.say(
            f"step {step} ({seg.level:g}/s): {health.count} requests, p95 "
            f"{health.p95_ms:.1f} ms, errors {health.error_ratio:.2%} -> "
            f"{'healthy' if result.healthy else 'BROKEN: ' + result.why}"
        )
        if not result.healthy:
            break
    shape.phase = None
    return results


async def _open_ticker(
    shape: BookifyShape, recorder: Recorder, live: Live, options: LoadOptions, say: Say
) -> None:
    started = time.monotonic()
    next_progress = started + options.progress_every
    last = started
    while True:
        await asyncio.sleep(1.0)
        recorder.set_phase(shape.phase)
        recorder.tick()
        now = time.monotonic()
        if now >= next_progress:
            count, p95, errors = live.take()
            rps = count / max(1e-9, now - last)
            last, next_progress = now, next_progress + options.progress_every
            say(
                f"[{now - started:5.0f}s] phase={shape.phase or '-':10} rps={rps:7.1f} "
                f"p95={p95:6.0f}ms errors={errors / count if count else 0:6.2%} ({errors})"
            )
