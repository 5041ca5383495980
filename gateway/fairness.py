"""Which waiting readings one sequencer step takes: a fair share of each device's.

A step takes at most ``share`` readings of one device (its lowest sequence numbers) and fills
its batch round-robin (every device's first waiting reading before any device's second), so one
device's backlog, chained or stuck behind a gap, cannot hold back the others.
"""

from __future__ import annotations

import asyncpg

_ALL_WAITING = """
SELECT device_id, seq, envelope, payload_hash FROM readings
WHERE log_index IS NULL AND NOT (device_id = ANY($2::text[]))
ORDER BY device_id, seq LIMIT $1
"""
"""Readings not yet logged, per device in sequence order, from one scan: $1 at most; devices in
$2 are skipped."""

_DEALT_WAITING = """
WITH RECURSIVE waiting(d) AS (
    (SELECT device_id FROM readings WHERE log_index IS NULL ORDER BY device_id LIMIT 1)
    UNION ALL
    SELECT (SELECT r.device_id FROM readings r
            WHERE r.log_index IS NULL AND r.device_id > waiting.d ORDER BY r.device_id LIMIT 1)
    FROM waiting WHERE waiting.d IS NOT NULL
)
SELECT device_id, seq, envelope, payload_hash FROM (
    SELECT x.device_id, x.seq, x.envelope, x.payload_hash
    FROM (SELECT d FROM waiting WHERE d IS NOT NULL AND NOT (d = ANY($2::text[]))) AS w
    CROSS JOIN LATERAL (
        SELECT r.device_id, r.seq, r.envelope, r.payload_hash, row_number() OVER (ORDER BY r.seq) AS turn
        FROM readings r WHERE r.device_id = w.d AND r.log_index IS NULL
        ORDER BY r.seq LIMIT $3
    ) AS x
    ORDER BY x.turn, x.device_id
    LIMIT $1
) AS dealt
ORDER BY device_id, seq
"""
"""Readings not yet logged, per device in sequence order: at most $3 per device (its lowest
sequence numbers), $1 in all, dealt round-robin across devices; devices in $2 are skipped.  The
distinct devices come from a skip scan of the ``readings_pending`` index, one probe per device,
however deep a device's backlog is."""


async def waiting_readings(
    conn: asyncpg.Connection, batch: int, exclude: list[str], share: int
) -> list[asyncpg.Record]:
    """This step's readings: per device in sequence order, a fair share each (see the module).

    Usually everything waiting fits in one step: then one scan of the pending index takes
    it all, and only each device's share is kept.  With more waiting than a step takes, the
    round-robin query deals the step out (it costs a probe per waiting device).
    """
    rows: list[asyncpg.Record] = await conn.fetch(_ALL_WAITING, batch + 1, exclude)
    if len(rows) > batch:
        dealt: list[asyncpg.Record] = await conn.fetch(_DEALT_WAITING, batch, exclude, share)
        return dealt
    kept: list[asyncpg.Record] = []
    device, taken = None, 0
    for row in rows:
        if row["device_id"] != device:
            device, taken = row["device_id"], 0
        if taken < share:
            kept.append(row)
            taken += 1
    return kept
