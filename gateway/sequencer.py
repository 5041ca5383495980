"""The sequencer: the one writer of the log.

Exactly one sequencer writes at a time, however many gateway processes run: it
holds the sequencer lease (gateway.lease) on the connection it writes with and
renews it first thing in every transaction that writes, and every batch also
checks that the log size it starts from is still the stored one (a fence
against a second writer).

Each step, in one transaction:

1. takes identity and claim entries waiting in ``pending_entries`` (in the order
   they were accepted) and appends them;
2. takes accepted readings not yet logged, per device in sequence order, and
   appends each device's readings that continue its chain: ``seq`` is the next
   number and ``prev_hash`` the hash of the last logged reading (or the
   enrolment anchor).  A device with an identity entry still waiting (its
   enrolment or a key rotation beyond this step's share of ``pending_entries``)
   has none of its readings logged before that entry.  A reading ahead of a gap
   waits up to ``gap_timeout`` for the missing ones, then is quarantined as
   ``out_of_order``; a reading that does not link is quarantined as
   ``chain_break``.  Quarantined readings are removed from ``readings``: the
   device still holds them (no receipt) and will send them again;
3. stores the leaf hash and every perfect subtree node completed, the new size,
   and each device's chain position.

Fairness: a step takes at most ``sequencer_device_share`` readings of one device, dealt
round-robin (gateway.fairness), so one device's backlog cannot hold back the others.

A crash at any point rolls the step back as a whole: nothing is logged twice and
nothing accepted is lost.  Every ``checkpoint_interval`` (or
``checkpoint_max_entries`` entries) it signs a checkpoint over the whole log and
stores it (all checkpoints are kept), and sends the receipts it owes: to each device with
readings logged since the checkpoint before, and the others of gateway.receipts_due.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import asyncpg

from attest_core.checkpoint import Checkpoint, sign_checkpoint
from attest_core.entries import PREV_HASH_IN_ENVELOPE, reading_entry_bytes
from attest_core.merkle import CompactRange, Node, frontier_nodes, leaf_hash
from attest_core.note import NoteSigner
from attest_core.receipt import Receipt
from attest_core.topics import receipts_topic
from gateway.config import Settings
from gateway.errors import KeyFileError, NotLeaderError
from gateway.fairness import waiting_readings
from gateway.lease import Lease
from gateway.quarantine import Refusal, withdraw_readings
from gateway.receipts_due import IDLE_RECEIPTS_EVERY, owe_recent_receipts, receipt_proofs, take_due

log = logging.getLogger("gateway.sequencer")

Publish = Callable[[str, bytes], None]
"""publish(topic, payload): hands a receipt to MQTT (QoS 1)."""


@dataclass
class ChainPosition:
    seq: int
    hash: bytes
    index: int | None


@dataclass
class StepResult:
    entries: int = 0
    readings: int = 0
    quarantined: int = 0


@dataclass
class Sequencer:
    settings: Settings
    signer: NoteSigner
    publish: Publish | None = None
    size: int = 0
    frontier: CompactRange = field(default_factory=CompactRange)
    chains: dict[str, ChainPosition] = field(default_factory=dict)
    waiting: dict[str, float] = field(default_factory=dict)
    """Devices whose next reading is missing: since when (monotonic)."""
    touched: set[str] = field(default_factory=set)
    """Devices with readings logged since the last checkpoint: owed a receipt by the next one.
    (Kept in memory: the step cannot write ``receipt_due`` without a serialization failure
    whenever ingest owes the same device a receipt meanwhile; a restart owes them again, see
    :meth:`load`.)"""
    receipt_sizes: dict[str, int] = field(default_factory=dict)
    """The tree size of the last receipt sent to each device: where the next one's consistency proof
    starts.  In memory only: after a restart (or a failover) a device's next receipt starts from 0
    and the device fetches the consistency proof it needs from the API (docs/protocol.md, Receipts)."""
    last_due_check: float = 0.0
    last_checkpoint_size: int = -1
    last_checkpoint_at: float = 0.0
    last_checkpoint_wall: float = 0.0
    lease: Lease | None = None
    """The lease this sequencer writes under; None only where nothing else can write (tests, benchmarks)."""

    # --- state -------------------------------------------------------------

    async def load(self, conn: asyncpg.Connection) -> None:
        """(Re)load the log's state from the database."""
        size = await conn.fetchval("SELECT size FROM log_state")
        nodes = frontier_nodes(size)
        hashes: dict[Node, bytes] = {}
        if nodes:
            rows = await conn.fetch(
                "SELECT level, idx, hash FROM log_nodes n JOIN unnest($1::smallint[], $2::bigint[]) AS w(l, i) "
                "ON n.level = w.l AND n.idx = w.i",
                [n.level for n in nodes],
                [n.index for n in nodes],
            )
            hashes = {Node(r["level"], r["idx"]): bytes(r["hash"]) for r in rows}
        recorded = await conn.fetchval("SELECT log_key FROM log_state")
        ours = self.signer.verifier_key().to_string()
        if recorded is not None and recorded != ours:  # lost the race for an empty log's key
            raise KeyFileError(
                f"this gateway's log key {ours} is not the log's key {recorded}: it cannot be the sequencer",
                code="wrong_log_key",
            )
        self.size = size
        self.frontier = CompactRange.from_nodes(size, hashes)
        self.chains.clear()
        self.waiting.clear()
        self.receipt_sizes.clear()  # another process may have sent receipts since
        row = await conn.fetchrow(
            "SELECT size, extract(epoch FROM signed_at) AS t FROM checkpoints ORDER BY id DESC LIMIT 1"
        )
        self.last_checkpoint_size = -1 if row is None else row["size"]
        self.last_checkpoint_wall = 0.0 if row is None else float(row["t"])
        self.last_checkpoint_at = time.monotonic()
        owed = await owe_recent_receipts(conn)
        log.info(
            "log loaded: %d entries, last checkpoint at size %d; %d device(s) owed a receipt",
            size,
            self.last_checkpoint_size,
            owed,
        )

    async def _chain(self, conn: asyncpg.Connection, device_ids: list[str]) -> None:
        missing = [d for d in device_ids if d not in self.chains]
        if missing:
            rows = await conn.fetch(
                "SELECT device_id, logged_seq, logged_hash, logged_index FROM devices WHERE device_id = ANY($1)",
                missing,
            )
            for r in rows:
                self.chains[r["device_id"]] = ChainPosition(
                    r["logged_seq"], bytes(r["logged_hash"]), r["logged_index"]
                )

    # --- one step ------------------------------------------------------------

    async def step(self, conn: asyncpg.Connection) -> StepResult:
        """Append what is waiting; one transaction."""
        result = StepResult()
        frontier = self.frontier.copy()
        size = self.size
        nodes: list[tuple[int, int, bytes]] = []
        new_chains: dict[str, ChainPosition] = {}
        now = time.monotonic()

        def append(data: bytes) -> int:
            nonlocal size
            for node, digest in frontier.append(leaf_hash(data)):
                nodes.append((node.level, node.index, digest))
            size += 1
            return size - 1

        # One snapshot for the whole step: an enrolment or key rotation committed while the
        # step runs must not have its readings logged here without the entry they depend on.
        async with conn.transaction(isolation="repeatable_read"):
            # first: the lease row's lock orders this transaction before any new holder's acquisition
            if self.lease is not None:
                await self.lease.renew(conn)
            # 0. the fence: the log must still be where this sequencer left it
            stored = await conn.fetchval("SELECT size FROM log_state FOR UPDATE")
            if stored != self.size:
                raise NotLeaderError(f"the log is at size {stored}, not {self.size}: another writer moved it")

            # 1. identity and claim entries, in the order they were accepted
            batch = self.settings.sequencer_batch
            pending = await conn.fetch(
                "SELECT id, kind, data, device_id FROM pending_entries ORDER BY id LIMIT $1", batch
            )
            logged_entries = []
            for row in pending:
                index = append(bytes(row["data"]))
                logged_entries.append((index, row["kind"], bytes(row["data"]), row["device_id"]))
                if row["device_id"] is not None:
                    self.chains.pop(row["device_id"], None)  # re-read: an enrolment or rotation changed it
            result.entries = len(logged_entries)
            # Devices whose enrolment or key rotation is still waiting behind this step's share:
            # none of their readings may reach the log before that entry.
            held: list[str] = []
            if len(pending) == batch:
                held = [
                    r["device_id"]
                    for r in await conn.fetch(
                        "SELECT DISTINCT device_id FROM pending_entries WHERE id > $1 AND device_id IS NOT NULL",
                        pending[-1]["id"],
                    )
                ]

            # 2. readings, per device in sequence order, a fair share each
            exclude = [d for d, since in self.waiting.items() if now - since < 1.0] + held
            rows = await waiting_readings(conn, batch, exclude, max(1, self.settings.sequencer_device_share))
            await self._chain(conn, sorted({r["device_id"] for r in rows}))
            assigned: list[tuple[str, int, int]] = []
            refusals: list[tuple[Refusal, tuple[str, int]]] = []
            device: str | None = None
            blocked = False
            position: ChainPosition | None = None
            for row in rows:
                device_id, seq = row["device_id"], row["seq"]
                if device_id != device:
                    device, blocked = device_id, False
                    position = new_chains.get(device_id) or self.chains.get(device_id)
                    if position is None:
                        blocked = True  # not enrolled (cannot happen: ingest checks) — leave it
                        continue
                    if seq != position.seq + 1:
                        blocked = True
                        since = self.waiting.setdefault(device_id, now)
                        if now - since >= self.settings.gap_timeout:
                            refusals += await self._refuse_device_backlog(conn, device_id, position.seq)
                        continue
                    self.waiting.pop(device_id, None)
                if blocked or position is None:
                    continue
                envelope = bytes(row["envelope"])
                if seq != position.seq + 1:
                    blocked = True  # a gap inside this batch: the rest waits
                    continue
                if envelope[PREV_HASH_IN_ENVELOPE] != position.hash:
                    refusals.append(
                        (
                            Refusal(
                                "chain_break",
                                f"reading {seq} of device {device_id} does not carry the hash of reading {seq - 1}",
                                device_id,
                                seq,
                            ),
                            (device_id, seq),
                        )
                    )
                    self.waiting[device_id] = now
                    blocked = True
                    continue
                index = append(reading_entry_bytes(envelope))
                assigned.append((device_id, seq, index))
                position = ChainPosition(seq, bytes(row["payload_hash"]), index)
                new_chains[device_id] = position
            result.readings = len(assigned)

            if refusals:
                await withdraw_readings(conn, refusals, self.settings.quarantine_garbage_bytes)
                result.quarantined = len(refusals)

            if size == self.size:
                return result

            # 3. store it all
            if logged_entries:
                await conn.executemany(
                    "INSERT INTO entries (idx, kind, data, device_id) VALUES ($1, $2, $3, $4)", logged_entries
                )
                await conn.execute(
                    "DELETE FROM pending_entries WHERE id = ANY($1)", [r["id"] for r in pending]
                )
            if assigned:
                await conn.execute(
                    "UPDATE readings r SET log_index = a.idx FROM unnest($1::text[], $2::bigint[], $3::bigint[]) "
                    "AS a(d, s, idx) WHERE r.device_id = a.d AND r.seq = a.s",
                    [a[0] for a in assigned],
                    [a[1] for a in assigned],
                    [a[2] for a in assigned],
                )
                items = list(new_chains.items())
                await conn.execute(
                    "UPDATE devices d SET logged_seq = c.seq, logged_hash = c.hash, logged_index = c.idx "
                    "FROM unnest($1::text[], $2::bigint[], $3::bytea[], $4::bigint[]) AS c(d, seq, hash, idx) "
                    "WHERE d.device_id = c.d",
                    [k for k, _ in items],
                    [p.seq for _, p in items],
                    [p.hash for _, p in items],
                    [p.index for _, p in items],
                )
            await conn.copy_records_to_table("log_nodes", records=nodes, columns=["level", "idx", "hash"])
            await conn.execute("UPDATE log_state SET size = $1", size)

        # committed: adopt the new state
        self.size, self.frontier = size, frontier
        self.chains.update(new_chains)
        self.touched.update(new_chains)
        return result

    async def _refuse_device_backlog(
        self, conn: asyncpg.Connection, device_id: str, logged_seq: int
    ) -> list[tuple[Refusal, tuple[str, int]]]:
        """The device's waiting readings, a step's share at a time (a deep backlog spans several steps)."""
        share = max(1, self.settings.sequencer_device_share)
        rows = await conn.fetch(
            "SELECT seq FROM readings WHERE device_id = $1 AND log_index IS NULL ORDER BY seq LIMIT $2",
            device_id,
            share + 1,
        )
        if len(rows) <= share:
            self.waiting.pop(device_id, None)  # the last of its backlog: the device waits afresh
        rows = rows[:share]
        return [
            (
                Refusal(
                    "out_of_order",
                    f"reading {r['seq']} of device {device_id} waited {self.settings.gap_timeout:g} s for reading "
                    f"{logged_seq + 1}, which never came",
                    device_id,
                    r["seq"],
                ),
                (device_id, r["seq"]),
            )
            for r in rows
        ]

    # --- checkpoints and receipts ---------------------------------------------

    def checkpoint_due(self) -> bool:
        if self.last_checkpoint_size < 0:
            return True
        grown = self.size - self.last_checkpoint_size
        if grown <= 0:
            return False
        return (
            grown >= self.settings.checkpoint_max_entries
            or time.monotonic() - self.last_checkpoint_at >= self.settings.checkpoint_interval
        )

    async def checkpoint(self, conn: asyncpg.Connection) -> str:
        """Sign a checkpoint over the whole log, store it, and publish the receipts owed."""
        root = self.frontier.root()
        now = time.time()
        note = sign_checkpoint(Checkpoint(self.signer.name, self.size, root, int(now)), self.signer)
        async with conn.transaction():
            if self.lease is not None:
                await self.lease.renew(conn)
            await conn.execute(
                "INSERT INTO checkpoints (size, root_hash, note) VALUES ($1, $2, $3)", self.size, root, note
            )
            ours = self.signer.verifier_key().to_string()
            owner = await conn.fetchval(
                "UPDATE log_state SET log_key = coalesce(log_key, $1) RETURNING log_key", ours
            )
            if owner != ours:  # two gateways started on an empty log, each with a new key
                raise KeyFileError(
                    f"this gateway's log key {ours} is not the log's key {owner}: not signing",
                    code="wrong_log_key",
                )
            due = await take_due(conn)
        self.last_checkpoint_size = self.size
        self.last_checkpoint_at = time.monotonic()
        self.last_checkpoint_wall = now
        devices = sorted(self.touched.union(due))
        self.touched = set()
        await self._send_receipts(conn, devices, root, now)
        return note

    def receipts_check_due(self) -> bool:
        """Whether to look for receipts owed while the log is idle: a few times a second, once the
        newest checkpoint covers the whole log (else the next checkpoint answers them)."""
        return (
            self.last_checkpoint_size == self.size
            and time.monotonic() - self.last_due_check >= IDLE_RECEIPTS_EVERY
        )

    async def answer_due(self, conn: asyncpg.Connection) -> int:
        """Publish the receipts owed against the newest checkpoint (the log has not grown since).

        Returns how many devices were answered.
        """
        self.last_due_check = time.monotonic()
        if self.last_checkpoint_size != self.size:
            return 0
        async with conn.transaction():
            if self.lease is not None:
                await self.lease.renew(conn)
            due = await take_due(conn)
        await self._send_receipts(conn, due, self.frontier.root(), time.time())
        return len(due)

    async def _send_receipts(
        self, conn: asyncpg.Connection, devices: list[str], root: bytes, now: float
    ) -> None:
        """A signed receipt to each device for its newest logged reading, in a log of ``self.size`` entries,
        with the reading's inclusion proof and the consistency proof from the device's previous receipt.

        The proofs of all the receipts are built together (gateway.receipts_due.receipt_proofs): one
        batch of node fetches per checkpoint, after the checkpoint is committed, never in a step."""
        if self.publish is None or not devices:
            return
        await self._chain(conn, sorted(devices))
        size = self.size
        todo: list[tuple[str, ChainPosition, int]] = []
        for device_id in sorted(devices):
            position = self.chains.get(device_id)
            if position is None or position.index is None or position.seq == 0:
                continue
            todo.append((device_id, position, min(self.receipt_sizes.get(device_id, 0), size)))
        if not todo:
            return
        inclusion, consistency = await receipt_proofs(
            conn, size, [p.index for _, p, _ in todo if p.index is not None], [f for _, _, f in todo]
        )
        time_ms = int(now * 1000)
        for device_id, position, from_size in todo:
            assert position.index is not None
            receipt = Receipt(
                device_id, position.seq, position.index, size, root, time_ms,
                tuple(inclusion[position.index]), from_size, tuple(consistency[from_size]),
            )  # fmt: skip
            self.publish(receipts_topic(device_id), receipt.sign(self.signer.signer))
            self.receipt_sizes[device_id] = size
