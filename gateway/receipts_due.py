"""Receipts the sequencer owes devices, beyond those of the readings it logs itself.

Each checkpoint answers the devices with readings logged since the one before (the sequencer
keeps them in memory), and those in ``receipt_due`` (devices that sent a logged reading again;
ingest adds them); while the log does not grow, ``receipt_due`` is answered against the newest
checkpoint, so a device re-sending logged readings to an idle log still gets its receipt.  A
sequencer that starts owes a receipt again to every device logged shortly before the last stop
(:func:`owe_recent_receipts`): whatever its predecessor owed or had not sent yet.

(v2) Each receipt carries its proofs: they are built for all the receipts of one checkpoint at
once (:func:`receipt_proofs`), after the checkpoint is committed, so the steps that append
readings never wait for them.
"""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg

from attest_core.merkle import Node, ProofPlan, consistency_plan, inclusion_plan
from gateway import logstore

IDLE_RECEIPTS_EVERY = 0.25
"""Seconds between looks at ``receipt_due`` while the log is idle."""
RECEIPTS_REPEATED_FOR = 30.0
"""Seconds of receipts before a restart that are sent again (see :func:`owe_recent_receipts`)."""
NODE_CHUNK = 20_000
"""Merkle nodes fetched per query while the proofs of a checkpoint's receipts are built."""


async def owe_recent_receipts(conn: asyncpg.Connection) -> int:
    """Owe a receipt again to every device with readings logged shortly before the last stop.

    A process killed after logging readings and before their checkpoint took with it the
    devices it owed (in memory), and receipts leave through MQTT after their checkpoint is
    committed: a process killed in between took those with it too.  The devices whose newest
    reading was logged after the newest checkpoint older than ``RECEIPTS_REPEATED_FOR``
    seconds (counted back from the newest checkpoint) get theirs again, at the next
    checkpoint; one receipt too many costs a device nothing.
    """
    since = await conn.fetchval(
        "SELECT coalesce((SELECT size FROM checkpoints WHERE signed_at < "
        "(SELECT max(signed_at) FROM checkpoints) - make_interval(secs => $1) ORDER BY id DESC LIMIT 1), 0)",
        RECEIPTS_REPEATED_FOR,
    )
    status = await conn.execute(
        "INSERT INTO receipt_due (device_id) SELECT device_id FROM devices WHERE logged_index >= $1 "
        "ON CONFLICT DO NOTHING",
        since,
    )
    return int(status.split()[-1])


async def take_due(conn: asyncpg.Connection) -> list[str]:
    """The devices owed a receipt, taken off ``receipt_due``."""
    return [r["device_id"] for r in await conn.fetch("DELETE FROM receipt_due RETURNING device_id")]


async def receipt_proofs(
    conn: asyncpg.Connection, size: int, indices: Iterable[int], from_sizes: Iterable[int]
) -> tuple[dict[int, list[bytes]], dict[int, list[bytes]]]:
    """The inclusion proof of each log index and the consistency proof from each earlier size, all in
    the tree of ``size`` entries: ``(index -> proof, from_size -> proof)``.

    Every proof is planned first (attest_core.merkle: which stored nodes it takes); the distinct nodes
    of all the plans are fetched together, in chunks of ``NODE_CHUNK`` (the receipts of one checkpoint
    share the nodes near the root, and most share one consistency proof: from the checkpoint before).
    A consistency proof from 0 or from ``size`` itself is empty.
    """
    inclusion = {index: inclusion_plan(index, size) for index in set(indices)}
    consistency = {f: consistency_plan(f, size) if 0 < f < size else ProofPlan(()) for f in set(from_sizes)}
    wanted: set[Node] = set()
    for plan in (*inclusion.values(), *consistency.values()):
        wanted.update(plan.nodes)
    nodes = list(wanted)
    hashes: dict[Node, bytes] = {}
    for start in range(0, len(nodes), NODE_CHUNK):
        hashes.update(await logstore.nodes(conn, nodes[start : start + NODE_CHUNK]))
    return (
        {index: plan.assemble(hashes) for index, plan in inclusion.items()},
        {f: plan.assemble(hashes) for f, plan in consistency.items()},
    )
