"""`bookify dlq list | show | replay`: the dead-letter topic, for whoever is on call."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, NoReturn

import typer

from bookify.dlq import (
    DeadLetter,
    DeadLetterError,
    Selection,
    parse_since,
    read_dead_letters,
    replay,
)
from bookify_platform.infra.local import LocalInfra
from shared.settings import Topics

app = typer.Typer(
    help="Inspect the dead-letter topic and replay what is in it (idempotent).",
    no_args_is_help=True,
)

Kafka = Annotated[
    str | None,
    typer.Option(
        "--kafka", help="Kafka bootstrap servers (default: the local one, `bookify status`)."
    ),
]
Prefix = Annotated[
    str,
    typer.Option(
        "--topic-prefix",
        envvar="BOOKIFY_TOPIC_PREFIX",
        help="The services' TOPIC_PREFIX (empty for `make up`).",
    ),
]
Since = Annotated[
    str | None,
    typer.Option(help="Only letters written since: 30s, 10m, 2h, 1d ago, or an ISO time."),
]
Type = Annotated[
    str | None,
    typer.Option("--type", help="Only this message type, e.g. bookify.booking.request.v1."),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON on stdout for scripts.")]


def _bootstrap(kafka: str | None) -> str:
    bootstrap = kafka or LocalInfra().status().services["kafka"].endpoint
    if not bootstrap:
        _fail("no Kafka found: start the platform with `make up`, or pass --kafka host:port")
    return bootstrap


def _fail(message: str) -> NoReturn:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(1)


def _read(kafka: str | None, prefix: str, selection: Selection) -> list[DeadLetter]:
    try:
        return asyncio.run(read_dead_letters(_bootstrap(kafka), Topics(prefix), selection))
    except DeadLetterError as exc:
        _fail(str(exc))


def _selection(since: str | None, ce_type: str | None, ids: list[str] | None = None) -> Selection:
    try:
        moment = parse_since(since) if since else None
    except DeadLetterError as exc:
        _fail(str(exc))
    return Selection(since=moment, ce_type=ce_type, ids=frozenset(ids or ()))


@app.command("list")
def list_(
    since: Since = None,
    ce_type: Type = None,
    kafka: Kafka = None,
    prefix: Prefix = "",
    as_json: AsJson = False,
) -> None:
    """One line per dead letter: its id, when, its type, why it failed and where it came from."""
    letters = _read(kafka, prefix, _selection(since, ce_type))
    if as_json:
        typer.echo(json.dumps([d.summary() for d in letters], indent=2))
        return
    if not letters:
        typer.echo("the DLQ is empty" + (" for this selection" if since or ce_type else ""))
        return
    for d in letters:
        s = d.summary()
        typer.echo(
            f"{s['id']:>8}  {s['time'][:19]}  {s['type'] or '(undecodable)':<32} "
            f"{s['error_type']}: {s['error'][:60]}  <- {s['source']}"
        )
    replayable = sum(d.replayable for d in letters)
    typer.echo(f"{len(letters)} dead letter(s), {replayable} replayable: `bookify dlq replay`")


@app.command("show")
def show(
    letter_id: Annotated[str, typer.Argument(help="<partition>:<offset>, as `dlq list` shows.")],
    kafka: Kafka = None,
    prefix: Prefix = "",
) -> None:
    """Everything about one dead letter: headers, error, source and the original payload."""
    letters = _read(kafka, prefix, Selection(ids=frozenset({letter_id})))
    if not letters:
        _fail(f"no dead letter {letter_id}; `bookify dlq list` shows the ids")
    typer.echo(json.dumps(letters[0].details(), indent=2))


@app.command("replay")
def replay_(
    since: Since = None,
    ce_type: Type = None,
    letter_ids: Annotated[
        list[str] | None,
        typer.Option("--id", help="Only this dead letter (<partition>:<offset>); repeatable."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be replayed; send nothing.")
    ] = False,
    kafka: Kafka = None,
    prefix: Prefix = "",
    as_json: AsJson = False,
) -> None:
    """Send dead letters back to the topic they came from, to be handled again.

    Safe to repeat: bookings and views are keyed by operation and event id, so a record
    handled (or settled as processing_failed) already changes nothing the second time.
    Undecodable records are skipped: they would only be dead-lettered again.
    """
    selection = _selection(since, ce_type, letter_ids)
    letters = _read(kafka, prefix, selection)
    skipped = [d.id for d in letters if not d.replayable]
    if dry_run:
        sent = [d.id for d in letters if d.replayable]
    else:
        try:
            sent = asyncio.run(replay(_bootstrap(kafka), Topics(prefix), letters))
        except DeadLetterError as exc:
            _fail(str(exc))
    if as_json:
        typer.echo(json.dumps({"replayed": sent, "skipped": skipped, "dry_run": dry_run}))
        return
    verb = "would replay" if dry_run else "replayed"
    typer.echo(f"{verb} {len(sent)} dead letter(s); skipped {len(skipped)} undecodable")
