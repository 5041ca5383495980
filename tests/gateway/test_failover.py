"""Failover: a sequencer cut off by a partition its database never notices is replaced, and fenced.

The end-to-end test's sequencer connection goes through a relay (tests/gateway/relay.py)
that is switched to a black hole: it stops forwarding both ways and closes nothing, so
PostgreSQL keeps the old sequencer's session, idle or in the middle of a transaction, with
whatever it holds.  The other tests hold the lease (gateway.lease) on real connections.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from gateway import lease, logstore
from gateway.errors import ConfigError, NotLeaderError
from gateway.migrations import migrate
from gateway.sequencer import Sequencer
from stack.processes import GatewayProcess, MosquittoProcess, wait_for
from tests.gateway.fleet import Fleet
from tests.gateway.helpers import enrol_device, log_signer, settings_for
from tests.gateway.relay import Relay
from tests.gateway.test_crash import assert_log_complete, crash_gateway, devices, enrol_all, is_sequencer
from tests.support import TestDevice

LOGGED = "iot_attest_entries_logged_total"
TAKEOVER_LIMIT = 30.0


def through(dsn: str, relay: Relay) -> str:
    """``dsn`` with its host and port replaced by the relay's."""
    parts = urlsplit(dsn)
    netloc = parts.netloc.rsplit("@", 1)
    where = f"127.0.0.1:{relay.port}"
    return parts._replace(netloc=f"{netloc[0]}@{where}" if len(netloc) == 2 else where).geturl()


TTL = 1.0
"""The unit tests' lease: short, so that waiting it out is quick."""


def on_database(
    database: str, body: Callable[[asyncpg.Connection, asyncpg.Connection], Awaitable[None]]
) -> None:
    """Run ``body(a, b)`` on two sequencer connections to a migrated ``database``."""

    async def go() -> None:
        a = await lease.connect(database, TTL)
        b = await lease.connect(database, TTL)
        try:
            await migrate(a)
            await body(a, b)
        finally:
            a.terminate()
            b.terminate()

    asyncio.run(go())


async def acquired(conn: asyncpg.Connection, holder: str) -> lease.Lease:
    held = await lease.acquire(conn, holder, TTL)
    assert held is not None, f"{holder} did not get the lease"
    return held


async def lease_row(conn: asyncpg.Connection) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow("SELECT holder, epoch FROM sequencer_lease")
    return row


def test_a_stolen_lease_cannot_commit_a_step_or_a_checkpoint(database: str, tmp_path: Path) -> None:
    async def body(a: asyncpg.Connection, b: asyncpg.Connection) -> None:
        settings = settings_for(database, tmp_path)
        old = Sequencer(settings, log_signer(), lease=await acquired(a, "a"))
        await old.load(a)
        assert await lease.acquire(b, "b", TTL) is None  # held, and a's session is alive
        await enrol_device(a, TestDevice("dev-1", "asset-1"))
        assert (await old.step(a)).entries == 1
        await old.checkpoint(a)

        await asyncio.sleep(TTL + 0.2)  # a stalls: its lease runs out, b takes it
        new = Sequencer(settings, log_signer(), lease=await acquired(b, "b"))
        await new.load(b)
        await enrol_device(b, TestDevice("dev-2", "asset-2"))
        with pytest.raises(NotLeaderError):
            await old.step(a)
        with pytest.raises(NotLeaderError):
            await old.checkpoint(a)
        assert await logstore.log_size(b) == 1
        assert await b.fetchval("SELECT count(*) FROM checkpoints") == 1
        assert (await new.step(b)).entries == 1
        await new.checkpoint(b)
        assert await logstore.log_size(b) == 2
        # and once stolen, always: a's epoch stays stale whatever happens to the new lease
        await asyncio.sleep(TTL + 0.2)
        with pytest.raises(NotLeaderError):
            await old.step(a)
        assert (await lease_row(b))["holder"] == "b"

    on_database(database, body)


def test_an_unrenewed_lease_lapses_even_if_nobody_takes_it(database: str, tmp_path: Path) -> None:
    async def body(a: asyncpg.Connection, b: asyncpg.Connection) -> None:
        held = await acquired(a, "a")
        await asyncio.sleep(TTL + 0.2)
        with pytest.raises(NotLeaderError):
            async with a.transaction():
                await held.renew(a)
        again = await acquired(a, "a")  # a reconnecting process gets its own lease back at once
        assert again.epoch == held.epoch + 1

    on_database(database, body)


def test_a_lease_is_renewed_only_on_the_session_that_holds_it(database: str, tmp_path: Path) -> None:
    async def body(a: asyncpg.Connection, b: asyncpg.Connection) -> None:
        held = await acquired(a, "a")
        with pytest.raises(NotLeaderError):
            await held.renew(b)
        await held.renew(a)

    on_database(database, body)


def test_a_lease_whose_session_is_gone_is_taken_at_once(database: str, tmp_path: Path) -> None:
    async def body(a: asyncpg.Connection, b: asyncpg.Connection) -> None:
        c = await lease.connect(database, 60)
        held = await lease.acquire(c, "crashed", 60)
        assert held is not None
        assert await lease.acquire(a, "a", TTL) is None
        c.terminate()  # a crash: the server sees the connection close
        assert await wait_until(lambda: lease.acquire(a, "a", TTL), 5), (
            "the lease of a closed session was kept"
        )

    on_database(database, body)


def test_a_transaction_left_open_under_a_lapsed_lease_is_ended(database: str, tmp_path: Path) -> None:
    async def body(a: asyncpg.Connection, b: asyncpg.Connection) -> None:
        # a plain session: no idle-in-transaction limit, like one behind a pooler that drops it
        stuck = await asyncpg.connect(database)
        try:
            held = await acquired(stuck, "stuck")
            transaction = stuck.transaction()
            await transaction.start()
            await held.renew(stuck)  # then silence: the lease row stays locked
            started = time.monotonic()
            assert await wait_until(lambda: lease.acquire(a, "a", TTL), 10), "the lease was never taken"
            assert time.monotonic() - started >= TTL
            with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError)):
                await transaction.commit()
        finally:
            stuck.terminate()
        assert (await lease_row(b))["holder"] == "a"

    on_database(database, body)


def test_the_sequencer_session_limits_are_set_and_checked(database: str) -> None:
    async def go() -> None:
        conn = await lease.connect(database, 10)
        try:
            assert await conn.fetchval("SHOW idle_in_transaction_session_timeout") == "5s"
            assert await conn.fetchval("SHOW lock_timeout") == "2s"
            assert await conn.fetchval("SHOW tcp_user_timeout") == "5000"  # ms, shown without a unit
            assert await conn.fetchval("SHOW tcp_keepalives_count") == "3"
        finally:
            await conn.close()
        plain = await asyncpg.connect(database)
        try:
            with pytest.raises(ConfigError, match="idle_in_transaction_session_timeout"):
                await lease.check_limits(plain, 10)
        finally:
            await plain.close()

    asyncio.run(go())


async def wait_until(attempt: Callable[[], Awaitable[object]], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await attempt():
            return True
        await asyncio.sleep(0.1)
    return False


@pytest.fixture
def broker_process(tmp_path: Path) -> Iterator[MosquittoProcess]:
    broker = MosquittoProcess(tmp_path / "mosquitto").start()
    yield broker
    broker.kill()


@pytest.mark.slow
def test_a_partitioned_sequencer_is_replaced_within_30_s_and_never_commits_again(
    database: str, broker_process: MosquittoProcess, tmp_path: Path
) -> None:
    fleet_devices = devices(4)
    enrol_all(database, fleet_devices)
    target = urlsplit(database)
    relay = Relay(target.hostname or "127.0.0.1", target.port or 5432).start()
    gateways: list[GatewayProcess] = []
    fleet: Fleet | None = None
    try:
        a = crash_gateway(through(database, relay), broker_process.url, tmp_path, mqtt_share_group="gw")
        gateways.append(a.start())
        assert wait_for(lambda: is_sequencer(a), 20), "the first gateway did not become the sequencer"
        b = crash_gateway(database, broker_process.url, tmp_path, mqtt_share_group="gw")
        gateways.append(b.start())
        fleet = Fleet(
            broker_process.host, broker_process.port, fleet_devices, log_signer().public_key, 150
        ).start()
        assert wait_for(lambda: a.metric(LOGGED) > 20, 30), "the first sequencer logged nothing"
        assert not is_sequencer(b)

        relay.blackhole()
        cut = time.monotonic()
        wait_for(lambda: is_sequencer(b), TAKEOVER_LIMIT + 15, pause=0.1)
        takeover = time.monotonic() - cut
        print(f"\ntakeover after the partition: {takeover:.1f} s")
        assert is_sequencer(b), f"no takeover within {TAKEOVER_LIMIT + 15:g} s of the partition"
        assert takeover < TAKEOVER_LIMIT, f"the takeover took {takeover:.1f} s"
        # the cut-off process gave up on its own, before the other one took over
        assert not is_sequencer(a)
        logged_by_a = a.metric(LOGGED)

        time.sleep(2.0)  # the new sequencer at work while the old one is still cut off
        relay.heal()
        assert fleet.wait(90), f"not every reading was receipted: {fleet.receipted}"
        # back on the network, the old sequencer is told it is not the leader, and commits nothing
        assert not is_sequencer(a)
        assert a.metric(LOGGED) == logged_by_a
        assert is_sequencer(b)
    finally:
        relay.heal()  # a failed test must not leave a process stuck behind the black hole
        if fleet is not None:
            fleet.close()
        for gateway in gateways:
            gateway.stop(strict=True)
        relay.close()
    assert_log_complete(database, fleet)
    log_a = a.log_file.read_text()
    assert "sequencer stopped" in log_a
