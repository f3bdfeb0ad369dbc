"""The URLs a process is given, read and shown safely; light, for the long-running `bookify up`
(it imports neither the settings nor the telemetry modules for these two)."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from opentelemetry.sdk.environment_variables import (
    OTEL_EXPORTER_OTLP_ENDPOINT,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
)


def trace_endpoint(env: Mapping[str, str]) -> str | None:
    """Where the OTLP exporter sends spans (``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT``), if set."""
    return env.get(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) or env.get(OTEL_EXPORTER_OTLP_ENDPOINT)


def redact_url(url: str) -> str:
    """``url`` with its password (a Redis or MongoDB URL's) masked, for logs and errors."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
