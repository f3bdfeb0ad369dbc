"""`bookify status`: the infrastructure and the services (every replica) `bookify up` runs, and
where the logs are.

Reads what `bookify infra` and `bookify up` record in the run dir (infra.json and
platform.json) and asks each live service's /readyz; it starts and stops nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from bookify.commands.platform import RunDir
from bookify_platform import runlogs
from bookify_platform.infra import paths
from bookify_platform.infra.errors import InfraError
from bookify_platform.infra.local import LocalInfra
from bookify_platform.infra.process import is_ours
from bookify_platform.services import SERVICES, SUPERVISOR, PlatformState, probe_ready, service_of

NOT_RUNNING_EXIT = 3

EPILOG = (
    "Exit codes: 0 while `bookify up` runs (even if a service is restarting: see each "
    f"service's state), {NOT_RUNNING_EXIT} when it does not, 1 on an error (e.g. an unreadable "
    "state file). --json prints one object either way, with running: true/false.\n\n"
    "Only local processes are shown; under Docker use `docker compose ps`."
)


def platform_status(run_dir: Path) -> dict[str, Any]:
    """Everything `status` reports, as the JSON object `--json` prints."""
    infra = LocalInfra(run_dir, progress=lambda _: None).status()
    state = PlatformState(run_dir)
    recorded = state.load()
    running = state.supervisor_alive(recorded)
    owner = recorded.processes.get(SUPERVISOR)
    latest = runlogs.latest_run_folder(run_dir)
    services: dict[str, dict[str, Any]] = {}
    for name in _instances(recorded.processes if running else {}):
        # A file left by an `up` that was killed describes nothing that runs: ignore it.
        record = recorded.processes.get(name) if running else None
        if record is None:
            services[name] = {
                "running": False,
                "ready": False,
                "pid": None,
                "url": None,
                "restarts": 0,
                "log": None,
            }
            continue
        alive = is_ours(record.pid, record.marker)
        services[name] = {
            "running": alive,
            "ready": alive and probe_ready(record.endpoint),
            "pid": record.pid,
            "url": record.endpoint,
            "restarts": record.restarts,
            "log": record.log,
        }
    return {
        "running": running,
        "ready": running and all(s["ready"] for s in services.values()),
        "run_dir": str(run_dir),
        # This run's log folder, or the last run's when nothing runs (None if never run).
        "logs": owner.log if running and owner else (str(latest) if latest else None),
        "supervisor_pid": owner.pid if running and owner else None,
        "infra": {
            name: {"running": s.running, "pid": s.pid, "endpoint": s.endpoint, "log": s.log}
            for name, s in infra.services.items()
        },
        "services": services,
    }


def _instances(recorded: Mapping[str, object]) -> list[str]:
    """Each service's replicas as recorded (gateway, gateway-1, ...), every service at least
    once, in the order `up` starts them."""
    names = set(SERVICES) | {name for name in recorded if service_of(name) is not None}

    def order(name: str) -> tuple[int, int]:
        service = service_of(name)
        assert service is not None
        replica = name.removeprefix(service).removeprefix("-")
        return SERVICES.index(service), int(replica or 0)

    return sorted(names, key=order)


def _table(body: dict[str, Any]) -> str:
    rows = [("NAME", "STATE", "PID", "ENDPOINT", "RESTARTS")]
    for name, s in body["infra"].items():
        state = "running" if s["running"] else "stopped"
        rows.append((name, state, str(s["pid"] or "-"), s["endpoint"] or "-", "-"))
    for name, s in body["services"].items():
        state = "ready" if s["ready"] else "starting" if s["running"] else "stopped"
        rows.append((name, state, str(s["pid"] or "-"), s["url"] or "-", str(s["restarts"])))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    if body["running"]:
        lines.append(
            f"logs: {body['logs']}  (bookify up is pid {body['supervisor_pid']}; "
            "Ctrl-C in its terminal stops it)"
        )
    else:
        lines.append("bookify up is not running; start the platform with `make up`.")
        if body["logs"]:
            lines.append(f"last run's logs: {body['logs']}")
    return "\n".join(lines)


def status(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object on stdout, nothing else.")
    ] = False,
    run_dir: RunDir = None,
) -> None:
    """Show Kafka, FerretDB, Redis and the services of `bookify up` (each replica on a line of
    its own): pid, endpoint, readiness (per /readyz), restarts so far, and where this run's
    logs are."""
    directory = (run_dir or paths.default_run_dir(paths.repo_root())).resolve()
    try:
        body = platform_status(directory)
    except InfraError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(body, indent=2) if as_json else _table(body))
    if not body["running"]:
        raise typer.Exit(NOT_RUNNING_EXIT)
