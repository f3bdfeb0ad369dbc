"""Benchmarks that print figures, not tests: what `bookify bench` runs.

``pipeline`` (the booking pipeline and the generator beside their ceilings), ``stages`` (one
stage alone), ``verdict`` (the baseline verdict's false and true alarm rates). Nothing here
imports the ``bookify`` command (tests/unit/test_imports.py checks it).
"""
