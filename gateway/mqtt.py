"""The gateway's MQTT link: paho-mqtt 2.x in its own thread, bridged to asyncio.

* MQTT 5 where the broker has it, MQTT 3.1.1 otherwise (probed at start).
* A persistent session (clean_session false / session expiry) and QoS 1, so
  readings published while the gateway is away are delivered when it returns.
* Manual acknowledgements: a reading is acknowledged only once it is stored
  (see :mod:`gateway.ingest`), so a crash before that gets it redelivered.
* Reconnects by itself with backoff, logging each attempt.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from attest_core.topics import READINGS_FILTER
from gateway.config import MqttUrl
from gateway.ingest import Message

log = logging.getLogger("gateway.mqtt")


def probe_protocol(url: MqttUrl, timeout: float = 5.0) -> int:
    """MQTTv5 if the broker accepts an MQTT 5 connection, else MQTTv311.

    Raises OSError if no broker answers at all.
    """
    done = threading.Event()
    outcome: list[bool] = []

    def on_connect(client: mqtt.Client, userdata: object, flags: object, rc: object, props: object) -> None:
        outcome.append(not getattr(rc, "is_failure", True))
        done.set()

    def on_disconnect(client: mqtt.Client, *args: object) -> None:
        done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, client_id="")
    _configure(client, url)
    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.connect(url.host, url.port, keepalive=10)
    client.loop_start()
    try:
        done.wait(timeout)
    finally:
        client.disconnect()
        client.loop_stop()
    return mqtt.MQTTv5 if outcome and outcome[0] else mqtt.MQTTv311


def _configure(client: mqtt.Client, url: MqttUrl) -> None:
    if url.username:
        client.username_pw_set(url.username, url.password)
    if url.tls:
        client.tls_set(cert_reqs=ssl.CERT_REQUIRED)


class MqttLink:
    """One connection: optionally subscribed to readings, always able to publish receipts."""

    def __init__(
        self,
        url: MqttUrl,
        client_id: str,
        *,
        loop: asyncio.AbstractEventLoop,
        on_message: Callable[[Message], None] | None = None,
        share_group: str = "",
        protocol: int | None = None,
        session_expiry: int = 7 * 24 * 3600,
    ) -> None:
        self.session_expiry = session_expiry
        self.url = url
        self.loop = loop
        self.on_message = on_message
        self.connected = threading.Event()
        self.protocol = protocol if protocol is not None else probe_protocol(url)
        self.filter = f"$share/{share_group}/{READINGS_FILTER}" if share_group else READINGS_FILTER
        if self.protocol == mqtt.MQTTv5:
            self.client = mqtt.Client(
                CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, manual_ack=True
            )
        else:
            self.client = mqtt.Client(
                CallbackAPIVersion.VERSION2,
                client_id=client_id,
                protocol=mqtt.MQTTv311,
                clean_session=False,
                manual_ack=True,
            )
        _configure(self.client, url)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    @property
    def version(self) -> str:
        return "5" if self.protocol == mqtt.MQTTv5 else "3.1.1"

    def start(self) -> None:
        if self.protocol == mqtt.MQTTv5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = self.session_expiry
            props.ReceiveMaximum = 1000
            self.client.connect_async(
                self.url.host, self.url.port, keepalive=30, clean_start=False, properties=props
            )
        else:
            self.client.connect_async(self.url.host, self.url.port, keepalive=30)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def wait_connected(self, timeout: float) -> bool:
        return self.connected.wait(timeout)

    def ack(self, mid: int) -> None:
        if mid:  # QoS 0 messages carry no packet id and need no acknowledgement
            self.client.ack(mid, 1)

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1)

    # --- paho callbacks (paho's thread) ---------------------------------------

    def _on_connect(
        self, client: mqtt.Client, userdata: object, flags: object, rc: object, props: object
    ) -> None:
        if getattr(rc, "is_failure", False):
            log.error("MQTT broker %s:%d refused the connection: %s", self.url.host, self.url.port, rc)
            return
        log.info("MQTT %s connected to %s:%d", self.version, self.url.host, self.url.port)
        self.connected.set()
        if self.on_message is not None:
            client.subscribe(self.filter, qos=1)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: object, flags: object, rc: object, props: object
    ) -> None:
        self.connected.clear()
        log.warning("MQTT connection to %s:%d lost (%s); reconnecting", self.url.host, self.url.port, rc)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        if self.on_message is None:
            return
        message = Message(msg.topic, bytes(msg.payload), msg.mid, time.time())
        self.loop.call_soon_threadsafe(self.on_message, message)
