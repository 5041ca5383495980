"""Reading the log back: entries, checkpoints and proofs from stored nodes.

A proof costs one indexed query for the O(log n) nodes its plan names
(attest_core.merkle), never a rebuild of the tree.
"""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg

from attest_core.entries import reading_entry_bytes
from attest_core.merkle import (
    EMPTY_ROOT,
    Node,
    ProofPlan,
    consistency_plan,
    frontier_nodes,
    inclusion_plan,
    multi_inclusion_plan,
    range_hash,
)


async def entries_between(conn: asyncpg.Connection, start: int, end: int) -> list[tuple[int, bytes]]:
    """(index, exact bytes) of the logged entries with ``start <= index < end``, in index order."""
    rows = await conn.fetch(
        "SELECT idx, data, NULL::bytea AS envelope FROM entries WHERE idx >= $1 AND idx < $2 "
        "UNION ALL SELECT log_index, NULL, envelope FROM readings WHERE log_index >= $1 AND log_index < $2 "
        "ORDER BY 1",
        start,
        end,
    )
    return [
        (r[0], bytes(r["data"]) if r["data"] is not None else reading_entry_bytes(bytes(r["envelope"])))
        for r in rows
    ]


async def log_size(conn: asyncpg.Connection) -> int:
    size: int = await conn.fetchval("SELECT size FROM log_state")
    return size


async def latest_checkpoint(conn: asyncpg.Connection) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT id, size, root_hash, note, signed_at FROM checkpoints ORDER BY id DESC LIMIT 1"
    )


async def entry(conn: asyncpg.Connection, index: int) -> bytes | None:
    """The exact bytes of log entry ``index`` (what its leaf hash covers)."""
    data = await conn.fetchval("SELECT data FROM entries WHERE idx = $1", index)
    if data is not None:
        return bytes(data)
    envelope = await conn.fetchval("SELECT envelope FROM readings WHERE log_index = $1", index)
    return None if envelope is None else reading_entry_bytes(bytes(envelope))


async def entries(conn: asyncpg.Connection, indices: Iterable[int]) -> dict[int, bytes]:
    wanted = sorted(set(indices))
    out = {
        r["idx"]: bytes(r["data"])
        for r in await conn.fetch("SELECT idx, data FROM entries WHERE idx = ANY($1::bigint[])", wanted)
    }
    rest = [i for i in wanted if i not in out]
    if rest:
        for r in await conn.fetch(
            "SELECT log_index, envelope FROM readings WHERE log_index = ANY($1::bigint[])", rest
        ):
            out[r["log_index"]] = reading_entry_bytes(bytes(r["envelope"]))
    return out


async def nodes(conn: asyncpg.Connection, wanted: Iterable[Node]) -> dict[Node, bytes]:
    wanted = list(wanted)
    if not wanted:
        return {}
    rows = await conn.fetch(
        "SELECT n.level, n.idx, n.hash FROM log_nodes n JOIN unnest($1::smallint[], $2::bigint[]) AS w(l, i) "
        "ON n.level = w.l AND n.idx = w.i",
        [n.level for n in wanted],
        [n.index for n in wanted],
    )
    return {Node(r["level"], r["idx"]): bytes(r["hash"]) for r in rows}


async def assemble(conn: asyncpg.Connection, plan: ProofPlan) -> list[bytes]:
    return plan.assemble(await nodes(conn, plan.nodes))


async def inclusion_proof(conn: asyncpg.Connection, index: int, size: int) -> list[bytes]:
    return await assemble(conn, inclusion_plan(index, size))


async def consistency_proof(conn: asyncpg.Connection, size1: int, size2: int) -> list[bytes]:
    return await assemble(conn, consistency_plan(size1, size2))


async def multi_inclusion_proof(conn: asyncpg.Connection, indices: Iterable[int], size: int) -> list[bytes]:
    return await assemble(conn, multi_inclusion_plan(indices, size))


async def root_at(conn: asyncpg.Connection, size: int) -> bytes:
    """The tree hash at ``size`` from stored nodes (for checks; checkpoints carry it signed)."""
    if size == 0:
        return EMPTY_ROOT
    return range_hash(0, size, await nodes(conn, frontier_nodes(size)))
