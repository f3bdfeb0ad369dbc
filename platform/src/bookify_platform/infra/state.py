"""`<run dir>/infra.json`: what was started, so `down`/`status` work from any process.

Each process is recorded the moment it is spawned (before it is ready), so `down` can
clean up after an `up` that crashed or was interrupted half-way. `bookify up` keeps its
services in `<run dir>/platform.json`, in the same format, for `bookify status`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from bookify_platform.infra.errors import StateFileError
from bookify_platform.infra.fsutil import atomic_write_text

STATE_FILE_NAME = "infra.json"
_INFRA_HINT = "Stop any leftover java/ferretdb processes by hand and delete the file."
_SCHEMA = 1
_T = TypeVar("_T")


@dataclass(frozen=True)
class ProcessRecord:
    """One server process we started."""

    pid: int
    marker: str  # a string in its command line that proves a pid is still ours
    log: str
    endpoint: str  # Kafka bootstrap servers or MongoDB URI
    ports: dict[str, int] = field(default_factory=dict)
    started_at: float = 0.0
    restarts: int = 0  # how often a supervisor restarted it (bookify up's services)

    @classmethod
    def from_dict(cls, data: Any) -> ProcessRecord:
        if not isinstance(data, dict):
            raise TypeError(f"expected an object, got {type(data).__name__}")
        ports = data.get("ports", {})
        if not isinstance(ports, dict):
            raise TypeError("ports must be an object")
        return cls(
            pid=_typed(data, "pid", int),
            marker=_typed(data, "marker", str),
            log=_typed(data, "log", str),
            endpoint=_typed(data, "endpoint", str),
            ports={str(name): int(port) for name, port in ports.items()},
            started_at=float(data.get("started_at", 0.0)),
            restarts=_typed(data, "restarts", int) if "restarts" in data else 0,
        )


def _typed(data: dict[str, Any], key: str, kind: type[_T]) -> _T:
    value = data.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TypeError(f"{key!r} must be {kind.__name__}, got {value!r}")
    return value


@dataclass(frozen=True)
class InfraState:
    """Parsed infra.json: process name ("kafka", "mongo") -> record."""

    processes: dict[str, ProcessRecord] = field(default_factory=dict)

    def to_json(self) -> str:
        body = {
            "schema": _SCHEMA,
            "processes": {name: asdict(rec) for name, rec in sorted(self.processes.items())},
        }
        return json.dumps(body, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> InfraState:
        try:
            body = json.loads(text)
            if not isinstance(body, dict) or body.get("schema") != _SCHEMA:
                raise TypeError("not a bookify infra state (schema 1) document")
            raw = body.get("processes", {})
            if not isinstance(raw, dict):
                raise TypeError("processes must be an object")
            return cls({str(name): ProcessRecord.from_dict(rec) for name, rec in raw.items()})
        except (ValueError, TypeError) as exc:
            raise StateFileError(f"cannot parse infra state: {exc}") from None


class StateFile:
    """Read-modify-write access to one run directory's infra.json (or another `name`).

    `hint` ends the error about a file that cannot be parsed: what to do about it.
    """

    def __init__(
        self, run_dir: Path, name: str = STATE_FILE_NAME, *, hint: str = _INFRA_HINT
    ) -> None:
        self.path = run_dir / name
        self.hint = hint

    def load(self) -> InfraState:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return InfraState()
        try:
            return InfraState.from_json(text)
        except StateFileError as exc:
            raise StateFileError(f"{self.path}: {exc}. {self.hint}") from None

    def record(self, name: str, record: ProcessRecord) -> None:
        processes = dict(self.load().processes)
        processes[name] = record
        atomic_write_text(self.path, InfraState(processes).to_json())

    def forget(self, name: str) -> None:
        processes = dict(self.load().processes)
        if processes.pop(name, None) is None:
            return
        if processes:
            atomic_write_text(self.path, InfraState(processes).to_json())
        else:
            self.path.unlink(missing_ok=True)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
