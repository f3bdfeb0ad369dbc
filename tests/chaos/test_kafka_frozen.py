"""Kafka frozen (SIGSTOP) for 10 s under booking traffic, then thawed (SIGCONT); and what
each service's /readyz says while it is frozen.

A frozen broker is worse than a dead one: connections stay open and nothing answers, so
every client waits for its own timeout. Gateways answer 503 meanwhile; once Kafka thaws,
every accepted booking is decided, seats are conserved and nothing is booked twice.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable

import httpx
import pytest

from loadtests.chaos.nemesis import landed, process_state
from tests.chaos.traffic import ChaosRun, OwnStack, Report
from tests.stack import Api

pytestmark = pytest.mark.chaos

FROZEN_SECONDS = 10.0


async def test_a_frozen_kafka_loses_and_doubles_nothing(
    own_stack: OwnStack, report: Report
) -> None:
    kafka = own_stack.infra.process("kafka")
    async with ChaosRun(own_stack.target, name="kafka-frozen", capacity=300) as run:
        run.start(seconds=18)
        await run.flowing()
        kafka.send_signal(signal.SIGSTOP)
        try:
            run.fault_began()
            # The fault landed: the kernel says the JVM is stopped, not merely slow.
            await landed(kafka.pid, lambda s: s == "T", "stopped")
            await asyncio.sleep(FROZEN_SECONDS)  # the outage itself, proven above and below
            assert process_state(kafka.pid) == "T", "Kafka thawed before SIGCONT"
        finally:
            kafka.send_signal(signal.SIGCONT)
        await landed(kafka.pid, lambda s: s not in ("T", ""), "running again")
        run.fault_ended()
        await run.finish(report)


WITHIN_S = 60.0  # a bound on each wait, so a wrong readiness fails instead of hanging


async def test_a_frozen_kafka_leaves_the_gateway_ready_answering_for_itself(
    own_stack: OwnStack,
) -> None:
    """The gateway's /readyz stays 200 through a Kafka outage (its Kafka check reads false)
    and its own 503 says what became of a write, which a load balancer's bare 503 cannot;
    booking's and the consumer's /readyz go 503, and every check heals after the thaw."""
    kafka = own_stack.infra.process("kafka")
    urls = {name: own_stack.platform[name].url for name in ("gateway", "booking", "consumer")}
    async with httpx.AsyncClient(timeout=30) as http:
        api = Api(httpx.AsyncClient(base_url=urls["gateway"], timeout=30))
        resource = await api.create_resource(capacity=10, name="frozen readiness")
        await api.http.aclose()
        gateway_answers: Counter[int] = Counter()

        async def readiness() -> dict[str, httpx.Response]:
            got = await asyncio.gather(*(http.get(f"{u}/readyz") for u in urls.values()))
            answers = dict(zip(urls, got, strict=True))
            gateway_answers[answers["gateway"].status_code] += 1
            return answers

        async def until(what: str, condition: Callable[[dict[str, httpx.Response]], bool]) -> None:
            deadline = time.monotonic() + WITHIN_S
            while not condition(await readiness()):
                assert time.monotonic() < deadline, f"not within {WITHIN_S:.0f} s: {what}"
                await asyncio.sleep(0.2)

        assert {n: r.status_code for n, r in (await readiness()).items()} == dict.fromkeys(
            urls, 200
        )
        kafka.send_signal(signal.SIGSTOP)
        try:
            await landed(kafka.pid, lambda s: s == "T", "stopped")
            await until(
                "booking and consumer unready, the gateway's Kafka check false",
                lambda r: (
                    r["booking"].status_code == r["consumer"].status_code == 503
                    and r["gateway"].json()["checks"]["kafka"] is False
                ),
            )
            frozen = await readiness()
            write = await http.post(
                f"{urls['gateway']}/v1/bookings",
                json={"resource_id": resource, "quantity": 1},
                headers={**Api.auth("frozen"), "Idempotency-Key": str(uuid.uuid4())},
            )
            assert process_state(kafka.pid) == "T", "Kafka thawed before SIGCONT"
        finally:
            kafka.send_signal(signal.SIGCONT)
        await landed(kafka.pid, lambda s: s not in ("T", ""), "running again")
        await until(
            "every service ready again, Kafka's checks true",
            lambda r: (
                all(a.status_code == 200 for a in r.values())
                and r["gateway"].json()["checks"]["kafka"] is True
            ),
        )

    print(f"gateway /readyz through the freeze: {dict(gateway_answers)}")
    assert gateway_answers.keys() == {200}, gateway_answers
    assert frozen["gateway"].json() == {
        "status": "ready",
        "checks": {"mongodb": True, "kafka": False},
    }
    for name in ("booking", "consumer"):
        assert frozen[name].json()["checks"]["kafka"] is False, frozen[name].text
    assert write.status_code == 503, write.text
    assert write.json()["outcome"] in ("unknown", "not_accepted"), write.text
