"""Evidence bundles: planned before the answer starts, then streamed.

Before the answer starts, only log indices are gathered (8 bytes a reading, in an ``array``)
and the one multi-leaf inclusion proof is built from stored nodes; then
:func:`attest_core.bundle.bundle_chunks` writes the JSON while the entries are fetched from the
database in chunks of ``CHUNK`` readings, so a bundle of millions of readings is never held in
memory.  Which entries a bundle holds: gateway.evidence.
"""

from __future__ import annotations

import asyncio
import heapq
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import asyncpg

from attest_core.bundle import bundle_chunks
from attest_core.entries import reading_entry_bytes
from attest_core.merkle import multi_inclusion_plan
from attest_core.verdict import EvidenceKind
from gateway import logstore
from gateway.claims import LatestCheckpoint, StoredClaim, chain_entries
from gateway.evidence import CHUNK, FULL_READINGS, boundary_readings, identity_entries, reading_args

NODE_CHUNK = 20_000
"""Merkle nodes fetched per query while a proof is built."""
FLUSH_BYTES = 256 * 1024
"""A streamed bundle is sent in pieces of about this size."""
STREAM_TIMEOUT = 120.0
"""Seconds one chunk of readings may take to fetch while a bundle streams."""

Mode = Literal["boundary", "full"]


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
    evidence: EvidenceKind
    """What the bundle declares (its ``evidence`` member)."""

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
    known = [(claim.log_index, claim.entry), *identity, *await chain_entries(conn, claim.entry, size)]
    streamed: array[int] = array("q")
    args = reading_args(claim.claim, size)
    if mode == "full":
        async with conn.transaction():
            cursor = await conn.cursor(FULL_READINGS, *args)
            while rows := await cursor.fetch(CHUNK * 5):
                streamed.extend(r["log_index"] for r in rows)
    else:
        known += await boundary_readings(conn, claim.claim, size, identity)
    known.sort()
    indices = [i for i, _ in known]
    plan = multi_inclusion_plan(heapq.merge(indices, streamed), size)
    hashes = {}
    nodes = plan.nodes
    for start in range(0, len(nodes), NODE_CHUNK):
        hashes.update(await logstore.nodes(conn, nodes[start : start + NODE_CHUNK]))
    proof = plan.assemble(hashes)
    return BundlePlan(checkpoint.note, size, claim.log_index, known, streamed, proof, EvidenceKind(mode))


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
    for piece in bundle_chunks(plan.checkpoint, plan.claim_index, entries, plan.proof, plan.evidence):
        buffer.append(piece)
        pending += len(piece)
        if pending >= FLUSH_BYTES:
            yield b"".join(buffer)
            buffer, pending = [], 0
    if buffer:
        yield b"".join(buffer)
