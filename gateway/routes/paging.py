"""Pages of a list: the limit and cursor parameters, opaque cursors and the page model."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Final, TypeVar

from fastapi import Query
from pydantic import BaseModel

from gateway.routes.common import MAX_MS, ApiError

T = TypeVar("T")
DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 1000

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="items per page (default 100)")]
Cursor = Annotated[str | None, Query(max_length=512, description="next_cursor of the previous page")]


class Page(BaseModel):
    next_cursor: str | None
    """Give it as ``cursor`` to get the next page; null on the last page."""


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


def next_page(
    found: Sequence[T], limit: int, kind: str, key: Callable[[T], tuple[int | str, ...]]
) -> tuple[Sequence[T], str | None]:
    """The page in ``found`` (fetched with ``limit + 1`` rows) and the cursor of the next page.

    The cursor (of ``kind``, holding ``key`` of the page's last item) is None on the last page:
    ``found`` then holds no row beyond the limit.
    """
    if len(found) <= limit:
        return found, None
    page = found[:limit]
    return page, encode_cursor(kind, *key(page[-1]))
