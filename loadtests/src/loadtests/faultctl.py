"""Client for the services' fault switches (``/admin/faults``, see shared.faults).

A fault plan names settings per service, written on the command line as
``service.field=value`` pairs, e.g. ``gateway.latency_ms=150,booking.error_rate=0.2``.
The gateway's switch is at ``<host>/v1/admin/faults``; booking's and consumer's at
``<their url>/admin/faults`` (only when their URLs are given: they are internal ports). Each
may name several replicas, comma-separated (``bookify up --replicas`` prints them so): the
switch is then set on every one of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import ValidationError

from loadtests.data import admin_principal, base_urls
from shared.faults import ADMIN_PATH, OFF, FaultSettings

SERVICES = ("gateway", "booking", "consumer")

# The error shape's default: slowness everywhere and transient handler errors in booking
# (retried with backoff: slower, never lost). Nothing a client should see as a 5xx, so a
# robust system passes; add e.g. gateway.error_rate=0.05 to see failures counted.
DEFAULT_ERROR_PLAN = "gateway.latency_ms=50,booking.error_rate=0.1,consumer.latency_ms=20"


class FaultInjectionError(Exception):
    """A fault switch could not be read or set."""


@dataclass(frozen=True)
class FaultTarget:
    service: str
    url: str  # the admin endpoint itself
    replicas: tuple[str, ...] = ()  # the same endpoint on the service's other replicas

    @classmethod
    def of(cls, service: str, urls: str, path: str) -> FaultTarget:
        """The switch at ``path`` of each of the comma-separated base ``urls``."""
        first, *others = [f"{url}{path}" for url in base_urls(urls)]
        return cls(service, first, tuple(others))


def targets(
    host: str, *, booking_url: str | None = None, consumer_url: str | None = None
) -> dict[str, FaultTarget]:
    out = {"gateway": FaultTarget.of("gateway", host, f"/v1{ADMIN_PATH}")}
    if booking_url:
        out["booking"] = FaultTarget.of("booking", booking_url, ADMIN_PATH)
    if consumer_url:
        out["consumer"] = FaultTarget.of("consumer", consumer_url, ADMIN_PATH)
    return out


def parse_plan(spec: str) -> dict[str, FaultSettings]:
    """``"gateway.latency_ms=150,booking.error_rate=0.2"`` -> settings per service."""
    fields: dict[str, dict[str, str]] = {}
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        service, dot, name = key.strip().partition(".")
        if not sep or not dot or not name:
            raise ValueError(f"fault {item!r}: expected service.field=value")
        if service not in SERVICES:
            raise ValueError(f"fault {item!r}: service must be one of {', '.join(SERVICES)}")
        fields.setdefault(service, {})[name.strip()] = value.strip()
    plan: dict[str, FaultSettings] = {}
    for service, values in fields.items():
        try:
            plan[service] = FaultSettings.model_validate(values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{service}.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            raise ValueError(f"invalid fault plan: {problems}") from None
    return plan


class FaultController:
    """Sets and resets fault switches; remembers what it switched on, to switch it off."""

    def __init__(
        self, available: Mapping[str, FaultTarget], run_id: str, timeout: float = 5.0
    ) -> None:
        self.available = dict(available)
        self.token = admin_principal(run_id).token
        self.timeout = timeout
        self.active: set[str] = set()

    def apply(self, plan: Mapping[str, FaultSettings]) -> dict[str, Any]:
        missing = sorted(set(plan) - set(self.available))
        if missing:
            raise FaultInjectionError(
                f"no admin URL for {', '.join(missing)}: pass --booking-url/--consumer-url"
            )
        states = {}
        for service, settings in plan.items():
            states[service] = self._put(self.available[service], settings)
            self.active.add(service)
        return states

    def reset(self) -> None:
        """Switch off everything this controller switched on (best effort, all of them)."""
        errors = []
        for service in sorted(self.active):
            try:
                self._put(self.available[service], OFF)
            except FaultInjectionError as exc:
                errors.append(str(exc))
        self.active.clear()
        if errors:
            raise FaultInjectionError("; ".join(errors))

    def read(self, service: str) -> dict[str, Any]:
        target = self.available[service]
        return self._call("GET", target, target.url, None)

    def _put(self, target: FaultTarget, settings: FaultSettings) -> dict[str, Any]:
        """Every replica's switch; the first one's state."""
        body = settings.model_dump()
        state = self._call("PUT", target, target.url, body)
        for url in target.replicas:
            self._call("PUT", target, url, body)
        return state

    def _call(self, method: str, target: FaultTarget, url: str, body: Any) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.token}"}
        try:
            response = httpx.request(method, url, json=body, headers=headers, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise FaultInjectionError(
                f"{target.service} fault switch at {url}: {type(exc).__name__}: {exc}"
            ) from None
        if response.status_code == 404:
            raise FaultInjectionError(
                f"{target.service} refused fault injection ({url} answered 404: "
                "it only exists when the service runs with environment dev or test)"
            )
        if response.status_code != 200:
            raise FaultInjectionError(
                f"{target.service} fault switch answered {response.status_code}: "
                f"{response.text[:300]}"
            )
        state: dict[str, Any] = response.json()
        return state
