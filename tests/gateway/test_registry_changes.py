"""Key rotations and revocations against ingest: no reading is accepted under a replaced key or state,
in any ingest process, however fresh its cache."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from attest_core.device import RotationStatement, sign_rotation
from attest_core.entries import RevokerRole
from gateway.devices import REGISTRY_LOCK, revoke, rotate
from gateway.errors import DeviceError
from gateway.ingest import DeviceCache, store_batch
from gateway.migrations import migrate
from tests.gateway.helpers import enrol_device, settings_for
from tests.gateway.test_log import msg
from tests.support import T0, TestDevice, seeded_signer


def run_two(database: str, fn) -> None:  # type: ignore[no-untyped-def]
    async def go() -> None:
        a, b = await asyncpg.connect(database), await asyncpg.connect(database)
        try:
            await migrate(a)
            await fn(a, b)
        finally:
            await a.close()
            await b.close()

    asyncio.run(go())


def rotation(d: TestDevice, effective_seq: int) -> tuple[bytes, bytes, bytes]:
    new = seeded_signer(d.device_id + " new")
    return sign_rotation(
        RotationStatement(d.device_id, d.signer.public_key, new.public_key, effective_seq, T0), d.signer, new
    )


def test_a_rotation_must_take_effect_above_every_accepted_reading(database: str, tmp_path: Path) -> None:
    settings = settings_for(database, tmp_path)

    async def go(a: asyncpg.Connection, b: asyncpg.Connection) -> None:
        d = TestDevice("dev-1", "asset-1")
        await enrol_device(a, d)
        await store_batch(
            a, [msg(d, d.reading(T0 + i, i).encode()) for i in range(5)], DeviceCache(), settings
        )
        with pytest.raises(DeviceError) as info:
            await rotate(a, *rotation(d, 5), "installer-1", role=RevokerRole.INSTALLER)
        assert (info.value.status, info.value.code) == (409, "effective_seq_not_above_accepted")
        assert "readings up to 5 are already accepted" in info.value.message
        await rotate(a, *rotation(d, 6), "installer-1", role=RevokerRole.INSTALLER)

    run_two(database, go)


async def _rotate_from_2(api: asyncpg.Connection, d: TestDevice) -> None:
    await rotate(api, *rotation(d, 2), "installer-1", role=RevokerRole.INSTALLER)


async def _revoke_after_1(api: asyncpg.Connection, d: TestDevice) -> None:
    assert (
        await revoke(api, d.device_id, "stolen", "installer-1", role=RevokerRole.INSTALLER)
    ).last_valid_seq == 1


@pytest.mark.parametrize(
    ("change", "refusal"),
    [(_rotate_from_2, "key_not_valid_for_seq"), (_revoke_after_1, "revoked_device")],
    ids=["rotation", "revocation"],
)
def test_no_ingest_process_accepts_a_reading_the_change_disowns_once_it_is_made(
    database: str,
    tmp_path: Path,
    change,
    refusal: str,  # type: ignore[no-untyped-def]
) -> None:
    """Reading 2, signed with the old key, after a rotation from 2 or a revocation after 1."""
    settings = settings_for(database, tmp_path)

    async def go(api: asyncpg.Connection, ingest: asyncpg.Connection) -> None:
        d = TestDevice("dev-1", "asset-1")
        await enrol_device(api, d)
        cache = DeviceCache(ttl=3600)  # another process's cache, read before the change
        assert (await store_batch(ingest, [msg(d, d.reading(T0, 1).encode())], cache, settings)).accepted == 1
        await change(api, d)
        result = await store_batch(ingest, [msg(d, d.reading(T0 + 1, 2).encode())], cache, settings)
        assert result.refused == {refusal: 1}

    run_two(database, go)


def test_a_rotation_waits_for_the_batches_being_checked(database: str, tmp_path: Path) -> None:
    async def go(ingest: asyncpg.Connection, api: asyncpg.Connection) -> None:
        d = TestDevice("dev-1", "asset-1")
        await enrol_device(api, d)
        async with ingest.transaction():
            await ingest.execute("SELECT pg_advisory_xact_lock_shared($1)", REGISTRY_LOCK)
            change = asyncio.create_task(
                rotate(api, *rotation(d, 2), "installer-1", role=RevokerRole.INSTALLER)
            )
            await asyncio.sleep(0.5)
            assert not change.done(), "the rotation did not wait for the batch in progress"
        await asyncio.wait_for(change, 10)

    run_two(database, go)


async def _waits_for_a_lock(
    observer: asyncpg.Connection, waiter: asyncpg.Connection, task: asyncio.Task
) -> bool:  # type: ignore[type-arg]
    """Whether ``task`` (running on ``waiter``) waits for a lock before it ends: asked of the server,
    not timed."""
    pid = waiter.get_server_pid()
    while not task.done():
        if await observer.fetchval("SELECT count(*) FROM pg_locks WHERE pid = $1 AND NOT granted", pid):
            return True
        await asyncio.sleep(0.01)
    return False


def test_a_refused_change_of_another_installers_device_does_not_stall_ingest(database: str) -> None:
    """The ownership check comes before change_registry (the exclusive registry lock, which holds off
    every ingest batch): an installer's requests on other installers' devices cannot stall ingest."""

    async def go(ingest: asyncpg.Connection, api: asyncpg.Connection) -> None:
        d = TestDevice("dev-1", "asset-1")
        await enrol_device(api, d)  # by installer-1
        refused = [
            ("rotation", lambda: rotate(api, *rotation(d, 2), "installer-2", role=RevokerRole.INSTALLER)),
            (
                "revocation",
                lambda: revoke(api, d.device_id, "not mine", "installer-2", role=RevokerRole.INSTALLER),
            ),
            (
                "revocation",
                lambda: revoke(api, "dev-none", "unknown", "installer-2", role=RevokerRole.INSTALLER),
            ),
        ]
        waited: list[str] = []
        async with ingest.transaction():
            # a batch being checked: holds the registry lock shared
            await ingest.execute("SELECT pg_advisory_xact_lock_shared($1)", REGISTRY_LOCK)
            for name, make in refused:
                task = asyncio.create_task(make())
                if await _waits_for_a_lock(ingest, api, task):
                    waited.append(name)
                    break  # ending the batch's transaction lets it go on
                with pytest.raises(DeviceError) as info:
                    await task
                assert info.value.code in ("not_your_device", "unknown_device")
        if waited:
            await asyncio.gather(task, return_exceptions=True)
        assert not waited, f"a refused {waited[0]} waited for the ingest batch"
        assert await api.fetchval("SELECT revoked_at FROM devices WHERE device_id = 'dev-1'") is None

    run_two(database, go)


class _RotateBeforeLock:
    """A connection on which ``change`` commits (on another connection) just before ingest takes the
    registry lock: after the batch was checked, before it is stored."""

    def __init__(self, conn: asyncpg.Connection, change) -> None:  # type: ignore[no-untyped-def]
        self._conn, self._change = conn, change

    async def execute(self, query: str, *args):  # type: ignore[no-untyped-def]
        if "pg_advisory_xact_lock_shared" in query and self._change is not None:
            change, self._change = self._change, None
            await change()
        return await self._conn.execute(query, *args)

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self._conn, name)


def test_a_rotation_made_while_a_batch_was_checked_has_the_batch_checked_again(
    database: str, tmp_path: Path
) -> None:
    settings = settings_for(database, tmp_path)

    async def go(api: asyncpg.Connection, ingest: asyncpg.Connection) -> None:
        d = TestDevice("dev-1", "asset-1")
        await enrol_device(api, d)
        cache = DeviceCache(ttl=3600)
        assert (await store_batch(ingest, [msg(d, d.reading(T0, 1).encode())], cache, settings)).accepted == 1
        old_key = d.reading(T0 + 1, 2).encode()

        async def rotate_now() -> None:
            await rotate(api, *rotation(d, 2), "installer-1", role=RevokerRole.INSTALLER)

        result = await store_batch(_RotateBeforeLock(ingest, rotate_now), [msg(d, old_key)], cache, settings)  # type: ignore[arg-type]
        assert result.refused == {"key_not_valid_for_seq": 1}
        assert await ingest.fetchval("SELECT count(*) FROM readings WHERE seq = 2") == 0

    run_two(database, go)
