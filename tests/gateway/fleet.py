"""A fleet of test devices over MQTT that behaves like edge agents where it matters here:
each device publishes its readings in order and sends again whatever has no receipt yet."""

from __future__ import annotations

import threading
import time
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from attest_core.errors import AttestError
from attest_core.receipt import open_receipt
from tests.support import HOUR, T0, TestDevice


class Fleet:
    def __init__(
        self,
        host: str,
        port: int,
        devices: list[TestDevice],
        log_public_key: bytes,
        per_device: int,
        *,
        resend_after: float = 4.0,
    ) -> None:
        """``resend_after``: seconds without a new receipt before the devices send again what has none."""
        self.resend_after = resend_after
        self.devices = devices
        self.log_public_key = log_public_key
        self.envelopes = {
            d.device_id: [d.reading(T0 + i * HOUR // 60, i * 1000).encode() for i in range(per_device)]
            for d in devices
        }
        self.receipted = {d.device_id: 0 for d in devices}
        self.published = {d.device_id: 0 for d in devices}
        self.progress_at = time.monotonic()
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"fleet-{uuid.uuid4().hex[:8]}",
                                  clean_session=False)  # fmt: skip
        self.client.max_inflight_messages_set(200)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(0.2, 2)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe("attest/v1/+/receipts", qos=1)
        self.client.on_subscribe = self._on_subscribed
        self.client.on_message = self._on_receipt
        self.client.connect_async(host, port)
        self.client.loop_start()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._publish_loop, daemon=True)

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.envelopes.values())

    def _on_subscribed(
        self, client: mqtt.Client, userdata: object, mid: int, codes: list[ReasonCode], props: object
    ) -> None:
        # A broker may refuse a subscription for a while: NATS does until its JetStream
        # cluster can create the consumer. Without it no receipt would ever arrive.
        if any(code.is_failure for code in codes):
            client.subscribe("attest/v1/+/receipts", qos=1)

    def _on_receipt(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        try:
            receipt = open_receipt(bytes(msg.payload), self.log_public_key)
        except AttestError:
            return
        with self.lock:
            if receipt.device_id in self.receipted and receipt.seq > self.receipted[receipt.device_id]:
                self.receipted[receipt.device_id] = receipt.seq
                self.progress_at = time.monotonic()

    def _publish_loop(self, rate: float = 400.0) -> None:
        resend_after = self.resend_after
        interval = 1.0 / rate
        while not self.stop.is_set():
            busy = False
            for d in self.devices:
                i = self.published[d.device_id]
                if i < len(self.envelopes[d.device_id]):
                    self.client.publish(
                        f"attest/v1/{d.device_id}/readings", self.envelopes[d.device_id][i], qos=1
                    )
                    self.published[d.device_id] = i + 1
                    busy = True
                    time.sleep(interval)
            if self.done():
                return
            if not busy:
                time.sleep(0.1)
                with self.lock:
                    stalled = time.monotonic() - self.progress_at > resend_after
                    if stalled:
                        self.progress_at = time.monotonic()
                if stalled:  # like an agent's outbox: send again everything not receipted
                    for d in self.devices:
                        self.published[d.device_id] = min(
                            self.published[d.device_id], self.receipted[d.device_id]
                        )

    def start(self) -> Fleet:
        self.thread.start()
        return self

    def done(self) -> bool:
        with self.lock:
            return all(self.receipted[d] == len(self.envelopes[d]) for d in self.receipted)

    def wait(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.done():
                return True
            time.sleep(0.1)
        return self.done()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        self.client.loop_stop()
        self.client.disconnect()
