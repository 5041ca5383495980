"""Ingest and the sequencer on real PostgreSQL: contiguous, provable, nothing lost or doubled."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from attest_core.chain import ChainState
from attest_core.checkpoint import open_checkpoint
from attest_core.entries import EntryType, ReadingEntry, RevokerRole, decode_entry, encode_entry
from attest_core.merkle import leaf_hash, root_from_leaf_hashes, verify_consistency, verify_inclusion
from attest_core.receipt import open_receipt
from gateway import lease, logstore
from gateway.devices import enrol, revoke
from gateway.errors import DeviceError, NotLeaderError
from gateway.ingest import DeviceCache, Message, store_batch
from gateway.migrations import available, current_version, migrate
from gateway.sequencer import Sequencer
from tests.gateway.helpers import enrol_device, log_signer, settings_for
from tests.support import HOUR, T0, TestDevice


def msg(device: TestDevice, envelope_bytes: bytes) -> Message:
    return Message(f"attest/v1/{device.device_id}/readings", envelope_bytes, 0, 0.0)


class World:
    """A migrated database, a sequencer and an ingest cache, driven step by step."""

    def __init__(self, conn: asyncpg.Connection, tmp_path: Path, **settings: object) -> None:
        self.conn = conn
        self.settings = settings_for("unused", tmp_path, **settings)
        self.published: list[tuple[str, bytes]] = []
        self.sequencer = Sequencer(self.settings, log_signer(), lambda t, p: self.published.append((t, p)))
        self.cache = DeviceCache(ttl=0)

    async def setup(self) -> World:
        await migrate(self.conn)
        await self.sequencer.load(self.conn)
        return self

    async def ingest(self, *messages: Message):  # type: ignore[no-untyped-def]
        return await store_batch(self.conn, list(messages), self.cache, self.settings)

    async def sequence(self) -> None:
        while True:
            r = await self.sequencer.step(self.conn)
            if not (r.entries or r.readings or r.quarantined):
                return

    async def all_entries(self) -> list[bytes]:
        size = await logstore.log_size(self.conn)
        got = await logstore.entries(self.conn, range(size))
        assert sorted(got) == list(range(size))
        return [got[i] for i in range(size)]


def world_test(fn):  # type: ignore[no-untyped-def]
    """Run an async test body with a fresh World on the test's own database."""

    def wrapper(database: str, tmp_path: Path) -> None:
        async def go() -> None:
            conn = await asyncpg.connect(database)
            try:
                await fn(await World(conn, tmp_path).setup())
            finally:
                await conn.close()

        asyncio.run(go())

    wrapper.__name__ = fn.__name__
    return wrapper


def test_migrations_are_versioned_and_idempotent(database: str) -> None:
    async def go() -> None:
        conn = await asyncpg.connect(database)
        try:
            assert await current_version(conn) == 0
            assert await migrate(conn) == [name for _, name, _ in available()]
            assert await migrate(conn) == []
            assert await current_version(conn) == len(available())
        finally:
            await conn.close()

    asyncio.run(go())


@world_test
async def test_readings_are_logged_contiguously_and_provably(w: World) -> None:
    devices = [TestDevice(f"dev-{i}", f"asset-{i}") for i in range(3)]
    for d in devices:
        await enrol_device(w.conn, d)
    envelopes = {
        d.device_id: [d.reading(T0 + h * HOUR, h * 1000).encode() for h in range(5)] for d in devices
    }
    # interleaved, and each device's readings arriving in reverse within a batch
    batch = [msg(d, e) for h in reversed(range(5)) for d in devices for e in [envelopes[d.device_id][h]]]
    result = await w.ingest(*batch)
    assert result.accepted == 15
    assert not result.refused
    await w.sequence()
    entries = await w.all_entries()
    assert len(entries) == 3 + 15
    kinds = [decode_entry(e).type for e in entries]
    assert kinds[:3] == [EntryType.ENROLMENT] * 3
    # per device, readings appear in sequence order
    for d in devices:
        seqs = [
            decode_entry(e).reading.seq
            for e in entries[3:]
            if decode_entry(e).reading.device_id == d.device_id
        ]  # type: ignore[union-attr]
        assert seqs == [1, 2, 3, 4, 5]
    # the stored tree is the tree of those entries
    note = await w.sequencer.checkpoint(w.conn)
    cp = open_checkpoint(note, log_signer().verifier_key()).checkpoint
    leaves = [leaf_hash(e) for e in entries]
    assert cp.size == 18
    assert cp.root_hash == root_from_leaf_hashes(leaves)
    for index in range(18):
        proof = await logstore.inclusion_proof(w.conn, index, 18)
        verify_inclusion(index, 18, leaves[index], proof, cp.root_hash)
    for m in range(1, 18):
        verify_consistency(m, 18, root_from_leaf_hashes(leaves[:m]), cp.root_hash,
                           await logstore.consistency_proof(w.conn, m, 18))  # fmt: skip
    # receipts: one per device, for its last reading, signed by the log key
    assert len(w.published) == 3
    for topic, payload in w.published:
        receipt = open_receipt(payload, log_signer().public_key)
        assert topic == f"attest/v1/{receipt.device_id}/receipts"
        assert receipt.seq == 5
        assert receipt.tree_size == 18
        assert receipt.root_hash == cp.root_hash
        assert entries[receipt.log_index] == encode_entry(ReadingEntry(envelopes[receipt.device_id][4]))


@world_test
async def test_duplicates_are_acknowledged_not_doubled(w: World) -> None:
    d = TestDevice("dev-1", "asset-1")
    await enrol_device(w.conn, d)
    e1 = d.reading(T0, 1).encode()
    assert (await w.ingest(msg(d, e1), msg(d, e1))).duplicates == 1
    await w.sequence()
    await w.sequencer.checkpoint(w.conn)
    w.published.clear()
    result = await w.ingest(msg(d, e1))
    assert result.duplicates == 1
    assert result.accepted == 0
    await w.sequence()
    assert len(await w.all_entries()) == 2
    # the device is owed its receipt again at the next checkpoint
    assert await w.conn.fetchval("SELECT count(*) FROM receipt_due") == 1
    await w.sequencer.checkpoint(w.conn)
    assert [open_receipt(p, log_signer().public_key).seq for _, p in w.published] == [1]


@world_test
async def test_equivocation_is_kept_as_evidence_never_logged(w: World) -> None:
    d = TestDevice("dev-1", "asset-1")
    await enrol_device(w.conn, d)
    state = d.state
    first = d.reading(T0, 1).encode()
    d.state = state
    second = d.reading(T0, 2).encode()  # seq 1 again, different register
    result = await w.ingest(msg(d, first), msg(d, second))
    assert result.accepted == 1
    assert result.refused == {"equivocation": 1}
    row = await w.conn.fetchrow("SELECT reason, payload, seq, device_id FROM quarantine")
    assert (row["reason"], bytes(row["payload"]), row["seq"], row["device_id"]) == (
        "equivocation",
        second,
        1,
        "dev-1",
    )
    await w.sequence()
    assert len(await w.all_entries()) == 2


@world_test
async def test_every_refusal_is_quarantined_and_counted(w: World) -> None:
    d = TestDevice("dev-1", "asset-1")
    await enrol_device(w.conn, d)
    good = d.reading(T0, 1).encode()
    bad = [
        Message("attest/v1/dev-1/readings", good[:-1]),
        Message("attest/v1/dev-1/readings", good[:-1]),  # the same again: counted, not stored twice
        Message("attest/v1/dev-x/readings", good),
        Message("somewhere/else", b"junk"),
    ]
    result = await w.ingest(*bad, msg(d, good))
    assert result.accepted == 1
    assert result.refused == {"truncated": 2, "topic_mismatch": 1, "bad_topic": 1}
    rows = await w.conn.fetch("SELECT reason, count, topic FROM quarantine ORDER BY reason")
    assert [(r["reason"], r["count"]) for r in rows] == [
        ("bad_topic", 1),
        ("topic_mismatch", 1),
        ("truncated", 2),
    ]


@world_test
async def test_a_chain_break_is_quarantined(w: World) -> None:
    d = TestDevice("dev-1", "asset-1")
    await enrol_device(w.conn, d)
    r1 = d.reading(T0, 1).encode()
    d.state = ChainState(2, b"\x13" * 32)
    r2 = d.reading(T0 + 1, 2).encode()
    await w.ingest(msg(d, r1), msg(d, r2))
    await w.sequence()
    assert len(await w.all_entries()) == 2  # enrolment + reading 1
    assert await w.conn.fetchval("SELECT reason FROM quarantine") == "chain_break"
    assert await w.conn.fetchval("SELECT count(*) FROM readings WHERE seq = 2") == 0


@world_test
async def test_a_gap_waits_then_times_out(w: World) -> None:
    d = TestDevice("dev-1", "asset-1")
    await enrol_device(w.conn, d)
    envs = [d.reading(T0 + i, i).encode() for i in range(4)]
    await w.ingest(msg(d, envs[0]), msg(d, envs[2]), msg(d, envs[3]))
    await w.sequence()
    assert len(await w.all_entries()) == 2  # reading 1 only: 3 and 4 wait for 2
    await w.ingest(msg(d, envs[1]))
    await asyncio.sleep(1.05)  # the gap check pauses a waiting device for a second
    await w.sequence()
    assert len(await w.all_entries()) == 5
    # now a gap that is never filled
    more = [d.reading(T0 + 10 + i, 10 + i).encode() for i in range(3)]
    await w.ingest(msg(d, more[1]), msg(d, more[2]))
    await w.sequence()
    await asyncio.sleep(1.1)  # gap_timeout is 1 s in these tests
    await w.sequence()
    await asyncio.sleep(1.1)
    await w.sequence()
    reasons = [r["reason"] for r in await w.conn.fetch("SELECT reason FROM quarantine ORDER BY seq")]
    assert reasons == ["out_of_order", "out_of_order"]
    assert len(await w.all_entries()) == 5
    # the device sends them again, in order: all logged
    await w.ingest(*(msg(d, e) for e in more))
    await w.sequence()
    assert len(await w.all_entries()) == 8


@world_test
async def test_revocation_and_duplicate_enrolment(w: World) -> None:
    d = TestDevice("dev-1", "asset-1")
    await enrol_device(w.conn, d)
    with pytest.raises(DeviceError) as info:
        await enrol(w.conn, d.statement_bytes, d.pop, "installer-1", role=RevokerRole.INSTALLER)
    assert info.value.code == "already_enrolled"
    with pytest.raises(DeviceError) as info:
        await enrol(w.conn, d.statement_bytes, bytes(64), "installer-1", role=RevokerRole.INSTALLER)
    assert info.value.code == "bad_proof_of_possession"
    await w.ingest(msg(d, d.reading(T0, 1).encode()), msg(d, d.reading(T0 + 1, 2).encode()))
    assert (
        await revoke(w.conn, "dev-1", "stolen", "installer-1", role=RevokerRole.INSTALLER)
    ).last_valid_seq == 2
    result = await w.ingest(msg(d, d.reading(T0 + 2, 3).encode()))
    assert result.refused == {"revoked_device": 1}
    await w.sequence()
    kinds = [decode_entry(e).type for e in await w.all_entries()]
    assert kinds == [EntryType.ENROLMENT, EntryType.REVOCATION, EntryType.READING, EntryType.READING]


def test_a_second_writer_is_fenced_off(database: str, tmp_path: Path) -> None:
    async def go() -> None:
        a, b = await asyncpg.connect(database), await asyncpg.connect(database)
        try:
            wa = await World(a, tmp_path).setup()
            wb = await World(b, tmp_path).setup()
            assert await lease.acquire(a, "a", 30) is not None
            assert await lease.acquire(b, "b", 30) is None  # the lease admits one sequencer
            d = TestDevice("dev-1", "asset-1")
            await enrol_device(a, d)
            await wa.sequence()
            await enrol_device(a, TestDevice("dev-2", "asset-2"))
            # b acts as if it were the sequencer, from a stale size: the fence stops it
            with pytest.raises(NotLeaderError):
                await wb.sequencer.step(b)
            assert await logstore.log_size(a) == 1
            await wa.sequence()  # the real sequencer goes on
            assert await logstore.log_size(a) == 2
        finally:
            await a.close()
            await b.close()

    asyncio.run(go())


@world_test
async def test_state_survives_a_restart(w: World) -> None:
    d = TestDevice("dev-1", "asset-1")
    await enrol_device(w.conn, d)
    await w.ingest(*(msg(d, d.reading(T0 + i, i).encode()) for i in range(7)))
    await w.sequence()
    root = w.sequencer.frontier.root()
    fresh = Sequencer(w.settings, log_signer())
    await fresh.load(w.conn)
    assert (fresh.size, fresh.frontier.root()) == (8, root)
    await w.ingest(msg(d, d.reading(T0 + 7, 7).encode()))
    w.sequencer = fresh
    await w.sequence()
    entries = await w.all_entries()
    assert fresh.frontier.root() == root_from_leaf_hashes([leaf_hash(e) for e in entries])
    assert await logstore.root_at(w.conn, 9) == fresh.frontier.root()


class _Interleave:
    """A connection that runs ``between`` right after the step's first fetch (the pending entries)."""

    def __init__(self, conn: asyncpg.Connection, between) -> None:  # type: ignore[no-untyped-def]
        self._conn, self._between, self._fetches = conn, between, 0

    async def fetch(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        rows = await self._conn.fetch(*args, **kwargs)
        self._fetches += 1
        if self._fetches == 1:
            await self._between()
        return rows

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self._conn, name)


def test_an_enrolment_committed_during_a_step_is_logged_before_its_readings(
    database: str, tmp_path: Path
) -> None:
    async def go() -> None:
        conn, other = await asyncpg.connect(database), await asyncpg.connect(database)
        try:
            w = await World(conn, tmp_path).setup()
            late = TestDevice("dev-late", "asset-late")

            async def enrol_and_send() -> None:  # another process, committing between the step's reads
                await enrol_device(other, late)
                await store_batch(
                    other, [msg(late, late.reading(T0, 1).encode())], DeviceCache(ttl=0), w.settings
                )

            await w.sequencer.step(_Interleave(conn, enrol_and_send))  # type: ignore[arg-type]
            await w.sequence()
            kinds = [decode_entry(e).type for e in await w.all_entries()]
            assert kinds == [EntryType.ENROLMENT, EntryType.READING]
        finally:
            await conn.close()
            await other.close()

    asyncio.run(go())
