"""Bookify's booking service: the write model.

Consumes commands from ``bookify.commands``, decides them on an append-only per-resource
ledger in MongoDB (a unique index is the only concurrency control), and publishes events to
``bookify.events``. Run it with ``python -m booking``; build it with
:func:`booking.app.create_app`.
"""
