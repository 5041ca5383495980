"""The bundles' readings chosen in SQL are the ones the core's rules choose, on a real database: the
boundary bundle's (gateway.evidence.boundary_readings) those of attest_core.evaluation.boundary_seqs,
the full bundle's (gateway.evidence.FULL_READINGS) those of attest_core.evaluation.full_seqs; for
every claim period (its edges on, just before and just after reading times), every set of assets
and every tree size.  (v2) A device of a claimed asset with no reading in the period gets its
edges in full evidence: the last reading before the period and the one after it.

The log holds several devices per asset, a device with one reading, one with none, one whose
device time goes back, one whose key was rotated, one revoked after some readings beyond its last
valid one were logged, and readings accepted but not logged.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attest_core.entries import RevokerRole, reading_entry_bytes
from attest_core.evaluation import boundary_seqs, full_seqs
from attest_core.reading import Status
from gateway import logstore
from gateway.devices import revoke, rotate
from gateway.evidence import FULL_READINGS, boundary_readings, identity_entries, reading_args, replay
from tests.gateway.helpers import enrol_device
from tests.gateway.test_log import World, msg
from tests.gateway.test_registry_changes import rotation
from tests.services import Postgres
from tests.support import HOUR, T0, TestDevice, flat_claim, seeded_signer

MINUTE = 60_000
ASSETS = ("asset-1", "asset-2", "asset-3", "asset-9")


@dataclass(frozen=True)
class Log:
    dsn: str
    size: int
    times: tuple[int, ...]
    revocation: int
    """The revocation's log index."""


def _send(device: TestDevice, minutes: list[int], unsynced: tuple[int, ...] = ()):  # type: ignore[no-untyped-def]
    """Readings at ``minutes``; those in ``unsynced`` with the clock-unsynchronised flag."""
    return [
        msg(
            device,
            device.reading(
                T0 + m * MINUTE, 1000 * (m + 1), status=Status.TIME_UNSYNCED if m in unsynced else Status(0)
            ).encode(),
        )
        for m in minutes
    ]


async def _build(conn: asyncpg.Connection, tmp_path: Path) -> None:
    world = await World(conn, tmp_path, gap_timeout=3600.0).setup()
    back = TestDevice("dev-back", "asset-1")  # its device time goes back now and then
    rotated = TestDevice("dev-rotated", "asset-1")
    single = TestDevice("dev-single", "asset-2")
    revoked = TestDevice("dev-revoked", "asset-2")
    silent = TestDevice("dev-silent", "asset-3")  # enrolled, never sends
    late = TestDevice("dev-late", "asset-1")
    clock = TestDevice("dev-clock", "asset-2")  # some readings with an unsynchronised clock
    for device in (back, rotated, single, revoked, silent, late, clock):
        await enrol_device(conn, device)
    await world.sequence()

    await world.ingest(*_send(back, [0, 10, 5, 20]), *_send(rotated, [0, 10, 20]), *_send(single, [15]))
    await world.sequence()
    await rotate(conn, *rotation(rotated, 4), "installer-1", role=RevokerRole.INSTALLER)
    rotated.signer = seeded_signer(rotated.device_id + " new")
    await world.ingest(*_send(rotated, [30, 40]), *_send(revoked, [0, 10, 20, 30, 40, 50]))
    await world.sequence()
    await revoke(
        conn, revoked.device_id, "stolen", "installer-1", last_valid_seq=4, role=RevokerRole.OPERATOR
    )
    await world.ingest(*_send(back, [30, 25, 40, 50]), *_send(late, [45, 55]))
    # dev-clock: an unsynchronised reading jumps back (minute 5 after 12), another forward (60 before 35)
    await world.ingest(*_send(clock, [0, 12, 5, 22, 60, 35, 48], unsynced=(12, 5, 60)))
    await world.sequence()
    # accepted, not logged: reading 4 of dev-late waits for reading 3
    late.reading(T0 + 60 * MINUTE, 1)
    await world.ingest(*_send(late, [70]))
    await world.sequence()


@pytest.fixture(scope="module")
def log(postgres: Postgres, tmp_path_factory: pytest.TempPathFactory) -> Log:
    dsn = postgres.create_database()

    async def go() -> Log:
        conn = await asyncpg.connect(dsn)
        try:
            await _build(conn, tmp_path_factory.mktemp("boundary"))
            size = await logstore.log_size(conn)
            times = tuple(sorted({r["time_ms"] for r in await conn.fetch("SELECT time_ms FROM readings")}))
            assert await conn.fetchval("SELECT count(*) FROM readings") == 30  # every one sent was accepted
            assert await conn.fetchval("SELECT count(*) FROM readings WHERE log_index IS NULL") == 1
            revocation = await conn.fetchval("SELECT idx FROM entries WHERE kind = 4")
            return Log(dsn, size, times, revocation)
        finally:
            await conn.close()

    return asyncio.run(go())


async def _agree(conn: asyncpg.Connection, assets: tuple[str, ...], start: int, end: int, size: int) -> None:
    claim = flat_claim(assets, start=start, end=end)
    identity = await identity_entries(conn, claim, size)
    chosen = await boundary_readings(conn, claim, size, identity)

    registry = replay(identity)
    by_device: dict[str, list[asyncpg.Record]] = defaultdict(list)
    for r in await conn.fetch(
        "SELECT device_id, seq, asset_id, time_ms, log_index, envelope, unsynced FROM readings"
    ):
        if r["asset_id"] in assets and r["log_index"] is not None and r["log_index"] < size:
            by_device[r["device_id"]].append(r)
    expected: list[tuple[int, bytes]] = []
    full: list[int] = []
    for device_id, rows in by_device.items():
        record = registry.devices[device_id]
        ends = boundary_seqs([(r["seq"], r["time_ms"]) for r in rows], claim, record.last_valid_seq)
        if ends is not None:
            expected += [
                (r["log_index"], reading_entry_bytes(bytes(r["envelope"]))) for r in rows if r["seq"] in ends
            ]
        span = full_seqs([(r["seq"], r["time_ms"], r["unsynced"]) for r in rows], claim)
        if span is not None:
            full += [r["log_index"] for r in rows if span[0] <= r["seq"] <= span[1]]
    assert chosen == sorted(expected)
    assert [r["log_index"] for r in await conn.fetch(FULL_READINGS, *reading_args(claim, size))] == sorted(
        full
    )


def _check(log: Log, assets: tuple[str, ...], start: int, end: int, size: int) -> None:
    async def go() -> None:
        conn = await asyncpg.connect(log.dsn)
        try:
            await _agree(conn, assets, start, end, size)
        finally:
            await conn.close()

    asyncio.run(go())


EDGES = {
    "the whole day, whole log": (ASSETS, T0 - HOUR, T0 + 2 * HOUR, None),
    "starts on the first reading, ends on the last": (ASSETS, T0, T0 + 70 * MINUTE, None),
    "ends on a reading (not in the period)": (("asset-1",), T0 + 10 * MINUTE, T0 + 20 * MINUTE, None),
    "ends just after a reading": (("asset-1",), T0 + 10 * MINUTE, T0 + 20 * MINUTE + 1, None),
    "one reading": (("asset-2",), T0 + 15 * MINUTE, T0 + 15 * MINUTE + 1, None),
    "no reading in the period": (ASSETS, T0 + 90 * MINUTE, T0 + 2 * HOUR, None),
    "an asset without readings": (("asset-3",), T0 - HOUR, T0 + 2 * HOUR, None),
    "an asset never enrolled": (("asset-9",), T0 - HOUR, T0 + 2 * HOUR, None),
    "the empty tree": (ASSETS, T0 - HOUR, T0 + 2 * HOUR, "empty"),
    "just before the revocation": (("asset-2",), T0 - HOUR, T0 + 2 * HOUR, "before revocation"),
    "just after the revocation": (("asset-2",), T0 - HOUR, T0 + 2 * HOUR, "after revocation"),
}


@pytest.mark.parametrize(("assets", "start", "end", "size"), EDGES.values(), ids=EDGES.keys())
def test_the_sql_selections_are_the_core_rules_at_the_edges(
    log: Log, assets: tuple[str, ...], start: int, end: int, size: str | None
) -> None:
    sizes = {
        None: log.size,
        "empty": 0,
        "before revocation": log.revocation,
        "after revocation": log.revocation + 1,
    }
    _check(log, assets, start, end, sizes[size])


@st.composite
def _claims(draw: st.DrawFn, times: tuple[int, ...], size: int) -> tuple[tuple[str, ...], int, int, int]:
    edges = sorted({t + d for t in times for d in (-1, 0, 1)} | {T0 - HOUR, T0 + 2 * HOUR})
    start = draw(st.sampled_from(edges[:-1]))
    end = draw(st.sampled_from([t for t in edges if t > start]))
    assets = tuple(sorted(draw(st.sets(st.sampled_from(ASSETS), min_size=1))))
    return assets, start, end, draw(st.integers(0, size))


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_the_sql_selections_are_the_core_rules(log: Log, data: st.DataObject) -> None:
    _check(log, *data.draw(_claims(log.times, log.size)))
