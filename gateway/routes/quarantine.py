"""Quarantine (issuer, auditor): the messages the gateway refused, with why, newest first.

Evidence is listed whole and for ever; garbage as its first bytes with its full
length and hash, until the prune deletes it (gateway.quarantine).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from gateway.auth import AUDITOR, ISSUER, require
from gateway.routes.common import b64, check_text, responses
from gateway.routes.paging import DEFAULT_LIMIT, Cursor, Limit, Page, decode_cursor, next_page
from gateway.routes.state import State
from gateway.routes.times import iso_dt
from gateway.tokens import Principal

router = APIRouter(tags=["quarantine"])
read = require(ISSUER, AUDITOR, purpose="read the quarantine")


class QuarantineItem(BaseModel):
    id: int
    first_seen: str | None
    last_seen: str | None
    count: int = Field(description="how often this exact message was refused for this reason")
    topic: str
    reason: str = Field(description="machine code, e.g. bad_signature, equivocation, chain_break")
    detail: str
    device: str | None
    seq: int | None
    payload: str = Field(
        description="base64 of the message exactly as received; for garbage (not evidence) only its first "
        "quarantine_garbage_bytes bytes (payload_truncated says so)"
    )
    payload_length: int = Field(description="bytes of the message as received")
    payload_sha256: str = Field(description="base64 of the SHA-256 of the message as received")
    payload_truncated: bool = Field(description="payload holds only the first bytes of the message")
    evidence: bool | None = Field(
        description="true: evidence, kept whole and never pruned; false: garbage, bounded in size and pruned; "
        "null: refused before the gateway classified refusals, not classified yet"
    )


class QuarantinePage(Page):
    items: list[QuarantineItem]


@router.get("/v1/quarantine", response_model=QuarantinePage, responses=responses(401, 403))
async def list_quarantine(
    _: Annotated[Principal, Depends(read)],
    state: State,
    reason: Annotated[str | None, Query(max_length=64, description="only this reason")] = None,
    device: Annotated[str | None, Query(max_length=64, description="only this device")] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> QuarantinePage:
    """What the gateway refused and why, newest first."""
    args: list[object] = []
    where = ["true"]
    if reason is not None:
        args.append(check_text(reason, "reason"))
        where.append(f"reason = ${len(args)}")
    if device is not None:
        args.append(check_text(device, "device"))
        where.append(f"device_id = ${len(args)}")
    if cursor:
        args.append(decode_cursor(cursor, "quarantine", int)[0])
        where.append(f"id < ${len(args)}")
    args.append(limit + 1)
    async with state.pool.acquire() as conn:
        query = f"SELECT id, first_seen, last_seen, count, topic, payload, reason, detail, device_id, seq, payload_length, payload_sha256, NOT garbage AS evidence FROM quarantine WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ${len(args)}"  # noqa: S608
        rows = await conn.fetch(
            query,
            *args,
        )
    page, next_cursor = next_page(rows, limit, "quarantine", lambda r: (r["id"],))
    items = [
        QuarantineItem(
            id=r["id"],
            first_seen=iso_dt(r["first_seen"]),
            last_seen=iso_dt(r["last_seen"]),
            count=r["count"],
            topic=r["topic"],
            reason=r["reason"],
            detail=r["detail"],
            device=r["device_id"],
            seq=r["seq"],
            payload=b64(bytes(r["payload"])),
            payload_length=r["payload_length"],
            payload_sha256=b64(bytes(r["payload_sha256"])),
            payload_truncated=len(r["payload"]) < r["payload_length"],
            evidence=r["evidence"],
        )
        for r in page
    ]
    return QuarantinePage(items=items, next_cursor=next_cursor)
