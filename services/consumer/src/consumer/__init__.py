"""Bookify's read side: projects booking events into views, notifications and e2e latency."""
