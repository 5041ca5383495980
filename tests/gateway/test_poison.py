"""One message that makes ingest fail is isolated and quarantined; the rest of its batch and
everything after it is stored as usual (a data error from PostgreSQL is not an outage)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import asyncpg

from gateway.faults import is_outage
from gateway.ingest import Message
from gateway.migrations import migrate
from tests.gateway.helpers import enrol_device, run, settings_for
from tests.gateway.runner import GatewayThread
from tests.gateway.test_end_to_end import Device, wait_until
from tests.services import Broker, free_port
from tests.support import T0, TestDevice

POISON = """
CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.device_id = 'dev-poison' AND NEW.seq = 2 THEN
        RAISE EXCEPTION 'this reading poisons the batch';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER poison BEFORE INSERT ON readings FOR EACH ROW EXECUTE FUNCTION poison();
"""


def test_a_poison_message_is_quarantined_and_the_rest_stored(
    database: str, broker: Broker, tmp_path: Path
) -> None:
    poisoned, healthy = TestDevice("dev-poison", "asset-p"), TestDevice("dev-ok", "asset-ok")

    async def prepare(conn: asyncpg.Connection) -> None:
        await migrate(conn)
        await conn.execute(POISON)
        for d in (poisoned, healthy):
            await enrol_device(conn, d)

    run(database, prepare)
    settings = settings_for(
        database, tmp_path, mqtt_url=broker.url, api_port=free_port(),
        mqtt_client_id=f"gw-{uuid.uuid4().hex[:8]}", mqtt_session_expiry=5, ingest_linger=0.3,
    )  # fmt: skip
    with GatewayThread(settings) as gw:
        sender = Device(broker, healthy)
        try:
            # all in one batch (the linger): the poison, its neighbours, a healthy device, and a
            # message with a NUL in its topic (a broker may pass one; PostgreSQL text cannot hold it)
            bad_topic = Message("attest/v1/\x00/readings", b"junk", 0, time.time())
            gw.loop.call_soon_threadsafe(gw.gateway.queue.put_nowait, bad_topic)
            for i in range(4):
                sender.client.publish(
                    f"attest/v1/{poisoned.device_id}/readings", poisoned.reading(T0 + i, i).encode(), qos=1
                )
                sender.publish(healthy.reading(T0 + i, i).encode())

            async def state(conn: asyncpg.Connection) -> tuple[list[tuple[str, int]], list[asyncpg.Record]]:
                stored = await conn.fetch("SELECT device_id, seq FROM readings ORDER BY device_id, seq")
                quarantined = await conn.fetch("SELECT reason, detail, topic, device_id, seq FROM quarantine")
                return [(r["device_id"], r["seq"]) for r in stored], quarantined

            wait_until(lambda: len(run(database, state)[1]) == 2 and len(run(database, state)[0]) == 7, 30)
            stored, quarantined = run(database, state)
            assert stored == [("dev-ok", s) for s in (1, 2, 3, 4)] + [("dev-poison", s) for s in (1, 3, 4)]
            rows = sorted(quarantined, key=lambda r: r["topic"])
            assert [r["reason"] for r in rows] == ["internal_error", "internal_error"]
            assert rows[0]["topic"] == "attest/v1/\\x00/readings"
            assert rows[1]["topic"] == "attest/v1/dev-poison/readings"
            assert "RaiseError" in rows[1]["detail"]
            assert "this reading poisons the batch" in rows[1]["detail"]
            assert gw.gateway.metrics.rejected.labels("internal_error")._value.get() == 2
            # and ingest goes on
            sender.publish(healthy.reading(T0 + 4, 4).encode())
            wait_until(lambda: ("dev-ok", 5) in run(database, state)[0], 20)
        finally:
            sender.close()


def test_outages_and_data_errors_are_told_apart() -> None:
    assert is_outage(ConnectionResetError())
    assert is_outage(asyncpg.exceptions.AdminShutdownError())
    assert is_outage(asyncpg.exceptions.SerializationError())
    assert is_outage(asyncpg.exceptions.CannotConnectNowError())
    assert is_outage(asyncpg.exceptions.TooManyConnectionsError())
    assert is_outage(asyncpg.exceptions.ReadOnlySQLTransactionError())  # a standby after a failover
    assert is_outage(asyncpg.exceptions.InsufficientPrivilegeError())
    assert is_outage(asyncpg.exceptions.IdleInTransactionSessionTimeoutError())
    assert not is_outage(asyncpg.exceptions._base.DataError("invalid input for query argument $1"))
    assert not is_outage(asyncpg.exceptions.RaiseError())
    assert not is_outage(asyncpg.exceptions.CharacterNotInRepertoireError())
    assert not is_outage(asyncpg.exceptions.NumericValueOutOfRangeError())
    assert not is_outage(ValueError("a bug of ours"))
