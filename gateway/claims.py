"""Claims: filing, the server-side verdict and streamed evidence bundles.

Filing
    A claim becomes a claim log entry (``pending_entries``, kind 5) and a row of
    ``claims`` holding the exact entry bytes and their SHA-256 (unique: two
    claims filed in the same millisecond with the same content get different
    ``logged_at_ms``).  The sequencer logs the entry; its log index is found by
    that hash (``entries`` has an index on ``sha256(data)`` for claim entries,
    migration 002) and then kept in ``claims.log_index``.

Evidence
    Everything is taken from the log as of the latest checkpoint (tree size N),
    so the server's verdict, a full bundle and the auditor's verification see
    the same entries: the claim entry; for every device enrolled for a claimed
    asset, its enrolment, key rotations and revocation with index < N; and its
    readings with log index < N whose device time lies in the claim period.
    Boundary mode keeps per device only the first and the last of those
    readings that the revocation (if any, in the checkpoint) does not disown.

Bundles stream
    Before the answer starts, only log indices are gathered (8 bytes a reading,
    in an ``array``) and the one multi-leaf inclusion proof is built from stored
    nodes; then :func:`attest_core.bundle.bundle_chunks` writes the JSON while
    the entries are fetched from the database in chunks of ``CHUNK`` readings,
    so a bundle of millions of readings is never held in memory.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import time
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import asyncpg

from attest_core.bundle import bundle_chunks
from attest_core.claim import Claim
from attest_core.entries import (
    ClaimEntry,
    EnrolmentEntry,
    EntryType,
    RevocationEntry,
    RotationEntry,
    decode_entry,
    encode_entry,
    reading_entry_bytes,
)
from attest_core.evaluation import AttestedReading, Evaluation, evaluate
from attest_core.merkle import multi_inclusion_plan
from attest_core.reading import decode_envelope, decode_payload, reading_hash
from attest_core.registry import Registry
from gateway import logstore

CHUNK = 2_000
"""Readings fetched per query while a bundle streams or a verdict loads."""
NODE_CHUNK = 20_000
"""Merkle nodes fetched per query while a proof is built."""
FLUSH_BYTES = 256 * 1024
"""A streamed bundle is sent in pieces of about this size."""
STREAM_TIMEOUT = 120.0
"""Seconds one chunk of readings may take to fetch while a bundle streams."""

Mode = Literal["boundary", "full"]


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


# --- filing and reading claims -----------------------------------------------------------------


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


# --- evidence ------------------------------------------------------------------------------------

_READINGS_WHERE = "asset_id = ANY($1::text[]) AND time_ms >= $2 AND time_ms < $3 AND log_index < $4"


def _reading_args(claim: Claim, size: int) -> tuple[list[str], int, int, int]:
    return list(claim.assets), claim.period_start_ms, claim.period_end_ms, size


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


def _attested(rows: Sequence[asyncpg.Record]) -> list[AttestedReading]:
    out = []
    for r in rows:
        envelope = decode_envelope(bytes(r["envelope"]))
        out.append(
            AttestedReading(r["log_index"], decode_payload(envelope.payload), reading_hash(envelope.payload))
        )
    return out


async def fingerprint(conn: asyncpg.Connection, claim: Claim, size: int) -> tuple[int, ...]:
    """What the evidence of ``claim`` in the tree of ``size`` consists of, in brief (for caching a verdict)."""
    readings = await conn.fetchrow(
        f"SELECT count(*) AS n, coalesce(max(log_index), -1) AS last FROM readings WHERE {_READINGS_WHERE}",  # noqa: S608
        *_reading_args(claim, size),
    )
    identity = await conn.fetchrow(
        "SELECT count(*) AS n, coalesce(max(e.idx), -1) AS last FROM entries e JOIN devices d "
        "ON d.device_id = e.device_id WHERE d.asset_id = ANY($1::text[]) AND e.idx < $2",
        list(claim.assets),
        size,
    )
    return (readings["n"], readings["last"], identity["n"], identity["last"])


async def evaluate_claim(conn: asyncpg.Connection, claim: Claim, size: int) -> Evaluation:
    """The verdict on full evidence in the tree of ``size``: what a full bundle's verifier computes."""
    registry = await asyncio.to_thread(replay, await identity_entries(conn, claim, size))
    readings: list[AttestedReading] = []
    async with conn.transaction():
        cursor = await conn.cursor(
            f"SELECT log_index, envelope FROM readings WHERE {_READINGS_WHERE} ORDER BY log_index",  # noqa: S608
            *_reading_args(claim, size),
        )
        while rows := await cursor.fetch(CHUNK):
            readings.extend(await asyncio.to_thread(_attested, rows))
    return await asyncio.to_thread(evaluate, claim, registry.devices, readings)


# --- bundles ---------------------------------------------------------------------------------------


@dataclass
class BundlePlan:
    checkpoint: str
    size: int
    claim_index: int
    known: list[tuple[int, bytes]]
    """Entries already at hand, sorted: the claim, identities and (boundary mode) the readings."""
    streamed: array[int]
    """Log indices of the readings fetched while streaming (full mode), ascending."""
    proof: list[bytes]

    @property
    def entry_count(self) -> int:
        return len(self.known) + len(self.streamed)


async def plan_bundle(
    conn: asyncpg.Connection, claim: StoredClaim, mode: Mode, checkpoint: LatestCheckpoint
) -> BundlePlan:
    """Choose the entries of the bundle and build its proof (the claim must be inside ``checkpoint``)."""
    assert claim.log_index is not None
    assert claim.log_index < checkpoint.size
    size = checkpoint.size
    identity = await identity_entries(conn, claim.claim, size)
    known = [(claim.log_index, claim.entry), *identity]
    streamed: array[int] = array("q")
    args = _reading_args(claim.claim, size)
    if mode == "full":
        async with conn.transaction():
            query = f"SELECT log_index FROM readings WHERE {_READINGS_WHERE} ORDER BY log_index"  # noqa: S608
            cursor = await conn.cursor(query, *args)
            while rows := await cursor.fetch(CHUNK * 5):
                streamed.extend(r["log_index"] for r in rows)
    else:
        limits: dict[str, int] = {}
        for _, data in identity:
            entry = decode_entry(data)
            if isinstance(entry, RevocationEntry):
                limits[entry.device_id] = entry.last_valid_seq
        # The rule of attest_core.evaluation.boundary_seqs, in SQL: per device, the first and last
        # reading in the period that no revocation disowns.
        query = f"WITH ends AS (SELECT r.device_id, min(r.seq) AS lo, max(r.seq) AS hi FROM readings r LEFT JOIN unnest($5::text[], $6::bigint[]) AS l(device_id, last_valid) ON l.device_id = r.device_id WHERE {_READINGS_WHERE} AND (l.last_valid IS NULL OR r.seq <= l.last_valid) GROUP BY r.device_id) SELECT r.log_index, r.envelope FROM readings r JOIN ends e ON r.device_id = e.device_id AND r.seq IN (e.lo, e.hi) ORDER BY r.log_index"  # noqa: S608
        rows = await conn.fetch(
            query,
            *args,
            list(limits),
            list(limits.values()),
        )
        known += [(r["log_index"], reading_entry_bytes(bytes(r["envelope"]))) for r in rows]
    known.sort()
    indices = [i for i, _ in known]
    plan = multi_inclusion_plan(heapq.merge(indices, streamed), size)
    hashes = {}
    nodes = plan.nodes
    for start in range(0, len(nodes), NODE_CHUNK):
        hashes.update(await logstore.nodes(conn, nodes[start : start + NODE_CHUNK]))
    proof = plan.assemble(hashes)
    return BundlePlan(checkpoint.note, size, claim.log_index, known, streamed, proof)


def stream_bundle(plan: BundlePlan, pool: asyncpg.Pool, loop: asyncio.AbstractEventLoop) -> Iterator[bytes]:
    """The bundle's JSON in pieces of about FLUSH_BYTES (a plain iterator: Starlette runs it in a thread).

    Readings are fetched by log index, CHUNK at a time, on the event loop that owns ``pool``.
    """

    async def fetch(indices: list[int]) -> list[tuple[int, bytes]]:
        async with pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT log_index, envelope FROM readings WHERE log_index = ANY($1::bigint[]) ORDER BY log_index",
                indices,
            )
        if len(rows) != len(indices):
            raise RuntimeError(
                f"{len(indices) - len(rows)} logged readings vanished while a bundle was streamed"
            )
        return [(r["log_index"], reading_entry_bytes(bytes(r["envelope"]))) for r in rows]

    def streamed() -> Iterator[tuple[int, bytes]]:
        for start in range(0, len(plan.streamed), CHUNK):
            chunk = plan.streamed[start : start + CHUNK].tolist()
            yield from asyncio.run_coroutine_threadsafe(fetch(chunk), loop).result(timeout=STREAM_TIMEOUT)

    entries = heapq.merge(plan.known, streamed(), key=lambda item: item[0])
    buffer: list[bytes] = []
    pending = 0
    for piece in bundle_chunks(plan.checkpoint, plan.claim_index, entries, plan.proof):
        buffer.append(piece)
        pending += len(piece)
        if pending >= FLUSH_BYTES:
            yield b"".join(buffer)
            buffer, pending = [], 0
    if buffer:
        yield b"".join(buffer)


# --- verdicts as JSON ------------------------------------------------------------------------------


def decimal_text(value: Decimal) -> str:
    """A Decimal written plainly (no exponent)."""
    return format(value, "f")


def verdict_json(evaluation: Evaluation, size: int) -> dict[str, Any]:
    from attest_core.money import format_kwh, round_down

    claim = evaluation.claim
    return {
        "backed": evaluation.backed,
        "checkpoint_size": size,
        "energy_mwh": evaluation.energy_mwh,
        "energy_kwh": format_kwh(evaluation.energy_mwh),
        "revenue": decimal_text(evaluation.revenue),
        "revenue_exact": decimal_text(evaluation.revenue_exact),
        "currency": claim.currency,
        "readings_evaluated": evaluation.readings_seen,
        "assets": [
            {
                "asset_id": a.asset_id,
                "kind": None if a.kind is None else a.kind.label,
                "readings_counted": a.readings_counted,
                "complete": a.complete,
                "energy_mwh": a.energy_mwh,
                "energy_kwh": format_kwh(a.energy_mwh),
                "revenue": decimal_text(round_down(a.revenue_exact, claim.currency)),
                "devices": [
                    {
                        "device_id": d.device_id,
                        "readings_counted": d.readings_counted,
                        "first_seq": d.first_seq,
                        "last_seq": d.last_seq,
                        "energy_mwh": d.energy_mwh,
                        "energy_kwh": format_kwh(d.energy_mwh),
                    }
                    for d in a.devices
                ],
            }
            for a in evaluation.assets
        ],
        "findings": [
            {
                "severity": f.severity.value,
                "code": f.code,
                "message": f.message,
                "asset_id": f.asset_id,
                "device_id": f.device_id,
                "seq": f.seq,
                "log_index": f.log_index,
            }
            for f in evaluation.findings
        ],
    }
