"""The gateway's exception hierarchy."""

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
