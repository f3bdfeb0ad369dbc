"""The operations routes every service shares: health, readiness, metrics, the fault switch."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import APIRouter
from prometheus_client import CollectorRegistry, Counter

from shared.auth import AuthSettings
from shared.faults import OFF
from shared.kafka_security import KafkaRefusedError, KafkaSecurity
from shared.ops import service_app
from shared.service import OutageTolerated, ReadinessCheck, ServiceRuntime
from shared.settings import ServiceSettings
from tests.support import auth
from tests.support.service import never_connect

SECRET = "unit-test-secret-0123456789abcdef0123456789"
AUTH = AuthSettings(jwt_secret=SECRET)


@dataclass
class Deps:
    up: dict[str, bool] = field(default_factory=lambda: {"kafka": True, "mongodb": True})
    refused: dict[str, str] = field(default_factory=dict)  # a check that names why
    tolerated: set[str] = field(default_factory=set)  # down, and the service stays ready

    @property
    def readiness(self) -> Mapping[str, ReadinessCheck]:
        def check(name: str) -> ReadinessCheck:
            async def answers() -> bool:
                if name in self.refused:
                    raise KafkaRefusedError(self.refused[name])
                if name in self.tolerated and not self.up[name]:
                    raise OutageTolerated
                return self.up[name]

            return answers

        return {name: check(name) for name in self.up}


def metrics(registry: CollectorRegistry) -> Counter:
    return Counter("unit_things", "Things counted by the unit test.", registry=registry)


@dataclass
class Served:
    http: httpx.AsyncClient
    deps: Deps
    runtime: ServiceRuntime[ServiceSettings, Deps, Counter]


def service_runtime(deps: Deps, environment: str = "test") -> ServiceRuntime[Any, Deps, Counter]:
    return ServiceRuntime(
        ServiceSettings(
            environment=environment, auth=AUTH, kafka=KafkaSecurity(allow_plaintext=True)
        ),
        metrics=metrics,
        connect=never_connect,
        overrides=deps,
    )


@asynccontextmanager
async def served(environment: str = "test") -> AsyncIterator[Served]:
    deps = Deps()
    runtime = service_runtime(deps, environment)
    app = service_app(runtime, title="unit", description="a service with nothing but ops")
    async with (
        LifespanManager(app) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(manager.app), base_url="http://svc"
        ) as http,
    ):
        yield Served(http, deps, runtime)


@pytest.fixture
async def svc() -> AsyncIterator[Served]:
    async with served() as s:
        yield s


def bearer(*scopes: str) -> dict[str, str]:
    return auth.bearer("ops", scopes, settings=AUTH)


ADMIN = bearer("resources:admin")


async def test_healthz_is_200_even_when_every_dependency_is_down(svc: Served) -> None:
    svc.deps.up = {"kafka": False, "mongodb": False}
    response = await svc.http.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


async def test_readyz_is_200_with_each_check_when_all_answer(svc: Served) -> None:
    response = await svc.http.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"kafka": True, "mongodb": True}}


async def test_readyz_is_a_503_problem_naming_what_is_down(svc: Served) -> None:
    svc.deps.up["mongodb"] = False
    response = await svc.http.get("/readyz")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert "retry-after" in response.headers
    body = response.json()
    assert body["detail"] == "not ready: mongodb unreachable"
    assert body["checks"] == {"kafka": True, "mongodb": False}


async def test_readyz_stays_200_through_an_outage_the_service_tolerates(svc: Served) -> None:
    svc.deps.up["kafka"] = False
    svc.deps.tolerated.add("kafka")
    response = await svc.http.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"kafka": False, "mongodb": True}}
    # Another dependency down still makes it unready, and names only that one.
    svc.deps.up["mongodb"] = False
    response = await svc.http.get("/readyz")
    assert response.status_code == 503
    assert response.json()["detail"] == "not ready: mongodb unreachable"


async def test_a_refusal_is_never_tolerated(svc: Served) -> None:
    svc.deps.tolerated.add("kafka")
    svc.deps.refused["kafka"] = "SASL authentication failed for 'gateway'"
    response = await svc.http.get("/readyz")
    assert response.status_code == 503
    assert response.json()["causes"] == {"kafka": "SASL authentication failed for 'gateway'"}


async def test_readyz_says_why_kafka_refuses_the_service(svc: Served) -> None:
    svc.deps.up["mongodb"] = False
    svc.deps.refused["kafka"] = "SASL authentication failed for 'gateway'"
    response = await svc.http.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["detail"] == (
        "not ready: mongodb unreachable; "
        "kafka refuses this service: SASL authentication failed for 'gateway'"
    )
    assert body["checks"] == {"kafka": False, "mongodb": False}
    assert body["causes"] == {"kafka": "SASL authentication failed for 'gateway'"}


async def test_metrics_are_prometheus_text_by_default_and_openmetrics_when_asked(
    svc: Served,
) -> None:
    svc.runtime.metrics.inc(3)
    text = await svc.http.get("/metrics")
    assert text.headers["content-type"].startswith("text/plain")
    assert "unit_things_total 3.0" in text.text
    open_metrics = await svc.http.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert open_metrics.headers["content-type"].startswith("application/openmetrics-text")
    assert open_metrics.text.endswith("# EOF\n")


async def test_the_fault_switch_wants_a_token_with_the_admin_scope(svc: Served) -> None:
    assert (await svc.http.get("/admin/faults")).status_code == 401
    invalid = await svc.http.get("/admin/faults", headers={"Authorization": "Bearer nope"})
    assert invalid.status_code == 401
    assert invalid.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    reader = await svc.http.put(
        "/admin/faults", headers=bearer("bookings:read"), json={"latency_ms": 5}
    )
    assert reader.status_code == 403
    assert reader.headers["content-type"] == "application/problem+json"
    assert svc.runtime.faults.settings == OFF


async def test_an_admin_switches_faults_on_and_reads_them_back(svc: Served) -> None:
    response = await svc.http.put(
        "/admin/faults", headers=ADMIN, json={"error_rate": 0.25, "latency_ms": 10}
    )
    assert response.status_code == 200
    assert response.json()["settings"]["error_rate"] == 0.25
    body = (await svc.http.get("/admin/faults", headers=ADMIN)).json()
    assert (body["settings"]["latency_ms"], body["allowed"]) == (10, True)
    assert svc.runtime.faults.settings.error_rate == 0.25


async def test_invalid_fault_settings_are_a_422_problem_naming_the_field(svc: Served) -> None:
    response = await svc.http.put("/admin/faults", headers=ADMIN, json={"error_rate": 3})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "error_rate"
    assert svc.runtime.faults.settings == OFF


async def test_the_fault_switch_does_not_exist_in_prod() -> None:
    async with served("prod") as svc:
        response = await svc.http.put("/admin/faults", headers=ADMIN, json={"latency_ms": 5})
        assert response.status_code == 404
        assert "prod" in response.json()["detail"]
        assert svc.runtime.faults.settings == OFF
        # No token is checked for it there: booking and the consumer have no JWT secret.
        assert (await svc.http.get("/admin/faults")).status_code == 404


async def test_the_openapi_document_lists_every_status_of_the_ops_routes(svc: Served) -> None:
    paths = (await svc.http.get("/openapi.json")).json()["paths"]
    assert set(paths["/readyz"]["get"]["responses"]) == {"200", "503"}
    put = {"200", "400", "401", "403", "404", "422"}
    assert set(paths["/admin/faults"]["put"]["responses"]) == put
    problem = paths["/admin/faults"]["put"]["responses"]["403"]["content"]
    assert list(problem) == ["application/problem+json"]


async def test_the_services_own_routes_are_tried_first_in_the_order_given() -> None:
    """Busiest first, then the operations routes: FastAPI tries included routers in order
    (and documents them in that order)."""
    busy, quiet = APIRouter(prefix="/busy"), APIRouter(prefix="/quiet")

    @busy.get("")
    async def busy_route() -> dict[str, str]:
        return {"route": "busy"}

    @quiet.get("")
    async def quiet_route() -> dict[str, str]:
        return {"route": "quiet"}

    app = service_app(
        service_runtime(Deps()), title="unit", description="", api=(busy, quiet), api_prefix="/v1"
    )
    assert list(app.openapi()["paths"])[:3] == ["/v1/busy", "/v1/quiet", "/healthz"]
    async with (
        LifespanManager(app) as manager,
        httpx.AsyncClient(transport=httpx.ASGITransport(manager.app), base_url="http://s") as http,
    ):
        assert (await http.get("/v1/busy")).json() == {"route": "busy"}
        assert (await http.get("/v1/quiet")).json() == {"route": "quiet"}
        assert (await http.get("/healthz")).status_code == 200
