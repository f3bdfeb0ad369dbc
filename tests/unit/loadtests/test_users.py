"""What the load users send: samplers, payloads, bad requests, trace headers, fault plans,
and how their requests look on the exporter's /metrics."""

from __future__ import annotations

import json
import random
import re
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client import generate_latest

from loadtests.data import (
    MAX_BODY_BYTES,
    BadTokens,
    GatewayUnreachableError,
    Pools,
    Principal,
    Trace,
    ZipfSampler,
    base_urls,
    booking_body,
    error_cases,
    is_expected,
    mint_principals,
    quantity,
    resource_plan,
)
from loadtests.exporter import LocustCollector, make_registry
from loadtests.faultctl import DEFAULT_ERROR_PLAN, parse_plan, targets
from loadtests.users import (
    FLOW_WEIGHTS,
    pick_error_case,
    pick_flow,
    poll_delays,
    should_cancel,
)
from shared.auth import AuthSettings, InvalidTokenError, verify_token

TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-01$")


# ---------------------------------------------------------------- samplers
def test_zipf_makes_the_first_resources_hot() -> None:
    sampler = ZipfSampler(20, s=1.1)
    assert sum(sampler.probabilities) == pytest.approx(1.0)
    assert sampler.probabilities == sorted(sampler.probabilities, reverse=True)
    rng = random.Random(3)
    counts = Counter(sampler.sample(rng) for _ in range(20_000))
    assert set(counts) <= set(range(20))
    assert counts[0] > 4 * counts[10]
    assert counts[0] / 20_000 == pytest.approx(sampler.probabilities[0], abs=0.02)


def test_zipf_with_exponent_zero_is_uniform_and_one_item_is_always_chosen() -> None:
    assert ZipfSampler(4, s=0).probabilities == [0.25] * 4
    rng = random.Random(1)
    assert {ZipfSampler(1).sample(rng) for _ in range(100)} == {0}
    with pytest.raises(ValueError, match="at least one"):
        ZipfSampler(0)


def test_pools_refuse_to_run_without_resources() -> None:
    with pytest.raises(ValueError, match="no resources"):
        Pools("run", [], [Principal("a", "t")])


def test_principals_carry_real_tokens_with_the_booking_scopes() -> None:
    principals = mint_principals("r1", 5)
    assert len({p.sub for p in principals}) == 5
    for p in principals:
        claims = verify_token(AuthSettings(), p.token)
        assert claims.sub == p.sub
        assert {"bookings:read", "bookings:write"} <= claims.scopes
        assert p.auth == {"Authorization": f"Bearer {p.token}"}


def test_quantities_are_mostly_one_and_always_within_the_api_limits() -> None:
    rng = random.Random(5)
    counts = Counter(quantity(rng) for _ in range(5000))
    assert set(counts) <= {1, 2, 3, 4}
    assert counts[1] > 0.6 * 5000


def test_the_hottest_seeded_resource_is_big_and_some_are_small() -> None:
    plan = resource_plan(10)
    assert plan[0][1] == 100_000
    assert all(1 <= capacity <= 100_000 for _, capacity in plan)
    assert min(c for _, c in plan) <= 50
    assert len({name for name, _ in plan}) == 10
    assert plan == resource_plan(10), "every run seeds the same resources"


def test_a_booking_body_matches_the_api_contract() -> None:
    assert booking_body("r-1", 2) == {"resource_id": "r-1", "quantity": 2}


# ---------------------------------------------------------------- tracing
def test_one_flow_is_one_trace_with_a_new_span_per_request() -> None:
    rng = random.Random(9)
    flow = Trace("run42", rng)
    first, second = flow.headers(), flow.headers()
    a, b = TRACEPARENT.match(first["traceparent"]), TRACEPARENT.match(second["traceparent"])
    assert a is not None
    assert b is not None
    assert a.group(1) == b.group(1)
    assert a.group(2) != b.group(2)
    assert first["baggage"] == "bookify.run_id=run42"
    other = TRACEPARENT.match(Trace("run42", rng).headers()["traceparent"])
    assert other is not None
    assert other.group(1) != a.group(1)


# ---------------------------------------------------------------- flows
def test_flows_are_picked_by_their_weights() -> None:
    rng = random.Random(2)
    counts = Counter(pick_flow(rng) for _ in range(10_000))
    total = sum(FLOW_WEIGHTS.values())
    for name, weight in FLOW_WEIGHTS.items():
        assert counts[name] / 10_000 == pytest.approx(weight / total, abs=0.03)


def test_polling_starts_fast_and_backs_off_to_a_cap() -> None:
    delays = poll_delays(first=0.1, factor=1.5, cap=0.5)
    seen = [next(delays) for _ in range(8)]
    assert seen[0] == 0.1
    assert seen == sorted(seen)
    assert seen[-1] == 0.5


def test_only_confirmed_bookings_are_cancelled() -> None:
    rng = random.Random(4)
    assert not any(should_cancel("rejected", rng, share=1.0) for _ in range(100))
    assert all(should_cancel("confirmed", rng, share=1.0) for _ in range(100))
    assert not any(should_cancel("confirmed", rng, share=0.0) for _ in range(100))


# ---------------------------------------------------------------- bad requests
RESOURCE = str(uuid.uuid4())


def cases() -> dict[str, Any]:
    return {c.name: c for c in error_cases(RESOURCE, random.Random(1))}


def test_every_bad_request_expects_a_4xx_and_has_its_own_name() -> None:
    all_cases = error_cases(RESOURCE, random.Random(1))
    assert len({c.request_name for c in all_cases}) == len(all_cases)
    for case in all_cases:
        assert case.expected
        assert all(400 <= s < 500 for s in case.expected), case.name
        assert not re.search(r"[0-9a-f]{8}-[0-9a-f]{4}", case.request_name), case.request_name


def test_bad_bodies_are_bad_in_the_way_they_claim() -> None:
    by_name = cases()
    with pytest.raises(json.JSONDecodeError):
        json.loads(by_name["malformed"].body)
    assert "seat" in json.loads(by_name["unknown-field"].body)
    assert json.loads(by_name["quantity-range"].body)["quantity"] not in range(1, 11)
    assert len(by_name["oversize"].body) > MAX_BODY_BYTES
    assert by_name["oversize"].expected == {413}
    assert any(k.startswith("$") for k in json.loads(by_name["operator-key"].body))
    assert json.loads(by_name["unknown-resource"].body)["resource_id"] != RESOURCE


def test_bad_tokens_are_refused_by_the_real_verifier() -> None:
    tokens = BadTokens.mint("run1")
    settings = AuthSettings()
    for bad in (tokens.garbage, tokens.wrong_key, tokens.expired):
        with pytest.raises(InvalidTokenError):
            verify_token(settings, bad)
    assert verify_token(settings, tokens.read_only).scopes == {"bookings:read"}


def test_each_bad_request_carries_the_token_it_is_about() -> None:
    tokens = BadTokens.mint("run1")
    user = Principal("u", "good-token")
    by_name = cases()
    assert "Authorization" not in tokens.headers(by_name["no-token"], user)
    assert tokens.headers(by_name["expired-token"], user)["Authorization"].endswith(tokens.expired)
    assert tokens.headers(by_name["malformed"], user) == {
        "Content-Type": "application/json",
        "Authorization": "Bearer good-token",
    }


def test_expected_4xx_is_a_success_and_any_5xx_a_failure() -> None:
    assert is_expected(422, frozenset({422}))
    assert not is_expected(500, frozenset({422}))
    assert not is_expected(503, frozenset({401}))
    assert not is_expected(200, frozenset({404}))  # accepting garbage is a failure too


def test_error_cases_are_all_drawn_sometimes() -> None:
    rng = random.Random(8)
    all_cases = error_cases(RESOURCE, rng)
    drawn = {pick_error_case(all_cases, rng).name for _ in range(2000)}
    assert drawn == {c.name for c in all_cases}


# ---------------------------------------------------------------- fault plans
def test_the_default_fault_plan_slows_things_down_without_client_visible_errors() -> None:
    plan = parse_plan(DEFAULT_ERROR_PLAN)
    assert plan["gateway"].latency_ms > 0
    assert plan["gateway"].error_rate == 0  # by default nothing a client sees as a 5xx
    assert plan["booking"].error_rate > 0


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("gateway.latency_ms", "service.field=value"),
        ("payments.error_rate=0.1", "service must be"),
        ("gateway.error_rate=7", "invalid fault plan"),
        ("gateway.colour=blue", "invalid fault plan"),
    ],
)
def test_bad_fault_plans_are_refused_with_a_reason(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_plan(spec)


def test_fault_targets_need_the_internal_urls_for_booking_and_consumer() -> None:
    assert set(targets("http://gw:8000")) == {"gateway"}
    found = targets("http://gw:8000/", booking_url="http://b:8001", consumer_url="http://c:8002")
    assert found["gateway"].url == "http://gw:8000/v1/admin/faults"
    assert found["booking"].url == "http://b:8001/admin/faults"


def test_several_gateways_are_one_comma_separated_host_and_each_gets_the_fault() -> None:
    two = "http://127.0.0.1:8000/, http://127.0.0.1:8001"
    assert base_urls(two) == ["http://127.0.0.1:8000", "http://127.0.0.1:8001"]
    found = targets(two, booking_url="http://b:8002,http://b:8003")
    assert found["gateway"].url == "http://127.0.0.1:8000/v1/admin/faults"
    assert found["gateway"].replicas == ("http://127.0.0.1:8001/v1/admin/faults",)
    assert found["booking"].replicas == ("http://b:8003/admin/faults",)
    with pytest.raises(GatewayUnreachableError, match="no gateway URL"):
        base_urls(" , ")


# ---------------------------------------------------------------- exporter
@dataclass
class FakeEntry:
    num_requests: int
    num_failures: int
    response_times: dict[int, int]
    total_response_time: float


@dataclass
class FakeStats:
    entries: dict[tuple[str, str], FakeEntry] = field(default_factory=dict)


@dataclass
class FakeRunner:
    user_count: int
    stats: FakeStats


def scrape(collector: LocustCollector) -> str:
    return generate_latest(make_registry(collector)).decode()


def test_the_exporter_speaks_the_observability_contract() -> None:
    runner = FakeRunner(
        7,
        FakeStats(
            {
                ("/v1/bookings", "POST"): FakeEntry(10, 2, {4: 6, 40: 3, 3000: 1}, 3196.0),
                ("/v1/bookings [malformed]", "POST"): FakeEntry(5, 0, {2: 5}, 10.0),
            }
        ),
    )
    text = scrape(
        LocustCollector(lambda: runner, lambda: "spike", lambda: ("baseline", "spike", "recovery"))
    )
    assert "locust_users 7.0" in text
    assert (
        'locust_requests_total{method="POST",name="POST /v1/bookings",status="success"} 8.0' in text
    )
    assert (
        'locust_requests_total{method="POST",name="POST /v1/bookings",status="failure"} 2.0' in text
    )
    assert 'locust_request_latency_seconds_bucket{le="0.005",name="POST /v1/bookings"} 6.0' in text
    assert 'locust_request_latency_seconds_bucket{le="0.05",name="POST /v1/bookings"} 9.0' in text
    assert 'locust_request_latency_seconds_bucket{le="+Inf",name="POST /v1/bookings"} 10.0' in text
    assert 'locust_request_latency_seconds_count{name="POST /v1/bookings"} 10.0' in text
    phases = re.findall(r'locust_shape_phase\{phase="([^"]+)"\} (\S+)', text)
    assert dict(phases) == {"baseline": "0.0", "spike": "1.0", "recovery": "0.0"}


def test_the_exporter_answers_before_a_test_runs() -> None:
    text = scrape(LocustCollector(lambda: None, lambda: None, lambda: ()))
    assert "locust_users 0.0" in text
    assert "locust_shape_phase{" not in text


def test_with_several_gateways_each_user_keeps_to_one_in_turn() -> None:
    from locust.env import Environment

    from loadtests.users import ShopperUser

    two = "http://127.0.0.1:8000,http://127.0.0.1:8001"
    environment = Environment(user_classes=[ShopperUser], host=two)

    class Shopper(ShopperUser):
        host = two  # as Locust's runner sets it from --host

    hosts = [Shopper(environment).host for _ in range(4)]

    assert sorted(hosts) == ["http://127.0.0.1:8000"] * 2 + ["http://127.0.0.1:8001"] * 2
    assert hosts[0] != hosts[1]
