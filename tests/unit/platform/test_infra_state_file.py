"""infra.json parsing: what `bookify infra down/status` trust to find our processes, and what
starts a killed one again."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from bookify_platform.infra import LocalInfra, StateFileError
from bookify_platform.infra.kafka import LISTENER_FILE, kafka_home
from bookify_platform.infra.state import InfraState, ProcessRecord, StateFile

KAFKA = ProcessRecord(
    pid=4242,
    marker="/run/kafka/server.properties",
    log="/run/kafka/kafka.log",
    endpoint="127.0.0.1:9092",
    ports={"kafka": 9092, "controller": 9093},
    started_at=1.5,
)
MONGO = ProcessRecord(
    pid=4243, marker="/run/ferretdb/data", log="/run/ferretdb/ferretdb.log", endpoint="m://"
)


def test_state_survives_a_round_trip_through_json():
    state = InfraState({"kafka": KAFKA, "mongo": MONGO})

    assert InfraState.from_json(state.to_json()) == state


def test_missing_state_file_means_nothing_was_started(tmp_path):
    assert StateFile(tmp_path).load() == InfraState()


def test_each_recorded_process_is_kept_and_forgetting_the_last_removes_the_file(tmp_path):
    state_file = StateFile(tmp_path)

    state_file.record("kafka", KAFKA)
    state_file.record("mongo", MONGO)
    assert set(state_file.load().processes) == {"kafka", "mongo"}

    state_file.forget("kafka")
    assert state_file.load().processes == {"mongo": MONGO}
    state_file.forget("mongo")
    assert not state_file.path.exists()


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        json.dumps({"schema": 99, "processes": {}}),
        json.dumps({"schema": 1, "processes": {"kafka": {"pid": "12", "marker": "m"}}}),
        json.dumps({"schema": 1, "processes": {"kafka": {"pid": True, "marker": "m"}}}),
    ],
    ids=["not-json", "unknown-schema", "pid-as-string", "pid-as-bool"],
)
def test_corrupt_state_file_is_reported_with_its_path_not_trusted(tmp_path, text):
    state_file = StateFile(tmp_path)
    state_file.path.write_text(text)

    with pytest.raises(StateFileError, match=str(state_file.path)):
        state_file.load()


def test_the_infra_as_recorded_is_the_recorded_servers_on_their_ports_and_listener(tmp_path):
    """What `bookify chaos` starts a killed server again with: its default ports brought a
    Kafka of port 19092 back on 9092, where no client looked for it."""
    state_file = StateFile(tmp_path)
    state_file.record("kafka", replace(KAFKA, ports={"kafka": 19092, "controller": 19093}))
    state_file.record("redis", replace(MONGO, ports={"redis": 16379}))

    infra = LocalInfra.as_recorded(tmp_path, progress=lambda _: None)
    assert (infra.kafka.port, infra.kafka.controller_port) == (19092, 19093)
    assert infra.kafka.secure is None
    assert set(infra.status().services) == {"kafka", "redis"}  # none of the unrecorded

    kafka_home(tmp_path).mkdir()
    (kafka_home(tmp_path) / LISTENER_FILE).write_text("SASL_SSL\n")
    assert LocalInfra.as_recorded(tmp_path, progress=lambda _: None).kafka.secure is not None
