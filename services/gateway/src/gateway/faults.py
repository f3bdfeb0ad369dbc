"""Fault injection in the gateway (dev and test only; see shared.faults).

``FaultMiddleware`` adds latency to /v1 requests and answers a fraction of them with a 503
(with Retry-After) or 500 problem before they reach a route. ``router`` is the operators'
switch, ``GET``/``PUT /v1/admin/faults`` with the ``resources:admin`` scope; it answers 404
outside dev and test, where the switch cannot be turned on at all.
"""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.deps import Admin
from gateway.errors import NotFoundError
from gateway.problem import PROBLEM_BASE, PROBLEM_MEDIA_TYPE, problem_responses
from shared.faults import ADMIN_PATH, FaultSettings, FaultSwitch

API_PREFIX = "/v1"
EXEMPT = (f"{API_PREFIX}{ADMIN_PATH}",)  # the switch itself must keep working


class FaultMiddleware:
    """Pure ASGI: latency and injected errors for /v1 requests while the switch is on."""

    def __init__(self, app: ASGIApp, switch: FaultSwitch) -> None:
        self.app = app
        self.switch = switch

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        settings = self.switch.settings
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not settings.active or not path.startswith(API_PREFIX + "/") or path in EXEMPT:
            await self.app(scope, receive, send)
            return
        await self.switch.delay()
        if self.switch.roll_error():
            await self._reject(settings.error_status, path, send)
            return
        await self.app(scope, receive, send)

    @staticmethod
    async def _reject(status: int, path: str, send: Send) -> None:
        slug, title = (
            ("service-unavailable", "Service temporarily unavailable")
            if status == 503
            else ("internal-error", "Internal server error")
        )
        body = json.dumps(
            {
                "type": PROBLEM_BASE + slug,
                "title": title,
                "status": status,
                "detail": "injected fault (fault injection is switched on)",
                "instance": path,
            }
        ).encode()
        headers = [
            (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
            (b"content-length", str(len(body)).encode()),
        ]
        if status == 503:
            headers.append((b"retry-after", b"1"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def get_switch(request: Request) -> FaultSwitch:
    switch: FaultSwitch = request.app.state.faults
    if not switch.allowed:
        # As if the endpoint did not exist: production has no fault switch.
        raise NotFoundError(
            f"fault injection is disabled in environment={switch.environment.value}"
        )
    return switch


Switch = Annotated[FaultSwitch, Depends(get_switch)]

router = APIRouter(prefix="/admin/faults", tags=["operations"])


@router.get(
    "",
    summary="Current fault injection settings (dev/test only)",
    responses=problem_responses(401, 403, 404),
)
async def read_faults(_: Admin, switch: Switch) -> dict[str, object]:
    return switch.state()


@router.put(
    "",
    summary="Switch fault injection on or off (dev/test only)",
    responses=problem_responses(401, 403, 404, 422),
)
async def update_faults(settings: FaultSettings, _: Admin, switch: Switch) -> dict[str, object]:
    switch.update(settings)
    return switch.state()
