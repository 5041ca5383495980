"""The log's order and the receipts it owes, under queues longer than a step and after restarts."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from attest_core.device import RotationStatement, sign_rotation
from attest_core.entries import EntryType, RevokerRole, decode_entry
from attest_core.receipt import open_receipt
from gateway.devices import rotate
from gateway.ingest import DeviceCache, store_batch
from gateway.sequencer import Sequencer
from tests.gateway.helpers import enrol_device, log_signer
from tests.gateway.test_log import World, msg
from tests.support import T0, TestDevice, seeded_signer


def with_world(
    **settings: Any,
) -> Callable[[Callable[[World], Awaitable[None]]], Callable[[str, Path], None]]:
    def decorate(fn: Callable[[World], Awaitable[None]]) -> Callable[[str, Path], None]:
        def wrapper(database: str, tmp_path: Path) -> None:
            async def go() -> None:
                conn = await asyncpg.connect(database)
                try:
                    await fn(await World(conn, tmp_path, **settings).setup())
                finally:
                    await conn.close()

            asyncio.run(go())

        wrapper.__name__ = fn.__name__
        return wrapper

    return decorate


def receipts(w: World) -> list[tuple[str, int]]:
    out = [open_receipt(p, log_signer().public_key) for _, p in w.published]
    w.published.clear()
    return sorted((r.device_id, r.seq) for r in out)


def reading_order_problems(entries: list[bytes]) -> list[str]:
    """Readings logged before their device's enrolment, or at or past a key rotation's effective
    sequence number before that rotation."""
    decoded = [decode_entry(data) for data in entries]
    enrolled_at: dict[str, int] = {}
    rotations: list[tuple[int, str, int]] = []
    for index, entry in enumerate(decoded):
        if entry.type == EntryType.ENROLMENT:
            enrolled_at[entry.verify().device_id] = index  # type: ignore[union-attr]
        elif entry.type == EntryType.KEY_ROTATION:
            st = entry.verify()  # type: ignore[union-attr]
            rotations.append((index, st.device_id, st.effective_seq))
    problems = []
    for index, entry in enumerate(decoded):
        if entry.type != EntryType.READING:
            continue
        reading = entry.reading  # type: ignore[union-attr]
        if enrolled_at.get(reading.device_id, len(decoded)) > index:
            problems.append(
                f"entry {index}: reading {reading.seq} of {reading.device_id} before its enrolment"
            )
        for at, device_id, effective_seq in rotations:
            if device_id == reading.device_id and reading.seq >= effective_seq and at > index:
                problems.append(
                    f"entry {index}: reading {reading.seq} of {device_id} before its key's rotation"
                )
    return problems


@with_world()
async def test_receipts_owed_survive_a_sequencer_restart(w: World) -> None:
    d = TestDevice("dev-1", "asset-1")
    await enrol_device(w.conn, d)
    await w.ingest(*(msg(d, d.reading(T0 + i, i).encode()) for i in range(3)))
    await w.sequence()  # logged; then the process dies before its checkpoint
    restarted = World(w.conn, Path("unused"))
    restarted.settings = w.settings
    restarted.sequencer = Sequencer(w.settings, log_signer(), lambda t, p: restarted.published.append((t, p)))
    await restarted.sequencer.load(w.conn)
    assert restarted.sequencer.checkpoint_due()
    await restarted.sequencer.checkpoint(w.conn)
    assert receipts(restarted) == [("dev-1", 3)]


@with_world()
async def test_an_idle_log_answers_resent_readings(w: World) -> None:
    d = TestDevice("dev-1", "asset-1")
    await enrol_device(w.conn, d)
    envelope = d.reading(T0, 1).encode()
    await w.ingest(msg(d, envelope))
    await w.sequence()
    await w.sequencer.checkpoint(w.conn)
    assert receipts(w) == [("dev-1", 1)]
    # the receipt was lost on its way: the device sends the reading again to a log that does not grow
    assert (await w.ingest(msg(d, envelope))).duplicates == 1
    await w.sequence()
    assert not w.sequencer.checkpoint_due()
    assert await w.sequencer.answer_due(w.conn) == 1
    [(_, payload)] = w.published
    receipt = open_receipt(payload, log_signer().public_key)
    assert (receipt.seq, receipt.tree_size, receipt.root_hash) == (1, 2, w.sequencer.frontier.root())
    assert await w.sequencer.answer_due(w.conn) == 0  # answered once


@with_world(sequencer_batch=1)
async def test_readings_never_precede_their_enrolment_behind_a_long_queue(w: World) -> None:
    devices = [TestDevice(f"dev-{i}", f"asset-{i}") for i in range(4)]
    for d in reversed(devices):  # the last enrolled comes first in the readings' order
        await enrol_device(w.conn, d)
    # every device's first readings are accepted while three enrolments still queue ahead of its own
    await w.ingest(*(msg(d, d.reading(T0 + i, i).encode()) for d in devices for i in range(2)))
    await w.sequence()
    entries = await w.all_entries()
    assert len(entries) == 4 + 8
    assert reading_order_problems(entries) == []


@with_world(sequencer_batch=1)
async def test_readings_of_a_new_key_never_precede_its_rotation(w: World) -> None:
    d = TestDevice("dev-1", "asset-1")
    others = [TestDevice(f"other-{i}", f"asset-o{i}") for i in range(3)]
    await enrol_device(w.conn, d)
    await w.ingest(msg(d, d.reading(T0, 1).encode()))
    await w.sequence()
    new = seeded_signer("dev-1 new key")
    data, old_sig, new_sig = sign_rotation(
        RotationStatement("dev-1", d.signer.public_key, new.public_key, 2, T0), d.signer, new
    )
    for other in others:  # a queue of entries ahead of the rotation
        await enrol_device(w.conn, other)
    await rotate(w.conn, data, old_sig, new_sig, "installer-1", role=RevokerRole.INSTALLER)
    d.signer = new
    assert (await w.ingest(msg(d, d.reading(T0 + 1, 2).encode()))).accepted == 1
    await w.sequence()
    entries = await w.all_entries()
    assert [decode_entry(e).type for e in entries].count(EntryType.READING) == 2
    assert reading_order_problems(entries) == []


@with_world(sequencer_batch=20, gap_timeout=60.0)
async def test_one_device_cannot_fill_a_step(w: World) -> None:
    flood, healthy = TestDevice("dev-a-flood", "asset-a"), TestDevice("dev-b-ok", "asset-b")
    await enrol_device(w.conn, flood)
    await enrol_device(w.conn, healthy)
    await w.sequence()
    flood.reading(T0, 0)  # reading 1 never arrives
    backlog = [flood.reading(T0 + i, i).encode() for i in range(1, 60)]
    await w.ingest(*(msg(flood, e) for e in backlog))
    for second in range(3):  # the flood waits behind its gap; the healthy device goes on
        await w.ingest(msg(healthy, healthy.reading(T0 + second, second).encode()))
        await w.sequencer.step(w.conn)
        await asyncio.sleep(1.05)  # past the one second a waiting device is skipped for
    logged = [decode_entry(e) for e in await w.all_entries()]
    seqs = [e.reading.seq for e in logged if e.type == EntryType.READING]  # type: ignore[union-attr]
    assert seqs == [1, 2, 3]


def test_a_step_is_not_undone_by_a_receipt_owed_meanwhile(database: str, tmp_path: Path) -> None:
    """Ingest records a device owed a receipt (it re-sent a logged reading) while a step logs that
    device's next readings: both commit (the step used to fail on a serialization conflict)."""
    from tests.gateway.test_log import _Interleave

    async def go() -> None:
        conn, other = await asyncpg.connect(database), await asyncpg.connect(database)
        try:
            w = await World(conn, tmp_path).setup()
            d = TestDevice("dev-1", "asset-1")
            await enrol_device(conn, d)
            first = d.reading(T0, 1).encode()
            await w.ingest(msg(d, first))
            await w.sequence()
            await w.sequencer.checkpoint(conn)
            assert receipts(w) == [("dev-1", 1)]
            await w.ingest(msg(d, d.reading(T0 + 1, 2).encode()))

            async def resend() -> None:  # another process, committing between the step's reads
                assert (
                    await store_batch(other, [msg(d, first)], DeviceCache(ttl=0), w.settings)
                ).duplicates == 1

            result = await w.sequencer.step(_Interleave(conn, resend))  # type: ignore[arg-type]
            assert result.readings == 1
            await w.sequencer.checkpoint(conn)
            assert receipts(w) == [("dev-1", 2)]
        finally:
            await conn.close()
            await other.close()

    asyncio.run(go())


@with_world(gap_timeout=1.0, sequencer_device_share=2)
async def test_a_device_whose_backlog_was_refused_waits_afresh_for_its_next_gap(w: World) -> None:
    d = TestDevice("dev-1", "asset-1")
    await enrol_device(w.conn, d)
    envelopes = [d.reading(T0 + i, i).encode() for i in range(1, 9)]  # seq 1..8
    await w.ingest(msg(d, envelopes[0]))
    await w.sequence()
    await w.ingest(*(msg(d, e) for e in envelopes[2:6]))  # 3..6: two step shares behind the gap at 2
    await w.sequence()
    await asyncio.sleep(1.1)
    for _ in range(3):
        await w.sequencer.step(w.conn)
    refused = [r["seq"] for r in await w.conn.fetch("SELECT seq FROM quarantine ORDER BY seq")]
    assert refused == [3, 4, 5, 6]
    await w.ingest(msg(d, envelopes[7]))  # 8, still behind the gap: it waits its own gap_timeout
    await w.sequencer.step(w.conn)
    assert await w.conn.fetchval("SELECT count(*) FROM quarantine WHERE seq = 8") == 0


@pytest.mark.parametrize(
    ("batch", "expected"),
    [(100, [3, 3]), (5, [3, 2])],  # all waiting fits in a step / more waits than a step takes: dealt
)
def test_a_step_takes_at_most_a_share_of_one_devices_readings(
    database: str, tmp_path: Path, batch: int, expected: list[int]
) -> None:
    async def go() -> None:
        conn = await asyncpg.connect(database)
        try:
            w = await World(conn, tmp_path, sequencer_batch=batch, sequencer_device_share=3).setup()
            devices = [TestDevice("dev-a", "asset-a"), TestDevice("dev-b", "asset-b")]
            for d in devices:
                await enrol_device(conn, d)
            await w.sequence()
            await w.ingest(*(msg(d, d.reading(T0 + i, i).encode()) for d in devices for i in range(1, 11)))
            result = await w.sequencer.step(conn)
            logged = await conn.fetch(
                "SELECT device_id, count(*) AS n FROM readings WHERE log_index IS NOT NULL GROUP BY device_id "
                "ORDER BY device_id"
            )
            assert [r["n"] for r in logged] == expected
            assert result.readings == sum(expected)
            await w.sequence()
            assert await conn.fetchval("SELECT count(*) FROM readings WHERE log_index IS NULL") == 0
        finally:
            await conn.close()

    asyncio.run(go())
