"""Times in the API: RFC 3339 with an explicit offset, or Unix milliseconds, in and out."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Final

from gateway.routes.common import MAX_MS, ApiError

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
