"""What a load test is asked to do (:class:`LoadOptions`), and how it reports progress (``Say``).

Apart from :mod:`loadtests.runner` so that the modules the runner starts (the open model's
run, the session) can take them without importing the runner back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from loadtests.data import new_run_id

DEFAULT_SLO = Path(__file__).with_name("slo.default.toml")

Say = Callable[[str], None]


@dataclass(frozen=True)
class LoadOptions:
    shape: str
    host: str = "http://127.0.0.1:8000"
    users: float = 10
    rate: float | None = None  # open model when set
    duration: float = 60
    step: float | None = None
    step_seconds: float = 30
    processes: int = 1
    slo: Path | None = None
    baseline: Path | None = None
    runs_root: Path = Path("runs")
    run_dir: Path | None = None
    window: float = 5.0
    exporter_port: int = 9646
    seed_resources: int = 20
    principals: int = 50
    think: str = "0.5,1.5"
    faults: str = ""
    booking_url: str | None = None
    consumer_url: str | None = None
    progress_every: float = 5.0
    max_in_flight: int = 512
    mix: str = ""  # a crowd's operations (loadtests.mix) instead of the shop's flows
    follow: str = "poll"  # how a client learns its decision: "poll" or "push" (loadtests.users)
    run_id: str = field(default_factory=new_run_id)

    @property
    def open_model(self) -> bool:
        return self.rate is not None

    def resolved_run_dir(self) -> Path:
        if self.run_dir is not None:
            return self.run_dir
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        return self.runs_root / f"{stamp}-{self.shape}"

    def slo_path(self) -> Path:
        return self.slo or DEFAULT_SLO
