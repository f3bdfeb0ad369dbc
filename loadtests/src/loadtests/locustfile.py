"""Bookify's locustfile: users, the selected load shape, recording, live export, run folder.

Headless (what ``bookify load`` runs)::

    locust -f loadtests/src/loadtests/locustfile.py --headless --host http://127.0.0.1:8000 \\
        --shape spike --shape-users 20 --shape-duration 120 [--processes 4]

With the web UI: ``locust -f loadtests/src/loadtests/locustfile.py --host http://127.0.0.1:8000``,
set the Bookify options in the form and press Start; each start/stop writes a run folder.

Who does what:

- the **master** (or the only process, the local runner) seeds resources through the API,
  runs the shape, owns the :class:`~loadtests.recorder.Recorder`, serves ``/metrics`` on
  :9646, prints progress and, through a :class:`~loadtests.session.RunSession` per run
  (what it shares with the open model), switches fault injection for the error shape's
  ``faults`` phase and at test stop writes ``runs/<UTC timestamp>-<shape>/`` and sets the
  process exit code from the SLO gates (0 pass, 3 SLO breach, 4 regression, 5 invalid run);
- **workers** (``--processes N``) get the run id and resource ids from the master in a
  custom message before they spawn users, and ship their request and e2e samples to the
  master once a second (and at stop) in another, so the master's HdrHistograms hold every
  request, not Locust's rounded buckets.
"""

from __future__ import annotations

import importlib
import logging
import math
import random
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from locust import LoadTestShape, events
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from loadtests import faultctl
from loadtests.data import (
    BadTokens,
    GatewayUnreachableError,
    Pools,
    check_gateway,
    mint_principals,
    new_run_id,
    seed_resources,
)
from loadtests.exporter import DEFAULT_PORT, LocustCollector, serve
from loadtests.gates import SloConfig
from loadtests.mix import parse_mix
from loadtests.options import DEFAULT_SLO
from loadtests.recorder import SAMPLES_FILE, Recorder, RunSummary, Sample, locust_sample
from loadtests.session import CLOSED_MODEL, FaultPlan, GatewayCpu, RunSession
from loadtests.shapes import (
    SHAPES,
    BookifyShape,
    ErrorShape,
    StepHealth,
    StepSlo,
    StepWindow,
    StressShape,
    build_shape,
)
from loadtests.users import CONTEXT, FOLLOW_MODES, POLL, CrowdUser, ErrorUser, ShopperUser

log = logging.getLogger("bookify.load")
# Seeding and fault switching use httpx, whose per-request INFO lines would drown the output.
logging.getLogger("httpx").setLevel(logging.WARNING)
# Neither gevent nor locust's event hooks carry type information: used as Any, on purpose.
gevent: Any = importlib.import_module("gevent")
EVENTS: Any = events

DATA_MESSAGE, SAMPLES_MESSAGE = "bookify_data", "bookify_samples"

__all__ = ["BookifyLoadShape", "CrowdUser", "ErrorUser", "ShopperUser"]


# ---------------------------------------------------------------------------- options
def _options(parser: Any) -> None:
    group = parser.add_argument_group("Bookify", "Bookify load-test options")
    group.add_argument("--shape", choices=sorted(SHAPES), default="soak", help="Load shape.")
    group.add_argument(
        "--shape-users",
        type=float,
        default=10,
        help="Base users (spike: 10x of it; stress: the first step).",
    )
    group.add_argument("--shape-duration", type=float, default=60, help="Seconds (stress: max).")
    group.add_argument(
        "--step-users",
        type=float,
        default=0,
        help="stress: users added per step (0: the base users).",
    )
    group.add_argument("--step-seconds", type=float, default=30, help="stress: step length.")
    group.add_argument("--runs-root", default="runs", help="Where run folders are created.")
    group.add_argument(
        "--run-dir",
        default="",
        help="Exact run folder (default: a new <runs-root>/<UTC timestamp>-<shape>).",
    )
    group.add_argument("--run-id", default="", help="Run id for baggage and principal names.")
    group.add_argument("--slo", default="", help="SLO TOML file (default: slo.default.toml).")
    group.add_argument("--baseline", default="", help="A previous run folder to compare with.")
    group.add_argument("--window", type=float, default=5.0, help="Recorder window, seconds.")
    group.add_argument(
        "--exporter-port",
        type=int,
        default=DEFAULT_PORT,
        help="Prometheus /metrics port on the master (0: off).",
    )
    group.add_argument("--seed-resources", type=int, default=20, help="Resources to create.")
    group.add_argument("--principals", type=int, default=50, help="Distinct principals.")
    group.add_argument(
        "--think-time", default="0.5,1.5", help="Seconds between a user's flows, min,max."
    )
    group.add_argument(
        "--faults",
        default="",
        help="error shape: fault plan of its faults "
        f"phase (default {faultctl.DEFAULT_ERROR_PLAN!r}; 'none': off).",
    )
    group.add_argument("--booking-url", default="", help="booking's base URL (its fault switch).")
    group.add_argument("--consumer-url", default="", help="consumer's URL (its fault switch).")
    group.add_argument("--progress-every", type=float, default=5.0, help="Progress line period.")
    group.add_argument(
        "--mix",
        default="",
        help="A crowd's operations instead of the shop's flows (loadtests.mix).",
    )
    group.add_argument(
        "--follow",
        default=POLL,
        choices=FOLLOW_MODES,
        help="How a client learns its booking's decision: poll, or push (its event stream).",
    )


def _think(spec: str) -> tuple[float, float]:
    low, _, high = spec.partition(",")
    lo = float(low)
    hi = float(high) if high else lo
    if lo < 0 or hi < lo:
        raise ValueError(f"--think-time {spec!r}: need 0 <= min <= max")
    return lo, hi


# ---------------------------------------------------------------------------- worker side
class SampleShipper:
    """On a worker: buffers samples and sends them to the master in batches."""

    def __init__(self, runner: WorkerRunner) -> None:
        self.runner = runner
        self.requests: list[Sample] = []
        self.e2e: list[tuple[float, float, str]] = []

    def on_request(
        self,
        request_type: str,
        name: str,
        response_time: float,
        response_length: int,
        exception: BaseException | None = None,
        start_time: float | None = None,
        response: Any = None,
        **_: Any,
    ) -> None:
        self.requests.append(
            locust_sample(request_type, name, response_time, exception, start_time, response)
        )

    def record_e2e(self, accepted_at: float, latency_s: float, name: str = "booking") -> None:
        self.e2e.append((accepted_at, latency_s, name))

    def ship(self) -> None:
        if not self.requests and not self.e2e:
            return
        requests, self.requests = self.requests, []
        e2e, self.e2e = self.e2e, []
        self.runner.send_message(SAMPLES_MESSAGE, {"requests": requests, "e2e": e2e})

    def loop(self) -> None:
        while True:
            gevent.sleep(1.0)
            self.ship()


def _configure_users(run_id: str, resources: list[str], options: Any) -> None:
    CONTEXT.run_id = run_id
    principals = mint_principals(run_id, max(1, options.principals))
    CONTEXT.pools = Pools(run_id, resources, principals)
    CONTEXT.bad_tokens = BadTokens.mint(run_id)
    CONTEXT.think_s = _think(options.think_time)
    CONTEXT.mix = parse_mix(options.mix) if options.mix else None
    CONTEXT.follow = options.follow


# ---------------------------------------------------------------------------- master side
class WorkerCpu:
    """CPU seconds of the busiest worker, integrated from heartbeats: the recorder's
    ``cpu_clock`` in distributed runs (the master's own CPU says nothing about saturation)."""

    def __init__(self, runner: MasterRunner) -> None:
        self.runner = runner
        self.total = 0.0
        self.last: float | None = None

    def __call__(self) -> float:
        now = time.monotonic()
        usage = max((c.cpu_usage for c in self.runner.clients.values()), default=0.0)
        if self.last is not None:
            self.total += usage / 100.0 * (now - self.last)
        self.last = now
        return self.total


@dataclass
class LocustSession:
    """The master's (or local runner's) state for one locust process: in the web UI each
    start/stop is a run of its own, with its own :class:`RunSession`."""

    environment: Environment
    run_id: str
    load_shape: BookifyLoadShape
    resources: list[str] = field(default_factory=list)
    data_state: dict[str, Any] = field(default_factory=dict)
    run: RunSession | None = None
    ticker: Any = None
    last_phase: str | None = None
    started_wall: float = 0.0
    used_run_dir: bool = False

    @property
    def options(self) -> Any:
        return self.environment.parsed_options

    @property
    def runner(self) -> Any:
        return self.environment.runner

    @property
    def distributed(self) -> bool:
        return isinstance(self.runner, MasterRunner)

    @property
    def recorder(self) -> Recorder | None:
        """The current run's recorder; None between runs, so late samples are dropped."""
        return self.run.recorder if self.run is not None else None

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """test_start: new recorder and run folder; tell workers the run's data."""
        options = self.options
        shape = self.load_shape.inner or self.load_shape.configure(options, self)
        run_dir = self._new_run_dir(shape)
        cpu = WorkerCpu(self.runner) if self.distributed else None
        recorder = Recorder(
            window_s=options.window,
            t0=shape.wall_start,
            cpu_clock=cpu,
            raw_path=run_dir / SAMPLES_FILE,
        )
        self.started_wall = time.time()
        _configure_users(self.run_id, self.resources, options)
        if self.distributed:
            self.runner.send_message(
                DATA_MESSAGE, {"run_id": self.run_id, "resources": self.resources}
            )
        faults = FaultPlan.for_shape(
            shape, options, host=self.environment.host or "", run_id=self.run_id, say=_say
        )
        self.run = RunSession(
            model=CLOSED_MODEL,
            run_id=self.run_id,
            host=self.environment.host,
            shape=shape,
            recorder=recorder,
            run_dir=run_dir,
            faults=faults,
            say=_say,
            resources=len(self.resources),
            principals=options.principals,
            data_state=self.data_state,
            follow=options.follow,
            gateway_cpu=GatewayCpu.start(self.environment.host),
        )
        self.last_phase = None
        self.ticker = gevent.spawn(self._tick_loop)
        _say(
            f"run {self.run_id}: {shape.name} shape, {shape.level:g} users, "
            f"{shape.duration:g} s; folder {run_dir}"
        )

    def _new_run_dir(self, shape: BookifyShape) -> Path:
        options = self.options
        if options.run_dir and not self.used_run_dir:
            run_dir = Path(options.run_dir)
            self.used_run_dir = True  # a second start in the web UI gets a fresh folder
        else:
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            run_dir = Path(options.runs_root) / f"{stamp}-{shape.name}"
        run_dir.mkdir(parents=True, exist_ok=True)
        return run_dir

    def stop(self) -> None:
        """test_stop: finalize the run folder and set the exit code."""
        run = self.run
        if run is None:
            return
        if self.ticker is not None:
            self.ticker.kill(block=True)
            self.ticker = None
        self.run = None  # from here on, samples have no run to go to
        run.recorder.set_phase(run.shape.phase)
        options = self.options
        shape = run.shape
        outcome = run.finish(
            slo=_slo(options),
            baseline=Path(options.baseline) if options.baseline else None,
            model_meta={"processes": getattr(options, "processes", None) or 1},
            done_line=_done_line,
            capacity_line=_capacity_line(shape) if isinstance(shape, StressShape) else None,
        )
        self.environment.process_exit_code = int(outcome.exit_code)

    # ------------------------------------------------------------ background
    def _tick_loop(self) -> None:
        next_progress = time.monotonic() + self.options.progress_every
        while True:
            gevent.sleep(1.0)
            run = self.run
            if run is None:
                return
            recorder, shape = run.recorder, run.shape
            recorder.set_users(int(self.runner.user_count))
            recorder.set_phase(shape.phase)
            recorder.tick()
            if shape.phase != self.last_phase:
                run.faults.follow_phase(self.last_phase, shape.phase)
                self.last_phase = shape.phase
            if time.monotonic() >= next_progress:
                next_progress += self.options.progress_every
                self._progress(shape)

    def _progress(self, shape: BookifyShape) -> None:
        total = self.runner.stats.total
        p95 = total.get_current_response_time_percentile(0.95) or 0
        elapsed = time.time() - self.started_wall
        _say(
            f"[{elapsed:5.0f}s] phase={shape.phase or '-':10} "
            f"users={self.runner.user_count:<4} rps={total.current_rps:7.1f} "
            f"p95={p95:6.0f}ms errors={total.fail_ratio:6.2%} ({total.num_failures})"
        )

    # ------------------------------------------------------------ stress evaluation
    def evaluate_step(self, window: StepWindow) -> StepHealth:
        if self.run is None:
            return StepHealth(0, math.nan, 0.0)
        health = self.run.step_health(window)
        _say(
            f"step {window.step} ({window.level:g} users): {health.count} requests, "
            f"p95 {health.p95_ms:.1f} ms, errors {health.error_ratio:.2%}"
        )
        return health


def _done_line(summary: RunSummary) -> str:
    total = summary.total
    return (
        f"done: {total.count} requests, {total.rps:.1f} req/s, p95 {total.p95:.1f} ms, "
        f"errors {total.error_ratio:.2%}"
        + (f", e2e p95 {summary.e2e.p95:.0f} ms" if summary.e2e else "")
    )


def _capacity_line(shape: StressShape) -> str:
    capacity = shape.capacity
    slo = f"p95 <= {shape.slo.p95_ms:g} ms and errors <= {shape.slo.max_error_ratio:.1%}"
    if capacity is None:
        return f"capacity: not found, even step 1 ({shape.level:g} users) broke {slo}"
    if shape.broke:
        return (
            f"capacity: {capacity.level:g} users (step {capacity.step}, last step with {slo}); "
            f"step {capacity.step + 1} broke it"
        )
    return (
        f"capacity: at least {capacity.level:g} users (all {len(shape.results)} steps held "
        f"{slo}; raise --shape-duration or --step-users to find the limit)"
    )


def _slo(options: Any) -> SloConfig:
    return SloConfig.from_toml(Path(options.slo) if options.slo else DEFAULT_SLO)


def _step_slo(options: Any) -> StepSlo:
    config = _slo(options)
    return StepSlo(
        p95_ms=config.defaults.p95_ms or 300.0,
        max_error_ratio=(
            config.max_error_ratio
            if config.max_error_ratio is not None
            else (config.defaults.max_error_ratio or 0.01)
        ),
    )


def _events(environment: Environment) -> Any:
    return environment.events


def _say(line: str) -> None:
    print(line, flush=True)


# ---------------------------------------------------------------------------- the shape
class BookifyLoadShape(LoadTestShape):
    """The one shape Locust sees; it runs the shape chosen with ``--shape``."""

    def __init__(self) -> None:
        self.start_time = time.perf_counter()
        self.inner: BookifyShape | None = None
        self.session: LocustSession | None = None

    def configure(self, options: Any, session: LocustSession) -> BookifyShape:
        self.session = session
        self.inner = build_shape(
            options.shape,
            level=options.shape_users,
            duration=options.shape_duration,
            step=options.step_users or None,
            step_s=options.step_seconds,
            slo=_step_slo(options),
            evaluate=session.evaluate_step,
        )
        return self.inner

    def _stop_workers_first(self) -> None:
        # Headless, Locust's quit() fires the master's test_stop *before* it tells the workers
        # to stop, so their last samples would miss the report. A stop() first waits for
        # every worker to stop (each ships its samples on its own test_stop).
        runner = self.session.environment.runner if self.session else None
        if isinstance(runner, MasterRunner):
            runner.stop()

    def reset_time(self) -> None:
        inner = self.inner
        if (
            inner is not None
            and inner.wall_start is not None
            and not inner.finished
            and inner.get_run_time() < 2.0
        ):
            # MasterRunner.start() resets the shape again right after its first tick fired
            # test_start: the same run, whose recorder is already aligned to this shape.
            return
        self.start_time = time.perf_counter()
        # A (re)start in the web UI picks up edited options: build the shape afresh.
        if self.session is not None:
            self.configure(self.session.options, self.session)
        if self.inner is not None:
            self.inner.reset_time()

    def tick(self) -> tuple[int, float, list[type[Any]]] | None:
        if self.inner is None:
            return None
        state = self.inner.tick()
        if state is None:
            self._stop_workers_first()
            return None
        users, spawn_rate = state
        mixed = self.session is not None and self.session.options.mix
        classes: list[type[Any]] = [CrowdUser if mixed else ShopperUser]
        if isinstance(self.inner, ErrorShape):
            classes.append(ErrorUser)
        return users, spawn_rate, classes


# ---------------------------------------------------------------------------- wiring
def _on_init(environment: Environment, **_: Any) -> None:
    runner = environment.runner
    options = environment.parsed_options
    if runner is None or options is None:  # e.g. locust --list
        return
    if isinstance(runner, WorkerRunner):
        _init_worker(environment, runner)
        return
    shape = environment.shape_class
    if not isinstance(shape, BookifyLoadShape):
        raise TypeError("the Bookify locustfile needs its own BookifyLoadShape")
    host = environment.host or ""
    try:
        check_gateway(host)
    except GatewayUnreachableError as exc:
        log.error("%s", exc)
        _say(f"error: {exc}")
        sys.exit(1)
    run_id = options.run_id or new_run_id(random.Random())
    session = LocustSession(environment, run_id, shape)
    shape.configure(options, session)
    _say(f"seeding {options.seed_resources} resources through {host} ...")
    try:
        seeded = seed_resources(host, run_id, max(1, options.seed_resources), progress=_say)
        session.resources, session.data_state = seeded.ids, seeded.state.to_dict()
    except Exception as exc:
        _say(f"error: seeding test data failed: {exc}")
        sys.exit(1)
    _configure_users(run_id, session.resources, options)
    CONTEXT.sink = _RecorderSink(session)
    if isinstance(runner, MasterRunner):
        runner.register_message(SAMPLES_MESSAGE, _samples_handler(session))
    else:
        _events(environment).request.add_listener(_request_handler(session))
    _events(environment).test_start.add_listener(lambda **_: session.start())
    _events(environment).test_stop.add_listener(lambda **_: session.stop())
    if options.exporter_port:
        collector = LocustCollector(
            lambda: environment.runner,
            lambda: shape.inner.phase if shape.inner else None,
            lambda: shape.inner.phases if shape.inner else (),
        )
        try:
            serve(collector, options.exporter_port)
            _say(f"metrics: http://127.0.0.1:{options.exporter_port}/metrics")
        except OSError as exc:
            _say(
                f"warning: no /metrics on :{options.exporter_port} ({exc}); "
                "pass --exporter-port 0 to silence this"
            )


class _RecorderSink:
    """e2e samples of the local runner's users, into the session's current recorder."""

    def __init__(self, session: LocustSession) -> None:
        self.session = session

    def record_e2e(self, accepted_at: float, latency_s: float, name: str = "booking") -> None:
        if (recorder := self.session.recorder) is not None:
            recorder.record_e2e(accepted_at, latency_s, name)


def _request_handler(session: LocustSession) -> Any:
    def on_request(**kwargs: Any) -> None:
        if (recorder := session.recorder) is not None:
            recorder.on_locust_request(**kwargs)

    return on_request


def _samples_handler(session: LocustSession) -> Any:
    def on_samples(environment: Environment, msg: Any, **_: Any) -> None:
        recorder = session.recorder
        if recorder is None:
            return
        for name, start, latency, ok, status in msg.data["requests"]:
            recorder.record(name, start, latency, ok, status)
        for accepted_at, latency, name in msg.data["e2e"]:
            recorder.record_e2e(accepted_at, latency, name)

    return on_samples


def _init_worker(environment: Environment, runner: WorkerRunner) -> None:
    shipper = SampleShipper(runner)
    CONTEXT.sink = shipper
    _events(environment).request.add_listener(shipper.on_request)

    def on_data(environment: Environment, msg: Any, **_: Any) -> None:
        _configure_users(
            msg.data["run_id"], list(msg.data["resources"]), environment.parsed_options
        )

    runner.register_message(DATA_MESSAGE, on_data)
    # Before "client_stopped" reaches the master, so its test_stop has every sample.
    _events(environment).test_stop.add_listener(lambda **_: shipper.ship())
    gevent.spawn(shipper.loop)


EVENTS.init_command_line_parser.add_listener(_options)
EVENTS.init.add_listener(_on_init)
