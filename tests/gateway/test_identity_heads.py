"""The gateway chains each asset's identity entries (asset_identity.head), and migration 007
finds the same heads from what an earlier gateway had logged or queued."""

from __future__ import annotations

import asyncio
from importlib import resources

import asyncpg

from attest_core.entries import EnrolmentEntry, RevocationEntry, RevokerRole, decode_entry
from attest_core.merkle import leaf_hash
from gateway.devices import revoke
from gateway.migrations import migrate
from tests.gateway.helpers import enrol_device
from tests.services import Postgres
from tests.support import TestDevice


def test_identity_entries_are_chained_and_the_migration_finds_the_heads(postgres: Postgres) -> None:
    dsn = postgres.create_database()

    async def go() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await migrate(conn)
            for device in (
                TestDevice("ih-1", "ih-a"),
                TestDevice("ih-2", "ih-a"),
                TestDevice("ih-3", "ih-b"),
            ):
                await enrol_device(conn, device)
            await revoke(conn, "ih-1", "replaced", "installer-1", role=RevokerRole.INSTALLER)
            queued = [
                bytes(r["data"]) for r in await conn.fetch("SELECT data FROM pending_entries ORDER BY id")
            ]
            entries = [decode_entry(d) for d in queued]
            assert [type(e).__name__ for e in entries] == ["EnrolmentEntry"] * 3 + ["RevocationEntry"]
            first, second, third, revocation = entries
            assert isinstance(first, EnrolmentEntry)
            assert first.asset_link is None
            assert isinstance(second, EnrolmentEntry)
            assert second.asset_link == leaf_hash(queued[0])
            assert isinstance(third, EnrolmentEntry)
            assert third.asset_link is None
            assert isinstance(revocation, RevocationEntry)
            assert revocation.asset_link == leaf_hash(queued[1])
            heads = dict(await conn.fetch("SELECT asset_id, head FROM asset_identity"))
            assert heads == {"ih-a": leaf_hash(queued[3]), "ih-b": leaf_hash(queued[2])}
            # what migration 007 computes from the entries (here still queued) of a gateway before it
            sql = (resources.files("gateway.sql") / "007_identity_chain.sql").read_text()
            backfill = sql[sql.index("INSERT INTO asset_identity") :]
            await conn.execute("DELETE FROM asset_identity")
            await conn.execute(backfill)
            assert dict(await conn.fetch("SELECT asset_id, head FROM asset_identity")) == heads
        finally:
            await conn.close()

    asyncio.run(go())
