"""The agent's durable state: chain state, outbox, receipts, pulse counters (SQLite).

Crash safety rests on one rule: **a reading is committed together with the
chain state that follows it, in one transaction, before anyone sees it.**  The
database runs in WAL mode with ``synchronous=FULL``, so a committed transaction
survives ``kill -9`` and power loss.  A crash before the commit loses a reading
that was never published (its sequence number is then taken by the next
reading, which is fine: nobody saw the lost one); a crash after the commit loses
nothing.  The update of the chain row is conditional on the sequence number the
reading was built from, so two writers (or a bug) can never give one sequence
number to two readings.

The chain row also holds the counters of reading payload v2
(:mod:`attest_core.counters`): those of the last reading made, written in the same
transaction as that reading, so they always equal what the last stored reading
carries and a crash can neither lose nor double-count one.

Schema (``PRAGMA user_version = 2``)::

    chain    (device_id PK, next_seq, prev_hash, anchor, last_time_ms, last_energy_mwh,
              fault_readings, powerups, unsynced_readings, max_interval_power_mw)
    outbox   (device_id, seq, time_ms, envelope, PK (device_id, seq))   -- WITHOUT ROWID
    receipts (device_id PK, seq, log_index, tree_size, root_hash, time_ms, received_ms)  -- v1 only, unused
    proven_receipts  (device_id, tree_size, seq, log_index, root_hash, time_ms, received_ms, data)
    refused_receipts (device_id, received_ms, code, detail, data)
    counters (name PK, value)                                           -- S0 pulse counts
    link     (device_id PK, state, broker, since_ms, error, updated_ms) -- for `status`
    agent    (id = 1, pid, started_ms, heartbeat_ms)                    -- for `status`
    meta     (key PK, value)

One database can hold many devices (the fleet simulator); the agent holds one.

Version 1 (an agent that signed v1 payloads) had no counter columns.  Opening it
adds them in one transaction and fills each device's from the readings its outbox
still holds (:func:`attest_core.counters.replay`): readings already receipted and
deleted are not counted, so an upgraded device's counters start from what its
stored readings show (docs/protocol.md section 2).

(v2) Receipts are kept as received, exact bytes included: ``proven_receipts`` holds those
whose proofs the device checked (the newest one is where the next consistency check starts,
so it is kept whatever its age); ``refused_receipts`` holds receipts signed by the log key
whose proof failed: evidence against the log.  Both are kept ``[receipts] keep_days``.  Their
tables are added to any database when it is opened (``CREATE TABLE IF NOT EXISTS``), so a
v1 state database needs no migration.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from attest_core.chain import ChainState
from attest_core.counters import replay
from attest_core.reading import Counters, decode_envelope
from attest_core.receipt import Receipt
from edge_agent.errors import AgentError

SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS chain (
    device_id TEXT PRIMARY KEY,
    next_seq INTEGER NOT NULL CHECK (next_seq >= 1),
    prev_hash BLOB NOT NULL CHECK (length(prev_hash) = 32),
    anchor BLOB NOT NULL CHECK (length(anchor) = 32),
    last_time_ms INTEGER,
    last_energy_mwh INTEGER,
    fault_readings INTEGER NOT NULL DEFAULT 0,
    powerups INTEGER NOT NULL DEFAULT 0,
    unsynced_readings INTEGER NOT NULL DEFAULT 0,
    max_interval_power_mw INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox (
    device_id TEXT NOT NULL,
    seq INTEGER NOT NULL CHECK (seq >= 1),
    time_ms INTEGER NOT NULL,
    envelope BLOB NOT NULL,
    PRIMARY KEY (device_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS receipts (
    device_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    log_index INTEGER NOT NULL,
    tree_size INTEGER NOT NULL,
    root_hash BLOB NOT NULL,
    time_ms INTEGER NOT NULL,
    received_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS link (
    device_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    broker TEXT NOT NULL,
    since_ms INTEGER NOT NULL,
    error TEXT NOT NULL,
    updated_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS agent (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    pid INTEGER NOT NULL,
    started_ms INTEGER NOT NULL,
    heartbeat_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""

_RECEIPTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS proven_receipts (
    device_id TEXT NOT NULL,
    tree_size INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    log_index INTEGER NOT NULL,
    root_hash BLOB NOT NULL CHECK (length(root_hash) = 32),
    time_ms INTEGER NOT NULL,
    received_ms INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (device_id, tree_size, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS refused_receipts (
    device_id TEXT NOT NULL,
    received_ms INTEGER NOT NULL,
    code TEXT NOT NULL,
    detail TEXT NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS refused_receipts_by_device ON refused_receipts (device_id, received_ms);
"""


_SCHEMA_1_TO_2 = [  # the counter columns, in the order of attest_core.reading.Counters
    "ALTER TABLE chain ADD COLUMN fault_readings INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE chain ADD COLUMN powerups INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE chain ADD COLUMN unsynced_readings INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE chain ADD COLUMN max_interval_power_mw INTEGER NOT NULL DEFAULT 0",
]


class ChainConflict(AgentError):
    """The chain row moved on since the reading was built: the reading is not stored.

    An :class:`AgentError` with the default exit code (1, a runtime failure): the
    agent catches it and retries at the next interval.
    """


@dataclass(frozen=True, slots=True)
class NewReading:
    """A signed reading ready to be stored, with the chain state that follows it."""

    device_id: str
    seq: int
    time_ms: int
    energy_mwh: int
    envelope: bytes
    state: ChainState


@dataclass(frozen=True, slots=True)
class ChainRow:
    state: ChainState
    anchor: bytes
    last_time_ms: int | None
    last_energy_mwh: int | None


@dataclass(frozen=True, slots=True)
class ReceiptRow:
    seq: int
    log_index: int
    tree_size: int
    root_hash: bytes
    time_ms: int
    received_ms: int


@dataclass(frozen=True, slots=True)
class RefusedRow:
    received_ms: int
    code: str
    detail: str
    data: bytes


@dataclass(frozen=True, slots=True)
class LinkRow:
    state: str
    broker: str
    since_ms: int
    error: str
    updated_ms: int


class Store:
    """One SQLite database; every method is one transaction (or one read)."""

    def __init__(self, path: Path, *, create: bool = True) -> None:
        if not create and not path.exists():
            raise FileNotFoundError(path)
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, timeout=10.0)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA busy_timeout=10000")
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, 1, SCHEMA_VERSION):
            raise RuntimeError(f"{path} has schema version {version}; this agent knows {SCHEMA_VERSION}")
        if version == 0:
            self.db.executescript("BEGIN;" + _SCHEMA + f"PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
        elif version == 1:
            self._add_counters()
        try:
            self.db.executescript("BEGIN;" + _RECEIPTS_SCHEMA + "COMMIT;")
        except sqlite3.OperationalError:  # a read-only database (status as another user): v2 opened it before
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")

    def _add_counters(self) -> None:
        """Schema 1 -> 2: counter columns, filled from the outbox's readings (one transaction)."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            if db.execute("PRAGMA user_version").fetchone()[0] == 1:  # not done by another process meanwhile
                for statement in _SCHEMA_1_TO_2:
                    db.execute(statement)
                for (device_id,) in db.execute("SELECT device_id FROM chain").fetchall():
                    stored = [
                        decode_envelope(bytes(envelope)).reading()
                        for (envelope,) in db.execute(
                            "SELECT envelope FROM outbox WHERE device_id = ? ORDER BY seq", (device_id,)
                        )
                    ]
                    db.execute(
                        "UPDATE chain SET fault_readings = ?, powerups = ?, unsynced_readings = ?, "
                        "max_interval_power_mw = ? WHERE device_id = ?",
                        (*replay(stored), device_id),
                    )
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self.db.close()

    # ----------------------------------------------------------------- chain and outbox

    def init_chain(self, device_id: str, anchor: bytes) -> ChainRow:
        """The device's chain row, created at genesis (reading 1 links to ``anchor``) if missing."""
        self.db.execute(
            "INSERT OR IGNORE INTO chain (device_id, next_seq, prev_hash, anchor) VALUES (?, 1, ?, ?)",
            (device_id, anchor, anchor),
        )
        row = self.chain(device_id)
        assert row is not None
        if row.anchor != anchor:
            raise ChainConflict(
                f"the state database {self.path} belongs to another enrolment of {device_id} "
                "(its chain anchor differs from the stored enrolment statement)"
            )
        return row

    def chain(self, device_id: str) -> ChainRow | None:
        row = self.db.execute(
            "SELECT next_seq, prev_hash, anchor, last_time_ms, last_energy_mwh, "
            "fault_readings, powerups, unsynced_readings, max_interval_power_mw FROM chain WHERE device_id = ?",
            (device_id,),
        ).fetchone()
        if row is None:
            return None
        state = ChainState(row[0], bytes(row[1]), Counters(*row[5:9]), row[3], row[4])
        return ChainRow(state, bytes(row[2]), row[3], row[4])

    def append(self, readings: Sequence[NewReading]) -> None:
        """Store readings and their devices' new chain states in one durable transaction.

        The readings of one device must be consecutive and in order.  Raises
        :class:`ChainConflict` (storing nothing) if a device's chain row is not at
        the first of its readings' sequence numbers.
        """
        if not readings:
            return
        first: dict[str, int] = {}
        last: dict[str, NewReading] = {}
        for reading in readings:
            prev = last.get(reading.device_id)
            if prev is None:
                first[reading.device_id] = reading.seq
            elif reading.seq != prev.seq + 1:
                raise ChainConflict(f"readings of {reading.device_id} are not consecutive")
            last[reading.device_id] = reading
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT INTO outbox (device_id, seq, time_ms, envelope) VALUES (?, ?, ?, ?)",
                [(r.device_id, r.seq, r.time_ms, r.envelope) for r in readings],
            )
            for device_id, r in last.items():
                cursor = db.execute(
                    "UPDATE chain SET next_seq = ?, prev_hash = ?, last_time_ms = ?, last_energy_mwh = ?, "
                    "fault_readings = ?, powerups = ?, unsynced_readings = ?, max_interval_power_mw = ? "
                    "WHERE device_id = ? AND next_seq = ?",
                    (
                        r.state.next_seq,
                        r.state.prev_hash,
                        r.time_ms,
                        r.energy_mwh,
                        *r.state.counters,
                        device_id,
                        first[device_id],
                    ),
                )
                if cursor.rowcount != 1:
                    raise ChainConflict(
                        f"the chain of {device_id} is not at seq {first[device_id]}: reading not stored"
                    )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def pending(self, device_id: str, after_seq: int, limit: int) -> list[tuple[int, bytes]]:
        """Up to ``limit`` outbox readings of the device with seq > ``after_seq``, in seq order."""
        return [
            (seq, bytes(envelope))
            for seq, envelope in self.db.execute(
                "SELECT seq, envelope FROM outbox WHERE device_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                (device_id, after_seq, limit),
            )
        ]

    def depth(self, device_id: str | None = None) -> int:
        if device_id is None:
            return int(self.db.execute("SELECT count(*) FROM outbox").fetchone()[0])
        return int(
            self.db.execute("SELECT count(*) FROM outbox WHERE device_id = ?", (device_id,)).fetchone()[0]
        )

    def oldest(self, device_id: str) -> tuple[int, int] | None:
        """(seq, time_ms) of the oldest reading waiting in the outbox."""
        row = self.db.execute(
            "SELECT seq, time_ms FROM outbox WHERE device_id = ? ORDER BY seq LIMIT 1", (device_id,)
        ).fetchone()
        return None if row is None else (row[0], row[1])

    # ----------------------------------------------------------------- receipts

    def envelope(self, device_id: str, seq: int) -> bytes | None:
        """The envelope of the device's reading ``seq`` if it is still in the outbox."""
        row = self.db.execute(
            "SELECT envelope FROM outbox WHERE device_id = ? AND seq = ?", (device_id, seq)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def prove_receipt(self, receipt: Receipt, data: bytes, received_ms: int, keep_ms: int) -> int:
        """A receipt whose proofs the device checked: delete the device's readings with seq <= receipt.seq,
        keep the receipt (exact bytes), drop kept receipts older than ``keep_ms``.  Returns rows deleted.

        One transaction: a crash cannot delete readings without keeping the receipt that proved them."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            deleted = db.execute(
                "DELETE FROM outbox WHERE device_id = ? AND seq <= ?", (receipt.device_id, receipt.seq)
            ).rowcount
            db.execute(
                "INSERT OR REPLACE INTO proven_receipts "
                "(device_id, tree_size, seq, log_index, root_hash, time_ms, received_ms, data) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    receipt.device_id,
                    receipt.tree_size,
                    receipt.seq,
                    receipt.log_index,
                    receipt.root_hash,
                    receipt.time_ms,
                    received_ms,
                    data,
                ),
            )
            self._prune(received_ms - keep_ms)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return int(deleted)

    def refuse_receipt(
        self, device_id: str, data: bytes, code: str, detail: str, received_ms: int, keep_ms: int
    ) -> None:
        """Keep a receipt signed by the log key whose proof failed (evidence against the log)."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "INSERT INTO refused_receipts (device_id, received_ms, code, detail, data) VALUES (?, ?, ?, ?, ?)",
                (device_id, received_ms, code, detail, data),
            )
            self._prune(received_ms - keep_ms)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def prune_receipts(self, now_ms: int, keep_ms: int) -> None:
        """Drop kept receipts received before ``now_ms - keep_ms`` (never a device's newest proven one)."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            self._prune(now_ms - keep_ms)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _prune(self, before_ms: int) -> None:
        # The newest proven receipt of each device stays: the next consistency check starts from its tree.
        self.db.execute(
            "DELETE FROM proven_receipts WHERE received_ms < ? AND EXISTS (SELECT 1 FROM proven_receipts q "
            "WHERE q.device_id = proven_receipts.device_id "
            "AND (q.tree_size, q.seq) > (proven_receipts.tree_size, proven_receipts.seq))",
            (before_ms,),
        )
        self.db.execute("DELETE FROM refused_receipts WHERE received_ms < ?", (before_ms,))

    def last_receipt(self, device_id: str) -> ReceiptRow | None:
        """The device's newest proven receipt (the largest tree)."""
        row = self.db.execute(
            "SELECT seq, log_index, tree_size, root_hash, time_ms, received_ms FROM proven_receipts "
            "WHERE device_id = ? ORDER BY tree_size DESC, seq DESC LIMIT 1",
            (device_id,),
        ).fetchone()
        return None if row is None else ReceiptRow(row[0], row[1], row[2], bytes(row[3]), row[4], row[5])

    def proven_receipts(self, device_id: str) -> list[ReceiptRow]:
        """The device's kept proven receipts, oldest tree first."""
        return [
            ReceiptRow(r[0], r[1], r[2], bytes(r[3]), r[4], r[5])
            for r in self.db.execute(
                "SELECT seq, log_index, tree_size, root_hash, time_ms, received_ms FROM proven_receipts "
                "WHERE device_id = ? ORDER BY tree_size, seq",
                (device_id,),
            )
        ]

    def refused_receipts(self, device_id: str) -> list[RefusedRow]:
        """The device's kept refused receipts, oldest first."""
        return [
            RefusedRow(r[0], r[1], r[2], bytes(r[3]))
            for r in self.db.execute(
                "SELECT received_ms, code, detail, data FROM refused_receipts WHERE device_id = ? "
                "ORDER BY received_ms",
                (device_id,),
            )
        ]

    # ----------------------------------------------------------------- counters, status, meta

    def counter(self, name: str) -> int:
        row = self.db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return 0 if row is None else int(row[0])

    def set_counter(self, name: str, value: int) -> None:
        """Store a counter durably; it never goes down (a stale writer cannot lose pulses)."""
        self.db.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE "
            "SET value = max(value, excluded.value)",
            (name, value),
        )

    def set_link(
        self, device_id: str, state: str, broker: str, since_ms: int, error: str, now_ms: int
    ) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO link (device_id, state, broker, since_ms, error, updated_ms) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (device_id, state, broker, since_ms, error, now_ms),
        )

    def link(self, device_id: str) -> LinkRow | None:
        row = self.db.execute(
            "SELECT state, broker, since_ms, error, updated_ms FROM link WHERE device_id = ?", (device_id,)
        ).fetchone()
        return None if row is None else LinkRow(*row)

    def set_agent(self, pid: int, started_ms: int, heartbeat_ms: int) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO agent (id, pid, started_ms, heartbeat_ms) VALUES (1, ?, ?, ?)",
            (pid, started_ms, heartbeat_ms),
        )

    def agent(self) -> tuple[int, int, int] | None:
        row = self.db.execute("SELECT pid, started_ms, heartbeat_ms FROM agent WHERE id = 1").fetchone()
        return None if row is None else (row[0], row[1], row[2])

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))
