"""One connection to the broker (an asyncio protocol) and the probe of the broker's MQTT version.

A :class:`Connection` parses each chunk the socket delivers at once, in the event loop's
thread, and hands its readings to the link's ``on_message`` tagged with the connection's
number, so that they are acknowledged only on the connection that delivered them
(:meth:`gateway.mqtt.MqttLink.ack_many`).  The link (:mod:`gateway.mqtt`) owns at most one
connection at a time and decides what to send.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from typing import TYPE_CHECKING, cast

from gateway import mqttwire as wire
from gateway.config import MqttUrl
from gateway.ingest import Message

if TYPE_CHECKING:
    from gateway.mqtt import MqttLink

log = logging.getLogger("gateway.mqtt")  # the link's logger: one name for the operator to filter on


def ssl_context(url: MqttUrl) -> ssl.SSLContext | None:
    return ssl.create_default_context() if url.tls else None


async def probe_protocol(url: MqttUrl, timeout: float = 5.0) -> int:
    """MQTTv5 if the broker accepts an MQTT 5 connection, else MQTTv311.

    Raises OSError if no broker answers at all.
    """
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(url.host, url.port, ssl=ssl_context(url))
    try:
        writer.write(
            wire.connect(
                "",
                version=wire.MQTT5,
                keepalive=10,
                clean_start=True,
                username=url.username,
                password=url.password,
            )
        )
        await writer.drain()
        packets = wire.PacketReader(wire.MQTT5)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    chunk = await reader.read(4096)
                    if not chunk:
                        return wire.MQTT311  # an MQTT 3.1.1 broker may just close the connection
                    for packet in packets.feed(chunk):
                        if isinstance(packet, wire.Control) and packet.type == wire.CONNACK:
                            _, code = wire.connack_result(packet.body, wire.MQTT5)
                            # A 3.1.1 broker answers with its return code 1 (unacceptable
                            # protocol version); an MQTT 5 one that refuses us for another
                            # reason (a bad login, say) still speaks MQTT 5, and the link
                            # will report that reason when it connects.
                            return (
                                wire.MQTT5 if code == 0 or (code >= 0x80 and code != 0x84) else wire.MQTT311
                            )
                        return wire.MQTT311
        except (TimeoutError, wire.MqttProtocolError):
            return wire.MQTT311
    finally:
        try:
            writer.write(wire.DISCONNECT_PACKET)
            writer.close()
            await writer.wait_closed()
        except (OSError, ssl.SSLError):
            pass


class Connection(asyncio.Protocol):
    """One TCP (or TLS) connection to the broker; the link owns at most one at a time."""

    def __init__(self, link: MqttLink) -> None:
        self.link = link
        link.connections += 1
        self.number = link.connections
        """Which of the link's connections this is (from 1): the tag of the messages it delivers."""
        self.reader = wire.PacketReader(link.protocol, link.max_packet_size)
        self.transport: asyncio.Transport | None = None
        self.connack: asyncio.Future[wire.Connack] = asyncio.get_running_loop().create_future()
        self.suback: asyncio.Future[list[int]] | None = None
        """Created when the link subscribes (a future nobody awaits must not hold an error)."""
        self.closed: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.last_heard = time.monotonic()
        self.ready = False
        """CONNACK received: receipts may be sent."""
        self.quota = 65_535
        """The broker's Receive Maximum: receipts we may have unacknowledged on this connection."""
        self.in_flight: set[int] = set()
        self.warned = False
        self.paused = False
        """Not reading from the socket: ingest has enough waiting (see MqttLink.max_backlog)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(str(exc) if exc else "closed by the broker")
        for fut in (self.connack, self.suback):
            if fut is not None and not fut.done():
                fut.set_exception(ConnectionError(str(exc) if exc else "closed by the broker"))

    def data_received(self, data: bytes) -> None:
        self.last_heard = time.monotonic()
        try:
            packets = self.reader.feed(data)
        except wire.MqttProtocolError as exc:
            self.abort(str(exc))
            return
        link = self.link
        deliver = link.on_message
        now = time.time()
        for packet in packets:
            if isinstance(packet, wire.Publish):
                if deliver is not None:
                    deliver(
                        Message(packet.topic, packet.payload, packet.packet_id, now, self.number, packet.size)
                    )
                elif not self.warned:
                    # Not acknowledged: nothing here stores it, and the clean session forgets it.
                    self.warned = True
                    log.warning("MQTT: a message on %s reached a link that takes none; ignored", packet.topic)
            elif packet.type == wire.PUBACK:
                try:
                    packet_id, code = wire.puback_result(packet.body, link.protocol)
                except wire.MqttProtocolError as exc:
                    self.abort(str(exc))
                    return
                link.acked(self, packet_id, code)
            elif packet.type == wire.CONNACK:
                if not self.connack.done():
                    try:
                        self.connack.set_result(wire.parse_connack(packet.body, link.protocol))
                    except wire.MqttProtocolError as exc:
                        self.connack.set_exception(exc)
            elif packet.type == wire.SUBACK:
                if self.suback is not None and not self.suback.done():
                    self.suback.set_result(wire.suback_codes(packet.body, link.protocol)[1])
            elif packet.type == wire.DISCONNECT:
                reason = f"reason code 0x{packet.body[0]:02x}" if packet.body else "no reason given"
                self.abort(f"the broker disconnected us ({reason})")
                return
            # PINGRESP only updates last_heard; nothing else is expected
        if link.backlog is not None and not self.paused and link.backlog() >= link.max_backlog:
            # Ingest is behind (a slow database, say): let TCP hold the rest at the broker.
            self.paused = True
            if self.transport is not None:
                self.transport.pause_reading()

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def abort(self, reason: str) -> None:
        if not self.closed.done():
            self.closed.set_result(reason)
        if self.transport is not None:
            self.transport.abort()
