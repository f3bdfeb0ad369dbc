"""The ceiling for `bookify bench pipeline`: a FastAPI endpoint that accepts and does nothing."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Response

app = FastAPI()


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/v1/bookings", status_code=202)
async def accept(body: dict[str, Any], response: Response) -> dict[str, Any]:
    response.headers["Location"] = "/v1/bookings/0"
    return {"status": "pending", **body}
