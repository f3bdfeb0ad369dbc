"""The secured local broker's pieces that need no broker: its config, users, ACLs, TLS files."""

from __future__ import annotations

import ipaddress
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509

from bookify_platform.infra.errors import StartupError
from bookify_platform.infra.kafka import LocalKafka, render_server_properties
from bookify_platform.infra.kafka_secure import (
    SecureKafka,
    bookify_acls,
    make_tls_files,
    scram_arguments,
    server_properties,
)
from shared.settings import Topics


def _properties(text: str) -> dict[str, str]:
    return dict(
        line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#")
    )


def test_the_secure_broker_has_no_plaintext_client_listener_and_denies_by_default(
    tmp_path: Path,
) -> None:
    secure = SecureKafka()
    tls = make_tls_files(tmp_path / "tls")
    listeners = server_properties(secure, tls, port=19092, controller_port=19093)
    props = _properties(
        render_server_properties(
            port=19092, controller_port=19093, data_dir=tmp_path, listeners=listeners
        )
    )

    assert props["listeners"] == "SASL_SSL://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "SASL_SSL://127.0.0.1:19092"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["authorizer.class.name"].endswith("StandardAuthorizer")
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert secure.admin_password in props["listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"]


def test_every_user_is_stored_at_format_time_and_kept_for_the_run_dir(tmp_path: Path) -> None:
    path = tmp_path / "kafka" / "users.json"
    first = SecureKafka.kept_in(path)
    again = SecureKafka.kept_in(path)

    assert again.users == first.users
    assert set(first.users) == {"admin", "gateway", "booking", "consumer"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    arguments = list(scram_arguments(first))
    assert arguments[0::2] == ["--add-scram"] * 4
    assert f"SCRAM-SHA-512=[name=gateway,password={first.users['gateway']}]" in arguments


def test_each_service_may_write_only_where_it_must() -> None:
    topics = Topics("p.")
    acls = bookify_acls(topics)
    writes = {(a.principal, a.name) for a in acls if a.operation == "WRITE"}
    reads = {(a.principal, a.resource_type, a.name) for a in acls if a.operation == "READ"}

    assert writes == {
        ("User:gateway", "p.bookify.commands"),
        ("User:booking", "p.bookify.events"),
        ("User:booking", "p.bookify.dlq"),
        ("User:consumer", "p.bookify.dlq"),
    }
    assert reads == {
        ("User:booking", "TOPIC", "p.bookify.commands"),
        ("User:booking", "GROUP", "p.bookify-booking"),
        ("User:consumer", "TOPIC", "p.bookify.events"),
        ("User:consumer", "GROUP", "p.bookify-consumer"),
    }
    assert not [a for a in acls if a.operation in ("CREATE", "ALL", "ALTER")]


def test_the_server_certificate_is_the_cas_for_127_0_0_1(tmp_path: Path) -> None:
    tls = make_tls_files(tmp_path)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tls.server_pem)  # the key and chain Kafka reads as a PEM keystore
    ca = x509.load_pem_x509_certificate(tls.ca_cert.read_bytes())
    leaf = x509.load_pem_x509_certificates(tls.server_pem.read_bytes())[0]
    leaf.verify_directly_issued_by(ca)
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(x509.IPAddress)
    assert stat.S_IMODE(tls.server_pem.stat().st_mode) == 0o600


@pytest.mark.parametrize(("formatted", "secure"), [(None, True), ("SASL_SSL", False)])
def test_a_data_dir_formatted_for_the_other_listener_is_refused(
    tmp_path: Path, formatted: str | None, secure: bool
) -> None:
    kafka = LocalKafka(
        tmp_path, port=1, controller_port=2, secure=SecureKafka() if secure else None
    )
    kafka.data_dir.mkdir(parents=True)
    (kafka.data_dir / "meta.properties").write_text("")
    if formatted is not None:
        kafka.listener_file.write_text(f"{formatted}\n")

    with pytest.raises(StartupError, match=r"remove .* or use another --run-dir"):
        kafka.check_listener()
