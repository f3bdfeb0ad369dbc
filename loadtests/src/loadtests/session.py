"""What every load-test run does around its load, whichever model makes the load.

Locust (the closed model, :mod:`loadtests.locustfile`) and the open model
(:mod:`loadtests.openrun`) make load differently, but around it they do the same: switch
the error shape's fault plan on for its faults phase and off again, describe the run in
``summary.json``'s meta, and at the end finalize the run folder and say the verdict. That
part is written once, here; each model keeps only its own way of making load.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
from prometheus_client.parser import text_string_to_metric_families

from loadtests import faultctl
from loadtests.data import base_urls
from loadtests.gates import GateOutcome, SloConfig
from loadtests.options import Say
from loadtests.recorder import Recorder, RunSummary
from loadtests.report import REPORT_FILE, finalize
from loadtests.shapes import (
    BookifyShape,
    ErrorShape,
    StepHealth,
    StepWindow,
    StressShape,
    recorder_health,
    spike_recovery,
)
from shared.faults import FaultSettings


# ---------------------------------------------------------------------------- faults
class FaultControl(Protocol):
    """What a :class:`FaultPlan` needs of :class:`loadtests.faultctl.FaultController`."""

    active: set[str]

    def apply(self, plan: Mapping[str, FaultSettings]) -> object: ...

    def reset(self) -> None: ...


Connect = Callable[[Mapping[str, faultctl.FaultTarget], str], FaultControl]


class FaultOptions(Protocol):
    """``--faults``, ``--booking-url`` and ``--consumer-url``, as both models take them."""

    @property
    def faults(self) -> str: ...

    @property
    def booking_url(self) -> str | None: ...

    @property
    def consumer_url(self) -> str | None: ...


@dataclass
class FaultPlan:
    """The error shape's faults: on for its faults phase, off after it and at the run's end.

    Every switch, and every failure to switch, is said and kept in ``log``: the run's meta
    carries it, so a report shows what was injected. No plan (any other shape, or
    ``--faults none``) has no settings and no control, and switching it does nothing.
    """

    settings: dict[str, FaultSettings]
    control: FaultControl | None
    say: Say
    log: list[str] = field(default_factory=list)

    @classmethod
    def for_shape(
        cls,
        shape: BookifyShape,
        options: FaultOptions,
        *,
        host: str,
        run_id: str,
        say: Say,
        connect: Connect = faultctl.FaultController,
    ) -> FaultPlan:
        """The plan ``--faults`` names (empty: the default plan; ``none``: no faults) for an
        error shape; no faults for any other shape. A service without a URL is skipped,
        and said so once, here, not at every switch."""
        if not isinstance(shape, ErrorShape):
            return cls({}, None, say)
        spec = options.faults or faultctl.DEFAULT_ERROR_PLAN
        if spec.strip().lower() == "none":
            return cls({}, None, say)
        settings = faultctl.parse_plan(spec)  # before any load: a bad plan fails the run at once
        available = faultctl.targets(
            host,
            booking_url=options.booking_url or None,
            consumer_url=options.consumer_url or None,
        )
        skipped = sorted(set(settings) - set(available))
        if skipped:
            say(
                f"faults: no URL for {', '.join(skipped)} (--booking-url/--consumer-url); "
                "skipping them"
            )
        usable = {service: s for service, s in settings.items() if service in available}
        return cls(usable, connect(available, run_id), say)

    def follow_phase(self, old: str | None, new: str | None) -> None:
        """On when the shape enters its faults phase, off when it leaves it."""
        if new == ErrorShape.FAULT_PHASE:
            self.switch_on()
        elif old == ErrorShape.FAULT_PHASE:
            self.switch_off()

    def switch_on(self) -> None:
        if not self.settings or self.control is None:
            return
        try:
            self.control.apply(self.settings)
            line = "faults on: " + ", ".join(
                f"{service} {s.model_dump(exclude_defaults=True)}"
                for service, s in self.settings.items()
            )
        except faultctl.FaultInjectionError as exc:
            line = f"faults NOT switched on: {exc}"
        self._note(line)

    def switch_off(self) -> None:
        """Off, if anything is on; safe to call again (each end of a run calls it)."""
        if self.control is None or not self.control.active:
            return
        try:
            self.control.reset()
            line = "faults off"
        except faultctl.FaultInjectionError as exc:
            line = f"faults NOT switched off (do it by hand!): {exc}"
        self._note(line)

    def _note(self, line: str) -> None:
        self.log.append(line)
        self.say(line)


# ---------------------------------------------------------------------------- gateway CPU
def scrape_cpu_seconds(base_url: str) -> float | None:
    """A service's ``process_cpu_seconds_total`` from its /metrics; None if unreadable."""
    try:
        text = httpx.get(f"{base_url}/metrics", timeout=2.0).raise_for_status().text
    except httpx.HTTPError:
        return None
    for family in text_string_to_metric_families(text):
        if family.name == "process_cpu_seconds":
            return sum(sample.value for sample in family.samples)
    return None


class GatewayCpu:
    """The gateways' own CPU over a run, read from their /metrics at its start and end: with
    the requests/s, what a way of waiting for decisions (poll or push) costs the server.
    No figure when a gateway does not answer (a remote one whose /metrics is not exposed)."""

    def __init__(
        self, urls: Sequence[str], read: Callable[[str], float | None] = scrape_cpu_seconds
    ) -> None:
        self.urls = list(urls)
        self._read = read
        self._started = time.monotonic()
        self._first = self._total()

    @classmethod
    def start(cls, host: str | None) -> GatewayCpu:
        return cls(base_urls(host) if host else [])

    def _total(self) -> float | None:
        values = [self._read(url) for url in self.urls]
        if not values or any(v is None for v in values):
            return None
        return sum(v for v in values if v is not None)

    def result(self) -> dict[str, Any] | None:
        """CPU seconds since the start, and as cores busy on average; None if unknown."""
        last, wall = self._total(), time.monotonic() - self._started
        if self._first is None or last is None or wall <= 0:
            return None
        seconds = last - self._first
        return {
            "seconds": round(seconds, 3),
            "wall_seconds": round(wall, 3),
            "cores": round(seconds / wall, 4),
            "gateways": len(self.urls),
        }


# ---------------------------------------------------------------------------- the run
@dataclass(frozen=True)
class LoadModel:
    """How a model of load names itself in a run's report."""

    label: str  # meta's "model"
    level: str  # what a shape's level counts: meta's capacity_<level>
    title_suffix: str = ""


CLOSED_MODEL = LoadModel("closed (Locust users)", "users")
OPEN_MODEL = LoadModel("open (arrival rate)", "rate", " (open model)")


@dataclass
class RunSession:
    """One run, from its start to its verdict: its shape, recorder, folder and faults."""

    model: LoadModel
    run_id: str
    host: str | None
    shape: BookifyShape
    recorder: Recorder
    run_dir: Path
    faults: FaultPlan
    say: Say
    resources: int
    principals: int
    data_state: Mapping[str, Any] = field(default_factory=dict)  # data.DataState, at start
    follow: str = "poll"  # how clients learn their decisions (loadtests.users.FOLLOW_MODES)
    gateway_cpu: GatewayCpu | None = None

    def step_health(self, window: StepWindow) -> StepHealth:
        """How the requests that started in one stress step's window did."""
        start = self.shape.wall_start
        if start is None:  # the shape has not ticked yet: nothing to judge
            return StepHealth(0, math.nan, 0.0)
        return recorder_health(self.recorder, start + window.start_s, start + window.end_s)

    def meta(self, model_meta: Mapping[str, Any]) -> dict[str, Any]:
        """``summary.json``'s meta; ``model_meta`` is what only this model knows."""
        shape = self.shape
        meta: dict[str, Any] = {
            "run_id": self.run_id,
            "host": self.host,
            "model": self.model.label,
            **model_meta,
            "shape": shape.describe(),
            "resources": self.resources,
            "principals": self.principals,
            "data_state": dict(self.data_state) or None,
            "follow": self.follow,
            "gateway_cpu": self.gateway_cpu.result() if self.gateway_cpu else None,
        }
        if self.faults.log:
            meta["faults"] = self.faults.log
        if isinstance(shape, StressShape):
            capacity = shape.capacity
            meta[f"capacity_{self.model.level}"] = capacity.level if capacity else None
        if shape.name == "spike":
            meta["recovery_s"] = spike_recovery(self.recorder)
        return meta

    def finish(
        self,
        *,
        slo: SloConfig,
        baseline: Path | None,
        model_meta: Mapping[str, Any],
        done_line: Callable[[RunSummary], str],
        capacity_line: str | None = None,
        intended_rate: float | None = None,
        achieved_rate: float | None = None,
    ) -> GateOutcome:
        """Faults off, recorder stopped, run folder finalized, the verdict said.

        ``done_line`` says the model's totals; ``capacity_line`` is the stress shape's result.
        """
        # First, before anything that can fail: no service may stay faulty after a run.
        self.faults.switch_off()
        self.recorder.stop()
        meta = self.meta(model_meta)
        outcome = finalize(
            self.run_dir,
            self.recorder,
            slo=slo,
            baseline_dir=baseline,
            intended_rate=intended_rate,
            achieved_rate=achieved_rate,
            title=f"Bookify load test: {self.shape.name}{self.model.title_suffix}",
            meta=meta,
        )
        say = self.say
        say(done_line(self.recorder.summary()))
        if capacity_line:
            say(capacity_line)
        if meta.get("recovery_s") is not None:
            say(f"spike recovery: p95 back to baseline {meta['recovery_s']:.0f} s after the spike")
        say(f"{outcome.headline} (exit code {int(outcome.exit_code)})")
        for reason in outcome.reasons:
            say(f"  - {reason}")
        say(f"report: {self.run_dir / REPORT_FILE}")
        return outcome
