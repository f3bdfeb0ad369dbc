"""Test data for the load users: seeded resources, principals, payloads, trace headers.

Everything here is pure (randomness comes from a ``random.Random`` passed in), so the
samplers and payloads are unit-tested without a server.

- Resources are seeded at test start through the public API as an admin
  (:func:`seed_resources`) and chosen with a Zipf-like skew (:class:`ZipfSampler`): a few are
  hot, most are cold, as on a real ticket shop. Every run seeds the *same* resources (same
  names, admin and idempotency keys), so a second run reuses them instead of adding more,
  and records the data state it started from (:class:`DataState`).
- Principals are ``load-<run id>-<n>`` with tokens from ``shared.auth.mint_token``, the same
  tokens ``bookify token`` prints; spreading the load over many principals keeps the
  gateway's per-principal rate limit out of the measurement.
- Each flow is one trace: a new W3C ``traceparent`` trace id per flow, a new span id per
  request, and ``baggage: bookify.run_id=<run id>`` so traces of a run can be found.
"""

from __future__ import annotations

import bisect
import itertools
import json
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
from pydantic import SecretStr

from shared.auth import AuthSettings, Scope, mint_token

TERMINAL = frozenset({"confirmed", "rejected", "cancelled"})
DECIDED = frozenset({"confirmed", "rejected"})
ADMIN_SCOPES = [Scope.RESOURCES_ADMIN.value, Scope.BOOKINGS_READ.value]
USER_SCOPES = [Scope.BOOKINGS_READ.value, Scope.BOOKINGS_WRITE.value]
MAX_BODY_BYTES = 65_536  # the gateway's default limit (DESIGN §2)


class GatewayUnreachableError(Exception):
    """The gateway does not answer at the given URL."""


# ---------------------------------------------------------------------------- tracing
@dataclass
class Trace:
    """One flow's W3C trace context: a trace id for the flow, a fresh span id per request."""

    run_id: str
    rng: random.Random
    trace_id: str = ""

    def __post_init__(self) -> None:
        if not self.trace_id:
            self.trace_id = f"{self.rng.getrandbits(128) or 1:032x}"

    def headers(self) -> dict[str, str]:
        span_id = f"{self.rng.getrandbits(64) or 1:016x}"
        return {
            "traceparent": f"00-{self.trace_id}-{span_id}-01",
            "baggage": f"bookify.run_id={self.run_id}",
        }


def new_run_id(rng: random.Random | None = None) -> str:
    return f"{(rng or random.Random()).getrandbits(32):08x}"


# ---------------------------------------------------------------------------- samplers
class ZipfSampler:
    """Index ``i`` of ``n`` with probability proportional to ``1 / (i + 1) ** s``."""

    def __init__(self, n: int, s: float = 1.1) -> None:
        if n < 1:
            raise ValueError("need at least one item")
        if s < 0:
            raise ValueError("the exponent must be >= 0")
        weights = [1.0 / (i + 1) ** s for i in range(n)]
        total = sum(weights)
        self.probabilities = [w / total for w in weights]
        self._cumulative = list(itertools.accumulate(self.probabilities))
        self._cumulative[-1] = 1.0

    def __len__(self) -> int:
        return len(self._cumulative)

    def sample(self, rng: random.Random) -> int:
        return bisect.bisect_right(self._cumulative, rng.random())


@dataclass(frozen=True)
class Principal:
    sub: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def mint_principals(
    run_id: str,
    count: int,
    *,
    scopes: Sequence[str] = USER_SCOPES,
    settings: AuthSettings | None = None,
    ttl: timedelta = timedelta(hours=12),
) -> list[Principal]:
    settings = settings or AuthSettings()
    return [
        Principal(sub, mint_token(settings, sub, list(scopes), ttl=ttl))
        for sub in (f"load-{run_id}-{i}" for i in range(count))
    ]


def admin_principal(run_id: str, settings: AuthSettings | None = None) -> Principal:
    sub = f"load-{run_id}-admin"
    return Principal(sub, mint_token(settings or AuthSettings(), sub, ADMIN_SCOPES))


@dataclass
class Pools:
    """What a user draws from: resources (Zipf-skewed) and principals (uniform)."""

    run_id: str
    resources: list[str]
    principals: list[Principal]
    skew: float = 1.1
    _zipf: ZipfSampler = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.resources:
            raise ValueError("no resources to book: seeding failed or was skipped")
        if not self.principals:
            raise ValueError("no principals")
        self._zipf = ZipfSampler(len(self.resources), self.skew)

    def resource(self, rng: random.Random) -> str:
        return self.resources[self._zipf.sample(rng)]

    def principal(self, rng: random.Random) -> Principal:
        return rng.choice(self.principals)


def quantity(rng: random.Random) -> int:
    """Mostly single seats, sometimes a few (1..4; the API allows 1..10)."""
    return rng.choices((1, 2, 3, 4), weights=(70, 18, 8, 4))[0]


def booking_body(resource_id: str, qty: int) -> dict[str, Any]:
    return {"resource_id": resource_id, "quantity": qty}


def idempotency_key() -> str:
    """A new key, never drawn from a run's seed: the same seed replays the same operations,
    but its keys, sent again to the same store with other bodies, would be reuses (422)."""
    return str(uuid.uuid4())


def resource_plan(count: int) -> list[tuple[str, int]]:
    """Names and capacities of the resources to seed, the same for every run: the hottest
    (rank 0) are the biggest venues, a few small ones sell out and turn bookings into
    rejections."""
    capacities = (100_000, 50_000, 20_000, 5_000, 1_000, 200, 50)
    return [(f"load #{i}", capacities[i % len(capacities)] if i else 100_000) for i in range(count)]


# ---------------------------------------------------------------------------- error cases
@dataclass(frozen=True)
class ErrorCase:
    """One bad request and the statuses a correct gateway answers it with."""

    name: str
    method: str
    path: str
    expected: frozenset[int]
    body: bytes | None = None
    auth: str = "user"  # user | none | garbage | wrong-key | expired | read-only
    content_type: str = "application/json"
    weight: int = 1

    @property
    def request_name(self) -> str:
        """The endpoint name it is recorded under, e.g. ``/v1/bookings [malformed]``."""
        return f"{self.template} [{self.name}]"

    @property
    def template(self) -> str:
        return self.path.split("?")[0] if "{" in self.path else _template(self.path)


def _template(path: str) -> str:
    parts = path.split("?")[0].split("/")
    out = []
    for part in parts:
        try:
            uuid.UUID(part)
        except ValueError:
            out.append(part)
        else:
            out.append("{id}")
    return "/".join(out)


def error_cases(resource_id: str, rng: random.Random) -> list[ErrorCase]:
    """Bad requests against ``resource_id`` (a real one) and random unknown ids."""
    unknown = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    body = json.dumps(booking_body(resource_id, 1)).encode()
    oversize = json.dumps(
        {"resource_id": resource_id, "quantity": 1, "pad": "x" * (MAX_BODY_BYTES + 4096)}
    ).encode()
    return [
        ErrorCase("malformed", "POST", "/v1/bookings", frozenset({422}), b'{"resource_id": '),
        ErrorCase(
            "unknown-field",
            "POST",
            "/v1/bookings",
            frozenset({422}),
            json.dumps({**booking_body(resource_id, 1), "seat": "A1"}).encode(),
        ),
        ErrorCase(
            "quantity-range",
            "POST",
            "/v1/bookings",
            frozenset({422}),
            json.dumps(booking_body(resource_id, rng.choice((0, 11, -1)))).encode(),
        ),
        ErrorCase(
            "operator-key",
            "POST",
            "/v1/bookings",
            frozenset({422}),
            json.dumps({"resource_id": resource_id, "quantity": 1, "$where": "1"}).encode(),
        ),
        ErrorCase(
            "unknown-resource",
            "POST",
            "/v1/bookings",
            frozenset({422}),
            json.dumps(booking_body(unknown, 1)).encode(),
        ),
        ErrorCase("oversize", "POST", "/v1/bookings", frozenset({413}), oversize),
        ErrorCase("no-token", "POST", "/v1/bookings", frozenset({401}), body, auth="none"),
        ErrorCase("garbage-token", "GET", "/v1/resources", frozenset({401}), auth="garbage"),
        ErrorCase(
            "wrong-key-token",
            "GET",
            f"/v1/resources/{resource_id}",
            frozenset({401}),
            auth="wrong-key",
        ),
        ErrorCase("expired-token", "GET", "/v1/resources", frozenset({401}), auth="expired"),
        ErrorCase(
            "missing-scope", "POST", "/v1/bookings", frozenset({403}), body, auth="read-only"
        ),
        ErrorCase("unknown-booking", "GET", f"/v1/bookings/{unknown}", frozenset({404})),
        ErrorCase("unknown-resource-get", "GET", f"/v1/resources/{unknown}", frozenset({404})),
        ErrorCase("bad-id", "GET", "/v1/resources/not-a-uuid", frozenset({422})),
        ErrorCase("cancel-unknown", "POST", f"/v1/bookings/{unknown}/cancel", frozenset({404})),
    ]


@dataclass(frozen=True)
class BadTokens:
    """Tokens that must be refused, minted once per process."""

    garbage: str
    wrong_key: str
    expired: str
    read_only: str

    @classmethod
    def mint(cls, run_id: str, settings: AuthSettings | None = None) -> BadTokens:
        settings = settings or AuthSettings()
        sub = f"load-{run_id}-bad"
        wrong = AuthSettings(jwt_secret=SecretStr("a-key-that-is-not-the-gateway-secret-" + run_id))
        return cls(
            garbage="not.a.jwt",
            wrong_key=mint_token(wrong, sub, USER_SCOPES),
            expired=mint_token(settings, sub, USER_SCOPES, ttl=timedelta(minutes=-5)),
            read_only=mint_token(settings, sub, [Scope.BOOKINGS_READ.value]),
        )

    def headers(self, case: ErrorCase, principal: Principal) -> dict[str, str]:
        token = {
            "user": principal.token,
            "garbage": self.garbage,
            "wrong-key": self.wrong_key,
            "expired": self.expired,
            "read-only": self.read_only,
        }.get(case.auth)
        headers = {"Content-Type": case.content_type} if case.body is not None else {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return headers


def is_expected(status: int, expected: frozenset[int]) -> bool:
    """The error-shape rule: the expected 4xx is a success, any 5xx or surprise a failure."""
    return status in expected


# ---------------------------------------------------------------------------- seeding
def base_urls(hosts: str) -> list[str]:
    """``"http://a:8000,http://a:8001"`` -> each URL without its trailing slash.

    Several gateways are given as one comma-separated ``--host`` (what `bookify up
    --replicas` prints): the generators spread their requests over them, with no proxy
    between, as a load balancer would (docs/DESIGN.md).
    """
    urls = [url.strip().rstrip("/") for url in hosts.split(",") if url.strip()]
    if not urls:
        raise GatewayUnreachableError(f"no gateway URL in {hosts!r}; e.g. http://127.0.0.1:8000")
    return urls


def check_gateway(host: str, timeout: float = 3.0) -> None:
    """Raise :class:`GatewayUnreachableError` unless every gateway's /healthz answers."""
    for url in base_urls(host):
        try:
            response = httpx.get(f"{url}/healthz", timeout=timeout)
        except httpx.HTTPError as exc:
            raise GatewayUnreachableError(
                f"cannot reach the gateway at {url} ({type(exc).__name__}: {exc}); "
                "start it with `make up`"
            ) from None
        if response.status_code != 200:
            raise GatewayUnreachableError(
                f"the gateway at {url} answered /healthz with {response.status_code}; "
                "is it healthy? (`make up` starts the platform)"
            )


SEED_ADMIN = "seed"  # admin_principal's run id for seeding: one principal for every run
RESOURCE_PAGES = 50  # pages of 100 counted for the data state; beyond, "at least"


@dataclass(frozen=True)
class DataState:
    """What the store held when a run started, through the public API: resources in all
    (``resources_complete`` False: at least that many) and seats already taken on the
    seeded ones (a ledger entry each booking made them; the ledger is not public)."""

    resources: int
    resources_complete: bool
    seeded: int
    seeded_reused: int
    seats_taken: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "resources": self.resources,
            "resources_complete": self.resources_complete,
            "seeded": self.seeded,
            "seeded_reused": self.seeded_reused,
            "seats_taken": self.seats_taken,
        }


@dataclass(frozen=True)
class Seeded:
    ids: list[str]
    state: DataState


def count_resources(client: httpx.Client, max_pages: int = RESOURCE_PAGES) -> tuple[int, bool]:
    """Resources in the store (paging the public list), and whether that is all of them."""
    count, cursor = 0, None
    for _ in range(max_pages):
        params: dict[str, str | int] = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        response = client.get("/v1/resources", params=params)
        response.raise_for_status()
        page = response.json()
        count += len(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return count, True
    return count, False


def seed_resources(
    host: str,
    run_id: str,
    count: int,
    *,
    visible_within: float = 60.0,
    progress: Callable[[str], None] = lambda _: None,
    transport: httpx.BaseTransport | None = None,
) -> Seeded:
    """Create the ``count`` resources of :func:`resource_plan` as the seeding admin, or get
    back the ones an earlier run created (the same idempotency key and body answer the same
    resource while the gateway keeps the key, 24 h), wait until the read model shows them
    and note the data state (through the first gateway of ``host``: every gateway reads the
    same views). ``run_id`` goes into the requests' trace baggage; ``transport`` is for
    tests."""
    admin = admin_principal(SEED_ADMIN)
    rng = random.Random(run_id)
    ids: list[str] = []
    reused = 0
    first = base_urls(host)[0]
    with httpx.Client(
        base_url=first, timeout=10, headers=admin.auth, transport=transport
    ) as client:
        for i, (name, capacity) in enumerate(resource_plan(count)):
            response = client.post(
                "/v1/resources",
                json={"name": name, "capacity": capacity},
                headers={
                    **Trace(run_id, rng).headers(),
                    "Idempotency-Key": f"load-seed-{i}-{capacity}",
                },
            )
            if response.status_code != 202:
                raise RuntimeError(
                    f"seeding {name!r}: the gateway answered {response.status_code}: "
                    f"{response.text[:300]}"
                )
            ids.append(response.headers["location"].rsplit("/", 1)[-1])
            reused += response.headers.get("idempotent-replayed") == "true"
        deadline = time.monotonic() + visible_within
        pending = set(ids)
        taken: dict[str, int] = {}
        while pending:
            for resource_id in sorted(pending):
                response = client.get(f"/v1/resources/{resource_id}")
                body = response.json() if response.status_code == 200 else {}
                if body.get("updated_at"):
                    pending.discard(resource_id)
                    taken[resource_id] = int(body["capacity"]) - int(body["available"])
            if not pending:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{len(pending)} of {count} seeded resources were not visible after "
                    f"{visible_within:.0f} s; are booking and consumer running?"
                )
            time.sleep(0.2)
        resources, complete = count_resources(client)
    state = DataState(resources, complete, count, reused, sum(taken.values()))
    progress(
        f"seeded {count} resources ({reused} reused); the store holds "
        f"{'' if complete else 'at least '}{resources} resources, {state.seats_taken} seats "
        "of the seeded ones taken"
    )
    return Seeded(ids, state)
