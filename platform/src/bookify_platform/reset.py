"""`bookify reset`: the dev store back to empty, so load runs can start from the same data.

It drops the services' databases (:func:`bookify_platform.services.store_databases`) and deletes the
platform's topics (``shared.settings.Topics``); `bookify up` creates the topics and indexes
again when it starts. Only while no service runs: a booking worker remembers each
resource's newest ledger entry, and a ledger dropped under it would be appended to from a
head that no longer exists. Anything but the local harness (`bookify infra up` / `bookify
up` on this run dir) needs ``--yes`` with its URL named: dropping someone's store by a
default must not happen.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from pymongo import AsyncMongoClient

from bookify_platform.services import store_databases
from shared.settings import Topics
from shared.urls import redact_url


class ResetRefusedError(Exception):
    """A reset that must not go ahead; the message names the fix."""


@dataclass(frozen=True)
class LocalHarness:
    """What this run dir's `bookify infra up` / `bookify up` runs ("" when not running)."""

    mongo_uri: str
    kafka_bootstrap: str
    services_running: bool


@dataclass(frozen=True)
class ResetTarget:
    """Where to reset: an empty URL leaves that store alone."""

    mongo_uri: str
    kafka_bootstrap: str
    databases: tuple[str, ...]
    topics: tuple[str, ...]
    local: bool


def choose_target(
    local: LocalHarness,
    *,
    mongo: str | None = None,
    kafka: str | None = None,
    yes: bool = False,
    topic_prefix: str = "",
    db_prefix: str = "",
) -> ResetTarget:
    """The local harness by default; an explicit URL only with ``yes``. Raises
    :class:`ResetRefusedError` saying why not and what to do instead."""
    named = {"--mongo": mongo, "--kafka": kafka}
    foreign = [
        f"{flag} {redact_url(url)}"
        for flag, url in named.items()
        if url and url not in (local.mongo_uri, local.kafka_bootstrap)
    ]
    if foreign and not yes:
        raise ResetRefusedError(
            f"{' and '.join(foreign)} is not the local harness: add --yes to drop Bookify's "
            "databases and topics there"
        )
    if mongo is None and kafka is None:
        if not (local.mongo_uri or local.kafka_bootstrap):
            raise ResetRefusedError(
                "no local Kafka or FerretDB is running (`bookify infra up` or `bookify up` "
                "starts them); to reset another store, name it with --mongo/--kafka and --yes"
            )
        mongo, kafka = local.mongo_uri, local.kafka_bootstrap
    is_local = not foreign
    if is_local and local.services_running:
        raise ResetRefusedError(
            "bookify up is running its services on this store: stop it (Ctrl-C in its "
            "terminal), run `bookify reset`, then `bookify up` again (it recreates the topics "
            "and indexes); a worker's cached ledger heads would outlive a dropped ledger"
        )
    return ResetTarget(
        mongo_uri=mongo or "",
        kafka_bootstrap=kafka or "",
        databases=store_databases(db_prefix),
        topics=Topics(topic_prefix).all(),
        local=is_local,
    )


@dataclass(frozen=True)
class ResetResult:
    target: ResetTarget
    databases_dropped: tuple[str, ...]
    topics_deleted: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "local": self.target.local,
            "mongo": redact_url(self.target.mongo_uri) or None,
            "kafka": self.target.kafka_bootstrap or None,
            "databases_dropped": list(self.databases_dropped),
            "topics_deleted": list(self.topics_deleted),
        }


async def drop_databases(mongo_uri: str, names: tuple[str, ...]) -> tuple[str, ...]:
    """Drop those of ``names`` that exist; the ones dropped."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        mongo_uri, serverSelectionTimeoutMS=5000
    )
    try:
        present = set(await client.list_database_names())
        dropped = tuple(name for name in names if name in present)
        for name in dropped:
            await client.drop_database(name)
        return dropped
    finally:
        await client.close()


async def delete_topics(
    bootstrap: str, names: tuple[str, ...], *, within: float = 30.0
) -> tuple[str, ...]:
    """Delete those of ``names`` that exist and wait until the broker lists none of them
    (a topic still being deleted would stop `bookify up` from creating it anew)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        present = set(await admin.list_topics())
        deleted = tuple(name for name in names if name in present)
        if not deleted:
            return ()
        await admin.delete_topics(list(deleted))
        deadline = time.monotonic() + within
        while set(deleted) & set(await admin.list_topics()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"Kafka still lists {sorted(deleted)} {within:g} s after delete")
            await asyncio.sleep(0.2)
        return deleted
    finally:
        await admin.close()


async def reset_store(target: ResetTarget) -> ResetResult:
    databases = await drop_databases(target.mongo_uri, target.databases) if target.mongo_uri else ()
    topics = (
        await delete_topics(target.kafka_bootstrap, target.topics) if target.kafka_bootstrap else ()
    )
    return ResetResult(target, databases, topics)
