"""What every route shares: the error type and body, OpenAPI responses, identifiers, base64 and text.

The API's error answer (status, code, message) is defined here once: :class:`ApiError`
(a :class:`gateway.errors.Refused`), its body :class:`ErrorBody` and :func:`error`, which
every handler and the body-size middleware answer with.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

from fastapi import Path, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from attest_core.codec import ID_RE
from gateway.errors import Refused

T = TypeVar("T")
MAX_MS: Final = 2**63 - 1
ID_PATTERN: Final = "^" + ID_RE.pattern + "$"


class ApiError(Refused):
    """An answer other than success: status, machine code and a message that says what was wrong.

    A :class:`~gateway.errors.Refused` that may also carry headers of its answer (the
    ``WWW-Authenticate`` challenge of a 401).
    """

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(status, code, message)
        self.headers = headers


class ErrorDetail(BaseModel):
    code: str
    message: str


# The body of every answer other than success: {"error": {"code": ..., "message": ...}}.
# (A comment, not a docstring: a model's docstring would become its description in the OpenAPI schema.)
class ErrorBody(BaseModel):
    error: ErrorDetail


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The answer of a refusal: its status and headers, and an :class:`ErrorBody`."""
    body = ErrorBody(error=ErrorDetail(code=code, message=message))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


_DESCRIPTIONS: Final = {
    400: "Bad input: the message says which parameter or field and why",
    401: "No token, or not a valid one",
    403: "The token's role may not do this",
    404: "Not found",
    409: "Conflict with the current state",
    503: "The database is not reachable",
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI descriptions of the error answers a route gives (always with 400 and 503)."""
    return {s: {"model": ErrorBody, "description": _DESCRIPTIONS[s]} for s in sorted({400, 503, *statuses})}


# A request body: an unknown field is a 400, not silently ignored. (A comment: a model's
# docstring would become its description in the OpenAPI schema.)
class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def id_path(what: str, example: str) -> Any:
    """The path parameter of an identifier (a device id, an asset id)."""
    return Path(
        pattern=ID_PATTERN, max_length=64, description=f"The {what} id (an identifier)", examples=[example]
    )


def id_query(description: str) -> Any:
    """An optional query parameter that filters by an identifier."""
    return Query(pattern=ID_PATTERN, max_length=64, description=description)


def b64decode_field(text: str, what: str, size: int | None = None) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "bad_base64", f"{what} is not valid standard base64") from None
    if size is not None and len(raw) != size:
        raise ApiError(400, "bad_length", f"{what} must be {size} bytes, got {len(raw)}")
    return raw


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


async def poll(fetch: Callable[[], Awaitable[T | None]], seconds: float) -> T | None:
    """Call ``fetch`` until it returns something other than None, for at most ``seconds``."""
    deadline = time.monotonic() + seconds
    delay = 0.02
    while True:
        value = await fetch()
        if value is not None or time.monotonic() >= deadline:
            return value
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 0.2)


def degrees(e6: int) -> str:
    """Micro-degrees as an exact decimal string of degrees (52520008 -> "52.520008")."""
    sign = "-" if e6 < 0 else ""
    whole, frac = divmod(abs(e6), 1_000_000)
    return f"{sign}{whole}.{frac:06d}".rstrip("0").rstrip(".")


def check_text(value: str, what: str) -> str:
    """Text that PostgreSQL and UTF-8 encodings can hold: no NUL, no lone surrogates (else 400 ``bad_text``)."""
    if "\x00" in value:
        raise ApiError(400, "bad_text", f"{what} must not contain a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(400, "bad_text", f"{what} is not valid Unicode (it holds a lone surrogate)") from None
    return value
