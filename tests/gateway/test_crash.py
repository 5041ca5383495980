"""Crash safety: kill -9 of the gateway, a broker restart, a PostgreSQL restart, while readings flow.

Afterwards every reading produced is logged exactly once, the log's indices are
contiguous, and every checkpoint signed before a crash is consistent with the
newest one.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from attest_core.checkpoint import open_checkpoint
from attest_core.entries import RevokerRole
from attest_core.merkle import leaf_hash, root_from_leaf_hashes, verify_consistency
from attest_core.note import encode_private_key
from gateway import logstore
from gateway.devices import enrol
from gateway.migrations import migrate
from stack.embedded import EmbeddedPostgres, free_port
from stack.processes import GatewayProcess, MosquittoProcess
from tests.gateway.fleet import Fleet
from tests.gateway.helpers import log_signer, run
from tests.support import TestDevice, seeded_signer

pytestmark = pytest.mark.slow


ORIGIN = "test.example/log"
ACCEPTED = "iot_attest_readings_accepted_total"


def crash_gateway(dsn: str, mqtt_url: str, workdir: Path, **settings: str) -> GatewayProcess:
    """A gateway process (not started) signing checkpoints every 0.3 s; its log in workdir/gateway-<port>.log."""
    key_file = workdir / "log.key"
    if not key_file.exists():
        key_file.write_text(encode_private_key(ORIGIN, seeded_signer("gateway log key").seed) + "\n")
        key_file.chmod(0o600)
    port = free_port()
    return GatewayProcess(
        database_url=dsn,
        mqtt_url=mqtt_url,
        log_file=workdir / f"gateway-{port}.log",
        origin=ORIGIN,
        key_file=key_file,
        client_id=f"crash-gw-{uuid.uuid4().hex[:6]}",
        port=port,
        settings={"checkpoint_interval": "0.3", **settings},
    )


def is_sequencer(gateway: GatewayProcess) -> bool:
    return gateway.metric("iot_attest_sequencer_leader") == 1.0


def enrol_all(dsn: str, devices: list[TestDevice]) -> None:
    async def go(conn: asyncpg.Connection) -> None:
        await migrate(conn)
        for d in devices:
            await enrol(conn, d.statement_bytes, d.pop, "installer-1", role=RevokerRole.INSTALLER)

    run(dsn, go)


def assert_log_complete(dsn: str, fleet: Fleet) -> None:
    async def go(conn: asyncpg.Connection) -> None:
        size = await logstore.log_size(conn)
        entries = await logstore.entries(conn, range(size))
        assert sorted(entries) == list(range(size)), "indices are not contiguous"
        rows = await conn.fetch("SELECT device_id, seq, envelope, log_index FROM readings")
        logged = {(r["device_id"], r["seq"]): r for r in rows if r["log_index"] is not None}
        for device_id, envelopes in fleet.envelopes.items():
            for seq, envelope in enumerate(envelopes, start=1):
                row = logged.get((device_id, seq))
                assert row is not None, f"reading {seq} of {device_id} is not logged"
                assert bytes(row["envelope"]) == envelope
        assert len(logged) == fleet.total, "a reading is logged twice or a stranger was logged"
        leaves = [leaf_hash(entries[i]) for i in range(size)]
        assert await logstore.root_at(conn, size) == root_from_leaf_hashes(leaves)
        checkpoints = await conn.fetch("SELECT size, note FROM checkpoints ORDER BY id")
        key = log_signer().verifier_key()
        newest = open_checkpoint(checkpoints[-1]["note"], key).checkpoint
        assert newest.size == size
        for row in checkpoints:
            cp = open_checkpoint(row["note"], key).checkpoint
            proof = (
                []
                if cp.size in (0, newest.size)
                else await logstore.consistency_proof(conn, cp.size, newest.size)
            )
            verify_consistency(cp.size, newest.size, cp.root_hash, newest.root_hash, proof)
        assert await conn.fetchval("SELECT count(*) FROM quarantine WHERE reason <> 'bad_topic'") == 0

    run(dsn, go)


@pytest.fixture
def broker_process(tmp_path: Path) -> Iterator[MosquittoProcess]:
    broker = MosquittoProcess(tmp_path / "mosquitto").start()
    yield broker
    broker.kill()


def devices(n: int) -> list[TestDevice]:
    tag = uuid.uuid4().hex[:6]
    return [TestDevice(f"crash-{tag}-{i}", f"asset-{i}") for i in range(n)]


def test_gateway_killed_while_readings_flow(
    database: str, broker_process: MosquittoProcess, tmp_path: Path
) -> None:
    fleet_devices = devices(5)
    enrol_all(database, fleet_devices)
    gateway = crash_gateway(database, broker_process.url, tmp_path).start()
    # The devices never send again: every receipt must come from the gateway's own recovery
    # (redelivery of what it had not acknowledged, and the receipts it still owed).
    fleet = Fleet(
        broker_process.host,
        broker_process.port,
        fleet_devices,
        log_signer().public_key,
        300,
        resend_after=3600,
    ).start()
    rng = random.Random(7)
    try:
        for _ in range(3):
            time.sleep(rng.uniform(0.5, 1.5))
            gateway.kill()
            time.sleep(rng.uniform(0.0, 0.5))
            gateway.start()
        assert fleet.wait(45), f"not every reading was receipted: {fleet.receipted}"
    finally:
        fleet.close()
        gateway.stop(strict=True)
    assert_log_complete(database, fleet)


def test_broker_restarts_while_readings_flow(
    database: str, broker_process: MosquittoProcess, tmp_path: Path
) -> None:
    fleet_devices = devices(4)
    enrol_all(database, fleet_devices)
    gateway = crash_gateway(database, broker_process.url, tmp_path).start()
    fleet = Fleet(
        broker_process.host, broker_process.port, fleet_devices, log_signer().public_key, 250
    ).start()
    try:
        time.sleep(1.0)
        broker_process.stop(strict=True)  # a clean restart: queued messages survive on disk
        time.sleep(1.0)
        broker_process.start()
        time.sleep(1.0)
        broker_process.kill()  # a crash: what was not saved is lost at the broker; the devices send it again
        broker_process.start()
        assert fleet.wait(90), f"not every reading was receipted: {fleet.receipted}"
    finally:
        fleet.close()
        gateway.stop(strict=True)
    assert_log_complete(database, fleet)


def test_postgres_restarts_while_readings_flow(broker_process: MosquittoProcess, tmp_path: Path) -> None:
    pg = EmbeddedPostgres().start()
    try:
        fleet_devices = devices(4)
        enrol_all(pg.url, fleet_devices)
        gateway = crash_gateway(pg.url, broker_process.url, tmp_path).start()
        fleet = Fleet(
            broker_process.host, broker_process.port, fleet_devices, log_signer().public_key, 250
        ).start()
        try:
            time.sleep(1.0)
            pg.stop()
            time.sleep(2.0)
            pg.start()
            assert fleet.wait(90), f"not every reading was receipted: {fleet.receipted}"
        finally:
            fleet.close()
            gateway.stop(strict=True)
        assert_log_complete(pg.url, fleet)
        log = gateway.log_file.read_text()
        assert "retrying" in log  # the gateway said what happened
    finally:
        pg.remove()


def test_two_gateways_share_the_load_and_one_takes_over(
    database: str, broker_process: MosquittoProcess, tmp_path: Path
) -> None:
    fleet_devices = devices(6)
    enrol_all(database, fleet_devices)
    a = crash_gateway(database, broker_process.url, tmp_path, mqtt_share_group="gw").start()
    b = crash_gateway(database, broker_process.url, tmp_path, mqtt_share_group="gw").start()
    fleet = Fleet(
        broker_process.host, broker_process.port, fleet_devices, log_signer().public_key, 200
    ).start()
    try:
        deadline = time.monotonic() + 20
        while not (is_sequencer(a) or is_sequencer(b)) and time.monotonic() < deadline:
            time.sleep(0.1)
        leaders = [g for g in (a, b) if is_sequencer(g)]
        assert len(leaders) == 1, "exactly one process is the sequencer"
        time.sleep(1.5)
        assert a.metric(ACCEPTED) > 0, "the shared subscription gave the first process nothing"
        assert b.metric(ACCEPTED) > 0, "the shared subscription gave the second process nothing"
        leader = leaders[0]
        follower = b if leader is a else a
        leader.kill()
        deadline = time.monotonic() + 20
        while not is_sequencer(follower) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert is_sequencer(follower), "the other process did not take over the log"
        leader.start()
        assert fleet.wait(90), f"not every reading was receipted: {fleet.receipted}"
        assert not is_sequencer(leader)
    finally:
        fleet.close()
        a.stop(strict=True)
        b.stop(strict=True)
    assert_log_complete(database, fleet)
