"""The one place Kafka clients get their security from: what it accepts, refuses and builds."""

from __future__ import annotations

import re
import ssl

import pytest
from aiokafka.errors import SaslAuthenticationFailed, TopicAuthorizationFailedError
from faststream.security import BaseSecurity, SASLScram512
from pydantic import SecretStr, ValidationError

from shared.auth import AuthSettings
from shared.kafka import client_options
from shared.kafka_security import KafkaSecurity, refusal_of
from shared.settings import Environment, ServiceSettings

AUTH = AuthSettings(jwt_secret=SecretStr("unit-test-secret-0123456789abcdef0123456789"))
SCRAM = KafkaSecurity(
    security_protocol="SASL_SSL",
    sasl_mechanism="SCRAM-SHA-512",
    sasl_username="gateway",
    sasl_password=SecretStr("s3cret"),
)


def test_prod_refuses_plaintext_naming_the_setting_and_the_way_out() -> None:
    with pytest.raises(ValidationError) as refused:
        ServiceSettings(environment=Environment.PROD, auth=AUTH)
    assert "BOOKIFY_KAFKA_SECURITY_PROTOCOL=PLAINTEXT in environment=prod" in str(refused.value)
    assert "BOOKIFY_KAFKA_ALLOW_PLAINTEXT=true" in str(refused.value)

    allowed = KafkaSecurity(allow_plaintext=True)
    assert ServiceSettings(environment=Environment.PROD, auth=AUTH, kafka=allowed).kafka == allowed
    assert ServiceSettings(environment=Environment.PROD, auth=AUTH, kafka=SCRAM).kafka == SCRAM
    assert ServiceSettings(environment=Environment.DEV).kafka.security_protocol == "PLAINTEXT"


def test_the_environment_configures_every_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOOKIFY_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("BOOKIFY_KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")
    monkeypatch.setenv("BOOKIFY_KAFKA_SASL_USERNAME", "booking")
    monkeypatch.setenv("BOOKIFY_KAFKA_SASL_PASSWORD", "pw")

    options = client_options(ServiceSettings(kafka_bootstrap_servers="k:9093"))

    assert options == {
        "bootstrap_servers": "k:9093",
        "client_id": "bookify",
        "security_protocol": "SASL_PLAINTEXT",
        "ssl_context": None,
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "booking",
        "sasl_plain_password": "pw",
    }


def test_sasl_ssl_builds_a_verifying_tls_context_for_aiokafka_and_faststream() -> None:
    options = SCRAM.client_options()
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"

    security = SCRAM.broker_security()
    assert isinstance(security, SASLScram512)
    assert security.use_ssl
    assert (security.username, security.password) == ("gateway", "s3cret")
    assert "s3cret" not in repr(SCRAM)

    tls_only = KafkaSecurity(security_protocol="SSL").broker_security()
    assert type(tls_only) is BaseSecurity
    assert tls_only.use_ssl
    assert KafkaSecurity().broker_security() is None


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"security_protocol": "SASL_SSL"}, "needs BOOKIFY_KAFKA_SASL_USERNAME"),
        (
            {"security_protocol": "SSL", "ssl_cert_file": "client.pem"},
            "SSL_CERT_FILE and BOOKIFY_KAFKA_SSL_KEY_FILE go together",
        ),
        ({"ssl_ca_file": "ca.pem"}, "does not use TLS: set it to SSL or SASL_SSL"),
        ({"security_protocol": "TLS"}, "SASL_SSL"),
    ],
)
def test_incomplete_security_is_refused_with_the_setting_to_fix(
    settings: dict[str, str], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        KafkaSecurity.model_validate(settings)


def test_a_missing_ca_file_is_named_when_the_context_is_built() -> None:
    missing = KafkaSecurity(security_protocol="SSL", ssl_ca_file="no/such/ca.pem")
    with pytest.raises(ValueError, match=re.escape("SSL_CA_FILE=no/such/ca.pem: no such")):
        missing.client_options()


def test_refusals_name_their_cause_and_outages_do_not() -> None:
    untrusted = ssl.SSLCertVerificationError("certificate verify failed")
    untrusted.verify_message = "self-signed certificate in certificate chain"
    assert "not trusted (self-signed certificate in certificate chain)" in str(
        refusal_of(untrusted, SCRAM)
    )
    assert "set BOOKIFY_KAFKA_SSL_CA_FILE" in str(refusal_of(untrusted, SCRAM))
    assert "wrong username or password" in str(
        refusal_of(SaslAuthenticationFailed("Authentication failed"), SCRAM)
    )
    assert "'gateway' (SCRAM-SHA-512)" in str(refusal_of(SaslAuthenticationFailed(), SCRAM))
    assert "gateway lacks an ACL" in str(refusal_of(TopicAuthorizationFailedError(), SCRAM))
    assert refusal_of(ConnectionRefusedError(), SCRAM) is None
    assert refusal_of(TimeoutError(), SCRAM) is None
