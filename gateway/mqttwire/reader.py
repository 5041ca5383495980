"""Reading the broker's byte stream: every complete packet of a chunk, oversized PUBLISH packets as markers."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.mqttwire.packets import (
    CONNACK,
    CONNECT,
    DEFAULT_MAX_PACKET_SIZE,
    DISCONNECT,
    MQTT5,
    PINGREQ,
    PINGRESP,
    PUBACK,
    PUBLISH,
    SUBACK,
    SUBSCRIBE,
    MqttProtocolError,
    varint_at,
)

OVERSIZED_KEEP = 1024
"""Bytes of an oversized PUBLISH's payload that are kept, as evidence, in its marker."""


@dataclass(frozen=True, slots=True)
class Publish:
    """A PUBLISH received from the broker."""

    topic: str
    payload: bytes
    packet_id: int
    """0 for QoS 0 (nothing to acknowledge)."""
    qos: int
    dup: bool
    size: int = 0
    """0, or the payload's real size when the packet was over the size limit: ``payload``
    then holds only its first bytes (at most :data:`OVERSIZED_KEEP`)."""


@dataclass(frozen=True, slots=True)
class Control:
    """Any other packet: its type, the flags of its first byte and its body."""

    type: int
    flags: int
    body: bytes


@dataclass(slots=True)
class _Oversized:
    """A packet over the size limit, being read past as it streams in."""

    first: int
    size: int
    """The whole packet's size."""
    body: int
    """Its remaining length."""
    left: int
    """Bytes of its body still to come."""
    head: bytearray
    """Its first body bytes, at most the size limit: usually enough for a PUBLISH's topic and packet id."""
    packet_id: bytearray = field(default_factory=bytearray)
    """The two bytes of its packet id, picked out as they stream past when the topic is longer
    than ``head`` can hold: without them the PUBLISH could not be acknowledged, and the broker
    would deliver it again on every connection."""


_PACKET_NAMES = {
    CONNECT: "CONNECT", CONNACK: "CONNACK", PUBLISH: "PUBLISH", PUBACK: "PUBACK", SUBSCRIBE: "SUBSCRIBE",
    SUBACK: "SUBACK", PINGREQ: "PINGREQ", PINGRESP: "PINGRESP", DISCONNECT: "DISCONNECT",
}  # fmt: skip


class PacketReader:
    """Splits the byte stream from the broker into packets.

    ``feed`` takes whatever the socket delivered and returns every packet that
    is now complete, in order; a partial packet waits for the next chunk.

    No packet larger than ``max_packet_size`` is ever held whole.  Such a PUBLISH
    is read past as its bytes arrive, and delivered as a marker once it has: its
    topic, its packet id (so it can be acknowledged like any other message once
    it is dealt with), its payload's first bytes and, in ``size``, its real size.
    Skipping it rather than dropping the connection matters: the broker would
    deliver it again on every reconnection, and no other reading would get past
    it.  Any other packet over the limit is a protocol error.
    """

    def __init__(self, version: int, max_packet_size: int = DEFAULT_MAX_PACKET_SIZE) -> None:
        self.version = version
        self.max_packet_size = max_packet_size
        self._rest = b""
        self._big: _Oversized | None = None

    @property
    def buffered(self) -> int:
        """Bytes held between calls to :meth:`feed`."""
        return len(self._rest) + (len(self._big.head) if self._big is not None else 0)

    def feed(self, data: bytes) -> list[Publish | Control]:
        out: list[Publish | Control] = []
        while True:
            if self._big is not None:
                data = self._skip(data, out)
                if self._big is not None:
                    return out  # the oversized packet goes on in the next chunk
            data = self._parse(data, out)
            if not data and self._big is None:
                return out

    def _parse(self, data: bytes, out: list[Publish | Control]) -> bytes:
        """Every complete packet in ``self._rest + data``; at a packet over the limit, its body's
        bytes (the rest of the chunk) to skip."""
        buf = self._rest + data if self._rest else data
        self._rest = b""
        end = len(buf)
        pos = 0
        v5 = self.version == MQTT5
        limit = self.max_packet_size
        while pos + 2 <= end:
            first = buf[pos]
            header = varint_at(buf, pos + 1, end)
            if header is None:
                break
            length, i = header
            stop = i + length
            if stop - pos > limit:
                kind = first >> 4
                if kind != PUBLISH:
                    name = _PACKET_NAMES.get(kind, f"type {kind}")
                    raise MqttProtocolError(
                        f"the broker sent a {name} packet of {stop - pos} bytes, over the {limit}-byte limit"
                    )
                self._big = _Oversized(first, stop - pos, length, length, bytearray())
                return buf[i:]
            if stop > end:
                break
            kind = first >> 4
            if kind == PUBLISH:
                out.append(self._publish(first, buf, i, stop, v5))
            else:
                out.append(Control(kind, first & 0x0F, buf[i:stop]))
            pos = stop
        self._rest = buf[pos:] if pos < end else b""
        return b""

    def _skip(self, data: bytes, out: list[Publish | Control]) -> bytes:
        """Take the oversized packet's bytes from ``data`` (keeping its first ones); return what follows it."""
        big = self._big
        assert big is not None
        take = min(big.left, len(data))
        room = self.max_packet_size - len(big.head)
        if room > 0:
            big.head += data[: min(room, take)]
        offset = big.body - big.left  # of data[0] in the body
        if len(big.head) >= 2 and (big.first >> 1) & 0x03:
            at = 2 + ((big.head[0] << 8) | big.head[1])  # the packet id follows the topic
            while len(big.packet_id) < 2 and offset <= at + len(big.packet_id) < offset + take:
                big.packet_id.append(data[at + len(big.packet_id) - offset])
        big.left -= take
        if big.left:
            return b""
        self._big = None
        head = bytes(big.head)
        try:
            whole = self._publish(big.first, head, 0, len(head), self.version == MQTT5)
        except MqttProtocolError:
            whole = self._long_topic(big, head)
        else:
            whole = Publish(
                whole.topic,
                whole.payload[:OVERSIZED_KEEP],
                whole.packet_id,
                whole.qos,
                whole.dup,
                big.body - (len(head) - len(whole.payload)),
            )
        out.append(whole)
        return data[take:]

    @staticmethod
    def _long_topic(big: _Oversized, head: bytes) -> Publish:
        """The marker of an oversized PUBLISH whose topic alone is longer than the bytes kept: the
        topic's first bytes, no payload, and the packet id picked out as it streamed past."""
        qos = (big.first >> 1) & 0x03
        if qos == 3 or len(head) < 2:
            raise MqttProtocolError("malformed PUBLISH from the broker")
        n = (head[0] << 8) | head[1]
        if qos and len(big.packet_id) < 2:
            raise MqttProtocolError(
                f"malformed PUBLISH from the broker: a {n}-byte topic runs past its packet"
            )
        packet_id = (big.packet_id[0] << 8) | big.packet_id[1] if qos else 0
        topic = head[2 : 2 + n].decode("utf-8", "replace")
        return Publish(
            topic, b"", packet_id, qos, bool(big.first & 0x08), max(0, big.body - 2 - n - (2 if qos else 0))
        )

    @staticmethod
    def _publish(first: int, buf: bytes, i: int, stop: int, v5: bool) -> Publish:
        qos = (first >> 1) & 0x03
        if qos == 3 or i + 2 > stop:
            raise MqttProtocolError("malformed PUBLISH from the broker")
        n = (buf[i] << 8) | buf[i + 1]
        i += 2
        if i + n + (2 if qos else 0) > stop:
            raise MqttProtocolError("malformed PUBLISH from the broker")
        topic = buf[i : i + n].decode("utf-8", "replace")
        i += n
        packet_id = 0
        if qos:
            packet_id = (buf[i] << 8) | buf[i + 1]
            i += 2
        if v5:
            props = varint_at(buf, i, stop)
            if props is None:
                raise MqttProtocolError("malformed PUBLISH properties from the broker")
            i = props[1] + props[0]
        if i > stop:
            raise MqttProtocolError("malformed PUBLISH from the broker")
        return Publish(topic, buf[i:stop], packet_id, qos, bool(first & 0x08))
