"""Quarantine: every refused message is kept with its raw bytes and a precise reason.

Identical refusals (same reason, topic and bytes) are counted on one row rather
than stored again, so a device re-sending a bad reading cannot flood the table.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

import asyncpg


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: str
    """Machine code, e.g. ``bad_signature``, ``unknown_device``, ``chain_break``."""
    detail: str
    """What exactly was wrong, for a person."""
    device_id: str | None = None
    seq: int | None = None


def fingerprint(reason: str, topic: str, payload: bytes) -> bytes:
    h = hashlib.sha256()
    for part in (reason.encode(), topic.encode(), payload):
        h.update(len(part).to_bytes(4, "big") + part)
    return h.digest()


_UPSERT = (
    "INSERT INTO quarantine (fingerprint, topic, payload, reason, detail, device_id, seq) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7) "
    "ON CONFLICT (fingerprint) DO UPDATE SET count = quarantine.count + 1, last_seen = now()"
)


async def quarantine(conn: asyncpg.Connection, topic: str, payload: bytes, refusal: Refusal) -> None:
    await quarantine_many(conn, [(topic, payload, refusal)])


async def quarantine_many(conn: asyncpg.Connection, items: Iterable[tuple[str, bytes, Refusal]]) -> None:
    rows = [
        (fingerprint(r.reason, topic, payload), topic, payload, r.reason, r.detail, r.device_id, r.seq)
        for topic, payload, r in items
    ]
    if rows:
        await conn.executemany(_UPSERT, rows)
