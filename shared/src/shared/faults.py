"""Fault injection for load and chaos tests: off by default, refused outside dev and test.

Each service holds one :class:`FaultSwitch`. Operators (the load-test harness) read and set
its :class:`FaultSettings` over HTTP, ``GET``/``PUT /admin/faults`` (the gateway under
``/v1/admin/faults``), with a bearer token that has the ``resources:admin`` scope. Where the
faults apply is the service's business:

- gateway: added latency and a fraction of requests answered 503/500 (ASGI middleware);
- booking and consumer: added latency before the handler, a fraction of attempts failing
  with :class:`InjectedFaultError` (retried with backoff by :mod:`shared.messaging`) and a
  fraction of messages that are *poison* (:class:`InjectedPoisonError` on every attempt,
  decided by the message id, so they exhaust their retries and land in the DLQ).

A switch built for ``environment=prod`` can never be turned on: :meth:`FaultSwitch.update`
raises :class:`FaultsRefusedError`, and the admin endpoints answer 404.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.auth import AuthSettings, InvalidTokenError, Scope, verify_token
from shared.settings import Environment

ADMIN_PATH = "/admin/faults"
ADMIN_SCOPE = Scope.RESOURCES_ADMIN
ALLOWED_ENVIRONMENTS = frozenset({Environment.DEV, Environment.TEST})
PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_BASE = "https://bookify.dev/problems/"


class FaultSettings(BaseModel):
    """What to inject. All zero (the default) means nothing is injected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    latency_ms: float = Field(default=0.0, ge=0, le=30_000, description="Added to each request.")
    error_rate: float = Field(
        default=0.0, ge=0, le=1, description="Fraction of requests/attempts that fail."
    )
    error_status: Literal[500, 503] = Field(
        default=503, description="HTTP status of an injected error (gateway)."
    )
    poison_rate: float = Field(
        default=0.0, ge=0, le=1, description="Fraction of messages that fail every attempt."
    )

    @property
    def active(self) -> bool:
        return self.latency_ms > 0 or self.error_rate > 0 or self.poison_rate > 0


OFF = FaultSettings()


class FaultsRefusedError(Exception):
    """Fault injection was asked for in an environment that does not allow it."""


class InjectedFaultError(RuntimeError):
    """A transient failure injected on purpose (a retry may succeed)."""


class InjectedPoisonError(InjectedFaultError):
    """A message chosen as poison: every attempt fails, so it ends in the DLQ."""


class _HasId(Protocol):
    @property
    def message_id(self) -> Any: ...


M = TypeVar("M", bound=_HasId)


def _unit_hash(key: str) -> float:
    """A stable number in [0, 1) for ``key``: the same message is poison on every attempt."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class FaultSwitch:
    """The current :class:`FaultSettings` of one process, and the dice that apply them."""

    def __init__(
        self,
        environment: Environment | str,
        *,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.environment = Environment(environment)
        self._settings = OFF
        self._rng = rng or random.Random()
        self._sleep = sleep
        self.injected: Counter[str] = Counter()

    @property
    def allowed(self) -> bool:
        return self.environment in ALLOWED_ENVIRONMENTS

    @property
    def settings(self) -> FaultSettings:
        return self._settings

    def update(self, settings: FaultSettings) -> FaultSettings:
        if not self.allowed and settings.active:
            raise FaultsRefusedError(
                f"fault injection is disabled in environment={self.environment.value}; "
                "it is only available in dev and test"
            )
        self._settings = settings
        return settings

    def reset(self) -> None:
        self._settings = OFF

    # ------------------------------------------------------------ the dice
    def latency_s(self) -> float:
        return self._settings.latency_ms / 1000.0

    def roll_error(self) -> bool:
        rate = self._settings.error_rate
        hit = rate > 0 and self._rng.random() < rate
        if hit:
            self.injected["error"] += 1
        return hit

    def is_poison(self, key: str) -> bool:
        rate = self._settings.poison_rate
        hit = rate > 0 and _unit_hash(key) < rate
        if hit:
            self.injected["poison"] += 1
        return hit

    async def delay(self) -> None:
        if (seconds := self.latency_s()) > 0:
            self.injected["latency"] += 1
            await self._sleep(seconds)

    async def before_handling(self, key: str) -> None:
        """For message handlers: added latency, then maybe a poison or transient error."""
        if not self._settings.active:
            return
        await self.delay()
        if self.is_poison(key):
            raise InjectedPoisonError(f"injected poison message {key}")
        if self.roll_error():
            raise InjectedFaultError("injected transient handler error")

    def wrap(self, handle: Callable[[M], Awaitable[None]]) -> Callable[[M], Awaitable[None]]:
        """``handle`` with the faults applied before it (keyed by the message id)."""

        async def faulty(message: M) -> None:
            await self.before_handling(str(message.message_id))
            await handle(message)

        return faulty

    def state(self) -> dict[str, Any]:
        """The JSON body of ``GET /admin/faults``."""
        return {
            "allowed": self.allowed,
            "environment": self.environment.value,
            "settings": self._settings.model_dump(),
            "injected": dict(self.injected),
        }


# ------------------------------------------------------------------ HTTP admin endpoint
AsgiScope = MutableMapping[str, Any]
AsgiMessage = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[AsgiMessage]]
Send = Callable[[AsgiMessage], Awaitable[None]]

MAX_ADMIN_BODY = 4096


def problem(status: int, title: str, detail: str, **extra: Any) -> dict[str, Any]:
    slug = title.lower().replace(" ", "-")
    return {
        "type": PROBLEM_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
        **extra,
    }


class FaultsAdminApp:
    """``GET``/``PUT /admin/faults`` as a plain ASGI app (booking and consumer mount it).

    Answers 404 outside dev/test (the feature does not exist there), 401 without a valid
    token, 403 without the ``resources:admin`` scope, 422 for an invalid body.
    """

    def __init__(self, switch: FaultSwitch, auth: AuthSettings | None = None) -> None:
        self.switch = switch
        self.auth = auth or AuthSettings()

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        status, body = await self._answer(scope, receive)
        payload = json.dumps(body).encode()
        media = "application/json" if status == 200 else PROBLEM_MEDIA_TYPE
        headers = [
            (b"content-type", media.encode()),
            (b"content-length", str(len(payload)).encode()),
        ]
        if status == 401:
            headers.append((b"www-authenticate", b"Bearer"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def _answer(self, scope: AsgiScope, receive: Receive) -> tuple[int, dict[str, Any]]:
        if not self.switch.allowed:
            detail = f"fault injection is disabled in environment={self.switch.environment.value}"
            return 404, problem(404, "Not found", detail)
        method = scope.get("method", "GET")
        if method not in ("GET", "PUT"):
            return 405, problem(405, "Method not allowed", "use GET or PUT")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return 401, problem(401, "Authentication required", "a bearer token is required")
        try:
            principal = verify_token(self.auth, token.strip())
        except InvalidTokenError:
            return 401, problem(401, "Authentication required", "the bearer token is invalid")
        if ADMIN_SCOPE.value not in principal.scopes:
            detail = f"this operation needs the {ADMIN_SCOPE.value!r} scope"
            return 403, problem(403, "Insufficient scope", detail)
        if method == "PUT":
            raw = await _read_body(receive, MAX_ADMIN_BODY)
            if raw is None:
                return 413, problem(413, "Request body too large", "fault settings are tiny")
            try:
                self.switch.update(FaultSettings.model_validate_json(raw or b"{}"))
            except ValidationError as exc:
                errors = [
                    {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]}
                    for e in exc.errors()
                ]
                return 422, problem(
                    422, "Validation error", "invalid fault settings", errors=errors
                )
            except FaultsRefusedError as exc:  # pragma: no cover - allowed was checked above
                return 404, problem(404, "Not found", str(exc))
        return 200, self.switch.state()


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
