"""The gateway against each broker it is tested with: Mosquitto, amqtt and NATS (MQTT over JetStream).

Each broker is a private process. A gateway process ingests a small fleet's readings
while the broker runs, restarts cleanly, and crashes and comes back with no saved
state (every session lost: the gateway must subscribe again). Afterwards every
reading is logged exactly once and receipted (assert_log_complete). What each broker
supports (MQTT 5, shared subscriptions) is checked too, as docs/brokers.md lists it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from attest_core.broker import parse_broker_url
from gateway.ingest import Message
from gateway.mqtt import MqttLink, MQTTv5, probe_protocol
from stack.brokers import BROKERS, BrokerProcess, NatsCluster, broker_process
from stack.processes import GatewayProcess, wait_for
from tests.gateway.fleet import Fleet
from tests.gateway.helpers import log_signer
from tests.gateway.relay import Relay
from tests.gateway.test_crash import assert_log_complete, crash_gateway, enrol_all
from tests.support import TestDevice

pytestmark = pytest.mark.slow

SUPPORTS = {
    # broker: (MQTT 5, shared subscriptions, a '.' in a topic), as docs/brokers.md says
    "mosquitto": (True, True, True),
    "amqtt": (False, False, True),
    "nats": (False, False, False),
}
DEVICES = 4
PER_DEVICE = 100
WAIT = 60.0
"""Seconds for the fleet to get every receipt; a device re-sends what has none after 4 s."""


@pytest.fixture(params=BROKERS)
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BrokerProcess]:
    process = broker_process(request.param, tmp_path / request.param).start()
    yield process
    process.kill()


def fleet_devices() -> list[TestDevice]:
    tag = uuid.uuid4().hex[:6]
    return [TestDevice(f"brk-{tag}-{i}", f"asset-{i}") for i in range(DEVICES)]


def start_fleet(broker: BrokerProcess, devices: list[TestDevice], per_device: int = PER_DEVICE) -> Fleet:
    return Fleet(broker.host, broker.port, devices, log_signer().public_key, per_device).start()


def published(fleet: Fleet) -> int:
    return sum(fleet.published.values())


def wait_published(fleet: Fleet, count: int, seconds: float = 20.0) -> None:
    """Until the fleet has published ``count`` readings: a fault injected then hits a flow under way."""
    deadline = time.monotonic() + seconds
    while published(fleet) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    assert published(fleet) >= count, f"the fleet published only {published(fleet)} readings"


def connections(gateway: GatewayProcess) -> list[str]:
    """The MQTT versions of the gateway's connections so far, from its log ("MQTT 5 connected to …")."""
    return re.findall(r"MQTT (5|3\.1\.1) connected to", gateway.log_file.read_text())


def run_fleet(database: str, broker: BrokerProcess, tmp_path: Path) -> tuple[GatewayProcess, Fleet]:
    devices = fleet_devices()
    enrol_all(database, devices)
    gateway = crash_gateway(database, broker.url, tmp_path).start()
    return gateway, start_fleet(broker, devices)


def finish(database: str, gateway: GatewayProcess, fleet: Fleet) -> None:
    try:
        assert fleet.wait(WAIT), f"not every reading was receipted: {fleet.receipted} of {PER_DEVICE} each"
    finally:
        fleet.close()
        gateway.stop(strict=True)
    assert_log_complete(database, fleet)


def test_readings_are_logged_once_and_receipted(database: str, broker: BrokerProcess, tmp_path: Path) -> None:
    gateway, fleet = run_fleet(database, broker, tmp_path)
    finish(database, gateway, fleet)
    mqtt5 = SUPPORTS[broker.kind][0]
    assert connections(gateway) == ["5" if mqtt5 else "3.1.1"], "one connection, at the version probed"


def test_broker_restarts_cleanly_while_readings_flow(
    database: str, broker: BrokerProcess, tmp_path: Path
) -> None:
    """Mosquitto and NATS keep the gateway's session and its queued readings; amqtt keeps nothing."""
    gateway, fleet = run_fleet(database, broker, tmp_path)
    try:
        wait_published(fleet, DEVICES * PER_DEVICE // 4)
        broker.stop(strict=True)
        time.sleep(0.5)
        broker.start()
    finally:
        finish(database, gateway, fleet)
    assert len(connections(gateway)) >= 2, "the gateway did not reconnect"


def test_broker_loses_every_session_while_readings_flow(
    database: str, broker: BrokerProcess, tmp_path: Path
) -> None:
    """kill -9 and no saved state: CONNACK says no session, so the gateway must subscribe again.

    Readings published after the restart reach the gateway only through a new subscription.
    """
    gateway, fleet = run_fleet(database, broker, tmp_path)
    try:
        wait_published(fleet, DEVICES * PER_DEVICE // 4)
        broker.kill()
        broker.wipe()
        broker.start()
        before = published(fleet)
    finally:
        finish(database, gateway, fleet)
    assert before < DEVICES * PER_DEVICE, "every reading was published before the restart: nothing tested"
    assert len(connections(gateway)) >= 2, "the gateway did not reconnect"


def heard(broker: BrokerProcess, topics: list[str], share_group: str = "") -> set[str]:
    """The readings topics a gateway link hears when one reading is published to each of ``topics``.

    Each is published by a client of its own: NATS closes the connection of a client that
    publishes to a topic it refuses.
    """
    url = parse_broker_url(broker.url)

    def publish(topic: str) -> None:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"p-{uuid.uuid4().hex[:8]}")
        client.connect(broker.host, broker.port)
        client.loop_start()
        try:
            with contextlib.suppress(RuntimeError, ValueError):  # not connected any more
                client.publish(topic, b"r", qos=1).wait_for_publish(3)
        finally:
            client.loop_stop()
            client.disconnect()

    async def go() -> set[str]:
        seen: list[Message] = []
        link = MqttLink(
            url, f"gw-{uuid.uuid4().hex[:8]}", on_message=seen.append, share_group=share_group,
            protocol=await probe_protocol(url), session_expiry=0,
        )  # fmt: skip
        link.start()
        try:
            assert await link.wait_connected(10), "the gateway's link did not connect and subscribe"
            for topic in topics:
                await asyncio.to_thread(publish, topic)
            await asyncio.sleep(1.0)  # what has not arrived by now is not coming
            return {m.topic for m in seen}
        finally:
            await link.stop()

    return asyncio.run(go())


def test_what_the_broker_supports(broker: BrokerProcess) -> None:
    """The probe's answer (MQTT 5 or 3.1.1), shared subscriptions, and device ids with a dot.

    amqtt and NATS grant the SUBACK for ``$share/<group>/…`` but take it for a plain topic
    that nothing is published to: a gateway with mqtt_share_group there hears nothing.
    NATS 2.9 maps topic levels to subject tokens and refuses a '.' in a topic (2.10 maps it),
    though a device id may contain one.
    """
    mqtt5, shared, dots = SUPPORTS[broker.kind]
    assert (asyncio.run(probe_protocol(parse_broker_url(broker.url))) == MQTTv5) == mqtt5
    tag = uuid.uuid4().hex[:6]
    plain, dotted = f"attest/v1/brk-{tag}/readings", f"attest/v1/brk.{tag}/readings"
    assert heard(broker, [plain], share_group="gw") == ({plain} if shared else set())
    assert heard(broker, [dotted, plain]) == ({dotted, plain} if dots else {plain})


def test_nats_cluster_loses_the_gateways_node(database: str, tmp_path: Path) -> None:
    """A 3-node NATS cluster replicates the MQTT sessions and queued readings: the node the
    gateway is connected to is killed, the balancer sends the gateway to another node, and
    the gateway's session (subscription and unacknowledged readings) is there."""
    cluster = NatsCluster(tmp_path / "nats").start()
    first, second, third = cluster.nodes
    balancer = Relay("127.0.0.1", first.port).start()
    try:
        devices = fleet_devices()
        enrol_all(database, devices)
        gateway = crash_gateway(database, f"mqtt://127.0.0.1:{balancer.port}", tmp_path).start()
        # a new cluster refuses MQTT clients until its JetStream has a leader
        assert wait_for(lambda: gateway.metric("iot_attest_mqtt_connected") == 1.0, 60)
        # the devices are on another node: their readings cross the cluster to the gateway
        fleet = start_fleet(third, devices, per_device=3 * PER_DEVICE)
        try:
            # receipts arriving: the subscriptions on both sides are in place (NATS creates a
            # JetStream consumer for each, which a node lost at that moment can leave undone)
            assert wait_for(lambda: sum(fleet.receipted.values()) > 0, 60, pause=0.05)
            first.kill()
            balancer.switch(second.port)
        finally:
            try:
                assert fleet.wait(90), f"not every reading was receipted: {fleet.receipted}"
            finally:
                fleet.close()
                gateway.stop(strict=True)
        assert_log_complete(database, fleet)
        assert len(connections(gateway)) >= 2, "the gateway did not reconnect"
    finally:
        balancer.close()
        cluster.kill()
