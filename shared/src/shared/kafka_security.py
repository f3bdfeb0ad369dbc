"""How every Kafka client of the platform authenticates and encrypts: the one place it is built.

:class:`KafkaSecurity` is read from ``BOOKIFY_KAFKA_*`` by every service (as
``ServiceSettings.kafka``) and by every CLI command that talks to Kafka. FastStream's broker
takes :meth:`KafkaSecurity.broker_security`; aiokafka's producers, consumers and admin clients
take :meth:`KafkaSecurity.client_options` (through :func:`shared.kafka.client_options`).

A broker that refuses the client says little through aiokafka: bootstrap logs the TLS or SASL
error and raises "Unable to bootstrap". :func:`refusal` connects once more to the first
bootstrap server and names the cause (an untrusted certificate, a wrong password, a mechanism
the listener does not offer), and :func:`refusal_of` names it from an exception (a missing
ACL), so start-up fails with one line saying what to fix instead of retrying for minutes.
"""

from __future__ import annotations

import ssl
from enum import StrEnum
from pathlib import Path
from typing import Any, Self

from aiokafka.conn import create_conn
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    IllegalSaslStateError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
    UnsupportedSaslMechanismError,
)
from aiokafka.helpers import create_ssl_context
from faststream.security import (
    BaseSecurity,
    SASLPlaintext,
    SASLScram256,
    SASLScram512,
)
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class SecurityProtocol(StrEnum):
    PLAINTEXT = "PLAINTEXT"
    SSL = "SSL"
    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL"

    @property
    def uses_tls(self) -> bool:
        return self in (SecurityProtocol.SSL, SecurityProtocol.SASL_SSL)

    @property
    def uses_sasl(self) -> bool:
        return self in (SecurityProtocol.SASL_PLAINTEXT, SecurityProtocol.SASL_SSL)


class SaslMechanism(StrEnum):
    PLAIN = "PLAIN"
    SCRAM_SHA_256 = "SCRAM-SHA-256"
    SCRAM_SHA_512 = "SCRAM-SHA-512"


SASL_SECURITY: dict[SaslMechanism, type[SASLPlaintext | SASLScram256 | SASLScram512]] = {
    SaslMechanism.PLAIN: SASLPlaintext,
    SaslMechanism.SCRAM_SHA_256: SASLScram256,
    SaslMechanism.SCRAM_SHA_512: SASLScram512,
}

ENV_PREFIX = "BOOKIFY_KAFKA_"


class KafkaSecurity(BaseSettings):
    """``BOOKIFY_KAFKA_*``: the listener's protocol, the SASL login, the TLS files."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    security_protocol: SecurityProtocol = SecurityProtocol.PLAINTEXT
    allow_plaintext: bool = Field(
        default=False,
        description="Let PLAINTEXT through outside dev and test (refused there otherwise).",
    )
    sasl_mechanism: SaslMechanism = SaslMechanism.SCRAM_SHA_512
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_file: Path | None = Field(
        default=None,
        description="PEM CA bundle the brokers' certificates chain to; None: the system's.",
    )
    ssl_cert_file: Path | None = Field(default=None, description="PEM client certificate (mTLS).")
    ssl_key_file: Path | None = Field(default=None, description="PEM key of ssl_cert_file.")

    @model_validator(mode="after")
    def _complete(self) -> Self:
        protocol = self.security_protocol
        if protocol.uses_sasl and not (self.sasl_username and self.sasl_password):
            raise ValueError(
                f"{ENV_PREFIX}SECURITY_PROTOCOL={protocol.value} needs {ENV_PREFIX}SASL_USERNAME "
                f"and {ENV_PREFIX}SASL_PASSWORD"
            )
        tls_files = (self.ssl_ca_file, self.ssl_cert_file, self.ssl_key_file)
        if not protocol.uses_tls and any(tls_files):
            raise ValueError(
                f"{ENV_PREFIX}SSL_* files are set but {ENV_PREFIX}SECURITY_PROTOCOL="
                f"{protocol.value} does not use TLS: set it to SSL or SASL_SSL"
            )
        if (self.ssl_cert_file is None) != (self.ssl_key_file is None):
            raise ValueError(
                f"{ENV_PREFIX}SSL_CERT_FILE and {ENV_PREFIX}SSL_KEY_FILE go together (mTLS)"
            )
        return self

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context (hostname checked), or None for a protocol without TLS."""
        if not self.security_protocol.uses_tls:
            return None
        for name, path in (
            ("SSL_CA_FILE", self.ssl_ca_file),
            ("SSL_CERT_FILE", self.ssl_cert_file),
            ("SSL_KEY_FILE", self.ssl_key_file),
        ):
            if path is not None and not path.is_file():
                raise ValueError(f"{ENV_PREFIX}{name}={path}: no such file")
        context: ssl.SSLContext = create_ssl_context(
            cafile=self.ssl_ca_file, certfile=self.ssl_cert_file, keyfile=self.ssl_key_file
        )
        return context

    def client_options(self) -> dict[str, Any]:
        """The keyword arguments of aiokafka's clients (producer, consumer, admin)."""
        options: dict[str, Any] = {
            "security_protocol": self.security_protocol.value,
            "ssl_context": self.ssl_context(),
        }
        if self.security_protocol.uses_sasl:
            assert self.sasl_password is not None  # checked by _complete
            options |= {
                "sasl_mechanism": self.sasl_mechanism.value,
                "sasl_plain_username": self.sasl_username,
                "sasl_plain_password": self.sasl_password.get_secret_value(),
            }
        return options

    def broker_security(self) -> BaseSecurity | None:
        """The same, as FastStream's KafkaBroker takes it (``security=``)."""
        context = self.ssl_context()
        if not self.security_protocol.uses_sasl:
            return BaseSecurity(ssl_context=context) if context is not None else None
        assert self.sasl_username is not None
        assert self.sasl_password is not None
        return SASL_SECURITY[self.sasl_mechanism](
            self.sasl_username,
            self.sasl_password.get_secret_value(),
            ssl_context=context,
            use_ssl=context is not None,
        )

    def environment(self) -> dict[str, str]:
        """The ``BOOKIFY_KAFKA_*`` variables that configure this (for a child process)."""
        values = self.model_dump(exclude_defaults=True, mode="json")
        if self.sasl_password is not None:
            values["sasl_password"] = self.sasl_password.get_secret_value()
        return {f"{ENV_PREFIX}{name.upper()}": str(value) for name, value in values.items()}

    def describe(self) -> str:
        """Who connects how, for error messages (never the password)."""
        if self.security_protocol.uses_sasl:
            return (
                f"{self.security_protocol.value} as {self.sasl_username!r} "
                f"({self.sasl_mechanism.value})"
            )
        return self.security_protocol.value


def kafka_client_options(bootstrap: str, security: KafkaSecurity | None = None) -> dict[str, Any]:
    """aiokafka's keyword arguments for ``bootstrap`` with ``security`` (default: the
    ``BOOKIFY_KAFKA_*`` environment, as the CLI commands take it)."""
    security = security if security is not None else KafkaSecurity()
    return {"bootstrap_servers": bootstrap, **security.client_options()}


class KafkaRefusedError(RuntimeError):
    """The broker answers but refuses this client: retrying will not help, a setting will."""


AUTHORIZATION_ERRORS = (
    TopicAuthorizationFailedError,
    GroupAuthorizationFailedError,
    ClusterAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)


def refusal_of(exc: BaseException, security: KafkaSecurity) -> str | None:
    """What ``exc`` says is wrong with the client's credentials, trust or ACLs; else None."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"TLS: the broker's certificate is not trusted ({exc.verify_message}); "
            f"set {ENV_PREFIX}SSL_CA_FILE to the CA that signed it"
        )
    if isinstance(exc, ssl.SSLError):
        return (
            f"TLS handshake failed ({exc.reason or exc}); check that the listener speaks "
            f"{security.security_protocol.value} and the {ENV_PREFIX}SSL_* files"
        )
    if isinstance(exc, SaslAuthenticationFailed):
        return (
            f"SASL authentication failed for {security.describe()}: wrong username or "
            f"password ({ENV_PREFIX}SASL_USERNAME, {ENV_PREFIX}SASL_PASSWORD)"
        )
    if isinstance(exc, UnsupportedSaslMechanismError | IllegalSaslStateError):
        return (
            f"the listener does not take {security.describe()}: {exc}; "
            f"check {ENV_PREFIX}SASL_MECHANISM and {ENV_PREFIX}SECURITY_PROTOCOL"
        )
    if isinstance(exc, AUTHORIZATION_ERRORS):
        who = security.sasl_username or "this client's principal"
        return f"not authorized: {type(exc).__name__} ({exc}); {who} lacks an ACL"
    return None


async def refusal(
    bootstrap_servers: str, security: KafkaSecurity, *, within: float = 5.0
) -> str | None:
    """Why the first bootstrap server refuses this client (TLS or SASL), else None.

    None also when it does not answer at all: that is an outage, which waiting may cure.
    """
    host, _, port = bootstrap_servers.split(",")[0].strip().rpartition(":")
    try:
        conn = await create_conn(
            host.strip("[]"),
            int(port),
            request_timeout_ms=int(within * 1000),
            **security.client_options(),
        )
    except Exception as exc:  # any failure is a candidate cause
        return refusal_of(exc, security)
    conn.close()
    return None
