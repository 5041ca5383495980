"""Exit codes and the verifier's own errors.

Protocol failures are :class:`attest_core.errors.AttestError` and always mean
exit code 2 (invalid evidence).  This module adds what only a command-line tool
has: usage errors (exit 3) and a gateway that cannot be reached (exit 4).
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """What ``python -m verifier`` returns; 0-3 are the contract's codes."""

    OK = 0
    """Valid evidence and a backed claim; a valid checkpoint or proof; a monitor round without alert."""
    NOT_BACKED = 1
    """Valid evidence, but the claim is not backed."""
    INVALID = 2
    """Invalid evidence (bad signature or proof, tampered or unparsable input, wrong key), or a monitor alert."""
    USAGE = 3
    """A usage error: missing or unreadable file, bad arguments, malformed key string."""
    UNREACHABLE = 4
    """monitor/witness --once: the round could not be completed with the gateway."""
    INTERRUPTED = 130
    """monitor/witness stopped with Ctrl-C."""


class VerifierError(Exception):
    """Base of the errors this package raises itself; each maps to an exit code."""

    exit_code: ExitCode = ExitCode.USAGE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(VerifierError):
    """Bad arguments, a missing or unreadable file, a malformed key string (exit 3)."""

    exit_code = ExitCode.USAGE


class GatewayUnreachable(VerifierError):
    """The gateway could not be reached or gave an unusable answer (not an alert: retried)."""

    exit_code = ExitCode.UNREACHABLE


class InvalidEvidence(VerifierError):
    """Evidence refused with a protocol reason code, as ``verify-checkpoint`` and the proof checks report it (exit 2)."""

    exit_code = ExitCode.INVALID

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
