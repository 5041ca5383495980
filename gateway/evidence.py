"""A claim's evidence: which log entries it consists of, in the tree of a given size.

Everything is taken from the log as of a checkpoint (tree size N), so the server's verdict, a
full bundle and the auditor's verification see the same entries: the claim entry; for every
device enrolled for a claimed asset, its enrolment, key rotations and revocation with index < N;
and its readings.  Full evidence holds, per device with a reading of the claim period, every
logged reading (log index < N) from the one before the first in the period to the one after the
last, by sequence number, and per other device of the claimed assets the last reading before the
period and the one after it: the rule of :func:`attest_core.evaluation.full_seqs`, which
:data:`FULL_READINGS` applies in SQL.  Boundary evidence keeps per device only the first and the
last reading in the period that the revocation (if any, in the checkpoint) does not disown: the
rule of :func:`attest_core.evaluation.boundary_seqs`, which :func:`boundary_readings` applies in
SQL.  Both are tested to agree with the core's rule on a real database.
"""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg

from attest_core.claim import Claim
from attest_core.entries import (
    EnrolmentEntry,
    EntryType,
    RevocationEntry,
    RotationEntry,
    decode_entry,
    reading_entry_bytes,
)
from attest_core.registry import Registry

CHUNK = 2_000
"""Readings fetched per query while a bundle streams or a verdict loads."""

READINGS_WHERE = "asset_id = ANY($1::text[]) AND time_ms >= $2 AND time_ms < $3 AND log_index < $4"
"""The claim's readings in the tree of a size: arguments :func:`reading_args`."""


def reading_args(claim: Claim, size: int) -> tuple[list[str], int, int, int]:
    return list(claim.assets), claim.period_start_ms, claim.period_end_ms, size


def full_readings(columns: str) -> str:
    """``full_seqs`` in SQL, selecting ``columns`` of ``readings r`` by log index: per device,
    the lowest and highest sequence number among its readings of the claim
    (:data:`READINGS_WHERE`), and every logged reading from the start edge below the lowest to
    the end edge above the highest.  The log holds each device's readings 1..n without a gap (the
    sequencer's invariant), so the range is the evidence whatever the device times inside it; a
    reading not logged or beyond the tree (log index NULL or >= $4) is not evidence.

    (v2) The edges are readings dated outside the period by a synchronised clock (``unsynced``
    false): the start edge the highest such below the first reading of the claim dated before the
    period (reading 1 if none), the end edge the lowest such above the last one dated at or
    after its end (the last logged if none).  A device of the claimed assets with no reading of
    the claim contributes its edges all the same.  Each edge is one search of the device's
    readings by the primary key."""
    return f"""
WITH inside AS (
    SELECT device_id, min(seq) AS first, max(seq) AS last FROM readings WHERE {READINGS_WHERE}
    GROUP BY device_id
), outside AS (
    SELECT d.device_id, NULL::bigint AS first, NULL::bigint AS last
    FROM devices d
    WHERE d.asset_id = ANY($1::text[]) AND d.device_id NOT IN (SELECT device_id FROM inside)
), starts AS (
    SELECT x.device_id, x.first, x.last, coalesce((
        SELECT max(seq) FROM readings
        WHERE device_id = x.device_id AND (x.first IS NULL OR seq < x.first)
          AND time_ms < $2 AND NOT unsynced AND log_index < $4
    ), 1) AS lo
    FROM (SELECT * FROM inside UNION ALL SELECT * FROM outside) x
), ends AS (
    SELECT s.device_id, s.lo, coalesce((
        SELECT min(seq) FROM readings
        WHERE device_id = s.device_id AND seq > coalesce(s.last, s.lo - 1)
          AND time_ms >= $3 AND NOT unsynced AND log_index < $4
    ), (SELECT max(seq) FROM readings WHERE device_id = s.device_id AND log_index < $4)) AS hi
    FROM starts s
)
SELECT {columns} FROM readings r JOIN ends e ON r.device_id = e.device_id
WHERE r.seq BETWEEN e.lo AND e.hi AND r.log_index < $4
ORDER BY r.log_index
"""  # noqa: S608


FULL_READINGS = full_readings("r.log_index")
"""The log indices of a full bundle's readings: arguments :func:`reading_args`."""


async def identity_entries(conn: asyncpg.Connection, claim: Claim, size: int) -> list[tuple[int, bytes]]:
    """Enrolments, rotations and revocations of the claimed assets' devices in the tree of ``size``."""
    rows = await conn.fetch(
        "SELECT e.idx, e.data FROM entries e JOIN devices d ON d.device_id = e.device_id "
        "WHERE d.asset_id = ANY($1::text[]) AND e.idx < $2 AND e.kind = ANY($3::smallint[]) ORDER BY e.idx",
        list(claim.assets),
        size,
        [int(EntryType.ENROLMENT), int(EntryType.KEY_ROTATION), int(EntryType.REVOCATION)],
    )
    return [(r["idx"], bytes(r["data"])) for r in rows]


def replay(identity: Iterable[tuple[int, bytes]]) -> Registry:
    registry = Registry()
    for index, data in identity:
        entry = decode_entry(data)
        if isinstance(entry, EnrolmentEntry):
            registry.enrol(index, entry)
        elif isinstance(entry, RotationEntry):
            registry.rotate(index, entry)
        elif isinstance(entry, RevocationEntry):
            registry.revoke(index, entry)
    return registry


_BOUNDARY_READINGS = f"""
WITH ends AS (
    SELECT r.device_id, min(r.seq) AS lo, max(r.seq) AS hi
    FROM readings r
    LEFT JOIN unnest($5::text[], $6::bigint[]) AS l(device_id, last_valid) ON l.device_id = r.device_id
    WHERE {READINGS_WHERE} AND (l.last_valid IS NULL OR r.seq <= l.last_valid)
    GROUP BY r.device_id
)
SELECT r.log_index, r.envelope FROM readings r JOIN ends e ON r.device_id = e.device_id AND r.seq IN (e.lo, e.hi)
ORDER BY r.log_index
"""  # noqa: S608
"""``boundary_seqs`` in SQL: per device, the lowest and highest sequence number among its
readings of the claim (:data:`READINGS_WHERE`) that its revocation ($5, $6: device ids and
last valid sequence numbers) does not disown, and those readings.  One query over the
period's index range, instead of every reading of the period brought to Python."""


async def boundary_readings(
    conn: asyncpg.Connection, claim: Claim, size: int, identity: Iterable[tuple[int, bytes]]
) -> list[tuple[int, bytes]]:
    """(log index, entry bytes) of the readings a boundary-mode bundle holds, by log index.

    ``identity``: the claim's :func:`identity_entries` in the tree of ``size`` (their
    revocations set each device's last valid sequence number).
    """
    limits: dict[str, int] = {}
    for _, data in identity:
        entry = decode_entry(data)
        if isinstance(entry, RevocationEntry):
            limits[entry.device_id] = entry.last_valid_seq
    rows = await conn.fetch(
        _BOUNDARY_READINGS, *reading_args(claim, size), list(limits), list(limits.values())
    )
    return [(r["log_index"], reading_entry_bytes(bytes(r["envelope"]))) for r in rows]
