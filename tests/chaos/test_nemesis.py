"""The nemesis (``bookify chaos``'s engine) on a stack of this module's own: Kafka, FerretDB,
Redis and the three services, each frozen, killed and restarted at seeded random times under
the crowd's mixed traffic, then the offline checker on the history and the stores.

A few short seeds here; ``bookify chaos --seeds 10 --duration 120`` against ``bookify up`` is
the soak (README). A seed that fails names the broken invariant and its first violation, and
replays with the same schedule.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bookify_platform.infra import LocalInfra, free_ports
from bookify_platform.services import Platform
from loadtests.chaos.nemesis import Plan, Target, died, run_nemesis, table
from loadtests.chaos.schedule import INFRA, schedule
from tests.chaos.traffic import service_logs, warnings_in
from tests.conftest import KafkaServer, MongoServer, RedisServer
from tests.otlp import OtlpReceiver
from tests.stack import new_stack_config

pytestmark = pytest.mark.chaos

SEEDS = (1, 2, 3)
FAULT_SECONDS = 30.0


class StackProcesses:
    """This module's servers and services as the nemesis reaches them. Restarts are spawned
    from the event loop's thread: attached processes die with the thread that spawned them."""

    def __init__(self, infra: LocalInfra, platform: Platform) -> None:
        self.infra = infra
        self.platform = platform

    def targets(self) -> list[str]:
        return [*INFRA, *self.platform.services]

    def pid(self, name: str) -> int | None:
        if name in INFRA:
            return self.infra.process(name).pid
        return self.platform[name].pid

    async def start_again(self, name: str) -> None:
        if name in INFRA:
            await asyncio.to_thread(self.infra.process(name).wait, 10)
            self.infra.restart(name)
            await asyncio.to_thread(self.infra.wait_ready, name)
            return
        service = self.platform[name]
        assert service.proc is not None
        await asyncio.to_thread(service.proc.wait, 10)
        service.restart("killed by the nemesis")
        await asyncio.to_thread(service.wait_ready, 60)

    async def restart_infra(self) -> None:
        for name in INFRA:
            self.infra.process(name).kill()
        for name in INFRA:
            await died(self.infra.process(name).pid)
        for name in INFRA:
            await self.start_again(name)


@dataclass(frozen=True)
class NemesisStack:
    processes: StackProcesses
    target: Target
    platform: Platform


@pytest.fixture(scope="module")
def nemesis_stack(
    tmp_path_factory: pytest.TempPathFactory, otlp: OtlpReceiver
) -> Iterator[NemesisStack]:
    kafka_port, controller_port, mongo_port, redis_port = free_ports(4)
    run_dir = tmp_path_factory.mktemp("nemesis-stack")
    infra = LocalInfra(
        run_dir / "infra",
        kafka_port=kafka_port,
        controller_port=controller_port,
        mongo_port=mongo_port,
        redis_port=redis_port,
        attached=True,  # nothing outlives pytest
    )
    with infra:
        endpoints = infra.start()
        config = new_stack_config(
            KafkaServer(endpoints.kafka_bootstrap),
            MongoServer(endpoints.mongo_uri),
            otlp,
            redis=RedisServer(endpoints.redis_url),
        )
        with Platform(config, run_dir / "services") as platform:
            yield NemesisStack(
                StackProcesses(infra, platform),
                Target(platform["gateway"].url, endpoints.mongo_uri, config.db_prefix),
                platform,
            )


@pytest.mark.parametrize("seed", SEEDS)
async def test_every_invariant_holds_under_a_seeded_schedule_of_overlapping_faults(
    nemesis_stack: NemesisStack, seed: int, tmp_path: Path
) -> None:
    processes = nemesis_stack.processes
    plan = Plan(
        seed=seed,
        faults=schedule(seed, processes.targets(), seconds=FAULT_SECONDS),
        fault_seconds=FAULT_SECONDS,
        rate=30.0,
        calm_before=3.0,
        calm_after=5.0,
        heal_within=90.0,
    )
    history = tmp_path / f"history-seed{seed}.jsonl"

    outcome = await run_nemesis(plan, processes, nemesis_stack.target, history_path=history)

    print(f"\n{table(outcome)}\n[chaos] {json.dumps(outcome.as_dict())}")
    # Every fault landed (its pid stopped or died, proven through /proc) before its mark.
    marks = [json.loads(line) for line in history.read_text().splitlines()]
    landed_faults = [m for m in marks if m.get("mark") == "fault"]
    assert len(landed_faults) == len(plan.faults), [m for m in marks if m["type"] == "mark"]
    assert outcome.accepted > 100  # the traffic flowed: there was something to check
    broken = [f"{r.invariant}: {r.first}" for r in outcome.results if not r.ok]
    logs = [said for log in service_logs(nemesis_stack.platform) if (said := warnings_in(log))]
    assert not broken, "\n".join([*broken, *logs])
    assert outcome.heal_seconds is not None
