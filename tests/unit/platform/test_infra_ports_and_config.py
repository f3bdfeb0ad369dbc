"""Pure helpers of bookify_platform.infra: ports, process identity, config rendering, pins."""

from __future__ import annotations

import os
import socket
import string
from pathlib import Path

import pytest

from bookify_platform.infra import PortInUseError, free_ports, port_is_free, repo_root
from bookify_platform.infra.errors import InstallError
from bookify_platform.infra.ferretdb import FERRETDB_MODULE
from bookify_platform.infra.gobuild import SourcePatch, required_version
from bookify_platform.infra.kafka import kafka_version, new_cluster_id, render_server_properties
from bookify_platform.infra.local import LocalInfra
from bookify_platform.infra.paths import default_run_dir
from bookify_platform.infra.process import ensure_port_free, is_ours


def test_taken_port_error_names_the_flag_and_env_var_that_override_it():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        assert not port_is_free(port)
        with pytest.raises(PortInUseError) as excinfo:
            ensure_port_free(port, flag="--kafka-port", env="BOOKIFY_KAFKA_PORT")

    assert str(excinfo.value) == (
        f"port {port} is taken (override with --kafka-port or BOOKIFY_KAFKA_PORT)"
    )


def test_free_ports_are_distinct_and_bindable():
    ports = free_ports(3)

    assert len(set(ports)) == 3
    assert all(port_is_free(port) for port in ports)


def test_a_pid_is_ours_only_while_its_command_line_contains_the_marker():
    own_argv = Path(f"/proc/{os.getpid()}/cmdline").read_bytes().split(b"\0")[0].decode()

    assert is_ours(os.getpid(), own_argv)
    assert not is_ours(os.getpid(), "/nonexistent/run/kafka/server.properties")


def test_server_properties_bind_loopback_on_the_chosen_ports(tmp_path):
    text = render_server_properties(port=19092, controller_port=19093, data_dir=tmp_path)
    props = dict(
        line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#")
    )

    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["log.dirs"] == str(tmp_path)
    assert props["transaction.state.log.replication.factor"] == "1"


def test_cluster_id_is_kafkas_22_character_url_safe_uuid():
    cluster_id = new_cluster_id()

    assert len(cluster_id) == 22
    assert set(cluster_id) <= set(string.ascii_letters + string.digits + "-_")


def test_cluster_id_never_starts_with_a_dash_that_storage_tool_would_read_as_an_option():
    # 1 in 64 random ids starts with "-"; 2000 draws miss that with probability ~1e-14.
    assert not any(new_cluster_id().startswith("-") for _ in range(2000))


def test_versions_are_read_from_the_pinned_build_files():
    root = repo_root()

    assert kafka_version(root / "infra" / "kafka" / "pom.xml") == "4.1.1"
    assert required_version(root / "infra" / "ferretdb" / "go.mod", FERRETDB_MODULE) == "v1.24.2"


def test_a_source_patch_replaces_exactly_what_it_expects():
    patch = SourcePatch("example.com/m", "a.go", old="x == 1", new="x > 0", why="demo", count=2)
    assert patch.apply("if x == 1 {}\nif x == 1 {}\n") == "if x > 0 {}\nif x > 0 {}\n"


@pytest.mark.parametrize("source", ["if x == 2 {}", "if x == 1 {}"], ids=["gone", "once"])
def test_a_source_patch_that_no_longer_applies_is_a_clear_install_error(source):
    patch = SourcePatch("example.com/m", "a.go", old="x == 1", new="x > 0", why="demo", count=2)
    with pytest.raises(InstallError, match="no longer applies to this version"):
        patch.apply(source)


def test_repo_root_is_the_directory_with_the_uv_workspace(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.uv.workspace]\nmembers = ["cli"]\n')
    member = tmp_path / "cli" / "src"
    member.mkdir(parents=True)
    (tmp_path / "cli" / "pyproject.toml").write_text('[project]\nname = "cli"\n')

    assert repo_root(member) == tmp_path


def test_the_run_dir_variable_is_the_default_of_commands_without_run_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`bookify up` and `bookify infra` read BOOKIFY_RUN_DIR through --run-dir; the benchmarks
    and `bookify dlq`, which have no such option, found no Kafka in a stack started so."""
    monkeypatch.delenv("BOOKIFY_RUN_DIR", raising=False)
    assert default_run_dir(tmp_path) == tmp_path / ".cache" / "run"
    monkeypatch.setenv("BOOKIFY_RUN_DIR", str(tmp_path / "elsewhere"))
    assert default_run_dir(tmp_path) == (tmp_path / "elsewhere").resolve()
    assert LocalInfra().run_dir == (tmp_path / "elsewhere").resolve()
