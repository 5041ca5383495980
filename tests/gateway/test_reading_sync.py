"""The readings' ``unsynced`` column (migration 009): ingest sets it from each reading's status,
and the migration's backfill, which reads the status bytes of a stored envelope by the payload
layout in SQL, agrees with the core's decoder on every kind of payload."""

from __future__ import annotations

import asyncio
from importlib import resources
from pathlib import Path

import asyncpg

from attest_core.reading import Status, decode_envelope
from tests.gateway.helpers import enrol_device
from tests.gateway.test_log import World, msg
from tests.services import Postgres
from tests.support import HOUR, T0, TestDevice

STATUSES = [
    Status(0),
    Status.TIME_UNSYNCED,
    Status.TAMPER | Status.TIME_UNSYNCED,
    Status.POWER_UP,
    Status.METER_ERROR,
]


def test_ingest_and_the_migration_agree_with_the_decoder(postgres: Postgres, tmp_path: Path) -> None:
    dsn = postgres.create_database()

    async def go() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            world = await World(conn, tmp_path).setup()
            # identifiers of several lengths, with and without power, v1 and v2 payloads
            devices = [
                TestDevice("d", "a"),
                TestDevice("dev-" + "x" * 60, "asset-" + "y" * 58),
                TestDevice("m-7", "pv"),
            ]
            for device in devices:
                await enrol_device(conn, device)
            messages = []
            for n in range(20):
                device = devices[n % 3]
                status = STATUSES[n % len(STATUSES)]
                envelope = device.reading(
                    T0 + n * HOUR, n * 1000, power_mw=None if n % 2 else 1234, status=status, v1=n % 4 == 3
                )
                messages.append(msg(device, envelope.encode()))
            result = await world.ingest(*messages)
            assert result.accepted == 20

            async def column_agrees() -> None:
                rows = await conn.fetch("SELECT envelope, unsynced FROM readings")
                assert len(rows) == 20
                for row in rows:
                    status = decode_envelope(bytes(row["envelope"])).reading().status
                    assert row["unsynced"] == bool(status & Status.TIME_UNSYNCED)

            await column_agrees()
            sql = (resources.files("gateway.sql") / "009_reading_sync.sql").read_text()
            backfill = sql[sql.index("UPDATE readings") :]
            await conn.execute("UPDATE readings SET unsynced = false")
            await conn.execute(backfill)
            await column_agrees()
        finally:
            await conn.close()

    asyncio.run(go())
