from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import SecretStr

from shared.auth import AuthSettings, InvalidTokenError, mint_token, verify_token
from shared.mongo import unsafe_keys
from shared.settings import Environment, ServiceSettings, Topics, refuse_dev_secret
from tests.support import auth

AUTH = AuthSettings(jwt_secret=SecretStr("test-secret-of-enough-length-for-hs256"))


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
    with pytest.raises(ValueError, match="development default"):
        refuse_dev_secret(ServiceSettings(environment=Environment.PROD), "jwt", dev_default)
    refuse_dev_secret(ServiceSettings(environment=Environment.PROD), "jwt", "a-real-secret")


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
