"""What a PyMongo client sends, to prove on the real server that reads are by ``_id``.

FerretDB v1 serves only ``{_id: value}`` from an index (DESIGN §4): a listener on a client of
the real server records the filters, so a test's proof does not depend on the data's size.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.database import AsyncDatabase

from shared.mongo import Document


@dataclass
class Filters(monitoring.CommandListener):
    """The filter of every ``find`` and of every ``update`` statement sent while
    ``recording``: (command, collection, filter)."""

    recording: bool = True
    sent: list[tuple[str, str, Document]] = field(default_factory=list)

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if not self.recording:
            return
        command = event.command
        if event.command_name == "find":
            self.sent.append(("find", command["find"], dict(command.get("filter", {}))))
        elif event.command_name == "update":
            for statement in command["updates"]:
                self.sent.append(("update", command["update"], dict(statement["q"])))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def scans(self) -> list[tuple[str, str, Document]]:
        """What FerretDB answers by a scan: a read that is not one ``_id`` equal to one
        value, an update whose filter has no such ``_id`` (guards beside it are fine)."""
        return [
            (command, collection, query)
            for command, collection, query in self.sent
            if "_id" not in query
            or isinstance(query["_id"], dict)
            or (command == "find" and set(query) != {"_id"})
        ]


@asynccontextmanager
async def monitored(
    uri: str, db_name: str, filters: Filters
) -> AsyncIterator[AsyncDatabase[Document]]:
    """Database ``db_name`` through a client of its own that ``filters`` listens to."""
    client: AsyncMongoClient[Document] = AsyncMongoClient(
        uri, tz_aware=True, uuidRepresentation="standard", event_listeners=[filters]
    )
    try:
        yield client[db_name]
    finally:
        await client.close()
