"""Restart services that exit while `bookify up` runs, like compose's `unless-stopped`.

Two layers, so the policy can be tested without processes or waiting:

- `RestartPolicy` + `CrashHistory`: pure. Given when a process started and when it died,
  how long to wait before restarting it, or whether to give up.
- `Supervisor`: polls the processes, asks the policy, restarts. Its clock and sleep are
  injectable; it must run on the thread that started the services (see
  `bookify_platform.infra.process.spawn`: children die with the thread that spawned them).

Only `bookify up` uses it: the test stacks kill and restart services on purpose.
"""

from __future__ import annotations

import signal
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from bookify_platform.infra.errors import InfraError
from bookify_platform.infra.fsutil import tail


class CrashLoopError(InfraError):
    """A service crashed too often in too short a time; restarting it again is pointless."""


@dataclass(frozen=True)
class RestartPolicy:
    """Exponential backoff between restarts, and when to stop trying.

    The n-th crash in a row waits `first_delay * 2**(n-1)` seconds, at most `max_delay`.
    A process that stayed up for `reset_after` seconds starts a new streak (1 s again).
    The `max_crashes`-th crash within `window` seconds gives up.
    """

    first_delay: float = 1.0
    max_delay: float = 30.0
    reset_after: float = 60.0
    max_crashes: int = 5
    window: float = 300.0

    def __post_init__(self) -> None:
        if self.first_delay < 0 or self.max_delay < self.first_delay:
            raise ValueError("need 0 <= first_delay <= max_delay")
        if self.max_crashes < 1 or self.window <= 0:
            raise ValueError("need max_crashes >= 1 and a positive window")

    def delay(self, streak: int) -> float:
        """Seconds to wait before restart number `streak` (1-based) of a streak."""
        exponent = min(max(streak, 1) - 1, 32)  # 2**32 s is past any cap; avoids overflow
        return float(min(self.first_delay * 2**exponent, self.max_delay))


@dataclass(frozen=True)
class Verdict:
    give_up: bool
    delay: float  # seconds until the restart (0 when giving up)
    attempt: int  # restarts in the current streak, this one included
    recent: int  # crashes within the policy's window, this one included


@dataclass
class CrashHistory:
    """The crashes of one service, and what the policy says about the next one."""

    policy: RestartPolicy = field(default_factory=RestartPolicy)
    streak: int = 0
    _recent: deque[float] = field(default_factory=deque)

    def crashed(self, *, started_at: float, now: float) -> Verdict:
        """Record a crash at `now` of a process started at `started_at` (same clock)."""
        if now - started_at >= self.policy.reset_after:
            self.streak = 0  # it ran long enough: this is a new problem, not the old one
        self.streak += 1
        self._recent.append(now)
        while self._recent and self._recent[0] <= now - self.policy.window:
            self._recent.popleft()
        recent = len(self._recent)
        if recent >= self.policy.max_crashes:
            return Verdict(give_up=True, delay=0.0, attempt=self.streak, recent=recent)
        return Verdict(
            give_up=False, delay=self.policy.delay(self.streak), attempt=self.streak, recent=recent
        )


class Supervised(Protocol):
    """What the supervisor needs of a service (`bookify_platform.services.ServiceProcess`)."""

    @property
    def name(self) -> str: ...
    @property
    def log_path(self) -> Path: ...
    @property
    def pid(self) -> int | None: ...
    def poll(self) -> int | None: ...
    def restart(self, reason: str) -> None: ...
    def is_ready(self) -> bool: ...


def describe_exit(code: int) -> str:
    """'exit code 1' or 'signal SIGKILL' (Popen reports a signal as -signum)."""
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


@dataclass
class _Watch:
    service: Supervised
    history: CrashHistory
    started_at: float
    restart_at: float | None = None  # set while a restart is pending
    last_exit: str = ""
    awaiting_ready: bool = False


class Supervisor:
    """Restart `services` when they exit, per `policy`; raise CrashLoopError on give-up.

    Call `poll()` regularly (or `run()`, which does until `stop()` says so). Each restart
    is reported as one line through `report`.
    """

    def __init__(
        self,
        services: Iterable[Supervised],
        policy: RestartPolicy | None = None,
        *,
        report: Callable[[str], None] = lambda _: None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.policy = policy or RestartPolicy()
        self.report = report
        self.clock = clock
        self.sleep = sleep
        now = clock()
        self._watches = [_Watch(s, CrashHistory(self.policy), started_at=now) for s in services]

    def run(self, stop: Callable[[], bool] = lambda: False, interval: float = 0.5) -> None:
        while not stop():
            self.poll()
            self.sleep(interval)

    def poll(self) -> None:
        """One round: notice exits, schedule restarts, perform the ones that are due."""
        for watch in self._watches:
            now = self.clock()
            if watch.restart_at is not None:
                if now >= watch.restart_at:
                    self._restart(watch, now)
                continue
            code = watch.service.poll()
            if code is not None:
                self._crashed(watch, describe_exit(code), now)
            elif watch.awaiting_ready and watch.service.is_ready():
                watch.awaiting_ready = False
                self.report(f"{watch.service.name} is ready again (pid {watch.service.pid})")

    def _crashed(self, watch: _Watch, how: str, now: float) -> None:
        service = watch.service
        watch.last_exit = how
        watch.awaiting_ready = False
        uptime = now - watch.started_at
        verdict = watch.history.crashed(started_at=watch.started_at, now=now)
        if verdict.give_up:
            raise CrashLoopError(
                f"{service.name} stopped {verdict.recent} times within "
                f"{self.policy.window:.0f} s (last: {how} after {uptime:.1f} s); giving up "
                f"and stopping the platform.\nLast lines of {service.log_path}:\n"
                f"{tail(service.log_path)}\n"
                f"Fix what the log shows (it keeps every attempt; `bookify infra status` "
                f"tells whether Kafka and FerretDB still run), then run `bookify up` again."
            )
        watch.restart_at = now + verdict.delay
        self.report(
            f"{service.name} stopped ({how}) after {uptime:.1f} s; restart {verdict.attempt} "
            f"in {verdict.delay:g} s (crash {verdict.recent} of {self.policy.max_crashes} "
            f"allowed within {self.policy.window:.0f} s); log: {service.log_path}"
        )

    def _restart(self, watch: _Watch, now: float) -> None:
        watch.restart_at = None
        watch.started_at = now
        try:
            watch.service.restart(f"it stopped ({watch.last_exit})")
        except (InfraError, OSError) as exc:
            # e.g. its port is still taken: that counts as one more failed attempt.
            self._crashed(watch, f"could not start: {exc}", now)
            return
        watch.awaiting_ready = True
        self.report(f"{watch.service.name} restarted (pid {watch.service.pid})")
