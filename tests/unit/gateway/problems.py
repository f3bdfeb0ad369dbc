"""Assertions shared by the gateway unit tests."""

from __future__ import annotations

from typing import Any

import httpx

from shared.problem import PROBLEM_BASE


def assert_problem(
    response: httpx.Response, status: int, slug: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"].startswith(PROBLEM_BASE)
    assert body["title"]
    assert isinstance(body["detail"], str)
    if slug is not None:
        assert body["type"] == PROBLEM_BASE + slug
    assert "Traceback" not in response.text
    return body


def field_names(body: dict[str, Any]) -> set[str]:
    return {e["field"] for e in body["errors"]}
