"""Fault injection in the gateway's requests (dev and test only; see shared.faults).

``FaultMiddleware`` adds latency to /v1 requests and answers a fraction of them with a 503
(with Retry-After) or 500 problem before they reach a route. The operators' switch itself,
``GET``/``PUT /v1/admin/faults``, is the one every service has (:func:`shared.ops.ops_routes`).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from shared.faults import ADMIN_PATH, FaultSwitch
from shared.problem import send_problem

API_PREFIX = "/v1"
FAULTS_PATH = f"{API_PREFIX}{ADMIN_PATH}"  # the switch itself must keep working


class FaultMiddleware:
    """Pure ASGI: latency and injected errors for /v1 requests while the switch is on."""

    def __init__(self, app: ASGIApp, switch: FaultSwitch) -> None:
        self.app = app
        self.switch = switch

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        settings = self.switch.settings
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not settings.active or not path.startswith(API_PREFIX + "/") or path == FAULTS_PATH:
            await self.app(scope, receive, send)
            return
        await self.switch.delay()
        if self.switch.roll_error():
            status = settings.error_status
            retry = [(b"retry-after", b"1")] if status == 503 else []
            await send_problem(
                send,
                status,
                "injected fault (fault injection is switched on)",
                instance=path,
                headers=retry,
            )
            return
        await self.app(scope, receive, send)
