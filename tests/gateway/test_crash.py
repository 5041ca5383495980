"""Crash safety: kill -9 of the gateway, a broker restart, a PostgreSQL restart, while readings flow.

Afterwards every reading produced is logged exactly once, the log's indices are
contiguous, and every checkpoint signed before a crash is consistent with the
newest one.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from attest_core.checkpoint import open_checkpoint
from attest_core.merkle import leaf_hash, root_from_leaf_hashes, verify_consistency
from gateway import logstore
from gateway.devices import enrol
from gateway.migrations import migrate
from stack.embedded import EmbeddedPostgres
from tests.gateway.fleet import Fleet
from tests.gateway.helpers import log_signer, run
from tests.services import REPO, MosquittoProcess, free_port
from tests.support import TestDevice, seeded_signer

pytestmark = pytest.mark.slow


class GatewayProcess:
    def __init__(self, dsn: str, mqtt_url: str, workdir: Path, **settings: str) -> None:
        self.port = free_port()
        key_file = workdir / "log.key"
        if not key_file.exists():
            key_file.write_text(
                __import__("attest_core.note", fromlist=["encode_private_key"]).encode_private_key(
                    "test.example/log", seeded_signer("gateway log key").seed
                )
                + "\n"
            )
            key_file.chmod(0o600)
        self.env = {
            **os.environ,
            "DATABASE_URL": dsn,
            "MQTT_URL": mqtt_url,
            "GATEWAY_KEY_FILE": str(key_file),
            "GATEWAY_ORIGIN": "test.example/log",
            "GATEWAY_API_PORT": str(self.port),
            "GATEWAY_MQTT_CLIENT_ID": f"crash-gw-{uuid.uuid4().hex[:6]}",
            "GATEWAY_CHECKPOINT_INTERVAL": "0.3",
            **{f"GATEWAY_{k.upper()}": v for k, v in settings.items()},
        }
        self.log_path = workdir / f"gateway-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> GatewayProcess:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway", "--log-format", "text", "run"],
                env=self.env, cwd=REPO, stdout=log, stderr=log,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            assert self.proc.poll() is None, "the gateway exited"
            time.sleep(0.1)
        raise TimeoutError("the gateway did not become ready")

    def accepted(self) -> int:
        metrics = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text
        line = next(x for x in metrics.splitlines() if x.startswith("iot_attest_readings_accepted_total "))
        return int(float(line.split()[-1]))

    def is_sequencer(self) -> bool:
        metrics = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text
        return "iot_attest_sequencer_leader 1.0" in metrics

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)


def enrol_all(dsn: str, devices: list[TestDevice]) -> None:
    async def go(conn: asyncpg.Connection) -> None:
        await migrate(conn)
        for d in devices:
            await enrol(conn, d.statement_bytes, d.pop, "installer-1")

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
    gateway = GatewayProcess(database, broker_process.url, tmp_path).start()
    fleet = Fleet(
        broker_process.host, broker_process.port, fleet_devices, log_signer().public_key, 300
    ).start()
    rng = random.Random(7)
    try:
        for _ in range(3):
            time.sleep(rng.uniform(0.5, 1.5))
            gateway.kill()
            time.sleep(rng.uniform(0.0, 0.5))
            gateway.start()
        assert fleet.wait(90), f"not every reading was receipted: {fleet.receipted}"
    finally:
        fleet.close()
        gateway.stop()
    assert_log_complete(database, fleet)


def test_broker_restarts_while_readings_flow(
    database: str, broker_process: MosquittoProcess, tmp_path: Path
) -> None:
    fleet_devices = devices(4)
    enrol_all(database, fleet_devices)
    gateway = GatewayProcess(database, broker_process.url, tmp_path).start()
    fleet = Fleet(
        broker_process.host, broker_process.port, fleet_devices, log_signer().public_key, 250
    ).start()
    try:
        time.sleep(1.0)
        broker_process.stop()  # a clean restart: queued messages survive on disk
        time.sleep(1.0)
        broker_process.start()
        time.sleep(1.0)
        broker_process.kill()  # a crash: what was not saved is lost at the broker; the devices send it again
        broker_process.start()
        assert fleet.wait(90), f"not every reading was receipted: {fleet.receipted}"
    finally:
        fleet.close()
        gateway.stop()
    assert_log_complete(database, fleet)


def test_postgres_restarts_while_readings_flow(broker_process: MosquittoProcess, tmp_path: Path) -> None:
    pg = EmbeddedPostgres().start()
    try:
        fleet_devices = devices(4)
        enrol_all(pg.url, fleet_devices)
        gateway = GatewayProcess(pg.url, broker_process.url, tmp_path).start()
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
            gateway.stop()
        assert_log_complete(pg.url, fleet)
        log = gateway.log_path.read_text()
        assert "retrying" in log  # the gateway said what happened
    finally:
        pg.remove()


def test_two_gateways_share_the_load_and_one_takes_over(
    database: str, broker_process: MosquittoProcess, tmp_path: Path
) -> None:
    fleet_devices = devices(6)
    enrol_all(database, fleet_devices)
    a = GatewayProcess(database, broker_process.url, tmp_path, mqtt_share_group="gw").start()
    b = GatewayProcess(database, broker_process.url, tmp_path, mqtt_share_group="gw").start()
    fleet = Fleet(
        broker_process.host, broker_process.port, fleet_devices, log_signer().public_key, 200
    ).start()
    try:
        deadline = time.monotonic() + 20
        while not (a.is_sequencer() or b.is_sequencer()) and time.monotonic() < deadline:
            time.sleep(0.1)
        leaders = [g for g in (a, b) if g.is_sequencer()]
        assert len(leaders) == 1, "exactly one process is the sequencer"
        time.sleep(1.5)
        assert a.accepted() > 0, "the shared subscription gave the first process nothing"
        assert b.accepted() > 0, "the shared subscription gave the second process nothing"
        leader = leaders[0]
        follower = b if leader is a else a
        leader.kill()
        deadline = time.monotonic() + 20
        while not follower.is_sequencer() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert follower.is_sequencer(), "the other process did not take over the log"
        leader.start()
        assert fleet.wait(90), f"not every reading was receipted: {fleet.receipted}"
        assert not leader.is_sequencer()
    finally:
        fleet.close()
        a.stop()
        b.stop()
    assert_log_complete(database, fleet)
