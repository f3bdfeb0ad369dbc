"""bookify_platform.infra.ready: a client that cannot get through says why, from its own process."""

from __future__ import annotations

import pytest

from bookify_platform.infra.process import free_port
from bookify_platform.infra.ready import client_error, main, mongo_error

# Nothing listens on a free port: every connect is refused at once.


def test_a_kafka_client_that_gets_no_answer_says_why_from_its_own_process() -> None:
    error = client_error("kafka", f"127.0.0.1:{free_port()}", 1.0)
    assert error is not None
    assert "KafkaConnectionError" in error or "Unable to bootstrap" in error


def test_a_mongo_client_that_gets_no_answer_says_why() -> None:
    error = mongo_error(f"mongodb://127.0.0.1:{free_port()}/", 1.0)
    assert error is not None
    assert "ServerSelectionTimeoutError" in error


def test_an_unknown_client_is_an_error_naming_the_known_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["redis", "127.0.0.1:1", "1"]) == 1
    assert "kafka or mongo" in capsys.readouterr().out
