"""The device records the gateway reads from its device tables are the records the core builds by
replaying the identity entries the gateway queued for the log (indices aside: the tables have none)."""

from __future__ import annotations

import asyncpg

from attest_core.entries import RevokerRole
from gateway.device_records import NOT_LOGGED, read_devices
from gateway.devices import revoke, rotate
from gateway.evidence import replay
from gateway.migrations import migrate
from tests.gateway.helpers import enrol_device, run
from tests.gateway.test_registry_changes import rotation
from tests.support import TestDevice


def test_the_tables_give_the_records_the_log_replays_to(database: str) -> None:
    async def go(conn: asyncpg.Connection) -> None:
        await migrate(conn)
        plain, rotated, revoked, both = (TestDevice(f"dev-{n}", f"asset-{n % 2}") for n in range(4))
        for device in (plain, rotated, revoked, both):
            await enrol_device(conn, device)
        await rotate(conn, *rotation(rotated, 7), "installer-1", role=RevokerRole.INSTALLER)
        await revoke(
            conn, revoked.device_id, "stolen", "installer-2", last_valid_seq=3, role=RevokerRole.OPERATOR
        )
        await rotate(conn, *rotation(both, 2), "installer-1", role=RevokerRole.INSTALLER)
        await revoke(conn, both.device_id, "retired", "installer-1", role=RevokerRole.INSTALLER)
        queued = await conn.fetch("SELECT id, data FROM pending_entries ORDER BY id")
        replayed = replay((r["id"], bytes(r["data"])) for r in queued).devices

        ids = [d.device_id for d in (plain, rotated, revoked, both)]
        stored = await read_devices(conn, [*ids, "not-enrolled"])
        assert sorted(stored) == sorted(ids)
        for device_id in ids:
            record, expected = stored[device_id].record, replayed[device_id]
            assert stored[device_id].logged_seq == 0
            assert record.statement == expected.statement
            assert record.keys == expected.keys
            assert (record.revoked, record.last_valid_seq) == (expected.revoked, expected.last_valid_seq)
            assert record.enrolment_index == NOT_LOGGED
            assert record.revocation_index == (NOT_LOGGED if expected.revoked else None)

    run(database, go)
