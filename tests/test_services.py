"""The test services are real: a SQL round trip and an MQTT QoS 1 round trip."""

from __future__ import annotations

import asyncio
import threading
import uuid

import asyncpg
import paho.mqtt.client as mqtt
import pytest

from tests.services import Broker, Postgres, start_embedded_broker, start_embedded_postgres


def test_postgres_round_trip(database: str) -> None:
    assert sql_round_trip(database) == [0, 250, 500, 750]


def sql_round_trip(dsn: str) -> list[int]:
    async def run() -> list[int]:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("CREATE TABLE t (n bigint PRIMARY KEY)")
            await conn.copy_records_to_table("t", records=[(i,) for i in range(1000)])
            return [r["n"] for r in await conn.fetch("SELECT n FROM t WHERE n % 250 = 0 ORDER BY n")]
        finally:
            await conn.close()

    return asyncio.run(run())


def test_mqtt_qos1_round_trip(broker: Broker) -> None:
    assert mqtt_round_trip(broker) == [b"\x00signed bytes\xff"]


@pytest.mark.slow
def test_embedded_fallbacks_work() -> None:
    """What a machine without PostgreSQL or Mosquitto gets: pgserver and amqtt."""
    pg: Postgres = start_embedded_postgres()
    try:
        assert sql_round_trip(pg.create_database()) == [0, 250, 500, 750]
    finally:
        pg.close()
    mq = start_embedded_broker()
    try:
        assert mqtt_round_trip(mq) == [b"\x00signed bytes\xff"]
    finally:
        mq.close()


def mqtt_round_trip(broker: Broker) -> list[bytes]:
    topic = f"iot-attest-test/{uuid.uuid4().hex}"
    received: list[bytes] = []
    subscribed, got = threading.Event(), threading.Event()

    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"sub-{uuid.uuid4().hex[:8]}")
    sub.on_subscribe = lambda *a: subscribed.set()

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        received.append(msg.payload)
        got.set()

    sub.on_message = on_message
    sub.connect(broker.host, broker.port)
    sub.subscribe(topic, qos=1)
    sub.loop_start()
    try:
        assert subscribed.wait(10)
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
        pub.connect(broker.host, broker.port)
        pub.loop_start()
        pub.publish(topic, b"\x00signed bytes\xff", qos=1).wait_for_publish(10)
        pub.loop_stop()
        pub.disconnect()
        assert got.wait(10)
        return received
    finally:
        sub.loop_stop()
        sub.disconnect()
