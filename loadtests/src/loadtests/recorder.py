"""Measurement kept off the request path.

Request hooks call :meth:`Recorder.record` (and :meth:`Recorder.record_e2e` for
accepted -> confirmed latency), which only appends a tuple to a list. A background task
calls :meth:`Recorder.tick` about once a second: it drains that buffer into HdrHistograms
per (endpoint, time window), writes raw samples to ``samples.csv.gz`` when asked to, and
samples the users count, the phase name and the generator's own CPU time.

A window is ``window_s`` seconds (5 s by default) of *request start* time since ``t0``. A
load generator that spends most windows above ``saturation_cpu`` (90 %) of one core measures
its own queueing, not the system's: such a run is marked INVALID (see :meth:`validity`). CPU
is this process's user + system time (psutil, else ``getrusage``), sampled on each tick; one
Locust worker is one process on one core, so "of one core" is the right yardstick.

On disk (``save``/``load``), next to the raw samples:

- ``windows.jsonl`` -- one JSON object per line: a ``meta`` line (``window_s``, ``t0``), a
  ``window`` line per window (start, duration, phase, users, CPU) and a ``histogram`` line per
  (kind, endpoint, window) with counts, errors and the HdrHistogram V2 encoding of the
  latencies in microseconds.
"""

from __future__ import annotations

import csv
import gzip
import importlib
import json
import math
import resource
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from hdrh.histogram import HdrHistogram

from loadtests.openmodel import HIGHEST_US, new_histogram
from loadtests.stats import Windowed, histogram_arrays, weighted_percentile

REQUEST, E2E = "request", "e2e"
WINDOWS_FILE, SAMPLES_FILE = "windows.jsonl", "samples.csv.gz"
SUMMARY_PERCENTILES: tuple[float, ...] = (50.0, 90.0, 95.0, 99.0)


def process_cpu_clock(pid: int | None = None) -> Callable[[], float]:
    """Seconds of CPU (user + system) used so far by process ``pid`` (this one if None):
    psutil, else, for this process, getrusage."""
    try:
        # psutil ships with locust but has no type stubs; imported lazily as a plain module.
        process = importlib.import_module("psutil").Process(pid)

        def cpu_psutil() -> float:
            times = process.cpu_times()
            return float(times.user + times.system)

        return cpu_psutil
    except ImportError:  # pragma: no cover - psutil comes with locust
        if pid is not None:
            raise

        def cpu_rusage() -> float:
            usage = resource.getrusage(resource.RUSAGE_SELF)
            return usage.ru_utime + usage.ru_stime

        return cpu_rusage


@dataclass
class Window:
    """What happened during one time window; ``start`` is seconds since the run's ``t0``."""

    index: int
    start: float
    duration: float
    phase: str | None = None
    users: int | None = None
    cpu_seconds: float = 0.0
    cpu_wall_seconds: float = 0.0

    @property
    def cpu_utilisation(self) -> float | None:
        """Generator CPU as a fraction of one core, or None when not measured."""
        if self.cpu_wall_seconds <= 0:
            return None
        return self.cpu_seconds / self.cpu_wall_seconds


@dataclass
class Cell:
    """Latencies of one (kind, endpoint, window), in microseconds."""

    histogram: HdrHistogram = field(default_factory=new_histogram)
    count: int = 0
    errors: int = 0


@dataclass(frozen=True)
class Validity:
    valid: bool
    reason: str
    saturated_windows: int
    measured_windows: int
    max_cpu: float | None


@dataclass(frozen=True)
class LatencyStats:
    """Counts and latency (ms) of one endpoint, all endpoints or e2e over the whole run."""

    count: int
    errors: int
    error_ratio: float
    rps: float
    p50: float
    p90: float
    p95: float
    p99: float
    max: float


@dataclass(frozen=True)
class RunSummary:
    duration_s: float
    window_s: float
    endpoints: dict[str, LatencyStats]
    total: LatencyStats
    e2e: LatencyStats | None
    validity: Validity
    intended_rate: float | None = None
    achieved_rate: float | None = None
    statuses: dict[str, dict[str, int]] = field(default_factory=dict)


Sample = tuple[str, float, float, bool, int]


def locust_sample(
    request_type: str,
    name: str,
    response_time: float,
    exception: BaseException | None,
    start_time: float | None,
    response: Any,
    clock: Callable[[], float] = time.time,
) -> Sample:
    """(endpoint, start, latency s, ok, status) from Locust's ``events.request`` arguments."""
    latency = response_time / 1000.0
    start = start_time if start_time is not None else clock() - latency
    status = int(getattr(response, "status_code", 0) or 0)
    return (f"{request_type} {name}", start, latency, exception is None, status)


def _to_us(seconds: float) -> int:
    return min(HIGHEST_US, max(1, int(seconds * 1e6)))


class Recorder:
    """Collects request and e2e latency samples per endpoint and time window."""

    def __init__(
        self,
        *,
        window_s: float = 5.0,
        t0: float | None = None,
        clock: Callable[[], float] = time.time,
        cpu_clock: Callable[[], float] | None = None,
        measure_cpu: bool = True,
        raw_path: Path | None = None,
        saturation_cpu: float = 0.90,
        saturated_fraction: float = 0.5,
    ) -> None:
        if window_s <= 0:
            raise ValueError("window_s must be positive")
        self.window_s = window_s
        self.t0 = clock() if t0 is None else t0
        self.saturation_cpu = saturation_cpu
        self.saturated_fraction = saturated_fraction
        self._clock = clock
        # The generator's own CPU is measured unless told not to (tests, loaded runs).
        self._cpu_clock = cpu_clock or (process_cpu_clock() if measure_cpu else None)
        self._buffer: list[tuple[str, str, float, float, bool, int]] = []
        self._cells: dict[tuple[str, str, int], Cell] = {}
        self._windows: dict[int, Window] = {}
        self._phase_votes: dict[int, Counter[str]] = defaultdict(Counter)
        self._statuses: dict[str, Counter[int]] = defaultdict(Counter)
        self._users: int | None = None
        self._phase: str | None = None
        self._last_tick: tuple[float, float] | None = None
        self._end: float | None = None
        self._raw_path = raw_path
        self._raw_file: TextIO | None = None
        self._raw_writer: Any = None

    # ------------------------------------------------------------------ hot path
    def record(
        self, name: str, start: float, latency_s: float, ok: bool = True, status: int = 0
    ) -> None:
        """One request: endpoint ``name`` started at wall time ``start``, took ``latency_s``."""
        self._buffer.append((REQUEST, name, start, latency_s, ok, status))

    def record_e2e(self, accepted_at: float, latency_s: float, name: str = "booking") -> None:
        """Accepted -> confirmed latency of one booking accepted at wall time ``accepted_at``."""
        self._buffer.append((E2E, name, accepted_at, latency_s, True, 0))

    def on_locust_request(
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
        """Listener for Locust's ``events.request`` (response_time in ms)."""
        self.record(
            *locust_sample(
                request_type, name, response_time, exception, start_time, response, self._clock
            )
        )

    def set_users(self, users: int) -> None:
        self._users = users

    def set_phase(self, phase: str | None) -> None:
        self._phase = phase

    # ------------------------------------------------------------------ background
    def tick(self, now: float | None = None) -> None:
        """Drain the buffer, and note users, phase and CPU for the current window."""
        now = self._clock() if now is None else now
        self.flush()
        index = self._window_index(now)
        window = self._window(index)
        if self._users is not None:
            window.users = max(window.users or 0, self._users)
        if self._phase is not None:
            self._phase_votes[index][self._phase] += 1
            window.phase = self._phase_votes[index].most_common(1)[0][0]
        if self._cpu_clock is not None:
            cpu = self._cpu_clock()
            if self._last_tick is not None:
                self._spread_cpu(*self._last_tick, now, cpu)
            self._last_tick = (now, cpu)

    def flush(self) -> None:
        buffer, self._buffer = self._buffer, []
        if not buffer:
            return
        writer = self._raw()
        for kind, name, start, latency, ok, status in buffer:
            index = self._window_index(start)
            self._window(index)
            key = (kind, name, index)
            cell = self._cells.get(key)
            if cell is None:
                cell = self._cells[key] = Cell()
            cell.histogram.record_value(_to_us(latency))
            cell.count += 1
            if not ok:
                cell.errors += 1
            if kind == REQUEST:
                self._statuses[name][status] += 1
            if writer is not None:
                writer.writerow(
                    (kind, name, f"{start - self.t0:.6f}", f"{latency * 1000:.3f}", int(ok), status)
                )

    def stop(self, now: float | None = None) -> None:
        """End of the run: last tick, close raw samples; the last window may be partial."""
        now = self._clock() if now is None else now
        self.tick(now)
        self._end = now
        self.close()

    def close(self) -> None:
        """Flush and close the raw sample file (idempotent)."""
        self.flush()
        if self._raw_file is not None:
            self._raw_file.close()
            self._raw_file = self._raw_writer = None

    # ------------------------------------------------------------------ queries
    @property
    def windows(self) -> list[Window]:
        """All windows from the first to the last one touched, gaps filled with empty ones."""
        if not self._windows:
            return []
        last = max(self._windows)
        end = self._end - self.t0 if self._end is not None else None
        with_samples = {index for _, _, index in self._cells}
        out = []
        for index in range(min(self._windows), last + 1):
            window = self._window(index)
            if end is not None:
                # A final tick exactly at the end opens an empty window: not part of the run.
                if window.start >= end and index not in with_samples:
                    continue
                window.duration = max(0.0, min(self.window_s, end - window.start))
            out.append(window)
        return out

    @property
    def endpoints(self) -> list[str]:
        return sorted({name for kind, name, _ in self._cells if kind == REQUEST})

    @property
    def e2e_names(self) -> list[str]:
        return sorted({name for kind, name, _ in self._cells if kind == E2E})

    def cell(self, name: str | None, index: int, kind: str = REQUEST) -> Cell:
        """Histogram and counts of endpoint ``name`` (None: all endpoints) in window ``index``."""
        if name is not None:
            return self._cells.get((kind, name, index)) or Cell()
        merged = Cell()
        for (k, _, i), cell in self._cells.items():
            if k == kind and i == index:
                merged.histogram.add(cell.histogram)
                merged.count += cell.count
                merged.errors += cell.errors
        return merged

    def histograms(
        self,
        name: str | None = None,
        *,
        kind: str = REQUEST,
        phases: Collection[str] | None = None,
        skip_first: int = 0,
        skip_last: int = 0,
    ) -> list[HdrHistogram]:
        """Per-window histograms (µs) of ``name`` (None: all endpoints), selected windows only."""
        return [
            self.cell(name, w.index, kind).histogram
            for w in self.select_windows(phases, skip_first, skip_last)
        ]

    def select_windows(
        self, phases: Collection[str] | None = None, skip_first: int = 0, skip_last: int = 0
    ) -> list[Window]:
        """Windows in ``phases`` (all when None), minus ``skip_first``/``skip_last`` of those and
        any partial window (shorter than ``window_s``), which would weigh like a full one."""
        chosen = [w for w in self.windows if phases is None or w.phase in phases]
        chosen = chosen[skip_first : len(chosen) - skip_last]
        return [w for w in chosen if w.duration >= self.window_s - 1e-9]

    def windowed(
        self,
        name: str | None = None,
        *,
        kind: str = REQUEST,
        phases: Collection[str] | None = None,
        skip_first: int = 0,
        skip_last: int = 0,
    ) -> Windowed:
        """Latency in ms per selected window, ready for :mod:`loadtests.stats`."""
        return Windowed.from_histograms(
            self.histograms(
                name, kind=kind, phases=phases, skip_first=skip_first, skip_last=skip_last
            )
        )

    def validity(self) -> Validity:
        measured = [u for w in self.windows if (u := w.cpu_utilisation) is not None]
        saturated = sum(u > self.saturation_cpu for u in measured)
        max_cpu = max(measured) if measured else None
        if measured and saturated > self.saturated_fraction * len(measured):
            reason = (
                f"load generator saturated: {saturated}/{len(measured)} windows above "
                f"{self.saturation_cpu:.0%} of one core"
            )
            return Validity(False, reason, saturated, len(measured), max_cpu)
        reason = "" if measured else "generator CPU not measured"
        return Validity(True, reason, saturated, len(measured), max_cpu)

    @property
    def duration_s(self) -> float:
        return sum(w.duration for w in self.windows)

    def stats(self, name: str | None = None, *, kind: str = REQUEST) -> LatencyStats:
        """Whole-run counts and percentiles (ms) of ``name`` (None: all endpoints of ``kind``)."""
        cells = [
            c for (k, n, _), c in self._cells.items() if k == kind and (name is None or n == name)
        ]
        return _latency_stats(cells, self.duration_s)

    def summary(
        self, *, intended_rate: float | None = None, achieved_rate: float | None = None
    ) -> RunSummary:
        """Whole-run figures for gates and the report; rates are for open-model runs."""
        self.flush()
        e2e = self.stats(kind=E2E) if self.e2e_names else None
        return RunSummary(
            duration_s=self.duration_s,
            window_s=self.window_s,
            endpoints={name: self.stats(name) for name in self.endpoints},
            total=self.stats(),
            e2e=e2e,
            validity=self.validity(),
            intended_rate=intended_rate,
            achieved_rate=achieved_rate,
            statuses={
                name: {str(s): n for s, n in sorted(counter.items())}
                for name, counter in sorted(self._statuses.items())
            },
        )

    # ------------------------------------------------------------------ persistence
    def save(self, run_dir: Path) -> Path:
        """Write ``windows.jsonl`` (histograms per window) into ``run_dir``."""
        self.flush()
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / WINDOWS_FILE
        with path.open("w", encoding="utf-8") as out:
            meta = {
                "type": "meta",
                "version": 1,
                "window_s": self.window_s,
                "t0": self.t0,
                "end": self._end,
            }
            out.write(json.dumps(meta) + "\n")
            for w in self.windows:
                line = {
                    "type": "window",
                    "index": w.index,
                    "start": w.start,
                    "duration": w.duration,
                    "phase": w.phase,
                    "users": w.users,
                    "cpu_seconds": w.cpu_seconds,
                    "cpu_wall_seconds": w.cpu_wall_seconds,
                }
                out.write(json.dumps(line) + "\n")
            for (kind, name, index), cell in sorted(self._cells.items()):
                line = {
                    "type": "histogram",
                    "kind": kind,
                    "name": name,
                    "window": index,
                    "count": cell.count,
                    "errors": cell.errors,
                    "hdr": cell.histogram.encode().decode("ascii"),
                }
                out.write(json.dumps(line) + "\n")
            out.write(json.dumps({"type": "statuses", "statuses": self._statuses_json()}) + "\n")
        return path

    @classmethod
    def load(cls, run_dir: Path) -> Recorder:
        """A recorder holding what ``save`` wrote (for baselines and re-reporting)."""
        lines = [
            json.loads(line)
            for line in (run_dir / WINDOWS_FILE).read_text("utf-8").splitlines()
            if line
        ]
        meta = next(line for line in lines if line["type"] == "meta")
        recorder = cls(window_s=float(meta["window_s"]), t0=float(meta["t0"]), measure_cpu=False)
        recorder._end = meta.get("end")
        for line in lines:
            if line["type"] == "window":
                recorder._windows[line["index"]] = Window(
                    index=line["index"],
                    start=line["start"],
                    duration=line["duration"],
                    phase=line["phase"],
                    users=line["users"],
                    cpu_seconds=line["cpu_seconds"],
                    cpu_wall_seconds=line["cpu_wall_seconds"],
                )
            elif line["type"] == "histogram":
                cell = Cell(
                    HdrHistogram.decode(line["hdr"].encode("ascii")), line["count"], line["errors"]
                )
                recorder._cells[(line["kind"], line["name"], line["window"])] = cell
            elif line["type"] == "statuses":
                for name, counts in line["statuses"].items():
                    recorder._statuses[name] = Counter({int(s): n for s, n in counts.items()})
        return recorder

    # ------------------------------------------------------------------ internals
    def _statuses_json(self) -> dict[str, dict[str, int]]:
        return {name: {str(s): n for s, n in c.items()} for name, c in self._statuses.items()}

    def _window_index(self, when: float) -> int:
        return math.floor((when - self.t0) / self.window_s)

    def _window(self, index: int) -> Window:
        window = self._windows.get(index)
        if window is None:
            window = self._windows[index] = Window(index, index * self.window_s, self.window_s)
        return window

    def _spread_cpu(self, then: float, cpu_then: float, now: float, cpu_now: float) -> None:
        # Split the CPU used since the last tick over the windows that interval spans.
        span = now - then
        if span <= 0:
            return
        used = max(0.0, cpu_now - cpu_then)
        index = self._window_index(then)
        while True:
            start = self.t0 + index * self.window_s
            lo, hi = max(then, start), min(now, start + self.window_s)
            if hi > lo:
                window = self._window(index)
                window.cpu_wall_seconds += hi - lo
                window.cpu_seconds += used * (hi - lo) / span
            if start + self.window_s >= now:
                break
            index += 1

    def _raw(self) -> Any:
        if self._raw_path is None:
            return None
        if self._raw_writer is None:
            self._raw_path.parent.mkdir(parents=True, exist_ok=True)
            # Stays open across flushes so samples stream to disk; stop() closes it.
            self._raw_file = gzip.open(self._raw_path, "wt", encoding="utf-8", newline="")  # noqa: SIM115
            self._raw_writer = csv.writer(self._raw_file)
            self._raw_writer.writerow(("kind", "name", "start_s", "latency_ms", "ok", "status"))
        return self._raw_writer


def _latency_stats(cells: Iterable[Cell], duration_s: float) -> LatencyStats:
    cells = list(cells)
    count = sum(c.count for c in cells)
    errors = sum(c.errors for c in cells)
    windowed = Windowed.from_histograms(c.histogram for c in cells)
    values, counts = windowed.pooled()
    pct = {p: weighted_percentile(values, counts, p) for p in SUMMARY_PERCENTILES}
    return LatencyStats(
        count=count,
        errors=errors,
        error_ratio=errors / count if count else 0.0,
        rps=count / duration_s if duration_s > 0 else 0.0,
        p50=pct[50.0],
        p90=pct[90.0],
        p95=pct[95.0],
        p99=pct[99.0],
        max=float(values[-1]) if values.size else math.nan,
    )


def window_percentiles(
    cell: Cell, percentiles: Iterable[float] = SUMMARY_PERCENTILES
) -> dict[float, float]:
    """Percentiles (ms) of one window's cell; NaN when the window is empty."""
    values, counts = histogram_arrays(cell.histogram)
    return {p: weighted_percentile(values * 1e-3, counts, p) for p in percentiles}
