"""The agent's one error type: a message for a person and an exit code.

Every failure a command can meet is turned into an :class:`AgentError` at the
place where it is understood, with a message that says what went wrong and what
to do.  The command line prints the message and exits with the code; it never
shows a traceback for an expected failure.

The agent's other failures are subclasses, caught where they are expected:
``MeterUnavailable`` (edge_agent/meters/base.py: no reading this time) and
``ChainConflict`` (edge_agent/store.py: the reading is not stored).  Both keep
the default code, ``Exit.FAILED``.
"""

from __future__ import annotations

import enum


class Exit(enum.IntEnum):
    """Exit codes of ``python -m edge_agent`` (also listed in ``--help``)."""

    OK = 0
    FAILED = 1
    """A runtime failure not covered below (e.g. the gateway answered an unexpected error)."""
    USAGE = 2
    """Bad arguments, a missing or invalid config file, a command run in the wrong state."""
    UNREACHABLE = 3
    """The gateway (or the broker) could not be reached."""
    REFUSED = 4
    """The gateway refused the installer token (401) or its role (403)."""
    ALREADY_ENROLLED = 5
    """The gateway already has an enrolment for this device (409)."""


class AgentError(Exception):
    """An expected failure: printed as ``error: <message>`` with exit code ``code``."""

    def __init__(self, message: str, code: Exit = Exit.FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def __str__(self) -> str:
        return self.message
