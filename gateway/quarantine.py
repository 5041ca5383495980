"""Quarantine: every refused message is kept with a precise reason, evidence in full, garbage bounded.

Identical refusals (same reason, topic and bytes) are counted on one row rather
than stored again, so a device re-sending a bad reading cannot flood the table.

What is kept depends on one question, :func:`is_evidence`:

* evidence (a message about an enrolled device that the device's own record
  refutes: equivocation, a broken chain, a bad signature, ...) is stored whole
  and never deleted;
* garbage (anything refused before the gateway knew which enrolled device it
  concerns) is stored as its first ``quarantine_garbage_bytes`` bytes, with the
  full length and SHA-256 of the message so that it can still be identified,
  and :func:`prune` deletes it after ``quarantine_retention_days`` without being
  seen again, and beyond the newest ``quarantine_max_garbage_rows`` rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import asyncpg

from attest_core.topics import readings_topic
from gateway.config import Settings

EVIDENCE_REASONS: Final = frozenset(
    {
        # refused by the sequencer: readings ingest had accepted (decoded, signed, device enrolled)
        "chain_break",
        "out_of_order",
        # refused by ingest after the device was found enrolled, against that device's record
        "equivocation",
        "revoked_device",
        "bad_signature",
        "unknown_key_id",
        "key_not_valid_for_seq",
        "wrong_key_id",
        "wrong_asset",
        "future_time",
    }
)
"""The reasons whose quarantined messages are evidence; see :func:`is_evidence`."""

GARBAGE_TEXT_CHARS: Final = 1024
"""A garbage row's topic and detail are cut to this many characters (a bad topic can be 64 KiB)."""

PRUNE_BATCH: Final = 10_000
"""Rows one prune statement deletes or classifies, so that no statement holds locks for long."""

PRUNE_LOCK: Final = 0x10_7A77_E58
"""Advisory lock: one prune at a time, however many API processes run one."""


def is_evidence(reason: str) -> bool:
    """Whether a refusal for ``reason`` is evidence, kept whole and forever, rather than bounded garbage.

    The rule: a refusal is evidence when the message decoded, named an enrolled
    device on that device's own topic, and was then refuted by the device's own
    record: a signature that does not verify under its key (or names a key it
    does not hold for that sequence number), a reading after its revocation, for
    another asset, dated in the future, conflicting with a reading it signed
    before (equivocation) or not linking to its chain (chain break, a gap never
    filled).  Such a message either proves the device (or its key) misbehaved or
    is an attack on that device's identity; both must stay available to an audit.
    The reasons ingest and the sequencer give for these cases are
    :data:`EVIDENCE_REASONS`; ``bad_signature`` only ever arises for an enrolled
    device, since an unknown one is refused as ``unknown_device`` first.

    Everything else is garbage: refused before any enrolled device was identified
    (too large, a bad topic, undecodable bytes, a reading on another device's
    topic, an unknown device).  A reason not listed is garbage, so a new kind of
    refusal is bounded until someone decides it is evidence and lists it here.
    """
    return reason in EVIDENCE_REASONS


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


def _cut(text: str) -> str:
    if len(text) <= GARBAGE_TEXT_CHARS:
        return text
    return f"{text[:GARBAGE_TEXT_CHARS]}... ({len(text)} characters in all)"


_UPSERT = (
    "INSERT INTO quarantine "
    "(fingerprint, topic, payload, reason, detail, device_id, seq, payload_length, payload_sha256, garbage) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) "
    "ON CONFLICT (fingerprint) DO UPDATE SET count = quarantine.count + 1, last_seen = now()"
)


async def quarantine(
    conn: asyncpg.Connection, topic: str, payload: bytes, refusal: Refusal, garbage_bytes: int
) -> None:
    await quarantine_many(conn, [(topic, payload, refusal)], garbage_bytes)


async def quarantine_many(
    conn: asyncpg.Connection, items: Iterable[tuple[str, bytes, Refusal]], garbage_bytes: int
) -> None:
    """Store refusals; a garbage one keeps only its first ``garbage_bytes`` bytes (and its length and hash)."""
    rows = []
    for topic, payload, r in items:
        garbage = not is_evidence(r.reason)
        rows.append(
            (
                fingerprint(r.reason, topic, payload),  # of the whole message: identical garbage is counted
                _cut(topic) if garbage else topic,
                payload[:garbage_bytes] if garbage else payload,
                r.reason,
                _cut(r.detail) if garbage else r.detail,
                r.device_id,
                r.seq,
                len(payload),
                hashlib.sha256(payload).digest(),
                garbage,
            )
        )
    if rows:
        await conn.executemany(_UPSERT, rows)


async def withdraw_readings(
    conn: asyncpg.Connection, refusals: list[tuple[Refusal, tuple[str, int]]], garbage_bytes: int
) -> None:
    """Move accepted readings the sequencer refuses, by (device id, seq), from ``readings`` to
    quarantine: the device still holds them (no receipt) and will send them again."""
    keys = [k for _, k in refusals]
    envelopes = {
        (r["device_id"], r["seq"]): bytes(r["envelope"])
        for r in await conn.fetch(
            "DELETE FROM readings r USING unnest($1::text[], $2::bigint[]) AS q(d, s) "
            "WHERE r.device_id = q.d AND r.seq = q.s RETURNING r.device_id, r.seq, r.envelope",
            [k[0] for k in keys],
            [k[1] for k in keys],
        )
    }
    for refusal, key in refusals:
        if key in envelopes:
            await quarantine(conn, readings_topic(key[0]), envelopes[key], refusal, garbage_bytes)


_CLASSIFY = (
    "WITH batch AS (SELECT id FROM quarantine WHERE garbage IS NULL ORDER BY id LIMIT $3) "
    "UPDATE quarantine q SET garbage = NOT (q.reason = ANY($1::text[])), "
    "payload = CASE WHEN q.reason = ANY($1::text[]) THEN q.payload ELSE substring(q.payload FROM 1 FOR $2) END "
    "FROM batch WHERE q.id = batch.id"
)
_PRUNE_OLD = (
    "DELETE FROM quarantine WHERE id IN (SELECT id FROM quarantine WHERE garbage "
    "AND last_seen < now() - make_interval(secs => $1) ORDER BY last_seen, id LIMIT $2)"
)
_PRUNE_OLDEST = (
    "DELETE FROM quarantine WHERE id IN "
    "(SELECT id FROM quarantine WHERE garbage ORDER BY last_seen, id LIMIT $1)"
)


def _count(status: str) -> int:
    """The row count of an ``UPDATE n`` or ``DELETE n`` status."""
    return int(status.rsplit(" ", 1)[-1])


async def garbage_rows(conn: asyncpg.Connection) -> int:
    """How many garbage rows the quarantine holds."""
    return int(await conn.fetchval("SELECT count(*) FROM quarantine WHERE garbage"))


async def prune(conn: asyncpg.Connection, settings: Settings) -> int:
    """Bound the quarantine's garbage; return how many rows were deleted. Evidence is never touched.

    Deleted, oldest (least recently seen) first: garbage not seen for
    ``quarantine_retention_days``, then garbage beyond the newest
    ``quarantine_max_garbage_rows``.  Rows refused before the quarantine was
    bounded are classified (and, if garbage, cut) first.  Cheap when there is
    nothing to do: index scans of the garbage rows only.  Each statement works on
    at most :data:`PRUNE_BATCH` rows and commits on its own.  If another process
    is pruning, this returns 0 at once.
    """
    if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", PRUNE_LOCK):
        return 0
    try:
        evidence = sorted(EVIDENCE_REASONS)
        while _count(await conn.execute(_CLASSIFY, evidence, settings.quarantine_garbage_bytes, PRUNE_BATCH)):
            pass
        deleted = 0
        age = settings.quarantine_retention_days * 86_400.0
        while n := _count(await conn.execute(_PRUNE_OLD, age, PRUNE_BATCH)):
            deleted += n
        excess = await garbage_rows(conn) - settings.quarantine_max_garbage_rows
        while excess > 0 and (n := _count(await conn.execute(_PRUNE_OLDEST, min(excess, PRUNE_BATCH)))):
            deleted += n
            excess -= n
        return deleted
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", PRUNE_LOCK)
