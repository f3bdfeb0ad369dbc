"""The local broker as a real cluster is secured: a SASL_SSL listener and ACLs.

:class:`SecureKafka` says who may log in (SCRAM-SHA-512 credentials, written into the
metadata log when the storage is formatted: ``kafka-storage format --add-scram``), and
:func:`make_tls_files` makes a CA and a server certificate for 127.0.0.1 signed by it, so
clients verify the broker as they would a real one. The StandardAuthorizer denies whatever no
ACL allows; :func:`bookify_acls` are the least each service needs, granted through Kafka's own
Admin client (infra/kafka/GrantAcls.java).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bookify_platform.infra.fsutil import atomic_write_text
from shared.kafka_security import KafkaSecurity
from shared.settings import Topics

MECHANISM = "SCRAM-SHA-512"
ADMIN = "admin"
SERVICES = ("gateway", "booking", "consumer")


@dataclass(frozen=True)
class SecureKafka:
    """Who may log in to the SASL_SSL listener (name -> password); ``admin`` is a super user."""

    users: Mapping[str, str] = field(
        default_factory=lambda: {name: secrets.token_urlsafe(18) for name in (ADMIN, *SERVICES)}
    )

    @classmethod
    def of_run_dir(cls, run_dir: Path) -> SecureKafka:
        """The users of the secure broker whose files ``run_dir`` keeps (see :meth:`kept_in`)."""
        from bookify_platform.infra.kafka import kafka_home

        return cls.kept_in(kafka_home(run_dir) / "users.json")

    @classmethod
    def kept_in(cls, path: Path) -> SecureKafka:
        """The users stored in ``path`` (0600), made and stored there on first use: a broker
        formatted with them keeps them for as long as its data directory lives."""
        if path.exists():
            return cls(users=json.loads(path.read_text()))
        secure = cls()
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(dict(secure.users)))
        path.chmod(0o600)
        return secure

    @property
    def admin_password(self) -> str:
        return self.users[ADMIN]

    def client(self, user: str, ca_file: Path, *, password: str | None = None) -> KafkaSecurity:
        """What a client logging in as ``user`` sets (``password`` to override: a wrong one)."""
        return KafkaSecurity.model_validate(
            {
                "security_protocol": "SASL_SSL",
                "sasl_mechanism": MECHANISM,
                "sasl_username": user,
                "sasl_password": password if password is not None else self.users[user],
                "ssl_ca_file": ca_file,
            }
        )


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path  # what clients trust
    server_pem: Path  # the broker's key and certificate chain (a PEM keystore)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_tls_files(directory: Path, *, common_name: str = "bookify local Kafka") -> TlsFiles:
    """A CA and a certificate for 127.0.0.1/localhost signed by it, valid for 30 days."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name(f"{common_name} CA"))
        .issuer_name(_name(f"{common_name} CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    files = TlsFiles(ca_cert=directory / "ca.crt", server_pem=directory / "server.pem")
    atomic_write_text(files.ca_cert, ca.public_bytes(pem).decode())
    key = server_key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    atomic_write_text(
        files.server_pem,
        key.decode() + server.public_bytes(pem).decode() + ca.public_bytes(pem).decode(),
    )
    files.server_pem.chmod(0o600)
    return files


@dataclass(frozen=True)
class Acl:
    """One ALLOW from any host: ``principal`` may ``operation`` on the resource."""

    principal: str
    resource_type: str  # TOPIC, GROUP or CLUSTER
    name: str
    operation: str
    pattern_type: str = "LITERAL"

    def line(self) -> str:
        return " ".join(
            (self.principal, self.resource_type, self.name, self.pattern_type, self.operation)
        )


def bookify_acls(topics: Topics) -> list[Acl]:
    """The least each service needs: the gateway writes commands; booking reads commands and
    writes events and the DLQ; the consumer reads events and writes the DLQ (where a poison
    event goes). Each may describe the topics and their configs (start-up checks them:
    shared.kafka.ensure_topics), none may create one. WRITE on a topic also lets the
    idempotent producer get its id (Kafka 3.0+), so no cluster ACL is needed."""
    acls = [
        Acl(f"User:{user}", "TOPIC", topic, operation)
        for user in SERVICES
        for topic in topics.all()
        for operation in ("DESCRIBE", "DESCRIBE_CONFIGS")
    ]
    writes = {
        "gateway": [topics.commands],
        "booking": [topics.events, topics.dlq],
        "consumer": [topics.dlq],
    }
    reads = {"booking": topics.commands, "consumer": topics.events}
    for user, written in writes.items():
        acls += [Acl(f"User:{user}", "TOPIC", topic, "WRITE") for topic in written]
    for user, read in reads.items():
        acls += [
            Acl(f"User:{user}", "TOPIC", read, "READ"),
            Acl(f"User:{user}", "GROUP", topics.group(f"bookify-{user}"), "READ"),
        ]
    return acls


def server_properties(
    secure: SecureKafka, tls: TlsFiles, *, port: int, controller_port: int
) -> str:
    """The listener, TLS, SASL and authorizer lines of server.properties."""
    jaas = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{ADMIN}" password="{secure.admin_password}";'
    )
    return f"""\
listeners=SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=SASL_SSL://127.0.0.1:{port}
inter.broker.listener.name=SASL_SSL
listener.security.protocol.map=CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms={MECHANISM}
sasl.mechanism.inter.broker.protocol={MECHANISM}
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={jaas}
ssl.keystore.type=PEM
ssl.keystore.location={tls.server_pem}
ssl.truststore.type=PEM
ssl.truststore.location={tls.ca_cert}
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
# ANONYMOUS is the controller listener (PLAINTEXT, on 127.0.0.1 only): the broker registers
# with its controller there. Clients come in on SASL_SSL as their SCRAM user.
super.users=User:{ADMIN};User:ANONYMOUS
"""


def admin_client_properties(secure: SecureKafka, tls: TlsFiles, *, bootstrap: str) -> str:
    """A Java Admin client's config, logged in as the super user."""
    return f"""\
bootstrap.servers={bootstrap}
security.protocol=SASL_SSL
sasl.mechanism={MECHANISM}
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required \
username="{ADMIN}" password="{secure.admin_password}";
ssl.truststore.type=PEM
ssl.truststore.location={tls.ca_cert}
"""


def scram_arguments(secure: SecureKafka) -> Sequence[str]:
    """``kafka-storage format`` arguments that store every user's SCRAM credentials."""
    return [
        arg
        for name, password in secure.users.items()
        for arg in ("--add-scram", f"{MECHANISM}=[name={name},password={password}]")
    ]
