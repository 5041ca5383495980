"""The gateway's MQTT link: a small asyncio client over :mod:`gateway.mqttwire`.

* MQTT 5 where the broker has it, MQTT 3.1.1 otherwise (probed at start).
* A persistent session (clean session off / a session expiry) and QoS 1, so
  readings published while the gateway is away are delivered when it returns.
* Manual acknowledgements: a reading is acknowledged only once it is stored
  (see :mod:`gateway.ingest`), so a crash before that gets it redelivered, and
  only on the connection that delivered it: a packet id names a message only
  within one connection.  The PUBACKs of a stored batch leave in one write.
* Only a link that takes readings has a persistent session; one without
  ``on_message`` (a process that does not ingest) starts clean and acknowledges
  nothing it is sent.
* Reconnects by itself after jittered, growing pauses (:mod:`gateway.retry`), logging each attempt; a silent broker is
  detected by the keep-alive ping.
* Receipts (QoS 1) not yet acknowledged by the broker are sent again, marked
  DUP, after a reconnection.

The client runs in the event loop's thread: each chunk the socket delivers is
parsed at once and its readings handed to ``on_message`` without a thread hop
(:mod:`gateway.mqttconnection`): a client library's own network thread would cost
CPU per reading, in that thread and in waking the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections import deque
from collections.abc import Callable, Iterable

from attest_core.topics import READINGS_FILTER
from gateway import mqttwire as wire
from gateway.config import MqttUrl
from gateway.ingest import Message
from gateway.mqttconnection import Connection, probe_protocol, ssl_context
from gateway.retry import Backoff

__all__ = ["MQTTv5", "MQTTv311", "MqttLink", "probe_protocol"]

log = logging.getLogger("gateway.mqtt")

MQTTv311 = wire.MQTT311
MQTTv5 = wire.MQTT5

_CONNECT_TIMEOUT = 10.0
_MAX_UNACKED_RECEIPTS = 50_000
"""Receipts kept for re-sending until the broker acknowledges them; beyond, the oldest are
forgotten (a device that misses its receipt re-sends its reading and is answered again)."""


class MqttLink:
    """One connection: optionally subscribed to readings, always able to publish receipts."""

    def __init__(
        self,
        url: MqttUrl,
        client_id: str,
        *,
        on_message: Callable[[Message], None] | None = None,
        backlog: Callable[[], int] | None = None,
        share_group: str = "",
        protocol: int = MQTTv5,
        session_expiry: int = 7 * 24 * 3600,
        receive_maximum: int = 1000,
        keepalive: int = 30,
        max_packet_size: int = wire.DEFAULT_MAX_PACKET_SIZE,
        on_publish_refused: Callable[[str, int], None] | None = None,
    ) -> None:
        self.url = url
        self.client_id = client_id
        self.on_message = on_message
        self.backlog = backlog
        """How many delivered readings ingest has not taken yet; None: no limit."""
        self.max_backlog = max(20_000, 4 * receive_maximum)
        """Stop reading from the socket at this backlog (an MQTT 3.1.1 broker, or one with
        no in-flight limit, could otherwise push its whole queue into memory); go on below half."""
        self.protocol = protocol
        self.session_expiry = session_expiry
        self.receive_maximum = receive_maximum
        self.keepalive = keepalive
        self.max_packet_size = max_packet_size
        """The largest packet taken from the broker (advertised in MQTT 5; larger PUBLISH packets
        are delivered as markers, see mqttwire.PacketReader)."""
        self.on_publish_refused = on_publish_refused
        """Called with the topic and the reason code of a receipt the broker refused (MQTT 5)."""
        self.filter = f"$share/{share_group}/{READINGS_FILTER}" if share_group else READINGS_FILTER
        self.connected = asyncio.Event()
        self.unacked: dict[int, tuple[bytes, bool]] = {}
        """Receipts published at QoS 1 and not yet acknowledged: packet id -> (PUBLISH packet,
        sent before), oldest first."""
        self._to_send: deque[int] = deque()
        self._flush_due = False
        self._next_id = 0
        self._conn: Connection | None = None
        """The connection once the broker has accepted it (CONNACK)."""
        self._socket: Connection | None = None
        """The connection from the moment it is open."""
        self.connections = 0
        """Connections opened so far; the number of the latest."""
        self._task: asyncio.Task[None] | None = None

    @property
    def version(self) -> str:
        return "5" if self.protocol == MQTTv5 else "3.1.1"

    def start(self) -> None:
        """Connect in the background (call from the event loop); reconnects until :meth:`stop`."""
        self._task = asyncio.create_task(self._run(), name="mqtt")

    async def stop(self) -> None:
        """Disconnect (a DISCONNECT if connected) and stop reconnecting; returns once the socket is closed."""
        if self._conn is not None:
            self._conn.write(wire.DISCONNECT_PACKET)
        socket = self._socket
        task = self._task
        if task is not None:
            # Cancelled until it ends: a cancellation can be lost (Python 3.11's asyncio.wait_for,
            # a library's await, returns a result that completed at the same moment instead of
            # raising), and the task would then reconnect for ever while stop() waited on it.
            while not task.done():
                task.cancel()
                await asyncio.wait([task], timeout=0.5)
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self._task = None
        if socket is not None:
            try:
                async with asyncio.timeout(2.0):
                    await asyncio.shield(socket.closed)
            except TimeoutError:
                if socket.transport is not None:
                    socket.transport.abort()
        self._conn = self._socket = None
        self.connected.clear()

    async def wait_connected(self, timeout: float) -> bool:
        try:
            async with asyncio.timeout(timeout):
                await self.connected.wait()
        except TimeoutError:
            return False
        return True

    def resume_reading(self) -> None:
        """Called by ingest after it took readings: read from the socket again once the backlog halved."""
        conn = self._socket
        if (
            conn is not None
            and conn.paused
            and (self.backlog is None or self.backlog() < self.max_backlog // 2)
        ):
            conn.paused = False
            conn.last_heard = time.monotonic()  # what the broker sent meanwhile waited in the socket
            if conn.transport is not None and not conn.transport.is_closing():
                conn.transport.resume_reading()

    def ack_many(self, messages: Iterable[Message]) -> None:
        """Acknowledge stored readings (QoS 0 ones, id 0, need none), in one write.

        Only those delivered by the current connection are acknowledged: a packet id
        names a message only within its connection (after a reconnection, a broker
        restart or a takeover of the client id, the same ids name other readings, not
        stored yet). The others are dropped: the broker, if it still has them, delivers
        them again and ingest counts them as duplicates.
        """
        conn = self._conn
        if conn is None or conn.transport is None or conn.transport.is_closing():
            return
        number = conn.number
        ids = [m.mid for m in messages if m.mid and m.connection == number]
        if ids:
            conn.write(wire.pubacks(ids))

    def publish(self, topic: str, payload: bytes) -> None:
        """Publish at QoS 1; kept for re-sending until the broker acknowledges it.

        Receipts come in bursts (one per device at each checkpoint): they leave in one
        write, and no more of them are unacknowledged at once than the broker's Receive
        Maximum allows (MQTT 5); the rest follow as acknowledgements come back.
        """
        packet_id = self._packet_id()
        self.unacked[packet_id] = (
            wire.publish(topic, payload, qos=1, packet_id=packet_id, version=self.protocol),
            False,
        )
        while len(self.unacked) > _MAX_UNACKED_RECEIPTS:
            self._forget(next(iter(self.unacked)))
        self._to_send.append(packet_id)
        self._schedule_flush()

    def _forget(self, packet_id: int) -> None:
        del self.unacked[packet_id]
        if self._conn is not None:
            self._conn.in_flight.discard(packet_id)

    def acked(self, conn: Connection, packet_id: int, reason: int = 0) -> None:
        """The broker acknowledged our PUBLISH ``packet_id`` on ``conn`` (called by the connection)."""
        entry = self.unacked.pop(packet_id, None)
        conn.in_flight.discard(packet_id)
        if reason >= 0x80 and entry is not None:
            # The broker took the packet and refused it (an ACL, a quota): the exchange is over,
            # and sending it again would be refused the same way. The device, missing its
            # receipt, re-sends its reading and is answered again.
            topic = wire.publish_topic(entry[0])
            log.warning("the broker refused the receipt on %s: %s", topic, wire.puback_reason(reason))
            if self.on_publish_refused is not None:
                self.on_publish_refused(topic, reason)
        if self._to_send:
            self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_due:
            self._flush_due = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_due = False
        conn = self._conn
        if conn is None or not conn.ready:
            return  # sent on the next connection
        out: list[bytes] = []
        while self._to_send and len(conn.in_flight) < conn.quota:
            packet_id = self._to_send.popleft()
            entry = self.unacked.get(packet_id)
            if entry is None or packet_id in conn.in_flight:
                continue  # forgotten, or already sent on this connection
            packet, sent = entry
            out.append(bytes((packet[0] | 0x08,)) + packet[1:] if sent else packet)  # again: DUP
            self.unacked[packet_id] = (packet, True)
            conn.in_flight.add(packet_id)
        if out:
            conn.write(b"".join(out))

    def _packet_id(self) -> int:
        for _ in range(0xFFFF):
            self._next_id = self._next_id % 0xFFFF + 1
            if self._next_id not in self.unacked:
                return self._next_id
        oldest = next(iter(self.unacked))  # every id in flight: forget the oldest receipt
        self._forget(oldest)
        return oldest

    # --- the connection ---------------------------------------------------------------

    async def _run(self) -> None:
        backoff = Backoff(1.0, 30.0, healthy_after=60.0)
        while True:
            backoff.started()
            try:
                reason = await self._session()
                delay = backoff.next_delay()
                log.warning(
                    "MQTT connection to %s lost (%s); reconnecting in %.1f s",
                    self.url.display(),
                    reason,
                    delay,
                )
            except (OSError, TimeoutError, ConnectionError, ssl.SSLError, wire.MqttProtocolError) as exc:
                delay = backoff.next_delay()
                log.warning(
                    "MQTT broker %s: %s; retrying in %.1f s",
                    self.url.display(),
                    str(exc) or type(exc).__name__,
                    delay,
                )
            finally:
                self.connected.clear()
                self._conn = None
            await asyncio.sleep(delay)

    async def _session(self) -> str:
        """Connect, subscribe and serve until the connection ends; return why it ended."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(_CONNECT_TIMEOUT):
            _, conn = await loop.create_connection(
                lambda: Connection(self), self.url.host, self.url.port, ssl=ssl_context(self.url)
            )
        self._socket = conn
        persistent = self.on_message is not None
        try:
            conn.write(
                wire.connect(
                    self.client_id,
                    version=self.protocol,
                    keepalive=self.keepalive,
                    clean_start=not persistent,
                    username=self.url.username,
                    password=self.url.password,
                    session_expiry=self.session_expiry if persistent and self.protocol == MQTTv5 else 0,
                    receive_maximum=self.receive_maximum if self.protocol == MQTTv5 else 0,
                    max_packet_size=self.max_packet_size if self.protocol == MQTTv5 else 0,
                )
            )
            async with asyncio.timeout(_CONNECT_TIMEOUT):
                connack = await conn.connack
            if connack.reason != 0:
                hint = (
                    " (check the user name and password in MQTT_URL, and the broker's ACL)"
                    if connack.reason in wire.LOGIN_REFUSALS
                    else ""
                )
                raise wire.MqttProtocolError(
                    f"the broker refused the connection: {wire.connack_reason(connack.reason)}{hint}"
                )
            if persistent and not connack.session_present and conn.number > 1:
                # A broker restarted without persistence, a session expired or taken over: the
                # readings it had queued for us are gone (devices re-send those without a receipt),
                # and acknowledgements still owed belong to the old connection: they are dropped.
                log.warning(
                    "MQTT broker %s had no session for %s: a new one is started",
                    self.url.display(),
                    self.client_id,
                )
            conn.quota = connack.receive_maximum
            conn.ready = True
            self._conn = conn
            self._to_send = deque(self.unacked)  # every receipt not acknowledged yet, oldest first
            self._flush()
            if self.on_message is not None:
                conn.suback = asyncio.get_running_loop().create_future()
                conn.write(wire.subscribe(self._packet_id(), self.filter, 1, self.protocol))
                async with asyncio.timeout(_CONNECT_TIMEOUT):
                    codes = await conn.suback
                if not codes or codes[0] >= 0x80:
                    raise wire.MqttProtocolError(
                        f"the broker refused the subscription to {self.filter} "
                        f"(code 0x{codes[0] if codes else 0:02x}: check the broker's ACL for this user)"
                    )
            log.info("MQTT %s connected to %s", self.version, self.url.display())
            self.connected.set()
            keepalive = connack.server_keepalive if connack.server_keepalive is not None else self.keepalive
            return await self._keep_alive(conn, keepalive)
        finally:
            if conn.transport is not None:
                conn.transport.close()  # sends what is buffered (a DISCONNECT on stop), then closes

    async def _keep_alive(self, conn: Connection, keepalive: int) -> str:
        """PINGREQ every half keep-alive; a broker silent for 1.5 keep-alives is given up on.

        A keep-alive of 0 switches the mechanism off (MQTT 3.1.2.10): no pings, and silence
        is not taken for a dead broker.
        """
        if keepalive == 0:
            return await asyncio.shield(conn.closed)
        period = max(1.0, keepalive / 2)
        while True:
            try:
                async with asyncio.timeout(period):
                    return await asyncio.shield(conn.closed)
            except TimeoutError:
                pass
            if not conn.paused and time.monotonic() - conn.last_heard > 1.5 * keepalive:
                conn.abort(f"no answer from the broker for {1.5 * keepalive:.0f} s")
                continue
            conn.write(wire.PINGREQ_PACKET)
