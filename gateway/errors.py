"""The gateway's exception hierarchy: every error the gateway raises itself is a GatewayError.

Each carries a reason code; a :class:`Refused` also carries the HTTP status it is answered
with (the API turns it into its ``{"error": {"code", "message"}}`` body).
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base class of the gateway's own errors."""

    code = "gateway_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class ConfigError(GatewayError):
    code = "bad_config"


class KeyFileError(GatewayError):
    code = "bad_key_file"


class MigrationError(GatewayError):
    code = "migration_failed"


class NotLeaderError(GatewayError):
    """The sequencer lost (or never had) the log's write lock."""

    code = "not_leader"


class Refused(GatewayError):
    """A request the gateway turns down: the HTTP status, reason code and message of its answer."""

    status = 400

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message, code=code)
        self.status = status


class DeviceError(Refused):
    """A refused device operation: enrolment, key rotation or revocation (gateway.devices)."""


class CosignatureRefused(Refused):
    """A refused witness cosignature (gateway.witnesses)."""


class BodyTooLarge(GatewayError):
    """A request body over the cap (gateway.bodylimit), raised from ``receive`` once the 413 is sent.

    Not a :class:`Refused`: the middleware has already answered, so the application's handler of
    refusals must not try to answer again (its response may have started); the middleware absorbs it.
    """

    code = "request_too_large"
    status = 413

    def __init__(self, message: str = "the request body exceeds the limit") -> None:
        super().__init__(message)
