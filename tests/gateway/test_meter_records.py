"""The gateway checks a meter-signed record at ingest: a record that does not bind its reading is
quarantined with its reason before anything is logged; a valid one, up to OCPP 2.0.1's largest,
is stored with the exact bytes the meter signed."""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

import asyncpg

from attest_core.device import AssetKind
from attest_core.reading import MAX_ENVELOPE_SIZE, decode_envelope
from gateway.migrations import migrate
from tests.gateway.helpers import enrol_device, run, settings_for
from tests.gateway.runner import GatewayThread
from tests.gateway.test_end_to_end import Device, wait_until
from tests.services import Broker, free_port
from tests.support import HOUR, T0, TestDevice, TestMeter

KWH = 1_000_000


def test_bad_records_are_quarantined_with_their_reason_and_good_ones_stored(
    database: str, broker: Broker, tmp_path: Path
) -> None:
    meter = TestMeter()
    metered = TestDevice("cp-meter", "charger-m", AssetKind.CHARGER, 22_000, meter_key=meter.key)
    keyless = TestDevice("cp-nokey", "charger-n", AssetKind.CHARGER, 22_000)

    async def prepare(conn: asyncpg.Connection) -> None:
        await migrate(conn)
        for d in (metered, keyless):
            await enrol_device(conn, d)

    run(database, prepare)
    settings = settings_for(
        database, tmp_path, mqtt_url=broker.url, api_port=free_port(),
        mqtt_client_id=f"gw-{uuid.uuid4().hex[:8]}", mqtt_session_expiry=5,
    )  # fmt: skip
    t1, t2 = T0 + HOUR, T0 + 2 * HOUR
    large = meter.meter_record([(t1, "B", 10 * KWH)], pad=1_550)
    big_envelope = metered.reading(t1, 10 * KWH, meter_record=large).encode()
    assert 2_000 < len(big_envelope) <= MAX_ENVELOPE_SIZE
    good = meter.meter_record([(t1, "B", 10 * KWH), (t2, "E", 12 * KWH)], index=1)
    state = metered.state
    digit = dataclasses.replace(good, record=good.record.replace(b'"RV":12', b'"RV":13'))
    tampered = metered.reading(t2, 13 * KWH, meter_record=digit).encode()
    metered.state = state  # the device signs reading 2 again, honestly this time
    honest = metered.reading(t2, 12 * KWH, meter_record=good).encode()
    no_key = keyless.reading(t1, 1 * KWH, meter_record=meter.meter_record([(t1, "B", 1 * KWH)])).encode()

    with GatewayThread(settings):
        sender, other = Device(broker, metered), Device(broker, keyless)
        try:
            sender.publish(big_envelope)
            sender.publish(tampered)
            other.publish(no_key)

            async def quarantine(conn: asyncpg.Connection) -> list[asyncpg.Record]:
                return await conn.fetch(
                    "SELECT reason, detail, device_id, seq FROM quarantine ORDER BY device_id"
                )

            wait_until(lambda: len(run(database, quarantine)) == 2, 30)
            rows = run(database, quarantine)
            assert [(r["device_id"], r["seq"], r["reason"]) for r in rows] == [
                ("cp-meter", 2, "meter_signature"),
                ("cp-nokey", 1, "meter_key_missing"),
            ]
            assert "does not verify under the enrolled meter key" in rows[0]["detail"]
            sender.publish(honest)

            async def stored(conn: asyncpg.Connection) -> list[asyncpg.Record]:
                return await conn.fetch(
                    "SELECT seq, envelope FROM readings WHERE device_id = 'cp-meter' ORDER BY seq"
                )

            wait_until(lambda: len(run(database, stored)) == 2, 30)
            envelopes = [bytes(r["envelope"]) for r in run(database, stored)]
            assert envelopes == [big_envelope, honest]
            assert decode_envelope(envelopes[1]).reading().meter_record == good
        finally:
            sender.close()
            other.close()
