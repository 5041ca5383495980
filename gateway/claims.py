"""Claims: filing them and reading them back.

A claim becomes a claim log entry (``pending_entries``, kind 5) and a row of ``claims`` holding
the exact entry bytes and their SHA-256 (unique: two claims filed in the same millisecond with
the same content get different ``logged_at_ms``).  The sequencer logs the entry; its log index
is found by that hash (``entries`` has an index on ``sha256(data)`` for claim entries,
migration 002) and then kept in ``claims.log_index``.

The verdict on a claim is gateway.verdicts', its evidence bundle gateway.bundles'.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import asyncpg

from attest_core.claim import Claim
from attest_core.entries import ClaimEntry, EntryType, decode_entry, encode_entry
from gateway import logstore


@dataclass(frozen=True)
class StoredClaim:
    id: int
    issuer: str
    entry: bytes
    entry_hash: bytes
    log_index: int | None
    claim: Claim
    logged_at_ms: int


@dataclass(frozen=True)
class LatestCheckpoint:
    size: int
    note: str
    """The signed note with the stored witness cosignatures appended."""


def _now_ms() -> int:
    return int(time.time() * 1000)


async def file_claim(conn: asyncpg.Connection, claim: Claim, issuer: str) -> int:
    """Queue ``claim`` for the log and store it; return its id."""
    logged_at = _now_ms()
    for attempt in range(100):
        entry = encode_entry(ClaimEntry(claim, logged_at + attempt))
        digest = hashlib.sha256(entry).digest()
        async with conn.transaction():
            claim_id = await conn.fetchval(
                "INSERT INTO claims (issuer, entry, entry_hash) VALUES ($1, $2, $3) "
                "ON CONFLICT (entry_hash) DO NOTHING RETURNING id",
                issuer,
                entry,
                digest,
            )
            if claim_id is None:
                continue  # the same claim in the same millisecond: log it as a separate entry
            await conn.execute(
                "INSERT INTO pending_entries (kind, data) VALUES ($1, $2)", int(EntryType.CLAIM), entry
            )
            return int(claim_id)
    raise RuntimeError("could not give the claim a unique entry")  # pragma: no cover


def _stored(row: asyncpg.Record) -> StoredClaim:
    entry = bytes(row["entry"])
    decoded = decode_entry(entry)
    assert isinstance(decoded, ClaimEntry)
    return StoredClaim(
        row["id"],
        row["issuer"],
        entry,
        bytes(row["entry_hash"]),
        row["log_index"],
        decoded.claim,
        decoded.logged_at_ms,
    )


async def _with_index(conn: asyncpg.Connection, claim: StoredClaim) -> StoredClaim:
    if claim.log_index is not None:
        return claim
    index = await conn.fetchval(
        "SELECT idx FROM entries WHERE kind = $1 AND sha256(data) = $2",
        int(EntryType.CLAIM),
        claim.entry_hash,
    )
    if index is None:
        return claim
    await conn.execute("UPDATE claims SET log_index = $2 WHERE id = $1", claim.id, index)
    return StoredClaim(
        claim.id, claim.issuer, claim.entry, claim.entry_hash, index, claim.claim, claim.logged_at_ms
    )


_CLAIM_COLUMNS = "SELECT id, issuer, entry, entry_hash, log_index FROM claims "


async def get_claim(conn: asyncpg.Connection, claim_id: int) -> StoredClaim | None:
    row = await conn.fetchrow(_CLAIM_COLUMNS + "WHERE id = $1", claim_id)
    return None if row is None else await _with_index(conn, _stored(row))


async def list_claims(
    conn: asyncpg.Connection, issuer: str | None, before: int | None, limit: int
) -> list[StoredClaim]:
    rows = await conn.fetch(
        _CLAIM_COLUMNS + "WHERE ($1::text IS NULL OR issuer = $1) AND ($2::bigint IS NULL OR id < $2) "
        "ORDER BY id DESC LIMIT $3",
        issuer,
        before,
        limit,
    )
    return [await _with_index(conn, _stored(r)) for r in rows]


async def latest_checkpoint(conn: asyncpg.Connection) -> LatestCheckpoint | None:
    """The latest signed checkpoint, with the witness cosignatures stored for it."""
    row = await logstore.latest_checkpoint(conn)
    if row is None:
        return None
    lines = await conn.fetch(
        "SELECT line FROM cosignatures WHERE checkpoint_id = $1 ORDER BY witness", row["id"]
    )
    return LatestCheckpoint(row["size"], row["note"] + "".join(r["line"] for r in lines))
