"""Errors of the local infrastructure provider; each message says what to do next."""

from __future__ import annotations


class InfraError(RuntimeError):
    """Base class: anything `bookify infra` reports as a one-line error and exit code 1."""


class MissingPrerequisiteError(InfraError):
    """A tool needed to install or run local infrastructure is not on PATH."""


class PortInUseError(InfraError):
    """A port we are about to listen on is already taken by another process."""


class InstallError(InfraError):
    """Downloading the Kafka jars or building FerretDB failed."""


class StartupError(InfraError):
    """A server exited or did not become ready in time; the message ends with its log tail."""


class StateFileError(InfraError):
    """The run directory's infra.json cannot be parsed."""
