from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import SecretStr, ValidationError

from booking.config import BookingSettings
from consumer.config import ConsumerSettings
from gateway.config import GatewaySettings
from shared import auth as shared_auth
from shared.auth import AuthSettings, InvalidTokenError, Principal, mint_token, verify_token
from shared.kafka_security import KafkaSecurity
from shared.mongo import unsafe_keys
from shared.settings import Environment, ServiceSettings, Topics, refuse_dev_secret
from tests.support import auth

AUTH = AuthSettings(jwt_secret=SecretStr("test-secret-of-enough-length-for-hs256"))
TRUSTED_PLAINTEXT = KafkaSecurity(allow_plaintext=True)
SERVICE_SETTINGS: list[type[ServiceSettings]] = [GatewaySettings, BookingSettings, ConsumerSettings]


def test_a_minted_token_verifies_to_its_principal_and_scopes() -> None:
    token = mint_token(AUTH, "alice", ["bookings:read", "bookings:write"])
    principal = verify_token(AUTH, token)
    assert principal.sub == "alice"
    assert principal.scopes == {"bookings:read", "bookings:write"}


@pytest.mark.parametrize(
    "token",
    [
        auth.token(settings=AUTH, aud="other"),
        auth.token(settings=AUTH, scope=None),
        auth.token(None, settings=AUTH),
    ],
    ids=["wrong-audience", "no-scope", "no-sub"],
)
def test_tokens_missing_required_claims_are_refused(token: str) -> None:
    with pytest.raises(InvalidTokenError):
        verify_token(AUTH, token)


def test_an_expired_token_is_refused() -> None:
    token = mint_token(AUTH, "alice", ["bookings:read"], ttl=timedelta(seconds=-60))
    with pytest.raises(InvalidTokenError, match="expired"):
        verify_token(AUTH, token)


def test_a_token_signed_with_another_secret_is_refused() -> None:
    other = AuthSettings(jwt_secret=SecretStr("another-secret-of-enough-length-for-hs256"))
    with pytest.raises(InvalidTokenError, match="Signature"):
        verify_token(AUTH, mint_token(other, "mallory", ["resources:admin"]))


def test_the_dev_secret_is_refused_outside_dev() -> None:
    dev_default = AuthSettings().jwt_secret.get_secret_value()
    refuse_dev_secret(ServiceSettings(environment=Environment.DEV), "jwt", dev_default)
    prod = ServiceSettings(environment=Environment.PROD, auth=AUTH, kafka=TRUSTED_PLAINTEXT)
    with pytest.raises(ValueError, match="development default"):
        refuse_dev_secret(prod, "jwt", dev_default)
    refuse_dev_secret(prod, "jwt", "a-real-secret")


@pytest.mark.parametrize(
    "settings_class", [s for s in (ServiceSettings, *SERVICE_SETTINGS) if s.verifies_tokens]
)
def test_every_service_that_checks_tokens_refuses_to_start_in_prod_with_the_dev_secret(
    settings_class: type[ServiceSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BOOKIFY_AUTH_JWT_SECRET", raising=False)
    with pytest.raises(ValidationError, match="BOOKIFY_AUTH_JWT_SECRET still has its development"):
        settings_class(environment="prod")  # type: ignore[arg-type]
    assert settings_class(environment="dev").is_dev  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "settings_class",
    [s for s in SERVICE_SETTINGS if not s.verifies_tokens],
    ids=lambda c: c.__name__,
)
def test_booking_and_consumer_need_no_jwt_secret_in_prod(
    settings_class: type[ServiceSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The chart mounts the secret into the gateway only: their one token-checked route, the
    # fault switch, is off in prod (tests/unit/shared/test_ops.py: 404 before any token).
    monkeypatch.delenv("BOOKIFY_AUTH_JWT_SECRET", raising=False)
    settings = settings_class(environment="prod", kafka=TRUSTED_PLAINTEXT)  # type: ignore[call-arg]
    assert settings.environment == "prod"


def test_prod_refuses_a_secret_too_short_for_hs256_and_says_how_to_make_one() -> None:
    short = AuthSettings(jwt_secret=SecretStr("x" * 31))
    with pytest.raises(ValidationError, match="31 bytes; HS256 needs at least 32") as caught:
        ServiceSettings(environment=Environment.PROD, auth=short, kafka=TRUSTED_PLAINTEXT)
    assert "secrets.token_urlsafe" in str(caught.value)
    assert (
        ServiceSettings(
            environment=Environment.PROD, auth=AUTH, kafka=TRUSTED_PLAINTEXT
        ).environment
        == "prod"
    )
    # With RS256 the shared secret is never used, so it is not checked.
    rsa = AuthSettings(jwt_public_key="-----BEGIN PUBLIC KEY-----")
    assert (
        ServiceSettings(environment=Environment.PROD, auth=rsa, kafka=TRUSTED_PLAINTEXT).environment
        == "prod"
    )


@pytest.mark.parametrize("settings_class", SERVICE_SETTINGS)
def test_bookify_environment_configures_every_service_and_its_own_variable_wins(
    settings_class: type[ServiceSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The variable .env.example documents, as a deployment outside compose would set it.
    monkeypatch.setenv("BOOKIFY_ENVIRONMENT", "prod")
    monkeypatch.setenv("BOOKIFY_AUTH_JWT_SECRET", AUTH.jwt_secret.get_secret_value())
    monkeypatch.setenv("BOOKIFY_KAFKA_ALLOW_PLAINTEXT", "true")
    assert settings_class().environment == Environment.PROD
    prefix = settings_class.model_config["env_prefix"]
    monkeypatch.setenv(f"{prefix}ENVIRONMENT", "test")
    assert settings_class().environment == Environment.TEST


def test_topic_prefix_isolates_every_topic() -> None:
    assert Topics("t1.").all() == ("t1.bookify.commands", "t1.bookify.events", "t1.bookify.dlq")
    assert ServiceSettings().topics.commands == "bookify.commands"


def test_topic_prefix_namespaces_consumer_groups_too() -> None:
    # Two stacks (or tenants) on one broker must not share a group: each start or stop of
    # one would stop the other's consumption for a rebalance.
    assert Topics("t1.").group("bookify-booking") == "t1.bookify-booking"
    assert ServiceSettings().topics.group("bookify-booking") == "bookify-booking"


def test_operator_and_dotted_keys_are_found_at_any_depth() -> None:
    doc = {"ok": 1, "$where": "x", "a.b": 2, "nested": {"$gt": 1, "fine": {"c.d": 3}}}
    assert sorted(unsafe_keys(doc)) == ["$where", "a.b", "nested.$gt", "nested.fine.c.d"]


def test_a_verified_token_is_not_decoded_again_until_it_expires(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1_000_000.0]
    monkeypatch.setattr(shared_auth, "_verified", shared_auth.verified_tokens(lambda: now[0]))
    decoded: list[str] = []
    decode = shared_auth._decode

    def counting(settings: AuthSettings, key: str, token: str) -> tuple[Principal, float]:
        decoded.append(token)
        principal, _ = decode(settings, key, token)
        return principal, now[0] + 60  # "expires" a minute from the fake now

    monkeypatch.setattr(shared_auth, "_decode", counting)
    token = mint_token(AUTH, "alice", ["bookings:read"])

    assert verify_token(AUTH, token) == verify_token(AUTH, token)
    assert len(decoded) == 1  # the second came from the cache
    now[0] += 60 + AUTH.leeway_seconds + 1  # past exp + leeway: PyJWT's verdict again
    verify_token(AUTH, token)
    assert len(decoded) == 2


def test_a_cached_token_is_still_refused_under_another_secret_or_audience() -> None:
    token = mint_token(AUTH, "alice", ["bookings:read"])
    verify_token(AUTH, token)  # cached under AUTH

    rotated = AuthSettings(jwt_secret=SecretStr("rotated-secret-of-enough-length-for-hs256"))
    with pytest.raises(InvalidTokenError, match="Signature"):
        verify_token(rotated, token)
    with pytest.raises(InvalidTokenError, match="Audience"):
        verify_token(AUTH.model_copy(update={"audience": "elsewhere"}), token)


def test_an_invalid_token_is_never_cached() -> None:
    token = mint_token(AUTH, "alice", ["bookings:read"], ttl=timedelta(seconds=-60))
    for _ in range(2):
        with pytest.raises(InvalidTokenError, match="expired"):
            verify_token(AUTH, token)
    assert not any(key[0] == token for key in shared_auth._verified)
