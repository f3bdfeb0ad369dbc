"""The service layer: load, decide, append, publish."""

from booking.service_layer.handlers import CommandHandler, Outcome

__all__ = ["CommandHandler", "Outcome"]
