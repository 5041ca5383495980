"""One device's MQTT link: publish readings from the outbox, receive receipts.

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
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from attest_core.broker import BrokerUrl, parse_broker_url
from attest_core.errors import DecodeError
from attest_core.topics import readings_topic, receipts_topic, status_topic
from edge_agent.config import MqttConfig
from edge_agent.errors import AgentError, Exit
from edge_agent.store import Store

log = logging.getLogger("edge_agent.mqtt")


BrokerAddress = BrokerUrl
"""Where the broker is (the contract's MQTT URL, parsed by attest_core.broker)."""


def parse_mqtt_url(url: str) -> BrokerAddress:
    try:
        return parse_broker_url(url)
    except DecodeError as exc:
        raise AgentError(str(exc), Exit.USAGE) from exc


def backoff_delay(attempt: int, low: float, high: float, rng: random.Random) -> float:
    """Exponential backoff with jitter: uniform in [low, min(high, low × 2^attempt)]."""
    ceiling = min(high, low * (2 ** min(attempt, 30)))
    return rng.uniform(low, max(low, ceiling))


class MqttLink:
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

    # ------------------------------------------------------------------ public

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
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_socket_register_write
        client.on_socket_unregister_write = self._on_socket_unregister_write
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
            reason = await asyncio.wait_for(asyncio.shield(self._connack), timeout=30)
            if isinstance(reason, str):
                self._teardown()
                return reason
        except ssl.SSLError as exc:
            self._teardown()
            return f"TLS handshake failed: {exc.reason or exc} (check ca_file and the broker's certificate)"
        except (OSError, ValueError) as exc:
            self._teardown()
            return _describe_os_error(exc)
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

    # ------------------------------------------------------------------ publishing

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
            await asyncio.wait_for(self._wake.wait(), timeout)

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

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        if self._inflight.pop(mid, None) is not None:
            self.published += 1
            self._wake.set()

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        if message.topic == self.receipts_topic:
            try:
                self.on_receipt(bytes(message.payload))
            except Exception:
                log.exception("%s: could not handle a receipt", self.device_id)

    def _in_loop(self, fn: Callable[[], None]) -> None:
        assert self._loop is not None
        if threading.get_ident() == self._loop_thread:
            fn()
        else:
            self._loop.call_soon_threadsafe(fn)

    def _on_socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        fd = sock.fileno()

        def register() -> None:
            assert self._loop is not None
            if client is not self._client:
                return
            self._fds.add(fd)
            self._loop.add_reader(fd, self._readable, client, sock)
            self._misc = self._loop.create_task(self._misc_loop(client))

        self._in_loop(register)

    def _readable(self, client: paho.Client, sock: Any) -> None:
        client.loop_read()
        # TLS can hold decrypted bytes the selector cannot see.
        while (
            isinstance(sock, ssl.SSLSocket)
            and client is self._client
            and sock.fileno() >= 0
            and sock.pending()
        ):
            if client.loop_read() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break

    def _on_socket_close(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        fd = sock.fileno()

        def unregister() -> None:
            assert self._loop is not None
            if fd in self._fds:
                self._fds.discard(fd)
                self._loop.remove_reader(fd)
                self._loop.remove_writer(fd)

        self._in_loop(unregister)

    def _on_socket_register_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        fd = sock.fileno()

        def register() -> None:
            assert self._loop is not None
            if client is self._client and fd in self._fds:
                self._loop.add_writer(fd, client.loop_write)

        self._in_loop(register)

    def _on_socket_unregister_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        fd = sock.fileno()

        def unregister() -> None:
            assert self._loop is not None
            if fd in self._fds:
                self._loop.remove_writer(fd)

        self._in_loop(unregister)

    async def _misc_loop(self, client: paho.Client) -> None:
        while client is self._client and client.loop_misc() == MQTTErrorCode.MQTT_ERR_SUCCESS:
            await asyncio.sleep(1.0)


def _describe_os_error(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the broker running, is the port right?)"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the broker's host name ({exc.strerror})"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "connection timed out (network down or firewall?)"
    if isinstance(exc, ConnectionError):
        return str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
