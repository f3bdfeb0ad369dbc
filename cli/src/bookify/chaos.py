"""The processes of a running `bookify up`, as the nemesis (:mod:`loadtests.chaos`) faults them.

Only what `bookify up` started on this machine, as its run dir records it (infra.json,
platform.json): a platform it did not start (compose, Kubernetes, someone else's servers) is
refused, since SIGSTOP and SIGKILL are the faults. A killed service is brought back by `up`'s
own supervisor (this waits until it answers /readyz again); a killed Kafka, FerretDB or Redis
is started again on its data by :class:`~bookify_platform.infra.local.LocalInfra`, from here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

from bookify_platform.infra.errors import InfraError
from bookify_platform.infra.local import LocalInfra
from bookify_platform.infra.process import is_alive, is_ours
from bookify_platform.infra.state import StateFile
from bookify_platform.services import SUPERVISOR, PlatformState, probe_ready
from loadtests.chaos.nemesis import Target, died
from loadtests.chaos.schedule import INFRA

BACK_WITHIN = 120.0
"""How long a killed process may take to answer again before the run gives up."""


class UpProcesses:
    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.platform = PlatformState(run_dir)
        self.infra = StateFile(run_dir)
        if not self.platform.supervisor_alive():
            raise InfraError(
                f"no `bookify up` runs from {run_dir}: start the platform with `make up` (or "
                "`uv run bookify up`) first; bookify chaos only faults the local processes "
                "that `bookify up` started"
            )
        missing = [name for name in INFRA if self._infra_pid(name) is None]
        if missing:
            raise InfraError(
                f"{', '.join(missing)} not running from {run_dir}: bookify chaos needs the "
                "Kafka, FerretDB and Redis that `bookify up` started, not compose's or remote ones"
            )

    def target(self) -> Target:
        records = self.platform.load().processes
        gateways = sorted(n for n in records if n.startswith("gateway"))
        mongo = self.infra.load().processes["mongo"].endpoint
        return Target(",".join(records[n].endpoint for n in gateways), mongo)

    def targets(self) -> list[str]:
        services = sorted(n for n in self.platform.load().processes if n != SUPERVISOR)
        return [*INFRA, *services]

    def pid(self, name: str) -> int | None:
        if name in INFRA:
            return self._infra_pid(name)
        record = self.platform.load().processes.get(name)
        return None if record is None or not is_alive(record.pid) else record.pid

    def _infra_pid(self, name: str) -> int | None:
        record = self.infra.load().processes.get(name)
        return None if record is None or not is_ours(record.pid, record.marker) else record.pid

    async def start_again(self, name: str) -> None:
        if name in INFRA:
            await asyncio.to_thread(self._start_infra)
            return
        # `up`'s supervisor starts it again (after its backoff) and records the new pid.
        deadline = time.monotonic() + BACK_WITHIN
        while True:
            record = self.platform.load().processes.get(name)
            if record is not None and is_alive(record.pid):
                ready = await asyncio.to_thread(probe_ready, record.endpoint, 1.0)
                if ready:
                    return
            if time.monotonic() > deadline:
                raise InfraError(f"{name} not back within {BACK_WITHIN:.0f} s of its kill")
            await asyncio.sleep(0.2)

    async def restart_infra(self) -> None:
        pids = [pid for name in INFRA if (pid := self._infra_pid(name)) is not None]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        await asyncio.gather(*(died(pid) for pid in pids))
        await asyncio.to_thread(self._start_infra)

    def _start_infra(self) -> None:
        """Start again whatever of the infrastructure is not running (on its own data, ports
        and Kafka listener), detached: `up` stops it on exit as it stops what it started. A
        port the kernel has not released yet is asked for again for a few seconds."""
        # Read before the first attempt: a start forgets the record of a server that died.
        infra = LocalInfra.as_recorded(self.run_dir, progress=lambda _: None)
        for attempt in range(10):
            try:
                infra.start()
                return
            except InfraError:
                if attempt == 9:
                    raise
                time.sleep(1.0)
