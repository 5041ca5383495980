"""What every route shares: the error type and body, times, cursors, base64 and OpenAPI responses."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any, Final, TypeVar

from fastapi import Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from attest_core.codec import ID_RE

T = TypeVar("T")
MAX_MS: Final = 2**63 - 1
ID_PATTERN: Final = "^" + ID_RE.pattern + "$"
DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 1000


class ApiError(Exception):
    """An answer other than success: status, machine code and a message that says what was wrong."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


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


# --- times ------------------------------------------------------------------------------

_RFC3339: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})"
)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
TIME_DESCRIPTION: Final = (
    "RFC 3339 with an explicit offset (e.g. 2026-10-01T00:00:00Z; at most millisecond precision) "
    "or Unix milliseconds (e.g. 1790812800000)"
)


def parse_time(text: str, what: str, *, allow_ms: bool = True) -> int:
    """Unix milliseconds from RFC 3339 (explicit offset) or, if ``allow_ms``, a plain integer of ms."""
    if allow_ms and text.isascii() and text.isdigit():
        if len(text) > 19 or int(text) > MAX_MS:
            raise ApiError(400, "bad_time", f"{what} {text!r} is beyond 2^63-1 milliseconds")
        return int(text)
    match = _RFC3339.fullmatch(text)
    if match is None:
        form = TIME_DESCRIPTION if allow_ms else "RFC 3339 with an explicit offset, e.g. 2026-10-01T00:00:00Z"
        raise ApiError(400, "bad_time", f"{what} {text[:64]!r} is not {form}")
    fraction = match.group(7) or ""
    if fraction[3:].strip("0"):
        raise ApiError(400, "bad_time", f"{what} {text!r} is finer than a millisecond")
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    offset = match.group(8)
    try:
        if offset in ("Z", "z"):
            zone = UTC
        else:
            hours, minutes = int(offset[1:3]), int(offset[4:6])
            sign = -1 if offset[0] == "-" else 1
            zone = timezone(sign * timedelta(hours=hours, minutes=minutes))
        moment = datetime(year, month, day, hour, minute, second, tzinfo=zone)
        seconds = (moment - _EPOCH) // timedelta(seconds=1)
    except (ValueError, OverflowError) as exc:
        raise ApiError(400, "bad_time", f"{what} {text!r} is not a valid date and time: {exc}") from None
    if seconds < 0:
        raise ApiError(400, "bad_time", f"{what} {text!r} is before 1970-01-01T00:00:00Z")
    return seconds * 1000 + int((fraction + "000")[:3])


def iso(ms: int) -> str:
    """Unix milliseconds as RFC 3339 UTC, with milliseconds only when there are some."""
    try:
        moment = _EPOCH + timedelta(milliseconds=ms - ms % 1000)
    except OverflowError:
        return str(ms)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{ms % 1000:03d}Z" if ms % 1000 else f"{text}Z"


def iso_dt(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- cursors ----------------------------------------------------------------------------


def encode_cursor(kind: str, *values: int | str) -> str:
    """An opaque cursor: where the next page starts (base64url of a small JSON array)."""
    raw = json.dumps([kind, *values], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str, kind: str, *types: type) -> list[Any]:
    """The values of a cursor made by :func:`encode_cursor` for ``kind``; 400 ``bad_cursor`` otherwise."""
    bad = ApiError(400, "bad_cursor", "cursor is not one this route handed out (take next_cursor of a page)")
    if len(text) > 512:
        raise bad
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError):
        raise bad from None
    if not isinstance(value, list) or len(value) != len(types) + 1 or value[0] != kind:
        raise bad
    out = value[1:]
    for item, kind_ in zip(out, types, strict=True):
        if type(item) is not kind_:
            raise bad
        if isinstance(item, int) and not 0 <= item <= MAX_MS:
            raise bad
        if isinstance(item, str) and (len(item) > 256 or "\x00" in item or not item.isascii()):
            raise bad
    return out


# --- base64 ------------------------------------------------------------------------------


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


class Page(BaseModel):
    next_cursor: str | None
    """Give it as ``cursor`` to get the next page; null on the last page."""


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


Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="items per page (default 100)")]
Cursor = Annotated[str | None, Query(max_length=512, description="next_cursor of the previous page")]
