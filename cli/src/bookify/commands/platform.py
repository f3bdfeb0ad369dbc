"""`bookify up` (the whole platform in the foreground) and `bookify seed` (demo data)."""

from __future__ import annotations

import contextlib
import json
import signal
import time
from types import FrameType
from typing import Annotated

import httpx
import typer

from bookify import observe
from bookify.infra import paths
from bookify.infra.errors import InfraError
from bookify.infra.local import LocalInfra, print_progress
from bookify.platform import DEFAULT_PORTS, Platform, PlatformConfig
from shared.auth import AuthSettings, Scope, mint_token

DEMO_RESOURCES = [
    ("Main stage — Saturday", 500),
    ("Jazz club — late show", 40),
    ("Workshop: async Python", 25),
    ("Ticket drop: reunion tour", 10),
]


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def up(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the endpoints as JSON on stdout.")
    ] = False,
    gateway_port: Annotated[int, typer.Option(envvar="BOOKIFY_GATEWAY_PORT")] = DEFAULT_PORTS[
        "gateway"
    ],
    booking_port: Annotated[int, typer.Option(envvar="BOOKIFY_BOOKING_PORT")] = DEFAULT_PORTS[
        "booking"
    ],
    consumer_port: Annotated[int, typer.Option(envvar="BOOKIFY_CONSUMER_PORT")] = DEFAULT_PORTS[
        "consumer"
    ],
    observability: Annotated[
        bool,
        typer.Option(
            "--observability",
            help="Also run Prometheus (rules and alerts included) scraping the services.",
        ),
    ] = False,
    prometheus_port: Annotated[
        int, typer.Option(envvar="BOOKIFY_PROMETHEUS_PORT")
    ] = observe.DEFAULT_PORT,
) -> None:
    """Run Kafka, FerretDB and the three services locally until Ctrl-C (which stops them all).

    Kafka and FerretDB already started by `bookify infra up` are reused and left running.
    """
    # SIGTERM (a supervisor, `kill`) stops everything the way Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    infra = LocalInfra(attached=True)
    reuse = infra.status().running
    run_dir = paths.default_run_dir(paths.repo_root())
    try:
        endpoints = infra.start()
        config = PlatformConfig(
            kafka_bootstrap=endpoints.kafka_bootstrap,
            mongo_uri=endpoints.mongo_uri,
            ports={"gateway": gateway_port, "booking": booking_port, "consumer": consumer_port},
        )
        with (
            Platform(config, run_dir, progress=print_progress) as platform,
            contextlib.ExitStack() as extras,
        ):
            summary = {
                "gateway": platform["gateway"].url,
                "booking": platform["booking"].url,
                "consumer": platform["consumer"].url,
                "kafka_bootstrap": endpoints.kafka_bootstrap,
                "mongo_uri": endpoints.mongo_uri,
                "logs": str(run_dir),
            }
            if observability:
                prometheus = observe.LocalPrometheus(
                    run_dir, {str(k): v for k, v in config.ports.items()}, port=prometheus_port
                )
                prometheus.start()
                extras.callback(prometheus.stop)
                summary["prometheus"] = prometheus.url
            if as_json:
                typer.echo(json.dumps(summary))
            else:
                for name, value in summary.items():
                    typer.echo(f"{name:16} {value}")
                typer.echo("Bookify is up. Try: uv run bookify seed   (Ctrl-C stops everything)")
            while all(s.running for s in platform.services.values()):
                time.sleep(0.5)
            dead = [s for s in platform.services.values() if not s.running]
            raise InfraError(
                f"{', '.join(s.name for s in dead)} stopped unexpectedly; see "
                f"{', '.join(str(s.log_path) for s in dead)}"
            )
    except KeyboardInterrupt:
        print_progress("stopping...")
    except InfraError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(1) from None
    finally:
        if not reuse:
            infra.stop()


def seed(
    host: Annotated[str, typer.Option(help="The gateway's base URL.")] = "http://127.0.0.1:8000",
) -> None:
    """Create demo resources through the public API (as an admin with a dev token)."""
    token = mint_token(AuthSettings(), "seed-admin", [Scope.RESOURCES_ADMIN, Scope.BOOKINGS_READ])
    headers = {"Authorization": f"Bearer {token}"}
    try:
        with httpx.Client(base_url=host, headers=headers, timeout=10) as client:
            for name, capacity in DEMO_RESOURCES:
                response = client.post("/v1/resources", json={"name": name, "capacity": capacity})
                if response.status_code != 202:
                    typer.secho(
                        f"error: creating {name!r} answered {response.status_code}: "
                        f"{response.text}",
                        err=True,
                        fg=typer.colors.RED,
                    )
                    raise typer.Exit(1)
                typer.echo(f"{response.headers['location']}  {name} ({capacity} seats)")
    except httpx.TransportError as exc:
        typer.secho(
            f"error: cannot reach the gateway at {host} ({exc}); start it with `make up`",
            err=True,
            fg=typer.colors.RED,
        )
        raise typer.Exit(1) from None
