"""The gateway's domain errors. They know nothing of HTTP: error_handlers.py gives each a
status."""

from __future__ import annotations


class GatewayError(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFoundError(GatewayError):
    """Unknown id, or owned by another principal (which must look the same to the caller)."""


class UnknownResourceError(GatewayError):
    """A booking names a resource that neither the read model nor the gateway has seen."""


class IdempotencyKeyReusedError(GatewayError):
    """The same Idempotency-Key came back with a different request body."""


class NotCancellableError(GatewayError):
    """The booking is already rejected or cancelled."""


class RateLimitedError(GatewayError):
    def __init__(self, retry_after: float) -> None:
        super().__init__("too many requests for this principal; slow down")
        self.retry_after = retry_after


class NothingNewError(GatewayError):
    """A stream's client already has its booking's final status (Last-Event-ID): 204."""
