"""The local platform: what `bookify up` and the test stacks run on this machine.

``infra`` builds and starts Kafka, FerretDB and Redis as local processes; ``services`` runs
the three services as processes; ``supervisor`` restarts them for `bookify up`. Nothing here
imports the ``bookify`` command (tests/unit/test_imports.py checks it).
"""
