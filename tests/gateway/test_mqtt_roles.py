"""A process that does not ingest, beside one that does: it never touches the ingest session."""

from __future__ import annotations

import uuid
from pathlib import Path

import asyncpg
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.gateway.helpers import run, settings_for
from tests.gateway.runner import GatewayThread
from tests.services import MosquittoProcess, wait_for


def test_a_sequencer_process_beside_an_ingest_one_leaves_its_session_alone(
    database: str, tmp_path: Path
) -> None:
    """The sequencer-only process connects with its own client id and a clean session: the ingest
    process keeps its connection and receives (and stores) every reading; none is taken, or
    acknowledged, by the other process."""
    mosquitto = MosquittoProcess(tmp_path / "mosquitto").start()
    client_id = f"gw-roles-{uuid.uuid4().hex[:6]}"
    topic = f"attest/v1/roles-{uuid.uuid4().hex[:6]}/readings"
    common = {"mqtt_url": mosquitto.url, "mqtt_client_id": client_id, "mqtt_session_expiry": 60}
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"p-{uuid.uuid4().hex[:8]}")
    count = 60

    async def quarantined(conn: asyncpg.Connection) -> int:
        return int(await conn.fetchval("SELECT count(*) FROM quarantine WHERE topic = $1", topic))

    try:
        with (
            GatewayThread(settings_for(database, tmp_path, role="ingest", **common)) as ingest,
            GatewayThread(settings_for(database, tmp_path, role="sequencer", **common)) as sequencer,
        ):
            ingest_link, other_link = ingest.gateway.link, sequencer.gateway.link
            assert ingest_link is not None
            assert other_link is not None
            assert ingest_link.client_id == client_id
            assert other_link.client_id.startswith(f"{client_id}-sequencer-")
            publisher.connect(mosquitto.host, mosquitto.port)
            publisher.loop_start()
            for n in range(count):  # not readings: each is quarantined, which is storing it
                publisher.publish(topic, f"not a reading {n}".encode(), qos=1).wait_for_publish(5)
            assert wait_for(lambda: run(database, quarantined) == count, 20), run(database, quarantined)
            assert ingest_link.connections == 1  # never taken over
            assert other_link.connections == 1
            assert ingest_link.connected.is_set()
            assert other_link.connected.is_set()
    finally:
        publisher.loop_stop()
        publisher.disconnect()
        mosquitto.stop()
