"""Publishing a device's outbox: in sequence order, a window at a time, again after a stall.

The outbox, not paho's memory, is the source of truth: a reading leaves it only
when a verified receipt proves its inclusion (edge_agent/device.py), never
because it was published or PUBACKed.  After each connect the whole outbox is
published again from its oldest reading; at most ``window`` readings wait for
their PUBACK at any time.  When no receipt comes for ``resend_after_s`` while
readings wait (a broker may drop queued messages), the outbox is published again
from its oldest reading, paced by the receipts: never more than ``window``
readings beyond the last one receipted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode

from edge_agent.config import MqttConfig
from edge_agent.mqtt.paho_asyncio import PahoOnAsyncio
from edge_agent.store import Store

log = logging.getLogger("edge_agent.mqtt")


class OutboxPublisher(PahoOnAsyncio):
    """The publishing half of :class:`edge_agent.mqtt.link.MqttLink` (which sets these attributes)."""

    device_id: str
    store: Store
    config: MqttConfig
    window: int
    readings_topic: str
    connected: bool
    published: int
    _cursor: int
    _resend_to: int
    _inflight: dict[int, int]
    _queue: deque[tuple[int, bytes]]
    _wake: asyncio.Event
    _last_progress: float

    def offer(self, seq: int, envelope: bytes) -> None:
        """A reading was committed to the outbox: publish it now if the link is idle and in order."""
        if not self.connected:
            return
        if not self._queue and seq == self._cursor + 1 and len(self._inflight) < self.window:
            self._publish(seq, envelope)
            return
        if len(self._queue) < 10 * self.window:
            self._queue.append((seq, envelope))
        self._wake.set()

    def receipt_progress(self) -> None:
        """Called by the device when a receipt removed readings: resets the resend timer."""
        self._last_progress = time.monotonic()
        if self._loop is not None and self._cursor < self._resend_to:
            self._in_loop(self._wake.set)  # re-sending: the receipt makes room for the next readings

    def idle(self) -> bool:
        """Connected, and nothing published is still waiting for its PUBACK."""
        return self.connected and not self._inflight and not self._queue

    def _publish(self, seq: int, envelope: bytes) -> bool:
        client = self._client
        if client is None:
            return False
        info = client.publish(self.readings_topic, envelope, qos=1)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return False
        self._inflight[info.mid] = seq
        self._cursor = seq
        return True

    async def _pump(self) -> None:
        """Publish the outbox in seq order, then readings as they are offered."""
        store, device = self.store, self.device_id
        resend_after = self.config.resend_after_s
        while self.connected:
            room = self.window - len(self._inflight)
            if room <= 0:
                await self._wait(1.0)
                continue
            queue = self._queue
            while queue and queue[0][0] <= self._cursor:
                queue.popleft()
            if queue and queue[0][0] == self._cursor + 1:
                while queue and room > 0 and queue[0][0] == self._cursor + 1:
                    seq, envelope = queue.popleft()
                    if not self._publish(seq, envelope):
                        return
                    room -= 1
                continue
            limit = min(room, 500)
            if self._cursor < self._resend_to:
                # Re-sending after a stall: at most a window beyond the last receipted reading.
                first = store.oldest(device)
                ahead = 0 if first is None else first[0] - 1 + self.window - self._cursor
                if ahead <= 0:
                    if time.monotonic() - self._last_progress > resend_after:
                        self._stalled(device, resend_after)
                        continue
                    await self._wait(min(5.0, resend_after))
                    continue
                limit = min(limit, ahead)
            rows = store.pending(device, self._cursor, limit)
            if rows:
                for seq, envelope in rows:
                    if not self._publish(seq, envelope):
                        return
                continue
            # Caught up.  Republish when receipts stop coming while readings wait.
            if (
                not self._inflight
                and time.monotonic() - self._last_progress > resend_after
                and store.oldest(device) is not None
            ):
                self._stalled(device, resend_after)
                continue
            await self._wait(min(5.0, resend_after))

    def _stalled(self, device: str, resend_after: float) -> None:
        """No receipt for ``resend_after`` s: publish again from the oldest reading in the outbox."""
        first = self.store.oldest(device)
        if first is None:
            return
        log.warning(
            "%s: no receipt for %.0f s while readings wait in the outbox; publishing them again from "
            "seq %d, at most %d ahead of the receipts",
            device,
            resend_after,
            first[0],
            self.window,
        )
        self._resend_to = max(self._resend_to, self._cursor)
        self._cursor = first[0] - 1
        self._last_progress = time.monotonic()

    async def _wait(self, timeout: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wake.wait()

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        if self._inflight.pop(mid, None) is not None:
            self.published += 1
            self._wake.set()
