"""`bookify infra up|down|status`: Kafka, a MongoDB-wire server and Redis as local processes.

For machines without Docker. The processes run detached (they outlive the command) and
are recorded in <run dir>/infra.json, which `down` and `status` read.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from bookify_platform.infra import (
    DEFAULT_CONTROLLER_PORT,
    DEFAULT_KAFKA_PORT,
    DEFAULT_MONGO_PORT,
    DEFAULT_REDIS_PORT,
    InfraError,
    InfraStatus,
    LocalInfra,
    default_run_dir,
)

app = typer.Typer(
    help="Run Kafka, a MongoDB-wire server (FerretDB) and Redis as local processes, "
    "without Docker.",
    no_args_is_help=True,
)

RunDir = Annotated[
    Path | None,
    typer.Option(
        "--run-dir",
        envvar="BOOKIFY_RUN_DIR",
        help="Where state, data and logs live [default: <repo>/.cache/run].",
        show_default=False,
    ),
]
JsonOut = Annotated[bool, typer.Option("--json", help="Print only JSON on stdout.")]


def _err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _fail(exc: InfraError) -> typer.Exit:
    _err(f"error: {exc}")
    return typer.Exit(code=1)


def _status_dict(status: InfraStatus) -> dict[str, Any]:
    kafka = status.services.get("kafka")
    mongo = status.services.get("mongo")
    redis = status.services.get("redis")
    return {
        "running": status.running,
        "run_dir": str(status.run_dir),
        "kafka_bootstrap": kafka.endpoint if kafka and kafka.running else None,
        "mongo_uri": mongo.endpoint if mongo and mongo.running else None,
        "redis_url": redis.endpoint if redis and redis.running else None,
        "services": {
            name: {"running": s.running, "pid": s.pid, "endpoint": s.endpoint, "log": s.log}
            for name, s in status.services.items()
        },
    }


@app.command()
def up(
    json_out: JsonOut = False,
    kafka_port: Annotated[
        int, typer.Option("--kafka-port", envvar="BOOKIFY_KAFKA_PORT", help="Kafka listener.")
    ] = DEFAULT_KAFKA_PORT,
    controller_port: Annotated[
        int,
        typer.Option(
            "--kafka-controller-port",
            envvar="BOOKIFY_KAFKA_CONTROLLER_PORT",
            help="KRaft controller listener.",
        ),
    ] = DEFAULT_CONTROLLER_PORT,
    mongo_port: Annotated[
        int, typer.Option("--mongo-port", envvar="BOOKIFY_MONGO_PORT", help="FerretDB listener.")
    ] = DEFAULT_MONGO_PORT,
    redis_port: Annotated[
        int,
        typer.Option(
            "--redis-port", envvar="BOOKIFY_REDIS_PORT", help="Redis (the shared rate limit)."
        ),
    ] = DEFAULT_REDIS_PORT,
    run_dir: RunDir = None,
) -> None:
    """Start Kafka, FerretDB and Redis in the background (no-op for what already runs)."""
    infra = LocalInfra(
        run_dir or default_run_dir(),
        kafka_port=kafka_port,
        controller_port=controller_port,
        mongo_port=mongo_port,
        redis_port=redis_port,
        attached=False,
    )
    started = time.monotonic()
    try:
        endpoints = infra.start()
    except InfraError as exc:
        raise _fail(exc) from None
    except KeyboardInterrupt:
        _err("interrupted: stopped what this command had started")
        raise typer.Exit(code=130) from None
    elapsed = time.monotonic() - started
    if json_out:
        body = _status_dict(infra.status()) | {"elapsed_s": round(elapsed, 1)}
        print(json.dumps(body, indent=2))
        return
    _err(f"infra up in {elapsed:.1f} s")
    print(f"KAFKA_BOOTSTRAP_SERVERS={endpoints.kafka_bootstrap}")
    print(f"MONGO_URI={endpoints.mongo_uri}")
    print(f"REDIS_URL={endpoints.redis_url}")


@app.command()
def down(
    run_dir: RunDir = None,
    purge: Annotated[
        bool, typer.Option("--purge", help="Also delete Kafka, FerretDB and Redis data and logs.")
    ] = False,
) -> None:
    """Stop what `up` started (only processes recorded in the run dir and still ours)."""
    directory = run_dir or default_run_dir()
    infra = LocalInfra(directory)
    try:
        stopped = infra.stop()
    except InfraError as exc:
        raise _fail(exc) from None
    _err(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
    if purge:
        for sub in ("kafka", "ferretdb", "redis"):
            shutil.rmtree(infra.run_dir / sub, ignore_errors=True)
        _err(f"purged data and logs under {infra.run_dir}")


@app.command()
def status(json_out: JsonOut = False, run_dir: RunDir = None) -> None:
    """Show whether Kafka, FerretDB and Redis run, with endpoints, pids and logs. Exit 3 if
    not all."""
    try:
        current = LocalInfra(run_dir or default_run_dir()).status()
    except InfraError as exc:
        raise _fail(exc) from None
    if json_out:
        print(json.dumps(_status_dict(current), indent=2))
    else:
        for name, service in current.services.items():
            state = "running" if service.running else "stopped"
            detail = f" pid {service.pid}  {service.endpoint}  log {service.log}"
            print(f"{name:6} {state}{detail if service.running else ''}")
    if not current.running:
        raise typer.Exit(code=3)
