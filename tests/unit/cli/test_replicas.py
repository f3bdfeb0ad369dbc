"""`bookify up --replicas`: names, ports and environment of each replica, and what is refused.

Nothing is started here: Platform only builds its ServiceProcess objects until start().
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bookify.cli import app
from bookify_platform.infra.state import ProcessRecord
from bookify_platform.services import (
    DEFAULT_PORTS,
    Platform,
    PlatformConfig,
    PlatformState,
    ServiceName,
    lay_out_ports,
    parse_replicas,
    service_of,
)
from booking.config import BookingSettings

KAFKA, MONGO = "127.0.0.1:9092", "mongodb://127.0.0.1:27017/"
THREE_BY_TWO: dict[ServiceName, int] = {"gateway": 2, "booking": 2, "consumer": 2}


def test_the_replicas_option_reads_service_equals_count() -> None:
    assert parse_replicas("gateway=2,booking=2,consumer=2") == THREE_BY_TWO
    assert parse_replicas(" booking=3 ") == {"booking": 3}
    assert parse_replicas("") == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("gateway", "expected <service>=<count>"),
        ("gatway=2", "expected <service>=<count>"),
        ("gateway-1=2", "expected <service>=<count>"),
        ("gateway=0", "from 1 to"),
        ("gateway=two", "from 1 to"),
        ("gateway=99", "from 1 to"),
    ],
)
def test_a_wrong_replicas_option_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_replicas(text)


def test_replicas_take_consecutive_ports_and_push_the_next_service_up() -> None:
    assert lay_out_ports(DEFAULT_PORTS, {}) == DEFAULT_PORTS  # one each: as always
    assert lay_out_ports(DEFAULT_PORTS, THREE_BY_TWO) == {
        "gateway": 8000,
        "booking": 8002,
        "consumer": 8004,
    }
    apart: dict[ServiceName, int] = {"gateway": 8000, "booking": 8100, "consumer": 8200}
    assert lay_out_ports(apart, THREE_BY_TWO) == apart


def test_replicas_that_would_share_a_port_are_refused() -> None:
    with pytest.raises(ValueError, match=r"(booking|gateway-1) .*both listen on port 8001"):
        PlatformConfig(KAFKA, MONGO, replicas={"gateway": 2})


def test_each_replica_gets_its_own_port_and_log_under_its_instance_name(tmp_path: Path) -> None:
    config = PlatformConfig(
        KAFKA, MONGO, ports=lay_out_ports(DEFAULT_PORTS, THREE_BY_TWO), replicas=THREE_BY_TWO
    )
    platform = Platform(config, tmp_path)

    assert list(platform.services) == [
        "booking", "booking-1", "consumer", "consumer-1", "gateway", "gateway-1",
    ]  # fmt: skip
    assert platform.urls("gateway") == ["http://127.0.0.1:8000", "http://127.0.0.1:8001"]
    assert platform["gateway"] is platform.replicas("gateway")[0]
    second = platform["booking-1"]
    assert (second.service, second.replica, second.port) == ("booking", 1, 8003)
    assert second.log_path == tmp_path / "booking-1.log"
    assert config.env_for("booking", 1)["BOOKIFY_BOOKING_PORT"] == "8003"


def test_replicas_of_a_service_share_its_consumer_group(monkeypatch: pytest.MonkeyPatch) -> None:
    replicas: dict[ServiceName, int] = {"booking": 2}
    config = PlatformConfig(
        KAFKA, MONGO, ports=lay_out_ports(DEFAULT_PORTS, replicas), topic_prefix="r.",
        replicas=replicas,
    )  # fmt: skip
    groups = set()
    for replica in range(2):
        for var, value in config.env_for("booking", replica).items():
            monkeypatch.setenv(var, value)
        groups.add(BookingSettings().group)
    assert groups == {"r.bookify-booking"}  # Kafka splits the partitions between them


def test_the_gateways_get_the_platforms_rate_limit_storage() -> None:
    config = PlatformConfig(KAFKA, MONGO, rate_limit_storage="redis://127.0.0.1:6399/0")
    assert config.env_for("gateway", 1)["BOOKIFY_GATEWAY_RATE_LIMIT_STORAGE"] == (
        "redis://127.0.0.1:6399/0"
    )
    assert not any("RATE_LIMIT" in var for var in config.env_for("booking"))
    assert "BOOKIFY_GATEWAY_RATE_LIMIT_STORAGE" not in PlatformConfig(KAFKA, MONGO).env_for(
        "gateway"
    )


def test_instance_names_map_back_to_their_service() -> None:
    assert service_of("gateway") == "gateway"
    assert service_of("consumer-12") == "consumer"
    assert service_of("supervisor") is None
    assert service_of("gateway-x") is None


def up(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["up", *args])
    return result.exit_code, result.output


def test_up_refuses_a_memory_limit_with_two_gateways_before_starting_anything() -> None:
    code, out = up("--replicas", "gateway=2", "--rate-limit-storage", "memory://")
    assert code == 2
    assert "a limit of its own" in out
    assert "BOOKIFY_GATEWAY_RATE_LIMIT_STORAGE" in out


def test_up_refuses_a_wrong_replicas_option() -> None:
    code, out = up("--replicas", "gateway=0")
    assert code == 2
    assert "from 1 to" in out


def test_status_lists_every_recorded_replica_in_order(tmp_path: Path) -> None:
    state = PlatformState(tmp_path)
    state.record_supervisor(tmp_path / "logs")  # this process: a live `up`
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    for name, port in [("gateway-1", 8001), ("booking", 8002), ("gateway", 8000)]:
        record = ProcessRecord(
            pid=int(gone.stdout), marker=name, log=f"{name}.log", endpoint=f"http://x:{port}"
        )
        state.file.record(name, record)

    result = CliRunner().invoke(app, ["status", "--json", "--run-dir", str(tmp_path)])

    body = json.loads(result.stdout)
    assert list(body["services"]) == ["booking", "consumer", "gateway", "gateway-1"]
    assert body["services"]["gateway-1"]["url"] == "http://x:8001"
    assert body["services"]["consumer"]["pid"] is None  # not recorded: shown, stopped
    table = CliRunner().invoke(app, ["status", "--run-dir", str(tmp_path)]).stdout
    assert "gateway-1" in table
