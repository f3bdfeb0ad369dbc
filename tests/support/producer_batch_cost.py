"""What a producer batch size costs for a hot resource: records/s and CPU per record, with
aiokafka's default 16 KiB batches and with shared.kafka.PRODUCER_BATCH_BYTES. A measurement
behind that setting, not a test.

    uv run python -m tests.support.producer_batch_cost            # its own Kafka
    uv run python -m tests.support.producer_batch_cost --kafka 127.0.0.1:9092

A hot resource's records all go to one partition, so the topic has one. Each run sends
``--records`` records of 600 bytes (about a command's size) as the services do (acks=all,
idempotent), with ``--in-flight`` sends awaited at once, as a busy gateway has.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bookify_platform.infra import LocalInfra, free_ports
from shared.kafka import PRODUCER_BATCH_BYTES

AIOKAFKA_DEFAULT_BATCH_BYTES = 16 * 1024
RECORD = b"x" * 600


async def one_size(bootstrap: str, topic: str, batch_bytes: int, args: argparse.Namespace) -> str:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, max_batch_size=batch_bytes
    )
    await producer.start()
    try:
        await producer.send_and_wait(topic, RECORD, key=b"hot")  # connected before timing
        gate = asyncio.Semaphore(args.in_flight)

        async def send() -> None:
            async with gate:
                await producer.send_and_wait(topic, RECORD, key=b"hot")

        started, cpu_started = time.perf_counter(), time.process_time()
        await asyncio.gather(*(send() for _ in range(args.records)))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    finally:
        await producer.stop()
    return (
        f"batch {batch_bytes // 1024:>4} KiB: {args.records / elapsed:8,.0f} records/s, "
        f"{cpu / args.records * 1e6:4.0f} us of CPU per record"
    )


async def run(bootstrap: str, args: argparse.Namespace) -> None:
    topic = f"producer-batch-cost-{uuid.uuid4().hex[:6]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
        for batch_bytes in (AIOKAFKA_DEFAULT_BATCH_BYTES, PRODUCER_BATCH_BYTES):
            print(await one_size(bootstrap, topic, batch_bytes, args), flush=True)
    finally:
        await admin.delete_topics([topic])
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kafka", help="bootstrap servers (default: start a Kafka)")
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--in-flight", type=int, default=256)
    args = parser.parse_args()
    if args.kafka:
        asyncio.run(run(args.kafka, args))
        return
    kafka_port, controller_port = free_ports(2)
    with tempfile.TemporaryDirectory() as run_dir, LocalInfra(
        Path(run_dir), kafka_port=kafka_port, controller_port=controller_port,
        services=("kafka",), attached=True,
    ) as infra:  # fmt: skip
        asyncio.run(run(infra.start().kafka_bootstrap, args))


if __name__ == "__main__":
    main()
