"""One device's MQTT link: the connection and session around the outbox publisher.

paho-mqtt 2.x (``CallbackAPIVersion.VERSION2``, MQTT 3.1.1) driven by the asyncio
loop through paho's external-loop hooks (``on_socket_open`` & co., as in paho's
``loop_asyncio`` example): no thread per device, so the fleet simulator can run
hundreds of links in one process.

* QoS 1, persistent session (``clean_session=False``) under a stable client id
  (the device id), so receipts published while the device is offline wait for
  it at the broker.
* Last will: ``offline`` (retained, QoS 1) on ``attest/v1/<device>/status``;
  ``online`` (retained) is published after each connect, ``offline`` before a
  clean disconnect.
* TLS for ``mqtts://``; user name and password from the URL or the config.
* Every connection attempt uses a fresh paho client.  After each connect the
  link publishes the device's whole outbox again, in sequence order, then new
  readings as they are stored; at most ``max_inflight`` readings wait for their
  PUBACK at any time.  The outbox, not paho's memory, is the source of truth:
  only a verified receipt removes a reading.
* Reconnects with exponential backoff and full jitter between
  ``reconnect_min_s`` and ``reconnect_max_s``.
* When no receipt arrives for ``resend_after_s`` while readings wait (a broker
  may drop queued messages), the outbox is published again from its oldest
  reading, paced by the receipts: never more than ``max_inflight`` readings
  beyond the last one receipted, so a deep outbox behind a slow gateway does not
  turn into a storm of re-sent messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from attest_core.topics import readings_topic, receipts_topic, status_topic
from edge_agent.config import MqttConfig
from edge_agent.mqtt.connecting import BrokerAddress, backoff_delay, describe_os_error
from edge_agent.mqtt.outbox import OutboxPublisher
from edge_agent.store import Store

log = logging.getLogger("edge_agent.mqtt")


class MqttLink(OutboxPublisher):
    """Publishes one device's outbox and hands its receipts to ``on_receipt``."""

    def __init__(
        self,
        *,
        device_id: str,
        broker: BrokerAddress,
        config: MqttConfig,
        store: Store,
        on_receipt: Callable[[bytes], None],
        on_state: Callable[[str, str], None] | None = None,
        quiet: bool = False,
    ) -> None:
        self.device_id = device_id
        self.broker = broker
        self.config = config
        self.store = store
        self.on_receipt = on_receipt
        self.on_state = on_state
        self.quiet = quiet
        self.window = config.max_inflight
        self.readings_topic = readings_topic(device_id)
        self.receipts_topic = receipts_topic(device_id)
        self.status_topic = status_topic(device_id)
        self.connected = False
        self.published = 0  # readings PUBACKed by the broker (including republished ones)
        self.connects = 0
        self.last_error = ""
        self._client: paho.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._cursor = 0  # highest seq published on this connection
        self._resend_to = 0  # while _cursor is below it: re-sending after a stall, paced by receipts
        self._inflight: dict[int, int] = {}  # mid -> seq
        self._queue: deque[tuple[int, bytes]] = deque()
        self._wake = asyncio.Event()
        self._stopping = False
        self._connack: asyncio.Future[Any] | None = None
        self._lost: asyncio.Future[str] | None = None
        self._misc: asyncio.Task[None] | None = None
        self._pump_task: asyncio.Task[None] | None = None
        self._fds: set[int] = set()
        self._last_progress = time.monotonic()
        self._rng = random.Random()  # noqa: S311 - jitter, not cryptography

    async def run(self) -> None:
        """Connect, publish, reconnect — until :meth:`stop`."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        attempt = 0
        while not self._stopping:
            error = await self._connect_once()
            if error is None:
                attempt = 0
                await self._serve()
                if self._stopping:
                    break
                delay = backoff_delay(0, self.config.reconnect_min_s, self.config.reconnect_max_s, self._rng)
            else:
                self.last_error = error
                self._state("disconnected", error)
                delay = backoff_delay(
                    attempt, self.config.reconnect_min_s, self.config.reconnect_max_s, self._rng
                )
                attempt += 1
                if not self.quiet or attempt == 1:
                    log.warning(
                        "%s: cannot connect to %s: %s; next attempt in %.1f s",
                        self.device_id,
                        self.broker.display(),
                        error,
                        delay,
                    )
            await self._pause(delay)

    async def stop(self, timeout: float = 3.0) -> None:
        """Publish ``offline``, wait briefly for outstanding PUBACKs, disconnect cleanly."""
        self._stopping = True
        self._wake.set()
        client = self._client
        if client is not None and self.connected:
            deadline = time.monotonic() + timeout
            while self._inflight and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            info = client.publish(self.status_topic, b"offline", qos=1, retain=True)
            while not info.is_published() and self.connected and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            client.disconnect()
            while self.connected and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        if self._lost is not None and not self._lost.done():
            self._lost.set_result("stopped")
        self._teardown()

    # ------------------------------------------------------------------ connection
    def _new_client(self) -> paho.Client:
        client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.device_id,
            clean_session=False,
            protocol=paho.MQTTv311,
            reconnect_on_failure=False,
        )
        username = self.config.username or self.broker.username
        password = self.config.password or self.broker.password
        if password and not username:
            username = self.device_id
        if username:
            client.username_pw_set(username, password or None)
        if self.broker.tls:
            client.tls_set(
                ca_certs=self.config.ca_file or None,
                certfile=self.config.cert_file or None,
                keyfile=self.config.key_file or None,
            )
        client.will_set(self.status_topic, b"offline", qos=1, retain=True)
        # The link keeps at most `window` readings unacknowledged itself; paho's own limit is
        # off, because paho rescans its whole queue on every PUBACK when it is on.
        client.max_inflight_messages_set(0)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        self._install_socket_hooks(client)
        return client

    async def _connect_once(self) -> str | None:
        """One connection attempt; None when connected, else what went wrong."""
        assert self._loop is not None
        client = self._client = self._new_client()
        self._connack = self._loop.create_future()
        self._lost = self._loop.create_future()
        try:
            await self._loop.run_in_executor(
                None, client.connect, self.broker.host, self.broker.port, self.config.keepalive_s
            )
            async with asyncio.timeout(30):
                reason = await asyncio.shield(self._connack)
            if isinstance(reason, str):
                self._teardown()
                return reason
        except ssl.SSLError as exc:
            self._teardown()
            return f"TLS handshake failed: {exc.reason or exc} (check ca_file and the broker's certificate)"
        except (OSError, ValueError) as exc:
            self._teardown()
            return describe_os_error(exc)
        except TimeoutError:
            self._teardown()
            return "the broker did not answer the CONNECT within 30 s"
        if reason.is_failure:
            self._teardown()
            hint = ""
            if reason.value in (4, 5, 134, 135):
                hint = " (check mqtt.username / mqtt.password and the broker's ACL for this device)"
            return f"the broker refused the connection: {reason}{hint}"
        return None

    async def _serve(self) -> None:
        """While connected: announce, subscribe, publish the outbox; return when the connection is lost."""
        assert self._client is not None
        assert self._lost is not None
        client = self._client
        self.connected = True
        self.connects += 1
        self.last_error = ""
        self._cursor = 0
        self._resend_to = 0  # a new connection publishes the whole outbox at once
        self._inflight.clear()
        self._queue.clear()
        self._last_progress = time.monotonic()
        client.publish(self.status_topic, b"online", qos=1, retain=True)
        client.subscribe(self.receipts_topic, qos=1)
        self._state("connected", "")
        if not self.quiet:
            log.info("%s: connected to %s; publishing the outbox", self.device_id, self.broker.display())
        assert self._loop is not None
        self._pump_task = self._loop.create_task(self._pump())
        reason = await self._lost
        self.connected = False
        if self._pump_task is not None:
            self._pump_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump_task
            self._pump_task = None
        self._teardown()
        if not self._stopping:
            self.last_error = reason
            self._state("disconnected", reason)
            log.warning("%s: connection to %s lost: %s", self.device_id, self.broker.display(), reason)

    def _teardown(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.on_socket_close = None
                client.on_disconnect = None
                sock = client.socket()
                if sock is not None:
                    sock.close()
        if self._loop is not None:
            for fd in list(self._fds):
                self._loop.remove_reader(fd)
                self._loop.remove_writer(fd)
        self._fds.clear()
        if self._misc is not None:
            self._misc.cancel()
            self._misc = None
        self.connected = False
        self._inflight.clear()
        self._queue.clear()

    async def _pause(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stopping and time.monotonic() < deadline:
            await asyncio.sleep(min(0.1, deadline - time.monotonic()))

    def _state(self, state: str, error: str) -> None:
        if self.on_state is not None:
            try:
                self.on_state(state, error)
            except Exception:  # status bookkeeping must never break the link
                log.exception("could not record the link state")

    # ------------------------------------------------------------------ paho callbacks (loop thread)

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if self._connack is not None and not self._connack.done():
            self._connack.set_result(reason)

    def _on_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if self._lost is not None and not self._lost.done():
            failed = getattr(reason, "is_failure", True)
            self._lost.set_result(
                "the connection dropped (broker stopped, network lost, keepalive timed out, or another "
                f"client connected with this device's id; {reason})"
                if failed
                else "the broker closed the connection"
            )
        if self._connack is not None and not self._connack.done():
            self._connack.set_result(f"the broker closed the connection before accepting it ({reason})")

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        if message.topic == self.receipts_topic:
            try:
                self.on_receipt(bytes(message.payload))
            except Exception:
                log.exception("%s: could not handle a receipt", self.device_id)
