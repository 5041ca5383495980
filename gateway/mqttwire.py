"""MQTT 3.1.1 and 5 packets: the few the gateway sends and reads, built and parsed without I/O.

The gateway's MQTT client (:mod:`gateway.mqtt`) is a small asyncio protocol
over these functions.  It speaks only what the gateway needs: CONNECT with a
persistent session, SUBSCRIBE at QoS 1, PUBLISH in both directions at QoS 0/1,
PUBACK, PINGREQ and DISCONNECT.  Reading is built for throughput: one call
parses every complete packet in a chunk of bytes from the socket, and the
PUBACKs for a batch of readings go out in a single write.

References: MQTT 3.1.1 (OASIS, 2014) and MQTT 5.0 (OASIS, 2019), sections 2
(packet format) and 3 (the packets).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from gateway.errors import GatewayError

MQTT311 = 4
"""Protocol level of MQTT 3.1.1 in CONNECT."""
MQTT5 = 5

CONNECT = 1
CONNACK = 2
PUBLISH = 3
PUBACK = 4
SUBSCRIBE = 8
SUBACK = 9
PINGREQ = 12
PINGRESP = 13
DISCONNECT = 14

PINGREQ_PACKET = b"\xc0\x00"
DISCONNECT_PACKET = b"\xe0\x00"
"""DISCONNECT with no reason code: a normal disconnection in both versions."""

# MQTT 5 property identifiers the gateway sends
_SESSION_EXPIRY = 0x11
_RECEIVE_MAXIMUM = 0x21
_MAXIMUM_PACKET_SIZE = 0x27

DEFAULT_MAX_PACKET_SIZE = 65_536
"""The largest packet the gateway takes from the broker, in bytes (whole packet, as MQTT 5's
Maximum Packet Size counts it). A reading is at most 1 KiB plus its topic and header: this
leaves a wide margin and still bounds what one packet can cost in memory."""
OVERSIZED_KEEP = 1024
"""Bytes of an oversized PUBLISH's payload that are kept, as evidence, in its marker."""

_U16 = struct.Struct(">H")


class MqttProtocolError(GatewayError):
    """The broker sent bytes that are not a valid MQTT packet, or refused us."""

    code = "mqtt_protocol"


def varint(n: int) -> bytes:
    """MQTT's Variable Byte Integer (remaining length, property lengths)."""
    if not 0 <= n <= 268_435_455:
        raise ValueError(f"{n} does not fit in an MQTT variable byte integer")
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _varint_at(buf: bytes, i: int, end: int) -> tuple[int, int] | None:
    """(value, index after it) of the variable byte integer at ``buf[i]``; None if it runs past ``end``."""
    value = 0
    for shift in (0, 7, 14, 21):
        if i >= end:
            return None
        byte = buf[i]
        value |= (byte & 0x7F) << shift
        i += 1
        if not byte & 0x80:
            return value, i
    raise MqttProtocolError("malformed variable byte integer from the broker")


def _string(data: bytes) -> bytes:
    if len(data) > 0xFFFF:
        raise ValueError("an MQTT string is at most 65,535 bytes")
    return _U16.pack(len(data)) + data


def _packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + varint(len(body)) + body


def connect(
    client_id: str,
    *,
    version: int,
    keepalive: int,
    clean_start: bool,
    username: str | None = None,
    password: str | None = None,
    session_expiry: int = 0,
    receive_maximum: int = 0,
    max_packet_size: int = 0,
) -> bytes:
    """CONNECT: no will; in MQTT 5 the session expiry, receive maximum and maximum packet size
    properties (0: omitted)."""
    flags = 0x02 if clean_start else 0
    tail = b""
    if username is not None:
        flags |= 0x80
        tail += _string(username.encode())
        if password is not None:
            flags |= 0x40
            tail += _string(password.encode())
    body = _string(b"MQTT") + bytes((version, flags)) + _U16.pack(keepalive)
    if version == MQTT5:
        props = b""
        if session_expiry:
            props += bytes((_SESSION_EXPIRY,)) + struct.pack(">I", session_expiry)
        if receive_maximum:
            props += bytes((_RECEIVE_MAXIMUM,)) + _U16.pack(receive_maximum)
        if max_packet_size:
            props += bytes((_MAXIMUM_PACKET_SIZE,)) + struct.pack(">I", max_packet_size)
        body += varint(len(props)) + props
    return _packet(CONNECT << 4, body + _string(client_id.encode()) + tail)


def subscribe(packet_id: int, topic_filter: str, qos: int, version: int) -> bytes:
    """SUBSCRIBE to one filter."""
    body = _U16.pack(packet_id)
    if version == MQTT5:
        body += b"\x00"  # no properties
    return _packet(0x82, body + _string(topic_filter.encode()) + bytes((qos,)))


def publish(
    topic: str, payload: bytes, *, qos: int, packet_id: int, version: int, dup: bool = False
) -> bytes:
    """PUBLISH (not retained)."""
    body = _string(topic.encode())
    if qos:
        body += _U16.pack(packet_id)
    if version == MQTT5:
        body += b"\x00"  # no properties
    return _packet((PUBLISH << 4) | (0x08 if dup else 0) | (qos << 1), body + payload)


def pubacks(packet_ids: list[int]) -> bytes:
    """The PUBACKs of these packet ids, in this order, as one buffer.

    The same bytes in both versions: MQTT 5 lets a PUBACK omit its reason code
    (success) when there are no properties.
    """
    return b"".join([b"\x40\x02" + _U16.pack(i) for i in packet_ids])


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
            header = _varint_at(buf, pos + 1, end)
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
            props = _varint_at(buf, i, stop)
            if props is None:
                raise MqttProtocolError("malformed PUBLISH properties from the broker")
            i = props[1] + props[0]
        if i > stop:
            raise MqttProtocolError("malformed PUBLISH from the broker")
        return Publish(topic, buf[i:stop], packet_id, qos, bool(first & 0x08))


def connack_result(body: bytes, version: int) -> tuple[bool, int]:
    """(session present, reason code) of a CONNACK body; reason 0 is success."""
    if len(body) < 2:
        raise MqttProtocolError("malformed CONNACK from the broker")
    return bool(body[0] & 0x01), body[1]


# MQTT 5 property identifiers and how their values are encoded (section 2.2.2.2)
_BYTE, _U16P, _U32, _VARINT, _UTF8, _BINARY, _PAIR = range(7)
_PROPERTY_TYPES = {
    0x01: _BYTE, 0x02: _U32, 0x03: _UTF8, 0x08: _UTF8, 0x09: _BINARY, 0x0B: _VARINT,
    0x11: _U32, 0x12: _UTF8, 0x13: _U16P, 0x15: _UTF8, 0x16: _BINARY, 0x17: _BYTE,
    0x18: _U32, 0x19: _BYTE, 0x1A: _UTF8, 0x1C: _UTF8, 0x1F: _UTF8, 0x21: _U16P,
    0x22: _U16P, 0x23: _U16P, 0x24: _BYTE, 0x25: _BYTE, 0x26: _PAIR, 0x27: _U32,
    0x28: _BYTE, 0x29: _BYTE, 0x2A: _BYTE,
}  # fmt: skip


def properties(data: bytes) -> dict[int, int]:
    """The numeric MQTT 5 properties in ``data`` (a property block without its length).

    Text, binary and user properties are skipped; an unknown or truncated property
    is a :class:`MqttProtocolError`.
    """
    out: dict[int, int] = {}
    i, end = 0, len(data)
    while i < end:
        ident = data[i]
        kind = _PROPERTY_TYPES.get(ident)
        i += 1
        if kind is None:
            raise MqttProtocolError(f"unknown MQTT 5 property 0x{ident:02x} from the broker")
        if kind == _BYTE:
            size = 1
        elif kind == _U16P:
            size = 2
        elif kind == _U32:
            size = 4
        elif kind == _VARINT:
            value = _varint_at(data, i, end)
            if value is None:
                raise MqttProtocolError("truncated MQTT 5 property from the broker")
            out[ident], i = value
            continue
        else:
            size = 0
            for _ in range(2 if kind == _PAIR else 1):
                if i + 2 > end:
                    raise MqttProtocolError("truncated MQTT 5 property from the broker")
                n = _U16.unpack_from(data, i)[0]
                size += 2 + n
                i += 2 + n
            i -= size
        if i + size > end:
            raise MqttProtocolError("truncated MQTT 5 property from the broker")
        if kind in (_BYTE, _U16P, _U32):
            out[ident] = int.from_bytes(data[i : i + size], "big")
        i += size
    return out


@dataclass(frozen=True, slots=True)
class Connack:
    session_present: bool
    reason: int
    """0: accepted."""
    receive_maximum: int = 65_535
    """MQTT 5: QoS 1 messages we may have unacknowledged at the broker at once."""
    server_keepalive: int | None = None
    """MQTT 5: the keep-alive the broker imposes instead of ours."""


def parse_connack(body: bytes, version: int) -> Connack:
    """A CONNACK body: the session flag, the reason and, in MQTT 5, the limits the broker sets."""
    present, reason = connack_result(body, version)
    if version != MQTT5 or len(body) == 2:
        return Connack(present, reason)
    block = _varint_at(body, 2, len(body))
    if block is None or block[1] + block[0] > len(body):
        raise MqttProtocolError("malformed CONNACK properties from the broker")
    props = properties(body[block[1] : block[1] + block[0]])
    return Connack(present, reason, props.get(0x21, 65_535) or 65_535, props.get(0x13))


def suback_codes(body: bytes, version: int) -> tuple[int, list[int]]:
    """(packet id, reason codes) of a SUBACK body; a code of 0x80 or above is a refusal."""
    if len(body) < 3:
        raise MqttProtocolError("malformed SUBACK from the broker")
    packet_id = _U16.unpack_from(body)[0]
    i = 2
    if version == MQTT5:
        props = _varint_at(body, i, len(body))
        if props is None:
            raise MqttProtocolError("malformed SUBACK from the broker")
        i = props[1] + props[0]
    return packet_id, list(body[i:])


CONNACK_REASONS = {
    # MQTT 3.1.1 return codes
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorised",
    # MQTT 5 reason codes
    0x80: "unspecified error",
    0x84: "unsupported protocol version",
    0x85: "client identifier not valid",
    0x86: "bad user name or password",
    0x87: "not authorised",
    0x88: "server unavailable",
    0x89: "server busy",
    0x8A: "banned",
}


PUBACK_REASONS = {
    0x80: "unspecified error",
    0x83: "implementation specific error",
    0x87: "not authorized",
    0x90: "topic name invalid",
    0x91: "packet identifier in use",
    0x97: "quota exceeded",
    0x99: "payload format invalid",
}


def puback_result(body: bytes, version: int) -> tuple[int, int]:
    """(packet id, reason code) of a PUBACK body; 0x80 or above is a refusal (MQTT 5 only).

    An MQTT 5 PUBACK of only the packet id means success (section 3.4.2.1).
    """
    if len(body) < 2:
        raise MqttProtocolError("malformed PUBACK from the broker")
    reason = body[2] if version == MQTT5 and len(body) > 2 else 0
    return _U16.unpack_from(body)[0], reason


def puback_reason(code: int) -> str:
    return PUBACK_REASONS.get(code, f"reason code 0x{code:02x}")


def publish_topic(packet: bytes) -> str:
    """The topic of a PUBLISH packet as built by :func:`publish`."""
    header = _varint_at(packet, 1, len(packet))
    if header is None:
        raise ValueError("not a complete PUBLISH packet")
    i = header[1]
    n = _U16.unpack_from(packet, i)[0]
    return packet[i + 2 : i + 2 + n].decode("utf-8", "replace")


LOGIN_REFUSALS = frozenset({4, 5, 0x86, 0x87})
"""CONNACK codes that mean the broker did not accept the user name, password or client."""


def connack_reason(code: int) -> str:
    return CONNACK_REASONS.get(code, f"reason code 0x{code:02x}")
