"""Use cases: apply one event to the views."""

from consumer.service_layer.handlers import EventHandler

__all__ = ["EventHandler"]
