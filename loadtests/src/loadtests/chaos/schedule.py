"""A seeded random schedule of faults over a platform's processes.

Three kinds of fault, as a crowd's outages come: a process frozen for a while (SIGSTOP, then
SIGCONT: a GC pause, a stalled disk, a VM migrating), a process killed and started again
(SIGKILL: a crash, an OOM kill), and the whole infrastructure restarted at once (Kafka, the
store and Redis together: a node lost). Faults may overlap. The same seed and targets give the
same schedule, so a failing run can be replayed.

``bookify up`` stops the platform at a service's fifth exit within 5 minutes: a schedule kills
each process at most :data:`MAX_KILLS` times.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

MAX_KILLS = 2
"""Kills of one process in one schedule (the supervisor gives up at its fifth exit)."""
PAUSE_SECONDS = (1.0, 8.0)
INFRA = ("kafka", "mongo", "redis")
INFRA_RESTART = "infra"
"""The target of a fault that restarts every infrastructure process at once."""


class FaultKind(StrEnum):
    PAUSE = "pause"
    KILL = "kill"
    RESTART_INFRA = "restart_infra"


@dataclass(frozen=True, order=True)
class Fault:
    at: float
    """Seconds after the fault phase begins."""
    target: str
    kind: FaultKind
    seconds: float = 0.0
    """How long a pause lasts (0 for the others: they last as long as the restart takes)."""

    def describe(self) -> str:
        if self.kind is FaultKind.PAUSE:
            return f"+{self.at:5.1f} s  freeze {self.target} for {self.seconds:.1f} s"
        if self.kind is FaultKind.KILL:
            return f"+{self.at:5.1f} s  kill {self.target} and start it again"
        return f"+{self.at:5.1f} s  restart kafka, mongo and redis together"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def schedule(
    seed: int,
    targets: Sequence[str],
    *,
    seconds: float,
    faults: int | None = None,
    infra_restarts: bool = True,
) -> list[Fault]:
    """``faults`` faults (default: one per 10 s) at random times in the first ``seconds``,
    over ``targets`` (process names; kafka, mongo and redis are the infrastructure)."""
    if not targets:
        raise ValueError("a schedule needs at least one process to fault")
    if seconds < 5:
        raise ValueError("a fault phase shorter than 5 s leaves no room for a fault")
    rng = random.Random(seed)
    count = faults if faults is not None else max(1, round(seconds / 10))
    kills: Counter[str] = Counter()
    planned: list[Fault] = []
    latest = seconds - 3.0  # the last fault starts a little before the phase ends
    for _ in range(count):
        at = round(rng.uniform(0.0, latest), 1)
        roll = rng.random()
        if infra_restarts and roll < 0.1 and any(t in INFRA for t in targets):
            planned.append(Fault(at, INFRA_RESTART, FaultKind.RESTART_INFRA))
            continue
        target = rng.choice(list(targets))
        if roll < 0.55 and kills[target] < MAX_KILLS:
            kills[target] += 1
            planned.append(Fault(at, target, FaultKind.KILL))
            continue
        pause = round(min(rng.uniform(*PAUSE_SECONDS), seconds - at), 1)
        planned.append(Fault(at, target, FaultKind.PAUSE, pause))
    return sorted(planned)


def parse_faults(spec: str, targets: Sequence[str]) -> list[Fault]:
    """Faults given by hand, to replay an outage: ``kill:booking@5,pause:kafka@12:3.5,
    restart_infra@30`` (seconds into the fault phase; a pause's length last)."""
    faults: list[Fault] = []
    form = "kill:booking@5, pause:kafka@12:3.5 (seconds frozen), restart_infra@30"
    for part in filter(None, (p.strip() for p in spec.split(","))):
        what, _, when = part.partition("@")
        kind_name, _, target = what.partition(":")
        at, _, seconds = when.partition(":")
        try:
            kind = FaultKind(kind_name)
            fault = Fault(float(at), target or INFRA_RESTART, kind, float(seconds or 0))
        except ValueError:
            raise ValueError(f"fault {part!r}: write faults as {form}") from None
        if kind is not FaultKind.RESTART_INFRA and target not in targets:
            raise ValueError(
                f"fault {part!r}: no process {target!r}; there are {', '.join(targets)}"
            )
        if kind is FaultKind.PAUSE and fault.seconds <= 0:
            raise ValueError(f"fault {part!r}: a pause needs its seconds, e.g. pause:kafka@12:3.5")
        faults.append(fault)
    return sorted(faults)
