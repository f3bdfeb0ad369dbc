"""`bookify reset`: drop the dev store's databases and topics (see bookify_platform.reset)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer
from aiokafka.errors import KafkaError
from pymongo.errors import PyMongoError

from bookify.commands.platform import RunDir
from bookify_platform.infra import paths
from bookify_platform.infra.errors import InfraError
from bookify_platform.infra.local import LocalInfra
from bookify_platform.reset import LocalHarness, ResetRefusedError, choose_target, reset_store
from bookify_platform.services import PlatformState

EPILOG = (
    "Only the local harness of this run dir, and only while `bookify up` is stopped "
    "(`bookify infra up` may run). Another store needs its URL and --yes, e.g. "
    "bookify reset --mongo mongodb://host:27017 --kafka host:9092 --yes"
)


def local_harness(run_dir: Path) -> LocalHarness:
    """What `bookify infra up` / `bookify up` runs from ``run_dir``."""
    services = LocalInfra(run_dir, progress=lambda _: None).status().services
    endpoint = {name: s.endpoint or "" for name, s in services.items() if s.running}
    return LocalHarness(
        mongo_uri=endpoint.get("mongo", ""),
        kafka_bootstrap=endpoint.get("kafka", ""),
        services_running=PlatformState(run_dir).supervisor_alive(),
    )


def reset(
    mongo: Annotated[
        str | None,
        typer.Option(
            help="A MongoDB URI other than the local one (needs --yes).", show_default=False
        ),
    ] = None,
    kafka: Annotated[
        str | None,
        typer.Option(
            help="Kafka bootstrap servers other than the local ones (needs --yes).",
            show_default=False,
        ),
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", help="Yes, drop Bookify's data at the URLs named.")
    ] = False,
    topic_prefix: Annotated[
        str,
        typer.Option(
            envvar="BOOKIFY_TOPIC_PREFIX", help="The services' TOPIC_PREFIX (empty for `make up`)."
        ),
    ] = "",
    db_prefix: Annotated[
        str, typer.Option(help="The services' database prefix (empty for `make up`).")
    ] = "",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print what was dropped as JSON.")
    ] = False,
    run_dir_option: RunDir = None,
) -> None:
    """Drop the services' databases and delete their Kafka topics: a known, empty start."""
    run_dir = (run_dir_option or paths.default_run_dir(paths.repo_root())).resolve()
    try:
        target = choose_target(
            local_harness(run_dir),
            mongo=mongo,
            kafka=kafka,
            yes=yes,
            topic_prefix=topic_prefix,
            db_prefix=db_prefix,
        )
        result = asyncio.run(reset_store(target))
    except (ResetRefusedError, InfraError) as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(1) from None
    except (PyMongoError, KafkaError, TimeoutError, OSError) as exc:  # unreachable, slow
        typer.secho(
            f"error: reset failed: {type(exc).__name__}: {exc}", err=True, fg=typer.colors.RED
        )
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(result.to_dict()))
        return
    where = "the local harness" if target.local else "the store named"
    databases = ", ".join(result.databases_dropped) or "none there"
    topics = ", ".join(result.topics_deleted) or "none there"
    typer.echo(
        f"reset {where}: dropped {len(result.databases_dropped)} database(s) ({databases}), "
        f"deleted {len(result.topics_deleted)} topic(s) ({topics})"
    )
