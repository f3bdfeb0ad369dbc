"""Whether a client gets through, in a process of its own (``python -m`` this module).

``kafka <bootstrap> <seconds>``: an aiokafka admin fetches the cluster's metadata, logging in
as the ``BOOKIFY_KAFKA_*`` variables read as JSON from stdin say (none: PLAINTEXT).
``mongo <uri> <seconds>``: PyMongo's ``ping``.
Exit 0 once it worked, else 1 with the last error on stdout. A child process, so aiokafka's,
FastStream's and PyMongo's modules never load into the process that started the servers:
`bookify up` supervises for hours and keeps whatever it imported (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping


def client_error(
    kind: str, target: str, timeout: float, login: Mapping[str, str] | None = None
) -> str | None:
    """None once a ``kind`` client reached ``target`` within ``timeout``, else the last error.

    ``login``: Kafka's ``BOOKIFY_KAFKA_*`` variables (``KafkaSecurity.environment()``).
    """
    proc = subprocess.run(
        [sys.executable, "-m", __name__, kind, target, str(timeout)],
        input=json.dumps(dict(login or {})),
        capture_output=True,
        text=True,
        timeout=timeout + 60,  # the child's own start-up (its imports) comes on top
        check=False,
    )
    if proc.returncode == 0:
        return None
    return proc.stdout.strip() or proc.stderr.strip()[-2000:] or f"exit {proc.returncode}"


async def kafka_error(bootstrap: str, within: float, login: Mapping[str, str]) -> str | None:
    from aiokafka.admin import AIOKafkaAdminClient

    from shared.kafka_security import ENV_PREFIX, KafkaSecurity, kafka_client_options

    # The login alone: not whatever BOOKIFY_KAFKA_* this process inherited.
    for name in [name for name in os.environ if name.startswith(ENV_PREFIX)]:
        del os.environ[name]
    os.environ.update(login)
    options = kafka_client_options(bootstrap, KafkaSecurity())
    error: str | None = "timed out"
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        admin = AIOKafkaAdminClient(**options, request_timeout_ms=5000)
        try:
            await admin.start()
            await admin.describe_cluster()
        except Exception as exc:  # any failure means "not yet"
            error = f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(0.5)
        else:
            return None
        finally:
            await admin.close()
    return error


def mongo_error(uri: str, timeout: float) -> str | None:
    from pymongo import MongoClient
    from pymongo.errors import PyMongoError

    error: str | None = "timed out"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        client: MongoClient[dict[str, object]] = MongoClient(uri, serverSelectionTimeoutMS=2000)
        try:
            client.admin.command("ping")
        except PyMongoError as exc:
            error = f"{type(exc).__name__}: {exc}"
            time.sleep(0.3)
        else:
            return None
        finally:
            client.close()
    return error


def main(argv: list[str]) -> int:
    kind, target, timeout = argv
    if kind == "kafka":
        error = asyncio.run(kafka_error(target, float(timeout), json.loads(sys.stdin.read())))
    elif kind == "mongo":
        error = mongo_error(target, float(timeout))
    else:
        error = f"unknown client {kind!r}: kafka or mongo"
    if error is None:
        return 0
    print(error)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
