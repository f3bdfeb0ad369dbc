"""The service layer: load, decide, append, publish."""

from booking.service_layer.handlers import CommandHandler, Outcome
from booking.service_layer.heads import HEADS_CACHED, LedgerHeads, find_head

__all__ = ["HEADS_CACHED", "CommandHandler", "LedgerHeads", "Outcome", "find_head"]
