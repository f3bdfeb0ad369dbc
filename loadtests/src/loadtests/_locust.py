"""Locust's classes, imported without monkey-patching a process that is not running Locust.

``import locust`` runs gevent's ``monkey.patch_all()`` unless ``LOCUST_SKIP_MONKEY_PATCH`` is
set. That is right inside a Locust process (the ``locust`` command has imported, and
patched, before it loads our locustfile), and wrong everywhere else these modules are
imported: the open model runs on asyncio, ``bookify`` is a plain CLI and pytest runs asyncio
tests. So when Locust is not loaded yet, it is imported with patching switched off.
"""

from __future__ import annotations

import os
import sys

_SKIP = "LOCUST_SKIP_MONKEY_PATCH"

if "locust" not in sys.modules and _SKIP not in os.environ:
    os.environ[_SKIP] = "1"
    try:
        from locust import FastHttpUser, LoadTestShape, task
    finally:
        del os.environ[_SKIP]
else:
    from locust import FastHttpUser, LoadTestShape, task

__all__ = ["FastHttpUser", "LoadTestShape", "task"]
